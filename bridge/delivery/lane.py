"""The lane protocol: how a lane delivers one leased conversation, and the steps every lane shares
(commit, retry with backoff, dead letter, lease lost)."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from ..config import DeliverySection, HistorySection
from ..health import SlackHealth
from ..metrics import Metrics
from ..results import Fetched, OutboxEntry
from ..store import Store
from .step import Step, now_ms

log = structlog.get_logger("bridge.delivery")


@dataclass
class DeliveryContext:
    """What every lane needs: Redis, metrics, the live delivery settings, and what this replica
    knows of Slack's answer to its token."""

    store: Store
    metrics: Metrics
    settings: Callable[[], DeliverySection]
    replies_enabled: bool
    slack_health: SlackHealth = field(default_factory=SlackHealth)
    # The live history settings (how the opening history is cut: opening.py).
    history: Callable[[], HistorySection] = HistorySection

    def lease_ms(self) -> int:
        return int(self.settings().lease_s * 1000)

    def backoff_ms(self, attempts: int) -> int:
        s = self.settings()
        ceiling = min(s.backoff_max_s, s.backoff_base_s * (2 ** max(attempts - 1, 0)))
        return int(random.uniform(ceiling / 2, ceiling) * 1000)


class Lane:
    """Delivers one conversation's entries to one destination, oldest first.

    A lane implements `step()`: deliver what the head of the outbox allows (one post, one POST, one
    dead letter) and say what is left as a Step. `deliver()` drives the steps; the scheduler
    (Deliverer) turns the final Step into a lease release, in one place."""

    name: str
    fetch_limit: int  # entries read at once
    # Set on shutdown: a post in flight finishes and is committed, nothing new starts.
    stopping: bool = False

    def __init__(self, ctx: DeliveryContext) -> None:
        self.ctx = ctx

    async def deliver(
        self, cid: str, worker: str, fetched: Fetched | None = None, turn: str | None = None
    ) -> Step:
        """Deliver while there is something to deliver (starting from `fetched` when the claim read
        it already; `turn`: a channel whose posting turn another worker took for this conversation);
        returns the Step that stopped it (never `next`)."""
        while not self.stopping:
            conv, entries = fetched if fetched is not None else await self.fetch(cid)
            if not entries:
                return Step.drained(released=False)
            step = await self.step(cid, worker, conv, entries, turn)
            turn = None
            if step.stops:
                return step
            fetched = step.fetched
        return Step.later(now_ms())

    async def step(
        self,
        cid: str,
        worker: str,
        conv: dict[str, str],
        entries: list[OutboxEntry],
        turn: str | None = None,
    ) -> Step:
        raise NotImplementedError

    async def fetch(self, cid: str) -> Fetched:
        return await self.ctx.store.fetch(self.name, cid, self.fetch_limit)

    async def commit(self, cid: str, worker: str, ids: Sequence[str], **root: Any) -> Step:
        """The shared commit path: drop what the destination accepted, hand the conversation back when
        nothing is left (released by the commit itself), and read what is left for the next step."""
        commit = await self.ctx.store.commit(
            self.name,
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
            return self.lease_lost(cid, ids[-1])
        if commit.released:
            return Step.drained(released=True)
        return Step.go_on(commit.fetched)

    def lease_lost(self, cid: str, entry: str) -> Step:
        """Our lease expired (a post outlasted it) and another worker may be delivering this
        conversation now: carrying on beside it could post lines twice or out of order."""
        log.warning("delivery_lease_lost", lane=self.name, cid=cid, entry=entry)
        return Step.later(now_ms())

    async def retry_later(self, cid: str, reason: str, attempts: int | None = None) -> Step:
        """A transient failure: due again after an exponential backoff (attempts counted in Redis,
        reset by the next commit; pass them when already counted)."""
        if attempts is None:
            attempts = await self.ctx.store.bump_attempts(self.name, cid)
        delay = self.ctx.backoff_ms(attempts)
        log.warning(
            "delivery_retry", lane=self.name, cid=cid, reason=reason, attempt=attempts, retry_in_ms=delay
        )
        return Step.later(now_ms() + delay)

    async def bury(self, cid: str, entries: list[OutboxEntry], reason: str, channel: str = "") -> Step:
        """A permanent failure: the entries go to the dead letters and the rest flows on."""
        moved = await self.ctx.store.bury(self.name, cid, [e.id for e in entries], reason, now_ms(), channel)
        self.ctx.metrics.dead_letters.labels(self.name, reason).inc(moved)
        log.error(
            "dead_letter",
            lane=self.name,
            cid=cid,
            reason=reason,
            entries=moved,
            kinds=[e.kind for e in entries],
            channel=channel or None,
        )
        return Step.go_on()
