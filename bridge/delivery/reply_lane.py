"""The reply lane: agent replies and lifecycle notifications to the owner's endpoint, one signed POST
per entry, in order."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import structlog

from .. import receipts, slack_format
from ..config import RepliesSection
from ..keys import REPLY, thread_in
from ..replies import ReplyError, ReplySender
from ..results import OutboxEntry
from ..slack_api import SlackApi, SlackFailure
from ..transcript import transcript
from .lane import DeliveryContext, Lane
from .step import Step, inflight_marker, iso, now_ms

log = structlog.get_logger("bridge.delivery")

# Entries from an agent's message (slack_events.py): its text, or a change to it.
AGENT_KINDS = frozenset({"agent_message", "agent_message_edited", "agent_message_deleted"})


class ReplyLane(Lane):
    name = REPLY
    fetch_limit = 20

    def __init__(
        self,
        ctx: DeliveryContext,
        sender: ReplySender,
        slack: SlackApi,
        replies: Callable[[], RepliesSection] = RepliesSection,
    ) -> None:
        super().__init__(ctx)
        self.sender = sender
        self.slack = slack
        self.replies = replies

    async def step(
        self,
        cid: str,
        worker: str,
        conv: dict[str, str],
        entries: list[OutboxEntry],
        turn: str | None = None,
    ) -> Step:
        head = entries[0]
        body = await self._body(cid, head, conv)
        kind = str(body.get("type", head.kind))
        # Renew the lease (or find it lost) right before the POST: names looked up above may have
        # taken long enough for another worker to take this conversation over.
        if not await self.ctx.store.mark_inflight(
            REPLY, cid, worker, inflight_marker(head.id, head.id), lease_ms=self.ctx.lease_ms()
        ):
            return self.lease_lost(cid, head.id)
        try:
            await self.sender.send(orjson.dumps(body))
        except ReplyError as e:
            self.ctx.metrics.reply_requests.labels(kind, "permanent" if e.permanent else "retry").inc()
            if e.permanent:
                return await self._bury(cid, head, e.reason)
            if e.retry_after_s:
                return Step.later(now_ms() + int(e.retry_after_s * 1000))
            return await self.retry_later(cid, e.reason)
        self.ctx.metrics.reply_requests.labels(kind, "ok").inc()
        log.info("reply_delivered", cid=cid, type=kind, thread_ts=body.get("thread_ts"))
        return await self.commit(cid, worker, [head.id], receipt=receipts.delivered(head))

    async def _bury(self, cid: str, head: OutboxEntry, reason: str) -> Step:
        """A reply refused for good: dead-lettered, and its agent told (receipts.dead) if it is one."""
        notices = receipts.dead(head, cid, reason)
        if notices is None:
            return await self.bury(cid, [head], reason)
        reaction, ephemeral = notices
        dead_id = await self.ctx.store.bury_reply(
            cid, head.id, reason, now_ms(), reaction=reaction, ephemeral=ephemeral, hid=head.hid
        )
        self.ctx.metrics.dead_letters.labels(REPLY, reason).inc(1 if dead_id else 0)
        log.error("dead_letter", lane=REPLY, cid=cid, reason=reason, kinds=[head.kind], dead=dead_id)
        return Step.go_on()

    async def _name(self, user_id: str) -> str | None:
        if not user_id:
            return None
        cached = await self.ctx.store.cached_user_name(user_id)
        if cached is not None:
            return cached
        try:
            name = await self.slack.user_name(user_id)
        except SlackFailure:
            return None
        if name:
            await self.ctx.store.cache_user_name(user_id, name)
        return name

    async def _body(self, cid: str, entry: OutboxEntry, conv: dict[str, str]) -> dict[str, Any]:
        body = dict(entry.data)
        agent = body.get("agent")
        if isinstance(agent, dict) and agent.get("slack_user_id"):
            # users.info for every kind, so one agent has one name in replies and notifications alike
            # (a button click only carries the Slack username).
            uid = agent["slack_user_id"]
            agent["name"] = await self._name(uid) or agent.get("name") or uid
        if not body.get("thread_ts"):
            thread = thread_in(conv, entry.hid)
            body["thread_ts"] = thread[1] if thread else None
        for name in receipts.SLACK_FIELDS:
            body.pop(name, None)
        if entry.kind in AGENT_KINDS:
            if entry.kind != "agent_message_deleted":
                raw = str(body.pop("slack_text", ""))
                names = {uid: await self._name(uid) for uid in slack_format.mentioned_users(raw)}
                body["text"] = slack_format.slack_to_plain(raw, names.get)
            if entry.kind == "agent_message":
                body["files"] = body.get("files") or []  # (Lua's cjson writes an empty list as {})
            else:
                body["at"] = iso(int(body.pop("at_ms", entry.received_ms) or entry.received_ms))
        else:
            at_ms = int(body.pop("at_ms", entry.received_ms) or entry.received_ms)
            body["at"] = iso(at_ms)
            # One id per event (a reopened or taken-over handover sends a second handover_resolved or
            # handover_claimed), stable across retries and replays: the time the event was queued.
            body["id"] = f"{body.get('type')}:{cid}:{body.pop('hid', entry.hid)}:{at_ms}"
            if "lines" in body:  # handover_resolved: the handover's lines, as its transcript
                body.update(await self._transcript(body.pop("lines"), body.pop("lines_cut", False), body))
        return body

    async def _transcript(self, lines: Any, cut: bool, body: dict[str, Any]) -> dict[str, Any]:
        return await transcript(
            lines,
            cut=cut,
            user_name=str(body.get("user_id") or body.get("client_id") or ""),
            name_of=self._name,
            at=iso,
            max_bytes=self.replies().transcript_max_bytes,
        )
