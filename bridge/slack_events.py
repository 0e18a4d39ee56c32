"""What agents do in Slack: thread replies become replies to the user; buttons claim and resolve.

Transport-free: the same handlers serve the HTTP Events API (web.py) and Socket Mode (socket_mode.py).
Each handler does its few Redis writes and returns; delivery happens in the background.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from .agents import AgentDirectory
from .config import FileConfig
from .delivery import iso
from .desk import NOT_MINE, Desk, DeskActions
from .file_links import FileLinks, relay_files
from .keys import REPLY, SLACK
from .metrics import Metrics
from .notices import (
    CLICK,
    NOT_RELAYED,
    TAKE_OVER_ACTION,
    Notifier,
    files_not_relayed,
    late_edit,
    taken_blocks,
)
from .privacy.audit import audit
from .slack_api import Identity
from .slack_format import CLAIM_ACTION, RESOLVE_ACTION, RETRY_ACTION
from .slack_payloads import (
    Envelope,
    EventHead,
    Interaction,
    InteractionUser,
    MessageEvent,
    PayloadError,
    parse,
    ts_ms,
)
from .store import Store

log = structlog.get_logger("bridge.slack_events")

# Human message subtypes that still are a reply to relay; edits and deletions of relayed replies are
# relayed as such (EDIT_SUBTYPES, _on_edit); every other subtype (joins, bot messages...) is ignored
# (and its author told why, see notices.NOT_RELAYED).
RELAYED_SUBTYPES = frozenset({"thread_broadcast", "file_share"})
EDIT_SUBTYPES = frozenset({"message_changed", "message_deleted"})
EVENT_DEDUPE_MS = 24 * 3600 * 1000


@dataclass
class SlackEvents:
    store: Store
    identity: Callable[[], Identity | None]
    config: Callable[[], FileConfig]
    metrics: Metrics
    wake: Callable[[str, int], None]
    replies_enabled: bool
    agents: AgentDirectory | None = None  # None: anyone may act (tests of the transport alone)
    notifier: Notifier | None = None  # None: nobody is told why
    desk: Desk | None = None  # the agent desk (bridge/desk): Home tab, modals, desk buttons
    file_links: FileLinks | None = None  # None: files shared by agents are not relayed

    def _ignore(self, kind: str, reason: str, **fields: Any) -> None:
        self.metrics.slack_events.labels(kind, f"ignored_{reason}").inc()
        log.info("slack_event_ignored", kind=kind, reason=reason, **fields)

    def _is_private(self, text: str) -> bool:
        stripped = text.lstrip().lower()
        return any(stripped.startswith(p.lower()) for p in self.config().replies.private_prefixes)

    async def on_event(self, body: dict[str, Any]) -> dict[str, Any] | None:
        """An Events API envelope. Returns a body to answer with (url_verification), else None.
        A payload of the wrong shape is ignored (logged): Slack would only retry it."""
        try:
            envelope = parse(Envelope, body)
            if envelope.type == "url_verification":
                return {"challenge": envelope.challenge}
            if envelope.type == "app_rate_limited":
                self._rate_limited(envelope)
                return None
            if envelope.type != "event_callback":
                self._ignore("envelope", "type", type=envelope.type)
                return None
            kind = parse(EventHead, envelope.event, "event").type
            if kind == "app_home_opened" and self.desk is not None:
                await self.desk.home_opened(envelope.event or {})
                return None
            if kind != "message":
                self._ignore("event", "type", type=str((envelope.event or {}).get("type")))
                return None
            event = parse(MessageEvent, envelope.event, "event")
        except PayloadError as e:
            self._ignore("event", "invalid_payload", problem=e.problem)
            return None
        await self._on_message(event, envelope.event_id)
        return None

    def _rate_limited(self, envelope: Envelope) -> None:
        """Slack drops this app's events for the rest of the minute: replies in threads are being lost."""
        self.metrics.slack_events.labels("app_rate_limited", "received").inc()
        log.error(
            "slack_app_rate_limited",
            team_id=envelope.team_id,
            minute_rate_limited=envelope.minute_rate_limited,
            effect="Slack sends no events to the bridge until the minute ends: agents' replies are lost",
        )

    async def _on_message(self, event: MessageEvent, event_id: str) -> None:
        if event.subtype in EDIT_SUBTYPES:
            return await self._on_edit(event, event_id)
        channel, thread_ts, ts, user = event.channel, event.thread_ts or "", event.ts or "", event.user
        me = self.identity()
        fields = {"channel": channel, "thread_ts": thread_ts}
        if event.bot_id or event.bot_profile or not user:
            return self._ignore("message", "bot", subtype=event.subtype or "", **fields)
        if me and (user == me.user_id or event.bot_id == me.bot_id):
            return self._ignore("message", "self", **fields)
        if not thread_ts or thread_ts == ts:
            return self._ignore("message", "not_in_thread", **fields)
        text = event.text
        if self._is_private(text):
            return self._ignore("message", "private_note", **fields)
        reason = self._not_relayed_reason(event)
        if reason:
            return await self._not_relayed(reason, channel, thread_ts, user, subtype=event.subtype or "")
        if not self.replies_enabled:
            # No reply endpoint: nobody could receive it, and a queued entry would never drain.
            return self._ignore("message", "no_reply_endpoint", **fields)
        cid = await self.store.thread_conversation(channel, thread_ts)
        if cid is None:
            return self._ignore("message", "unknown_thread", **fields)
        now_ms = int(time.time() * 1000)
        files, refused = self._files(event, now_ms)
        if not text.strip() and not files:  # only files, none of them relayed
            self._files_refused(event, refused)
            return self._ignore("message", "files_not_relayed", cid=cid, **fields)
        message = {
            "id": event_id or f"{channel}:{ts}",
            "slack_text": text,
            "files": files,
            "agent": {"slack_user_id": user, "name": ""},
            "sent_at": iso(ts_ms(ts)) if ts else iso(now_ms),
            # Where its receipt goes (the reply lane pops these): the agent's own message.
            "slack_channel": channel,
            "slack_ts": ts,
        }
        status, first_after_ms = await self.store.agent_message(
            cid,
            thread_ts=thread_ts,
            agent_id=user,
            message=message,
            event_id=event_id or f"{channel}:{ts}",
            now_ms=now_ms,
            dedupe_ms=EVENT_DEDUPE_MS,
            claim_on_reply=True,
            slack_ts=ts,
        )
        if status < 0:
            return await self._not_relayed("handover_closed", channel, thread_ts, user, cid=cid)
        if status == 0:
            return self._ignore("message", "duplicate", cid=cid, **fields)
        self._files_refused(event, refused)  # (not on a duplicate: told once)
        if first_after_ms > 0:
            self.metrics.agent_first_response.observe(first_after_ms / 1000)
            if self.desk is not None:
                await self.desk.first_response(cid, first_after_ms)
        self.metrics.slack_events.labels("message", "relayed").inc()
        log.info("agent_reply_queued", cid=cid, agent=user, **fields)
        self._wake(cid)
        privacy = self.config().privacy
        if status == 2:
            await audit(self.store, privacy, "claimed", actor=user, cid=cid, detail="by replying")
        await audit(self.store, privacy, "reply_relayed", actor=user, cid=cid, detail=f"thread {thread_ts}")
        return None

    def _not_relayed_reason(self, event: MessageEvent) -> str | None:
        """Why a human's thread reply is not for the user (told to them: notices.NOT_RELAYED)."""
        if event.subtype and event.subtype not in RELAYED_SUBTYPES:
            return "subtype"
        refusal = self._refusal(event.user, event.author_team)
        if refusal:
            return refusal
        if not event.text.strip() and not event.files:  # nothing the user could read
            return "empty"
        return None

    def _refusal(self, user: str, team: str) -> str | None:
        me = self.identity()
        return self.agents.refusal(user, team, me.team_id if me else "") if self.agents else None

    async def _on_edit(self, event: MessageEvent, event_id: str) -> None:
        """message_changed / message_deleted of a relayed reply: relayed as agent_message_edited /
        _deleted (agent_edit.lua); an unfurl (no `edited`) is no news to anyone."""
        deleted = event.subtype == "message_deleted"
        edited = event.previous_message if deleted else event.message
        ts = (event.deleted_ts if deleted else edited.ts if edited else None) or ""
        thread_ts = (edited.thread_ts if edited else None) or ""
        fields = {"channel": event.channel, "thread_ts": thread_ts, "subtype": event.subtype or ""}
        me = self.identity()
        if edited is None or not edited.user or edited.bot_id or (me and edited.user == me.user_id):
            return self._ignore("message", "edit_not_a_reply", **fields)
        unfurled = not deleted and (edited.edited is None or self._unchanged(event))
        if unfurled or not ts or not thread_ts or thread_ts == ts or self._is_private(edited.text):
            return self._ignore("message", "edit_not_relayed", **fields)
        if not self.replies_enabled:
            return self._ignore("message", "no_reply_endpoint", **fields)
        cid = await self.store.thread_conversation(event.channel, thread_ts)
        if cid is None:
            return self._ignore("message", "unknown_thread", **fields)
        window_s = self.config().replies.edit_window_s
        now_ms = int(time.time() * 1000)
        status, reply_id = await self.store.agent_edit(
            cid,
            thread_ts=thread_ts,
            agent_id=edited.user,
            slack_ts=ts,
            deleted=deleted,
            slack_text=edited.text,
            window_ms=int(window_s * 1000),
            event_id=event_id or f"{event.channel}:{ts}:{event.subtype}:{now_ms}",
            now_ms=now_ms,
            dedupe_ms=EVENT_DEDUPE_MS,
        )
        if status == -3:
            self._tell(event.channel, thread_ts, edited.user, late_edit(window_s))
        if status <= 0:
            reason = {0: "duplicate", -1: "handover_closed", -2: "edit_not_relayed", -3: "edit_window"}
            return self._ignore("message", reason[status], cid=cid, **fields)
        self.metrics.slack_events.labels(event.subtype or "edit", "relayed").inc()
        log.info("agent_edit_queued", cid=cid, agent=edited.user, reply=reply_id, deleted=deleted, **fields)
        self._wake(cid)
        return None

    @staticmethod
    def _unchanged(event: MessageEvent) -> bool:
        before, after = event.previous_message, event.message
        return before is not None and after is not None and before.text == after.text

    def _files(self, event: MessageEvent, now_ms: int) -> tuple[list[dict[str, Any]], list[str]]:
        """The message's files as agent_message carries them, and why the others are not relayed."""
        if not event.files:
            return [], []
        replies = self.config().replies
        return relay_files(
            [f.model_dump() for f in event.files],
            links=self.file_links,
            max_bytes=replies.max_file_bytes,
            expires_s=now_ms // 1000 + int(replies.file_link_ttl_s),
        )

    def _files_refused(self, event: MessageEvent, refused: list[str]) -> None:
        """Tell the author which files of their message the user will not get, and why."""
        if not refused:
            return
        text = files_not_relayed(refused, text_sent=bool(event.text.strip()))
        self._tell(event.channel, event.thread_ts or "", event.user, text)
        self.metrics.slack_events.labels("file", "not_relayed").inc(len(refused))
        log.info("files_not_relayed", agent=event.user, channel=event.channel, files=len(refused))

    def _tell(self, channel: str, thread_ts: str, user: str, text: str) -> None:
        if self.notifier and user:
            self.notifier.tell(channel, user, text, thread_ts=thread_ts)

    async def _not_relayed(self, reason: str, channel: str, thread_ts: str, user: str, **fields: Any) -> None:
        """Log it; in a handover thread, tell the author why (explanations live in notices.py)."""
        self._ignore("message", reason, channel=channel, thread_ts=thread_ts, **fields)
        text = NOT_RELAYED.get(reason)
        if not (text and self.notifier and user):
            return
        if "cid" in fields or await self.store.thread_conversation(channel, thread_ts) is not None:
            self.notifier.tell(channel, user, text, thread_ts=thread_ts)

    async def _retry(self, value: str, agent_id: str) -> None:
        """The reply_retry button: its dead-lettered reply goes back to the end of the reply outbox
        (as `bridge outbox replay` does); delivered then, it gets its check mark."""
        cid, _, dead_id = value.rpartition(" ")
        letter = await self.store.dead_letter(cid, dead_id) if cid and dead_id else None
        if letter is None or letter.lane != REPLY:  # replayed already, or not ours to replay
            return self._ignore("interaction", "retry_unknown", agent=agent_id)
        replayed = await self.store.replay(letter, int(time.time() * 1000))
        self.metrics.slack_events.labels(RETRY_ACTION, "done" if replayed else "unchanged").inc()
        log.info("reply_retry", cid=cid, dead=dead_id, agent=agent_id, replayed=replayed)
        if replayed:
            self._wake(cid)
        return None

    def _wake(self, cid: str) -> None:
        partition = self.store.partition_of(cid)
        self.wake(SLACK, partition)
        self.wake(REPLY, partition)

    async def on_interaction(self, body: dict[str, Any]) -> dict[str, Any] | None:
        """Block Kit button clicks: Claim and Resolve on a root, Take it over on the ephemeral a Claim
        on someone else's handover answers with; the desk's buttons and modals (bridge/desk) when it
        runs. Returns a body to answer with (a modal's errors), else None. Raises PayloadError for a
        payload of the wrong shape (the HTTP endpoint answers 400)."""
        if self.desk is not None:
            answer = await DeskActions(self.desk, self._refusal, self._act).on_interaction(body)
            if answer is not NOT_MINE:
                return answer
        payload = parse(Interaction, body)
        if payload.type != "block_actions":
            self._ignore("interaction", "type", type=payload.type)
            return None
        for action in payload.actions:
            if action.action_id == RETRY_ACTION:  # on the ephemeral about a dead-lettered reply
                await self._retry(action.value, payload.user.id)
            elif action.action_id == TAKE_OVER_ACTION:  # clicked on the ephemeral: the root is in the value
                await self._act(action.action_id, payload.user, payload.channel_id, action.value)
            elif action.action_id in (CLAIM_ACTION, RESOLVE_ACTION):
                await self._act(action.action_id, payload.user, payload.channel_id, payload.message_ts)
            else:
                self._ignore("interaction", "action", action_id=action.action_id)
        return None

    async def _act(self, action_id: str, user: InteractionUser, channel: str, root_ts: str) -> None:
        cid = await self.store.thread_conversation(channel, root_ts)
        if cid is None:
            return self._ignore("interaction", "unknown_thread", channel=channel, thread_ts=root_ts)
        refusal = self._refusal(user.id, user.team_id)
        status = -3 if refusal else await self._change(action_id, cid, user, root_ts)
        outcome = refusal or _OUTCOMES[status]
        self.metrics.slack_events.labels(action_id, outcome).inc()
        log.info(
            "handover_action",
            action=action_id,
            outcome=outcome,
            cid=cid,
            agent=user.id,
            channel=channel,
            thread_ts=root_ts,
        )
        if status > 0:
            self._wake(cid)
            if self.desk is not None:  # the Home tab is out of date
                await self.desk.store.mark_home_dirty()
            action = _AUDITED[action_id]
            await audit(self.store, self.config().privacy, action, actor=user.id, cid=cid, detail="button")
        elif status == -2 and self.notifier:
            holder = (await self.store.conversation(cid)).get("agent_id", "")
            text, blocks = taken_blocks(holder, root_ts)
            self.notifier.tell(channel, user.id, text, blocks=blocks)
        elif self.notifier and outcome in CLICK:
            self.notifier.tell(channel, user.id, CLICK[outcome])
        return None

    async def _change(self, action_id: str, cid: str, user: InteractionUser, root_ts: str) -> int:
        common: dict[str, Any] = {
            "thread_ts": root_ts,
            "agent_id": user.id,
            "agent_name": user.name or user.username,
            "now_ms": int(time.time() * 1000),
            "replies": self.replies_enabled,
        }
        if action_id == RESOLVE_ACTION and self.desk is not None:  # (its reopen window and numbers)
            return await self.desk.resolve(
                cid, thread_ts=root_ts, agent_id=common["agent_id"], agent_name=common["agent_name"]
            )
        if action_id == RESOLVE_ACTION:
            return await self.store.resolve_handover(cid, **common)
        return await self.store.claim_handover(cid, take_over=action_id == TAKE_OVER_ACTION, **common)


# Store answers of claim/resolve -> outcome label (-2: another agent has it, see claim_handover.lua).
_OUTCOMES = {1: "done", 0: "unchanged", -1: "not_open", -2: "taken"}
_AUDITED = {CLAIM_ACTION: "claimed", TAKE_OVER_ACTION: "taken_over", RESOLVE_ACTION: "resolved"}
