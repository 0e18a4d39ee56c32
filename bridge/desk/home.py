"""The Home tab: the queue of open handovers, published to everyone who opened the tab in the last
24 hours whenever a handover opens, is claimed, transferred or resolved.

One replica at a time publishes (a lease in Redis); it rebuilds the view at most every DEBOUNCE_S,
and pays views.publish out of a token bucket shared in Redis (Slack allows ~100 calls a minute), so
a burst of changes costs one view per viewer, not one per change."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import structlog

from ..keys import rate_key
from ..rules import DEFAULT_ROUTE
from ..slack_api import SlackFailure
from ..store import STORE_ERRORS
from . import text
from .desk import Desk, now_ms
from .sla import sla_for
from .store import OpenHandover

log = structlog.get_logger("bridge.desk.home")

POLL_S = 0.5
DEBOUNCE_S = 2.0  # a viewer gets at most one view per this long from changes (opening the tab: at once)
LEASE_MS = 10_000
PUBLISH_PER_S = 100 / 60
PUBLISH_BURST = 20
PUBLISH_BUCKET = rate_key("views.publish")
BATCH = 50  # viewers per round
RETRY_MS = 5000  # a view that failed for a passing reason is tried again this much later


async def build_view(desk: Desk) -> dict[str, Any]:
    """Everything open, most urgent first; the shown entries' thread links from chat.getPermalink."""
    config = desk.config()
    now = now_ms()
    handovers = await desk.store.open_handovers(excerpts=True)
    shown = text.urgent_first(handovers)[: text.HOME_ENTRIES]
    links = {h.cid: await desk.slack.permalink(h.channel, h.ts) for h in shown if h.ts}

    def sla_of(h: OpenHandover) -> Any:
        return None if h.first_response_ms else sla_for(config, str(h.header.get("route") or DEFAULT_ROUTE))

    return text.home_view(handovers, lambda h: links.get(h.cid, ""), sla_of, now)


class HomePublisher:
    def __init__(self, desk: Desk, worker: str) -> None:
        self.desk = desk
        self.worker = worker
        self._last_build = 0.0

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.round()
            except STORE_ERRORS as e:
                self.desk.metrics.redis_errors.labels("home").inc()
                log.warning("home_round_failed", error=type(e).__name__)
            except Exception:  # a bug must not stop every later view
                log.exception("home_round_crashed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=POLL_S)

    async def round(self) -> int:
        """Publish to the viewers that are due, if this replica holds the lease; returns how many."""
        store = self.desk.store
        if not await store.home_has_work(now_ms()) or not await store.hold_lease(self.worker, LEASE_MS):
            return 0
        loop = asyncio.get_running_loop()
        if loop.time() - self._last_build >= DEBOUNCE_S:
            await store.take_home_dirty(now_ms())
        users = await store.due_viewers(now_ms(), BATCH)
        if not users:
            return 0
        self._last_build = loop.time()
        view = await build_view(self.desk)
        published = 0
        refusal = self.desk.refusal
        for user in users:
            wait_ms = await self.desk.base.take_token(PUBLISH_BUCKET, now_ms(), PUBLISH_PER_S, PUBLISH_BURST)
            if wait_ms > 0:  # the budget is spent: the rest stay due for the next rounds
                break
            try:
                shown = text.not_an_agent_view() if refusal and refusal(user, "") else view
                await self.desk.slack.publish_home(user, shown)
            except SlackFailure as e:
                log.warning("home_publish_failed", user=user, reason=e.reason)
                if e.retry_after_s is not None:
                    await store.postpone(user, now_ms() + int(e.retry_after_s * 1000))
                    break
                if not (e.permanent or e.unknown or e.auth):  # transient: again a little later
                    await store.postpone(user, now_ms() + RETRY_MS)
                    continue
                # (e.g. not_enabled: dropped until the next change or the next time they open the tab)
            await store.published(user)
            published += 1
        log.info("home_published", viewers=published, due=len(users))
        return published
