"""Background delivery: outbox entries to Slack (slack lane) and to the owner's reply endpoint (reply lane).

The unit of work is a conversation: a worker leases it, delivers its pending entries oldest first, and
hands it back. One lease at a time per conversation keeps every thread in order across workers and
replicas; a dead worker's lease expires and the conversation becomes due again by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import orjson
import structlog

from . import slack_format
from .config import DeliverySection, RepliesSection
from .keys import REPLY, SLACK, thread_in
from .metrics import Metrics
from .replies import ReplyError, ReplySender
from .results import Fetched, OutboxEntry, stream_id_key
from .slack_api import SlackApi, SlackFailure
from .store import STORE_ERRORS, Store
from .transcript import transcript

log = structlog.get_logger("bridge.delivery")

THREAD_KINDS = frozenset({"hist", "line", "note"})
# Waits shorter than this are slept through with the lease held (keeps coalescing tight); longer ones
# hand the conversation back so the worker slot serves other conversations meanwhile.
MAX_HELD_WAIT_MS = 1500
FETCH_LIMIT = 200
# How far back to look in Slack for a post that may have landed just before a crash.
INFLIGHT_LOOKBACK_S = 30.0


def now_ms() -> int:
    return int(time.time() * 1000)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Retry(Exception):
    """Stop delivering this conversation for now; due again at `due_ms`."""

    due_ms: int


def inflight_marker(first: str, last: str) -> str:
    """What a conversation's in-flight marker holds for a post of entries `first`..`last` starting
    now; SlackLane._settle_inflight reads it back."""
    return f"{first} {last} {now_ms()}"


def lease_lost(lane: str, cid: str, entry: str) -> Retry:
    """Our lease expired (a post outlasted it) and another worker may be delivering this conversation
    now: carrying on beside it could post lines twice or out of order, so give the conversation up."""
    log.warning("delivery_lease_lost", lane=lane, cid=cid, entry=entry)
    return Retry(now_ms())


class HandedBack:
    """See Lane.deliver: a drained conversation whose lease the last commit released (one Redis
    call per delivery saved)."""


HANDED_BACK = HandedBack()
# After a post: HANDED_BACK when its commit released the conversation, what is left when the commit
# read it (the next round needs no fetch), None otherwise.
Posted = HandedBack | Fetched | None


class Lane:
    """Delivers one conversation's entries for one destination."""

    name: str
    fetch_limit: int  # entries read at once
    # Set on shutdown: a post in flight finishes and is committed, nothing new starts.
    stopping: bool = False

    async def deliver(self, cid: str, worker: str, fetched: Fetched | None = None) -> HandedBack | None:
        """Deliver what is pending (starting from `fetched`, when the claim read it already): None
        when the outbox is empty, HANDED_BACK when it is and the last commit already released the
        conversation. A lane that must stop for now raises Retry(when to come back)."""
        raise NotImplementedError

    async def _fetch(self, store: Store, cid: str, fetched: Fetched | None) -> Fetched:
        self.hand_back_if_stopping()
        return fetched if fetched is not None else await store.fetch(self.name, cid, self.fetch_limit)

    def hand_back_if_stopping(self) -> None:
        if self.stopping:
            raise Retry(now_ms())


@dataclass
class DeliveryContext:
    store: Store
    metrics: Metrics
    settings: Callable[[], DeliverySection]
    replies_enabled: bool

    def lease_ms(self) -> int:
        return int(self.settings().lease_s * 1000)

    def backoff_ms(self, attempts: int) -> int:
        s = self.settings()
        ceiling = min(s.backoff_max_s, s.backoff_base_s * (2 ** max(attempts - 1, 0)))
        return int(random.uniform(ceiling / 2, ceiling) * 1000)

    async def retry_later(self, lane: str, cid: str, reason: str) -> Retry:
        attempts = await self.store.bump_attempts(lane, cid)
        delay = self.backoff_ms(attempts)
        log.warning("delivery_retry", lane=lane, cid=cid, reason=reason, attempt=attempts, retry_in_ms=delay)
        return Retry(now_ms() + delay)

    async def bury(self, lane: str, cid: str, entries: list[OutboxEntry], reason: str) -> None:
        moved = await self.store.bury(lane, cid, [e.id for e in entries], reason, now_ms())
        self.metrics.dead_letters.labels(lane, reason).inc(moved)
        log.error(
            "dead_letter", lane=lane, cid=cid, reason=reason, entries=moved, kinds=[e.kind for e in entries]
        )


