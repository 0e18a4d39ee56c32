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

from .config import FileConfig
from .delivery import iso
from .keys import REPLY, SLACK
from .metrics import Metrics
from .slack_api import Identity
from .slack_format import CLAIM_ACTION, RESOLVE_ACTION
from .slack_payloads import (
    Envelope,
    EventHead,
    Interaction,
    MessageEvent,
    PayloadError,
    parse,
    ts_ms,
)
from .store import Store

log = structlog.get_logger("bridge.slack_events")

# Human message subtypes that still are a reply to relay; every other subtype (edits, deletions,
# joins, bot messages...) is ignored.
RELAYED_SUBTYPES = frozenset({"thread_broadcast", "file_share"})
EVENT_DEDUPE_MS = 24 * 3600 * 1000


@dataclass
class SlackEvents:
    store: Store
    identity: Callable[[], Identity | None]
    config: Callable[[], FileConfig]
    metrics: Metrics
    wake: Callable[[str, int], None]
    replies_enabled: bool

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
            if envelope.type != "event_callback":
                self._ignore("envelope", "type", type=envelope.type)
                return None
            if parse(EventHead, envelope.event, "event").type != "message":
                self._ignore("event", "type", type=str((envelope.event or {}).get("type")))
                return None
            event = parse(MessageEvent, envelope.event, "event")
        except PayloadError as e:
            self._ignore("event", "invalid_payload", problem=e.problem)
            return None
        await self._on_message(event, envelope.event_id)
        return None

    async def _on_message(self, event: MessageEvent, event_id: str) -> None:
        channel, thread_ts, ts, user = event.channel, event.thread_ts or "", event.ts or "", event.user
        me = self.identity()
        fields = {"channel": channel, "thread_ts": thread_ts}
        if event.subtype and event.subtype not in RELAYED_SUBTYPES:
            return self._ignore("message", "subtype", subtype=event.subtype, **fields)
        if event.bot_id or event.bot_profile or not user:
            return self._ignore("message", "bot", **fields)
        if me and (user == me.user_id or event.bot_id == me.bot_id):
            return self._ignore("message", "self", **fields)
        if not thread_ts or thread_ts == ts:
            return self._ignore("message", "not_in_thread", **fields)
        text = event.text
        if not text.strip():  # e.g. a file shared without a comment: nothing the user could read
            return self._ignore("message", "empty", **fields)
        if self._is_private(text):
            return self._ignore("message", "private_note", **fields)
        if not self.replies_enabled:
            # No reply endpoint: nobody could receive it, and a queued entry would never drain.
            return self._ignore("message", "no_reply_endpoint", **fields)
        cid = await self.store.thread_conversation(channel, thread_ts)
        if cid is None:
            return self._ignore("message", "unknown_thread", **fields)
        now_ms = int(time.time() * 1000)
        message = {
            "id": event_id or f"{channel}:{ts}",
            "slack_text": text,
            "agent": {"slack_user_id": user, "name": ""},
            "sent_at": iso(ts_ms(ts)) if ts else iso(now_ms),
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
        )
        if status < 0:
            return self._ignore("message", "handover_closed", cid=cid, **fields)
        if status == 0:
            return self._ignore("message", "duplicate", cid=cid, **fields)
        if first_after_ms > 0:
            self.metrics.agent_first_response.observe(first_after_ms / 1000)
        self.metrics.slack_events.labels("message", "relayed").inc()
        log.info("agent_reply_queued", cid=cid, agent=user, **fields)
        self._wake(cid)
        return None

    def _wake(self, cid: str) -> None:
        partition = self.store.partition_of(cid)
        self.wake(SLACK, partition)
        self.wake(REPLY, partition)

    async def on_interaction(self, body: dict[str, Any]) -> None:
        """Block Kit button clicks on a root message: Claim and Resolve.
        Raises PayloadError for a payload of the wrong shape (the HTTP endpoint answers 400)."""
        payload = parse(Interaction, body)
        if payload.type != "block_actions":
            return self._ignore("interaction", "type", type=payload.type)
        agent_id = payload.user.id
        agent_name = payload.user.name or payload.user.username
        channel, root_ts = payload.channel_id, payload.message_ts
        for action in payload.actions:
            action_id = action.action_id
            if action_id not in (CLAIM_ACTION, RESOLVE_ACTION):
                self._ignore("interaction", "action", action_id=action_id)
                continue
            cid = await self.store.thread_conversation(channel, root_ts)
            if cid is None:
                self._ignore("interaction", "unknown_thread", channel=channel, thread_ts=root_ts)
                continue
            change = self.store.claim_handover if action_id == CLAIM_ACTION else self.store.resolve_handover
            status = await change(
                cid,
                thread_ts=root_ts,
                agent_id=agent_id,
                agent_name=agent_name,
                now_ms=int(time.time() * 1000),
                replies=self.replies_enabled,
            )
            outcome = "done" if status > 0 else ("unchanged" if status == 0 else "not_open")
            self.metrics.slack_events.labels(action_id, outcome).inc()
            log.info(
                "handover_action",
                action=action_id,
                outcome=outcome,
                cid=cid,
                agent=agent_id,
                channel=channel,
                thread_ts=root_ts,
            )
            if status > 0:
                self._wake(cid)
        return None
