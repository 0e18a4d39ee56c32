"""Forget a user (`bridge forget`, DELETE /admin/conversations/{skill_id}/{client_id}).

In this order: an open handover is resolved (reason `forgotten`, so the backend hears
`handover_resolved`), the delivery workers get a bounded wait to deliver that (and the root's update),
the bridge's own messages in the conversation's threads are deleted from Slack when asked, and then
everything Redis holds for the conversation goes in one script (forget.lua) plus its thread mappings.

Slack comes before Redis: the thread list lives in Redis, so if Slack refuses half-way the command
stops with Redis untouched and can simply be run again. Forgetting twice succeeds (nothing left).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any

import structlog

from ..config import DeliverySection
from ..config.schema import PrivacySection
from ..desk.store import DeskStore
from ..keys import conversation_id, wait_key
from ..results import Forgotten
from ..slack_api import Identity, SlackApi, SlackFailure
from ..store import Store
from .audit import audit
from .store import forget_keys, keys_named_after, pending_of, threads_of

log = structlog.get_logger("bridge.privacy")

FORGET_REASON = "forgotten"
DRAIN_TIMEOUT_S = 10.0  # how long the resolve's notifications get to reach the backend and Slack
RATE_LIMIT_RETRIES = 5


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class SlackCleanup:
    threads: int = 0
    deleted: int = 0  # the bridge's own messages deleted (roots, history, lines, notes)
    files_deleted: int = 0  # files the bridge uploaded there (transcripts), deleted with files.delete
    others_remaining: int = 0  # agents' messages: a bot token cannot delete them


@dataclass
class ForgetReport:
    skill_id: str
    client_id: str
    resolved: bool  # an open handover was resolved first
    undelivered: int  # entries (e.g. handover_resolved) still undelivered when the wait ran out
    removed: Forgotten
    swept: list[str]  # keys forget.lua does not know of, found by name and deleted (should be none)
    slack: SlackCleanup | None

    def as_dict(self) -> dict[str, Any]:
        removed = self.removed._asdict()
        removed["other_keys"] = len(self.swept)
        return {
            "skill_id": self.skill_id,
            "client_id": self.client_id,
            "handover_resolved": self.resolved,
            "backend_notified": self.resolved and self.undelivered == 0,
            "undelivered": self.undelivered,
            "removed": removed,
            "slack": asdict(self.slack) if self.slack is not None else None,
        }

    def lines(self) -> list[str]:
        """What the CLI prints."""
        r = self.removed
        out = [f"forgot {self.skill_id} / {self.client_id}"]
        if self.resolved:
            told = "backend told handover_resolved (reason forgotten)"
            if self.undelivered:
                told = f"{self.undelivered} notification(s) still undelivered after the wait: dropped"
            out.append(f"  open handover resolved; {told}")
        out.append(
            f"  removed from Redis: {r.keys} key(s), {r.history_entries} history entries, "
            f"{r.slack_entries + r.reply_entries + r.file_entries} undelivered entries, "
            f"{r.dead_letters} dead letter(s), "
            f"{r.thread_mappings} thread mapping(s)"
            + (f", {len(self.swept)} other key(s)" if self.swept else "")
        )
        if self.slack is not None:
            s = self.slack
            out.append(
                f"  Slack: {s.deleted} message(s) and {s.files_deleted} file(s) of the bridge deleted "
                f"in {s.threads} thread(s); "
                f"{s.others_remaining} message(s) by others remain (a bot token cannot delete them)"
            )
        return out


class SlackCleaner:
    """Deletes the bridge's own messages in threads, paced like posts (the channel's token bucket)."""

    def __init__(self, slack: SlackApi, store: Store, me: Identity, pacing: DeliverySection) -> None:
        self.slack = slack
        self.store = store
        self.me = me
        self.pacing = pacing

    def _ours(self, message: dict[str, Any]) -> bool:
        return bool(self.me.bot_id and message.get("bot_id") == self.me.bot_id) or (
            message.get("user") == self.me.user_id
        )

    async def clean(self, threads: list[tuple[str, str]]) -> SlackCleanup:
        cleanup = SlackCleanup(threads=len(threads))
        for channel, root_ts in threads:
            try:
                messages = await self.slack.thread_messages(channel, root_ts)
            except SlackFailure as e:
                if e.reason == "thread_not_found":  # deleted already (an earlier, interrupted run)
                    continue
                raise
            others = [m for m in messages if not self._ours(m) and m.get("subtype") != "tombstone"]
            cleanup.others_remaining += len(others)
            # Replies first, the root last: a root deleted while replies remain stays as a tombstone.
            own = sorted((m for m in messages if self._ours(m)), key=lambda m: m.get("ts") == root_ts)
            for message in own:
                for shared in message.get("files") or []:
                    cleanup.files_deleted += await self._delete_file(channel, str(shared.get("id", "")))
                cleanup.deleted += await self._delete(channel, str(message.get("ts", "")))
        return cleanup

    async def _delete(self, channel: str, ts: str) -> int:
        return await self._paced(channel, lambda: self.slack.delete(channel, ts), ("message_not_found",))

    async def _delete_file(self, channel: str, file_id: str) -> int:
        gone = ("file_not_found", "file_deleted")
        return await self._paced(channel, lambda: self.slack.delete_file(file_id), gone) if file_id else 0

    async def _paced(self, channel: str, call: Callable[[], Awaitable[None]], gone: tuple[str, ...]) -> int:
        """One deletion with the channel's token (1 done, 0 already gone), waiting out a 429."""
        for _ in range(RATE_LIMIT_RETRIES):
            await self._token(channel)
            try:
                await call()
                return 1
            except SlackFailure as e:
                if e.reason in gone:
                    return 0
                if e.retry_after_s is None:
                    raise
                await self.store.pause_channel(channel, now_ms() + int(e.retry_after_s * 1000), now_ms())
        raise SlackFailure("ratelimited")

    async def _token(self, channel: str) -> None:
        pacing = self.pacing
        while wait := await self.store.take_token(channel, now_ms(), pacing.posts_per_second, pacing.burst):
            await asyncio.sleep(wait / 1000)