class SlackLane(Lane):
    """Root messages, history and live lines, notes and root updates, posted in stream order."""

    name = SLACK
    fetch_limit = FETCH_LIMIT

    def __init__(self, ctx: DeliveryContext, slack: SlackApi) -> None:
        self.ctx = ctx
        self.slack = slack

    async def deliver(self, cid: str, worker: str, fetched: Fetched | None = None) -> HandedBack | None:
        store = self.ctx.store
        while True:
            conv, entries = await self._fetch(store, cid, fetched)
            fetched = None
            if not entries:
                return None
            head = entries[0]
            if head.kind == "root":
                channel, thread_ts = str(head.data.get("channel", "")), None
            else:
                thread = thread_in(conv, head.hid)
                if thread is None:
                    # The root of this handover was never posted (dead-lettered): nowhere to post.
                    await self.ctx.bury(SLACK, cid, [head], "no_thread")
                    continue
                channel, thread_ts = thread
            try:
                settled = await self._settle_inflight(cid, worker, conv, entries, channel, thread_ts)
                if settled is not False:  # that post had reached Slack: committed instead of posted again
                    posted = settled
                elif head.kind == "root":
                    posted = await self._post_root(cid, worker, head, channel)
                elif head.kind == "update" and thread_ts:
                    posted = await self._update_root(cid, worker, head, channel, thread_ts)
                elif head.kind in THREAD_KINDS and thread_ts:
                    posted = await self._post_lines(cid, worker, entries, channel, thread_ts)
                else:
                    await self.ctx.bury(SLACK, cid, [head], f"unknown_kind:{head.kind}")
                    continue
            except SlackFailure as e:
                await self._failed(cid, head, channel, e)
                continue
            if posted is HANDED_BACK:  # nothing left, and the commit released the lease
                return HANDED_BACK
            fetched = posted if isinstance(posted, tuple) else None  # what the commit read of what is left

    async def _failed(self, cid: str, head: OutboxEntry, channel: str, e: SlackFailure) -> None:
        if e.retry_after_s is not None:
            until = now_ms() + int(e.retry_after_s * 1000)
            await self.ctx.store.pause_channel(channel, until, now_ms())
            log.warning("slack_ratelimited", cid=cid, channel=channel, retry_after_s=e.retry_after_s)
            raise Retry(until)
        if e.permanent:
            await self.ctx.bury(SLACK, cid, [head], e.reason)
            return
        raise await self.ctx.retry_later(SLACK, cid, e.reason)

    async def _begin_post(self, cid: str, worker: str, channel: str, first: str, last: str) -> bool:
        """Take a posting token for `channel` and mark the post in flight. False when a short wait
        for the token was slept through instead: re-read the outbox then, more lines may have
        arrived to coalesce into the next post."""
        s = self.ctx.settings()
        held, wait = await self.ctx.store.begin_post(
            SLACK,
            cid,
            worker,
            inflight_marker(first, last),
            channel=channel,
            now_ms=now_ms(),
            per_second=s.posts_per_second,
            burst=s.burst,
            lease_ms=self.ctx.lease_ms(),
        )
        if not held:
            raise lease_lost(SLACK, cid, first)
        if wait <= 0:
            return True
        if wait > MAX_HELD_WAIT_MS:
            raise Retry(now_ms() + wait)
        await asyncio.sleep(wait / 1000)
        return False

    # Each poster returns HANDED_BACK when its commit left nothing and released the conversation;
    # what is left when its commit read it; None to go on (entries left, or no post made).

    async def _post_root(self, cid: str, worker: str, head: OutboxEntry, channel: str) -> Posted:
        if not await self._begin_post(cid, worker, channel, head.id, head.id):
            return None
        text, blocks = slack_format.root_message(head.data)
        ts = await self.slack.post(channel, text, blocks=blocks, marker=self._marker(cid, head.id, head.id))
        return await self._root_posted(cid, worker, head, channel, ts)

    async def _root_posted(self, cid: str, worker: str, head: OutboxEntry, channel: str, ts: str) -> Posted:
        await self.ctx.store.map_thread(channel, ts, cid)
        self._observe([head])
        log.info("handover_thread_opened", cid=cid, channel=channel, thread_ts=ts, hid=head.hid)
        return await self._commit(
            cid, worker, [head.id], root=(head.hid, channel, ts), replies=self.ctx.replies_enabled
        )

    async def _update_root(self, cid: str, worker: str, head: OutboxEntry, channel: str, ts: str) -> Posted:
        text, blocks = slack_format.root_message(head.data)
        if not await self._mark_inflight(cid, worker, head.id, head.id):  # updates stay in order too
            raise lease_lost(SLACK, cid, head.id)
        await self.slack.update(channel, ts, text, blocks)
        return await self._commit(cid, worker, [head.id])

    async def _post_lines(
        self, cid: str, worker: str, entries: list[OutboxEntry], channel: str, thread_ts: str
    ) -> Posted:
        head = entries[0]
        run = []
        for entry in entries:
            if entry.kind not in THREAD_KINDS or entry.hid != head.hid:
                break
            run.append(entry)
        chunk = slack_format.pack(
            [(e.id, self._text(e)) for e in run], self.ctx.settings().max_message_chars
        )[0]
        first, last = chunk.ids[0], chunk.ids[-1]
        if not await self._begin_post(cid, worker, channel, first, last):
            return None
        await self.slack.post(channel, chunk.text, thread_ts=thread_ts, marker=self._marker(cid, first, last))
        self._observe(run[: len(chunk.ids)])
        return await self._commit(cid, worker, chunk.ids)

    async def _mark_inflight(self, cid: str, worker: str, first: str, last: str) -> bool:
        """Note the post about to start (renewing the lease); False when the lease has passed to
        another worker: the caller must give the conversation up, posting now could duplicate or
        reorder its thread."""
        return await self.ctx.store.mark_inflight(
            SLACK, cid, worker, inflight_marker(first, last), lease_ms=self.ctx.lease_ms()
        )

    async def _commit(self, cid: str, worker: str, ids: Sequence[str], **root: Any) -> Posted:
        """Drop what Slack accepted, handing the conversation back when nothing is left; stop here
        when the lease turned out to be gone meanwhile."""
        commit = await self.ctx.store.commit(
            SLACK,
            cid,
            worker,
            ids,
            lease_ms=self.ctx.lease_ms(),
            now_ms=now_ms(),
            release=True,
            fetch_limit=self.fetch_limit,
            **root,
        )
        if not commit.held:
            raise lease_lost(SLACK, cid, ids[-1])
        return HANDED_BACK if commit.released else commit.fetched

    @staticmethod
    def _marker(cid: str, first: str, last: str) -> dict[str, str]:
        return {"first": first, "last": last, "conversation": cid}

    @staticmethod
    def _text(entry: OutboxEntry) -> str:
        if entry.kind == "note":
            return slack_format.note_text(entry.data)
        return slack_format.history_lines(entry.data, after_claim=entry.after_claim)

    async def _settle_inflight(
        self,
        cid: str,
        worker: str,
        conv: dict[str, str],
        entries: list[OutboxEntry],
        channel: str,
        thread_ts: str | None,
    ) -> Posted | Literal[False]:
        """A post was started but never committed (crash, lost answer): did Slack get it? Then commit
        it instead of posting it twice. False when there was nothing to settle; else what that
        commit returned (see Posted)."""
        marker = conv.get("inflight:slack", "")
        head = entries[0]
        if not marker or head.kind == "update":
            return False
        first, last, started = [*marker.split(" "), "", "", "0"][:3]
        if head.id != first:
            return False
        paused = await self.ctx.store.paused_until(channel)
        if paused > now_ms():  # the lookup is a call on the channel too: Retry-After covers it
            raise Retry(paused)
        oldest = int(started or 0) / 1000 - INFLIGHT_LOOKBACK_S
        try:
            ts = await self.slack.find_marked(channel, first, thread_ts=thread_ts, oldest_s=oldest)
        except SlackFailure as e:
            if not (e.permanent or e.auth):
                raise
            # e.g. missing_scope (no channels:history): the lookup can never answer. Post again (a
            # possible duplicate) rather than dead-letter an entry that Slack never refused.
            log.warning("inflight_check_failed", cid=cid, entry=first, reason=e.reason)
            return False
        log.info("inflight_checked", cid=cid, entry=first, found=bool(ts))
        if ts is None:
            return False
        if head.kind == "root":
            return await self._root_posted(cid, worker, head, channel, ts)
        low, high = stream_id_key(first), stream_id_key(last)
        return await self._commit(cid, worker, [e.id for e in entries if low <= stream_id_key(e.id) <= high])

    def _observe(self, entries: list[OutboxEntry]) -> None:
        now = time.time()
        for entry in entries:
            if entry.kind in ("line", "root") and entry.received_ms:
                self.ctx.metrics.slack_delivery.observe(max(now - entry.received_ms / 1000, 0))


