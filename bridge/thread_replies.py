"""Thread replies of agents: relayed to the user (text and files), edits and deletions relayed as
such, and everything else explained to its author (notices.NOT_RELAYED)."""

from __future__ import annotations

import time
from typing import Any

import structlog

from .delivery import iso
from .events_base import EVENT_DEDUPE_MS, EventsBase
from .file_links import relay_files
from .notices import (
    NOT_RELAYED,
    files_not_relayed,
    late_edit,
)
from .privacy.audit import audit
from .slack_payloads import (
    MessageEvent,
    ts_ms,
)

log = structlog.get_logger("bridge.slack_events")

# Human message subtypes that still are a reply to relay; edits and deletions of relayed replies are
# relayed as such (EDIT_SUBTYPES, _on_edit); every other subtype (joins, bot messages...) is ignored
# (and its author told why, see notices.NOT_RELAYED).
RELAYED_SUBTYPES = frozenset({"thread_broadcast", "file_share"})
EDIT_SUBTYPES = frozenset({"message_changed", "message_deleted"})


class ThreadReplies(EventsBase):
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
        return await self._relay(event, event_id, cid, fields)

    async def _relay(self, event: MessageEvent, event_id: str, cid: str, fields: dict[str, str]) -> None:
        """Queue a reply for the user (agent_message.lua): text, files, and where its receipt goes."""
        channel, thread_ts, ts, user = event.channel, event.thread_ts or "", event.ts or "", event.user
        now_ms = int(time.time() * 1000)
        files, refused = self._files(event, now_ms)
        if not event.text.strip() and not files:  # only files, none of them relayed
            self._files_refused(event, refused)
            return self._ignore("message", "files_not_relayed", cid=cid, **fields)
        status, first_after_ms = await self.store.agent_message(
            cid,
            thread_ts=thread_ts,
            agent_id=user,
            message=_reply_message(event, event_id, files, now_ms),
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

    async def _not_relayed(self, reason: str, channel: str, thread_ts: str, user: str, **fields: Any) -> None:
        """Log it; in a handover thread, tell the author why (explanations live in notices.py)."""
        self._ignore("message", reason, channel=channel, thread_ts=thread_ts, **fields)
        text = NOT_RELAYED.get(reason)
        if not (text and self.notifier and user):
            return
        if "cid" in fields or await self.store.thread_conversation(channel, thread_ts) is not None:
            self.notifier.tell(channel, user, text, thread_ts=thread_ts)


def _reply_message(
    event: MessageEvent, event_id: str, files: list[dict[str, Any]], now_ms: int
) -> dict[str, Any]:
    """What agent_message.lua queues for the reply endpoint (the reply lane completes it)."""
    ts = event.ts or ""
    return {
        "id": event_id or f"{event.channel}:{ts}",
        "slack_text": event.text,
        "files": files,
        "agent": {"slack_user_id": event.user, "name": ""},
        "sent_at": iso(ts_ms(ts)) if ts else iso(now_ms),
        # Where its receipt goes (the reply lane pops these): the agent's own message.
        "slack_channel": event.channel,
        "slack_ts": ts,
    }