async def forget(
    store: Store,
    skill_id: str,
    client_id: str,
    *,
    replies: bool,
    privacy: PrivacySection,
    actor: str,
    cleaner: SlackCleaner | None = None,
    wake: Callable[[int], None] | None = None,
    drain_s: float = DRAIN_TIMEOUT_S,
) -> ForgetReport:
    """Forget one conversation (see the module docstring). Raises SlackFailure (Redis untouched) when
    Slack refuses a deletion, and the store's errors."""
    cid = conversation_id(skill_id, client_id)
    status = await store.resolve_handover(
        cid, thread_ts="", agent_id="", agent_name="", now_ms=now_ms(), replies=replies, reason=FORGET_REASON
    )
    resolved, undelivered = status > 0, 0
    if resolved:
        await audit(store, privacy, "resolved", actor=actor, cid=cid, detail=FORGET_REASON)
        if wake is not None:
            wake(store.partition_of(cid))
        undelivered = await _drained(store, cid, drain_s)
    slack = await cleaner.clean(await threads_of(store, cid)) if cleaner is not None else None
    removed = await forget_keys(store, cid)
    await DeskStore(store).mark_home_dirty()  # Home tabs showing its last line are published again
    left = await store.handover_left_channel(cid)  # its channel placement (channel pools), another slot
    if left:
        await store.redis.zrem(wait_key(left), cid)  # a root that never got posted waits there
    swept = await keys_named_after(store, cid)
    if swept:  # a key added to keys.py but not to forget.lua: deleted anyway, and said loudly
        await store.redis.delete(*swept)
        log.warning("forget_swept_unknown_keys", count=len(swept), fix="add them to forget.lua")
    report = ForgetReport(skill_id, client_id, resolved, undelivered, removed, swept, slack)
    counts = " ".join(f"{name}={count}" for name, count in report.as_dict()["removed"].items())
    deleted = f" slack_deleted={slack.deleted} slack_others={slack.others_remaining}" if slack else ""
    await audit(store, privacy, "forgotten", actor=actor, cid=cid, detail=counts + deleted)
    return report


async def _drained(store: Store, cid: str, wait_s: float) -> int:
    """Wait (bounded) for the conversation's outboxes to empty; what is still pending after."""
    deadline = time.monotonic() + wait_s
    while (pending := await pending_of(store, cid)) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    return pending
