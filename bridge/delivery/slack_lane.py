"""The Slack lane: roots, history and live lines, notes and root updates, posted in stream order.

Per step: find where the head entry goes (the root's channel, or its handover's thread), settle a
post left in flight by a crash, run the entry kind's handler (slack_kinds.py), and map any Slack
failure to a Step in one place (`_failed`)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import structlog

from ..keys import SLACK, thread_in
from ..privacy import conversation_label
from ..results import Fetched, OutboxEntry, Turn, stream_id_key
from ..slack_api import SlackApi, SlackFailure
from . import pacing
from .auth_pause import AuthPause
from .lane import DeliveryContext, Lane
from .slack_kinds import KINDS, Job, Kind
from .step import Step, inflight_marker, now_ms

log = structlog.get_logger("bridge.delivery")

# A conversation waiting for its channel's turn is handed back until about then, but looks again
# at least this often.
MAX_QUEUE_WAIT_MS = 30_000
# A turn taken for a conversation another worker holds: tried this many times (backing off from
# HAND_ON_RETRY_S; that worker is usually about to hand it back), then passed over once.
HAND_ON_TRIES = 3
HAND_ON_RETRY_S = 0.02
FETCH_LIMIT = 200
# How far back to look in Slack for a post that may have landed just before a crash.
INFLIGHT_LOOKBACK_S = 30.0
PLACED_CACHE = 4096


class SlackLane(Lane):
    name = SLACK
    fetch_limit = FETCH_LIMIT

    def __init__(self, ctx: DeliveryContext, slack: SlackApi) -> None:
        super().__init__(ctx)
        self.slack = slack
        self.auth = AuthPause(ctx.slack_health, slack)
        self.channels_seen: set[str] = set()  # for the saturation gauges (pacing.SaturationWatch)
        self.turn_runner: Callable[[str, str], Awaitable[bool]] | None = None  # set by the Deliverer
        # (cid, hid) → the channel its root was placed in: a placement never changes, and a root
        # waiting for its channel's token steps again and again (bounded: cleared when large).
        self._placed: dict[tuple[str, str], str] = {}

    async def deliver(
        self, cid: str, worker: str, fetched: Fetched | None = None, turn: str | None = None
    ) -> Step:
        if turn is not None and not (fetched and fetched[1]):  # drained since it joined the queue
            await self._unused_turn(turn)
            turn = None
        return await super().deliver(cid, worker, fetched, turn)

    async def step(
        self,
        cid: str,
        worker: str,
        conv: dict[str, str],
        entries: list[OutboxEntry],
        turn: str | None = None,
    ) -> Step:
        head = entries[0]
        kind = KINDS.get(head.kind)
        job = await self._job(cid, worker, conv, entries, kind) if kind is not None else None
        if turn is not None:
            if job is not None and kind is not None and kind.paced and job.channel == turn:
                job = job._replace(has_turn=True)
            else:  # its head goes elsewhere now (another channel, an update): the token goes back
                await self._unused_turn(turn)
        if kind is None:
            return await self.bury(cid, [head], f"unknown_kind:{head.kind}")
        if job is None:  # the root of this handover was never posted (dead-lettered): nowhere to post
            return await self.bury(cid, [head], "no_thread")
        paused = self.auth.gate()
        if paused is not None:
            return paused
        probe = self.auth.probe()
        try:
            if kind.marked:
                settled = await self._settle_inflight(job)
                if settled is not None:  # that post had reached Slack: committed, not posted again
                    return settled
            return await kind.handler(self, job)
        except SlackFailure as e:
            return await self._failed(job, e)
        finally:
            self.auth.done(probe)

    async def _job(
        self, cid: str, worker: str, conv: dict[str, str], entries: list[OutboxEntry], kind: Kind
    ) -> Job | None:
        head = entries[0]
        if not kind.thread:
            return Job(cid, worker, conv, entries, await self.place(cid, head), None)
        thread = thread_in(conv, head.hid)
        if thread is None:
            return None
        return Job(cid, worker, conv, entries, *thread)

    async def place(self, cid: str, root: OutboxEntry) -> str:
        """The channel of this handover's thread: the least loaded of its pool (then the one with the
        fewest waiting lines), chosen when its root is first posted and kept for life. A root queued
        before pools existed carries a single `channel`."""
        placed = self._placed.get((cid, root.hid))
        if placed is not None:
            return placed
        pool = [str(channel) for channel in root.data.get("pool") or [root.data.get("channel", "")]]
        store = self.ctx.store
        waiting = await store.waiting_in_channels(pool) if len(pool) > 1 else []
        placed = await store.place_handover(cid, root.hid, pool, now_ms(), waiting)
        if len(self._placed) >= PLACED_CACHE:
            self._placed.clear()
        self._placed[(cid, root.hid)] = placed
        return placed

    async def _failed(self, job: Job, e: SlackFailure) -> Step:
        """Every answer of Slack's becomes a Step: wait (429), pause (token refused), dead letter
        (permanent, or unknown too many times) or retry."""
        if e.auth:
            return self.auth.failed(e, channel=job.channel, cid=job.cid)
        if e.retry_after_s is not None:
            until = now_ms() + int(e.retry_after_s * 1000)
            await self.ctx.store.pause_channel(job.channel, until, now_ms())
            log.warning("slack_ratelimited", cid=job.cid, channel=job.channel, retry_after_s=e.retry_after_s)
            return Step.later(until)
        if e.permanent:
            return await self.bury(job.cid, [job.head], e.reason, job.channel)
        attempts = await self.ctx.store.bump_attempts(SLACK, job.cid)
        if e.unknown and attempts >= self.ctx.settings().unknown_error_attempts:
            return await self.bury(job.cid, [job.head], e.reason, job.channel)
        return await self.retry_later(job.cid, e.reason, attempts)

    async def begin_post(self, job: Job, first: str, last: str) -> Step | None:
        """Wait for the channel's turn, then mark the post of `first`..`last` in flight: None to post
        now, else the Step to take instead. The turn goes to the conversation waiting longest (see
        pacing.py): when a free token falls to another one, this worker hands that turn on, then
        tries again for its own; without a token, the conversation is handed back until about its
        turn (its rank in the queue times the pace)."""
        if job.has_turn:  # taken a moment ago by another worker: a 429 since then still holds
            paused = await self.ctx.store.paused_until(job.channel)
            if paused > now_ms():
                return Step.later(paused)
            return None if await self.mark_inflight(job, first, last) else self.lease_lost(job.cid, first)
        s = self.ctx.settings()
        queue_score = pacing.score(job.head)
        self.channels_seen.add(job.channel)
        turn = await self.ctx.store.begin_turn(
            SLACK,
            job.cid,
            job.worker,
            inflight_marker(first, last),
            channel=job.channel,
            score=queue_score,
            now_ms=now_ms(),
            per_second=s.posts_per_second,
            burst=s.burst,
            lease_ms=self.ctx.lease_ms(),
        )
        if not turn.held:
            return self.lease_lost(job.cid, first)
        if turn.chosen == job.cid:
            return None
        if turn.chosen:
            if await self._hand_on(job, turn):  # the turn came back to this conversation
                return None if await self.mark_inflight(job, first, last) else self.lease_lost(job.cid, first)
            return Step.go_on()
        ahead_ms = int(turn.rank * 1000 / s.posts_per_second)
        return Step.later(now_ms() + min(turn.wait_ms + ahead_ms, MAX_QUEUE_WAIT_MS))

    async def _hand_on(self, job: Job, turn: Turn) -> bool:
        """A turn taken for another conversation: start its delivery with it (Deliverer.serve_turn).
        One held by a worker that does not give it up within HAND_ON_TRIES (slow, or dead until its
        lease expires) is passed over, once, for the next in the queue. True when the turn falls to
        `job`'s own conversation."""
        s = self.ctx.settings()
        store = self.ctx.store
        chosen, chosen_score, passed = turn.chosen, turn.score, []
        while chosen and chosen != job.cid:
            for attempt in range(HAND_ON_TRIES):
                if await self.hand_over(chosen, job.channel):
                    return False
                await asyncio.sleep(HAND_ON_RETRY_S * (attempt + 1))
            await store.give_back(job.channel, chosen, chosen_score, token=False, burst=s.burst)
            log.info("turn_passed_over", channel=job.channel, cid=chosen, by=job.cid)
            passed.append(chosen)
            turn = await store.take_turn(
                job.channel,
                "",
                0,
                now_ms=now_ms(),
                per_second=s.posts_per_second,
                burst=s.burst,
                have_token=True,
                skip=passed,
            )
            chosen, chosen_score = turn.chosen, turn.score
        return chosen == job.cid

    async def hand_over(self, cid: str, channel: str) -> bool:
        """Start `cid`'s delivery with the turn taken for it in `channel`; False when it is held (or
        when no scheduler runs this lane, see Deliverer.serve_turn)."""
        return await self.turn_runner(cid, channel) if self.turn_runner is not None else False

    async def _unused_turn(self, channel: str) -> None:
        """A turn taken for this conversation that it cannot use (nothing to post there now)."""
        await self.ctx.store.give_back(channel, "", 0, token=True, burst=self.ctx.settings().burst)

    async def mark_inflight(self, job: Job, first: str, last: str) -> bool:
        """Note the post about to start (renewing the lease); False when the lease has passed to
        another worker: the caller must give the conversation up, posting now could duplicate or
        reorder its thread."""
        return await self.ctx.store.mark_inflight(
            SLACK, job.cid, job.worker, inflight_marker(first, last), lease_ms=self.ctx.lease_ms()
        )

    @staticmethod
    def marker(job: Job, first: str, last: str) -> dict[str, str]:
        """The metadata a post carries, so that after a crash it is found again (slack_api.find_marked
        matches every field: stream ids alone repeat across conversations)."""
        return {
            "conversation": conversation_label(job.cid),
            "hid": job.head.hid,
            "first": first,
            "last": last,
        }

    async def root_posted(self, job: Job, ts: str) -> Step:
        head = job.head
        await self.ctx.store.map_thread(job.channel, ts, job.cid)
        self.observe([head])
        log.info("handover_thread_opened", cid=job.cid, channel=job.channel, thread_ts=ts, hid=head.hid)
        return await self.commit(
            job.cid,
            job.worker,
            [head.id],
            root=(head.hid, job.channel, ts),
            replies=self.ctx.replies_enabled,
        )

    def observe(self, entries: list[OutboxEntry]) -> None:
        now = time.time()
        for entry in entries:
            if entry.kind in ("line", "root") and entry.received_ms:
                self.ctx.metrics.slack_delivery.observe(max(now - entry.received_ms / 1000, 0))

    async def _settle_inflight(self, job: Job) -> Step | None:
        """A post was started but never committed (crash, lost answer): did Slack get it? Then commit
        it instead of posting it twice. None when there was nothing to settle."""
        marker = job.conv.get("inflight:slack", "")
        if not marker:
            return None
        first, last, started = [*marker.split(" "), "", "", "0"][:3]
        if job.head.id != first:
            return None
        paused = await self.ctx.store.paused_until(job.channel)
        if paused > now_ms():  # the lookup is a call on the channel too: Retry-After covers it
            return Step.later(paused)
        oldest = int(started or 0) / 1000 - INFLIGHT_LOOKBACK_S
        try:
            ts = await self.slack.find_marked(
                job.channel, self.marker(job, first, last), thread_ts=job.thread_ts, oldest_s=oldest
            )
        except SlackFailure as e:
            if not (e.permanent or e.auth):
                raise
            # e.g. missing_scope (no channels:history): the lookup can never answer. Post again (a
            # possible duplicate) rather than dead-letter an entry that Slack never refused.
            log.warning("inflight_check_failed", cid=job.cid, entry=first, reason=e.reason)
            return None
        log.info("inflight_checked", cid=job.cid, entry=first, found=bool(ts))
        if ts is None:
            return None
        if job.head.kind == "root":
            return await self.root_posted(job, ts)
        low, high = stream_id_key(first), stream_id_key(last)
        ids = [e.id for e in job.entries if low <= stream_id_key(e.id) <= high]
        return await self.commit(job.cid, job.worker, ids)