class ReplyLane(Lane):
    """Agent replies and lifecycle notifications to the owner's endpoint, one POST per entry, in order."""

    name = REPLY
    fetch_limit = 20

    def __init__(
        self,
        ctx: DeliveryContext,
        sender: ReplySender,
        slack: SlackApi,
        replies: Callable[[], RepliesSection] = RepliesSection,
    ) -> None:
        self.ctx = ctx
        self.sender = sender
        self.slack = slack
        self.replies = replies

    async def deliver(self, cid: str, worker: str, fetched: Fetched | None = None) -> HandedBack | None:
        store = self.ctx.store
        while True:
            conv, entries = await self._fetch(store, cid, fetched)
            fetched = None
            if not entries:
                return None
            head = entries[0]
            body = await self._body(cid, head, conv)
            kind = str(body.get("type", head.kind))
            lease_ms = self.ctx.lease_ms()
            # Renew the lease (or find it lost) right before the POST: names looked up above may
            # have taken long enough for another worker to take this conversation over.
            if not await store.mark_inflight(
                REPLY, cid, worker, inflight_marker(head.id, head.id), lease_ms=lease_ms
            ):
                raise lease_lost(REPLY, cid, head.id)
            try:
                await self.sender.send(orjson.dumps(body))
            except ReplyError as e:
                self.ctx.metrics.reply_requests.labels(kind, "permanent" if e.permanent else "retry").inc()
                if e.permanent:
                    await self.ctx.bury(REPLY, cid, [head], e.reason)
                    continue
                if e.retry_after_s:
                    raise Retry(now_ms() + int(e.retry_after_s * 1000)) from e
                raise await self.ctx.retry_later(REPLY, cid, e.reason) from e
            self.ctx.metrics.reply_requests.labels(kind, "ok").inc()
            log.info("reply_delivered", cid=cid, type=kind, thread_ts=body.get("thread_ts"))
            commit = await store.commit(
                REPLY, cid, worker, [head.id], lease_ms=lease_ms, now_ms=now_ms(), release=True
            )
            if not commit.held:
                raise lease_lost(REPLY, cid, head.id)
            if commit.released:
                return HANDED_BACK

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
        if entry.kind == "agent_message":
            raw = str(body.pop("slack_text", ""))
            names = {uid: await self._name(uid) for uid in slack_format.mentioned_users(raw)}
            body["text"] = slack_format.slack_to_plain(raw, names.get)
        else:
            at_ms = int(body.pop("at_ms", entry.received_ms) or entry.received_ms)
            body["at"] = iso(at_ms)
            body["id"] = f"{body.get('type')}:{cid}:{body.pop('hid', entry.hid)}"
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


