"""The scheduler: claims due conversations from the partitions' ready queues, runs up to
`delivery.workers` lane deliveries at once per lane, and releases each lease in one place."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from ..config import DeliverySection
from ..metrics import Metrics
from ..results import Fetched
from ..store import STORE_ERRORS, Store
from .lane import Lane
from .pacing import SaturationWatch
from .slack_lane import SlackLane
from .step import Step, now_ms, worker_name

log = structlog.get_logger("bridge.delivery")

# Due again this long after a delivery raised something no lane maps to a Step (a bug, never a
# peer's answer: every answer of Slack or the reply endpoint is a Step).
CRASH_BACKOFF_MS = 5000
REDIS_ERROR_BACKOFF_MS = 1000
# A release that could not be sent: the lease expires by itself and the conversation is due then.
RELEASE_GIVEN_UP: tuple[type[BaseException], ...] = (*STORE_ERRORS, asyncio.CancelledError)


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
            if isinstance(lane, SlackLane):
                lane.turn_runner = functools.partial(self.serve_turn, lane)
                watch = SaturationWatch(self.store, self.metrics, self.settings, lane.channels_seen)
                self._loops.append(asyncio.create_task(watch.run(), name="saturation-watch"))

    def wake(self, lane: str, partition: int) -> None:
        """A hint that this replica just queued work (other replicas find it by polling)."""
        if lane in self._wakes:
            self._wakes[lane].add(partition)
            self._events[lane].set()

    def active(self, lane: str, cid: str) -> bool:
        """Whether a task of this replica is delivering `cid` right now (every task here shares one
        worker id, so a lease check alone cannot tell them apart)."""
        return cid in self._active.get(lane, {})

    async def _dispatch(self, lane: Lane) -> None:
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
                    await self._claim(lane, partition, woken, s)
            except STORE_ERRORS as e:  # the dispatcher must outlive a failover
                self.metrics.redis_errors.labels("claim").inc()
                log.warning("claim_failed", lane=lane.name, error=type(e).__name__)
                await asyncio.sleep(min(s.poll_interval_s, 1.0))
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(next_sweep - loop_time, 0.01)):  # (wait_for costs a task)
                    await event.wait()

    async def _claim(self, lane: Lane, partition: int, woken: set[int], s: DeliverySection) -> None:
        active = self._active[lane.name]
        free = s.workers - len(active)
        if free <= 0:
            # Every worker is busy: wake-ups not served yet wait for a worker to be released (that
            # sets the event), not for the next sweep, poll_interval later.
            if partition in woken:
                self._wakes[lane.name].add(partition)
            return
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
            # Our own lease ran out while a post of ours was slow, and we took it again: the running
            # task keeps the conversation (every worker here shares one id, so a second task would
            # pass every lease check beside the first).
            if cid not in active:
                active[cid] = asyncio.create_task(self._run(lane, cid, fetched))
            else:  # e.g. its commit just handed it back, and the task is finishing
                self._reclaimed[lane.name].add(cid)

    async def serve_turn(self, lane: Lane, cid: str, channel: str) -> bool:
        """Lease `cid` and deliver it with the turn a worker of `lane` took for it in `channel` (fair
        pacing); False when it is held, here or by another replica."""
        if cid in self._active[lane.name]:
            return False
        fetched = await self.store.take_lease(
            lane.name,
            cid,
            self.worker,
            lease_ms=int(self.settings().lease_s * 1000),
            now_ms=now_ms(),
            fetch_limit=lane.fetch_limit,
        )
        if fetched is None or cid in self._active[lane.name]:
            return False
        self._active[lane.name][cid] = asyncio.create_task(self._run(lane, cid, fetched, channel))
        return True

    async def _run(
        self, lane: Lane, cid: str, fetched: Fetched | None = None, turn: str | None = None
    ) -> None:
        step = Step.later(now_ms())  # if cancelled: due again at once, for the next process
        try:
            step = await lane.deliver(cid, self.worker, fetched, turn)
        except STORE_ERRORS as e:
            self.metrics.redis_errors.labels("deliver").inc()
            log.warning("delivery_redis_error", lane=lane.name, cid=cid, error=type(e).__name__)
            step = Step.later(now_ms() + REDIS_ERROR_BACKOFF_MS)
        except Exception:
            log.exception("delivery_crashed", lane=lane.name, cid=cid)
            step = Step.later(now_ms() + CRASH_BACKOFF_MS)
        finally:
            await self._finish(lane.name, cid, step)

    async def _finish(self, lane: str, cid: str, step: Step) -> None:
        """The one place a lease is released: from the Step that ended the delivery. A conversation
        taken again while its task ran is released too (the lease is ours, by worker id)."""
        self._active[lane].pop(cid, None)
        reclaimed = cid in self._reclaimed[lane]
        self._reclaimed[lane].discard(cid)
        if step.released and not reclaimed:
            self._events[lane].set()  # a worker is free
            return
        due = step.due_ms if step.action == "later" else None
        try:
            remaining = await asyncio.shield(self.store.release(lane, cid, self.worker, due or now_ms()))
        except RELEASE_GIVEN_UP:
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