@dataclass
class Deliverer:
    """Runs `workers` concurrent deliveries per lane, fed by the partitions' ready queues."""

    store: Store
    lanes: list[Lane]
    settings: Callable[[], DeliverySection]
    metrics: Metrics
    worker: str = field(default_factory=worker_name)
    _wakes: dict[str, set[int]] = field(default_factory=dict)
    _events: dict[str, asyncio.Event] = field(default_factory=dict)
    _active: dict[str, dict[str, asyncio.Task[None]]] = field(default_factory=dict)
    # Conversations claimed again while their task here still ran: that task must release the lease.
    _reclaimed: dict[str, set[str]] = field(default_factory=dict)
    _stopping: bool = False
    _loops: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self) -> None:
        for lane in self.lanes:
            self._wakes[lane.name] = set()
            self._events[lane.name] = asyncio.Event()
            self._active[lane.name] = {}
            self._reclaimed[lane.name] = set()
            self._loops.append(asyncio.create_task(self._dispatch(lane), name=f"deliver-{lane.name}"))

    def wake(self, lane: str, partition: int) -> None:
        """A hint that this replica just queued work (other replicas find it by polling)."""
        if lane in self._wakes:
            self._wakes[lane].add(partition)
            self._events[lane].set()

    async def _dispatch(self, lane: Lane) -> None:
        active = self._active[lane.name]
        event = self._events[lane.name]
        next_sweep = 0.0
        partitions = list(range(self.store.partitions))
        while not self._stopping:
            s = self.settings()
            woken = self._wakes[lane.name]
            self._wakes[lane.name] = set()
            event.clear()
            loop_time = asyncio.get_running_loop().time()
            if loop_time >= next_sweep:
                random.shuffle(partitions)
                todo = partitions
                next_sweep = loop_time + s.poll_interval_s
            else:
                todo = list(woken)
            try:
                for partition in todo:
                    free = s.workers - len(active)
                    if free <= 0:
                        # Every worker is busy: wake-ups not served yet wait for a worker to be released
                        # (that sets the event), not for the next sweep, poll_interval later.
                        if partition in woken:
                            self._wakes[lane.name].add(partition)
                        continue
                    claimed = await self.store.claim_due(
                        lane.name,
                        partition,
                        self.worker,
                        now_ms(),
                        int(s.lease_s * 1000),
                        free,
                        fetch_limit=lane.fetch_limit,
                    )
                    if len(claimed) >= free:  # maybe more due there than there were free workers
                        self._wakes[lane.name].add(partition)
                    for cid, fetched in claimed.items():
                        # Our own lease ran out while a post of ours was slow, and we took it again:
                        # the running task keeps the conversation (every worker here shares one id,
                        # so a second task would pass every lease check beside the first).
                        if cid not in active:
                            active[cid] = asyncio.create_task(self._run(lane, cid, fetched))
                        else:  # e.g. its commit just handed it back, and the task is finishing
                            self._reclaimed[lane.name].add(cid)
            except STORE_ERRORS as e:  # the dispatcher must outlive a failover
                self.metrics.redis_errors.labels("claim").inc()
                log.warning("claim_failed", lane=lane.name, error=type(e).__name__)
                await asyncio.sleep(min(s.poll_interval_s, 1.0))
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(next_sweep - loop_time, 0.01)):  # (wait_for costs a task)
                    await event.wait()

    async def _run(self, lane: Lane, cid: str, fetched: Fetched | None = None) -> None:
        due: int | HandedBack | None = None
        try:
            due = await lane.deliver(cid, self.worker, fetched)
        except Retry as r:
            due = r.due_ms
        except STORE_ERRORS as e:
            self.metrics.redis_errors.labels("deliver").inc()
            log.warning("delivery_redis_error", lane=lane.name, cid=cid, error=type(e).__name__)
            due = now_ms() + 1000
        except asyncio.CancelledError:
            due = now_ms()
            raise
        except Exception:
            log.exception("delivery_crashed", lane=lane.name, cid=cid)
            due = now_ms() + 5000
        finally:
            self._active[lane.name].pop(cid, None)
            reclaimed = cid in self._reclaimed[lane.name]
            self._reclaimed[lane.name].discard(cid)
            if due is HANDED_BACK and not reclaimed:
                self._events[lane.name].set()  # a worker is free
            else:  # (a lease taken again meanwhile is released too: it is ours, by worker id)
                await self._release(lane.name, cid, None if due is HANDED_BACK else due)

    async def _release(self, lane: str, cid: str, due: int | None) -> None:
        """Hand the conversation back, shielded from cancellation so a lease is never left behind."""
        try:
            remaining = await asyncio.shield(self.store.release(lane, cid, self.worker, due or now_ms()))
        except (*STORE_ERRORS, asyncio.CancelledError):
            return  # the lease expires by itself and the conversation is due again then
        if remaining and (due is None or due <= now_ms()):
            self.wake(lane, self.store.partition_of(cid))
        elif remaining and due is not None:
            self._schedule_wake(lane, self.store.partition_of(cid), due)
        self._events[lane].set()

    def _schedule_wake(self, lane: str, partition: int, due_ms: int) -> None:
        delay = max(due_ms - now_ms(), 0) / 1000
        asyncio.get_running_loop().call_later(delay, self.wake, lane, partition)

    async def stop(self, grace_s: float) -> None:
        """Stop claiming, let in-flight posts finish (and be committed) for up to `grace_s`, and hand
        every conversation back as soon as its current post is done: the next process carries on."""
        self._stopping = True
        for lane in self.lanes:
            lane.stopping = True
        for event in self._events.values():
            event.set()
        for loop in self._loops:
            loop.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        tasks = [t for active in self._active.values() for t in active.values()]
        log.info("delivery_stopping", in_flight=len(tasks), grace_s=grace_s)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            if pending:
                log.warning("delivery_cancelled", conversations=len(pending), grace_s=grace_s)
