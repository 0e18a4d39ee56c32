"""The desk's shared parts and the handover changes every entry point goes through (buttons, modals,
the idle auto-resolve): each one wakes delivery, marks the Home tab dirty and feeds the numbers."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from ..config import FileConfig, Route
from ..keys import REPLY, SLACK
from ..metrics import Metrics
from ..results import Resolution
from ..rules import DEFAULT_ROUTE
from ..slack_api import Identity
from ..store import Store
from .slack import DeskSlack
from .store import DeskStore

log = structlog.get_logger("bridge.desk")

_USER = re.compile(r"^[UW][A-Z0-9]{2,32}$")


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class Desk:
    base: Store
    store: DeskStore
    slack: DeskSlack
    config: Callable[[], FileConfig]
    metrics: Metrics
    wake: Callable[[str, int], None]
    replies_enabled: bool
    identity: Callable[[], Identity | None]
    default_pool: Callable[[], tuple[str, ...]]
    # slack_events' (user, team) -> why they may not act (slack.agents), set once it exists
    refusal: Callable[[str, str], str | None] | None = None

    # -- routes --------------------------------------------------------------------------------------

    def route(self, name: str) -> Route | None:
        return next((r for r in self.config().routes if r.name == name), None)

    def route_names(self) -> list[str]:
        return [DEFAULT_ROUTE, *(r.name for r in self.config().routes)]

    def route_pool(self, name: str) -> tuple[str, ...]:
        """The route's channel pool (delivery places a new root on one of them)."""
        route = self.route(name)
        return (route.channel if route is not None else None) or self.default_pool()

    # -- after a change ------------------------------------------------------------------------------

    async def changed(self, cid: str) -> None:
        """Delivery has work for this conversation, and the Home tab is out of date."""
        partition = self.base.partition_of(cid)
        self.wake(SLACK, partition)
        self.wake(REPLY, partition)
        await self.store.mark_home_dirty()

    async def resolve(
        self,
        cid: str,
        *,
        thread_ts: str,
        agent_id: str,
        agent_name: str,
        outcome: str = "",
        note: str = "",
        reason: str = "agent",
        idle_before_ms: int = 0,
    ) -> int:
        """Resolve with the configured reopen window; 1 resolved, -1 nothing to resolve. The caller
        announces the change (changed()), as after any other action."""
        now = now_ms()
        resolved = await self.base.resolution(
            cid,
            thread_ts=thread_ts,
            agent_id=agent_id,
            agent_name=agent_name,
            now_ms=now,
            replies=self.replies_enabled,
            reason=reason,
            idle_before_ms=idle_before_ms,
            outcome=outcome,
            note=note,
            reopen_window_ms=int(self.config().handover.reopen_window_s * 1000),
        )
        if resolved.status > 0:
            self.observe_resolution(resolved, outcome or ("idle" if reason == "idle" else "none"), now)
        return resolved.status

    def observe_resolution(self, resolved: Resolution, outcome: str, now: int) -> None:
        if resolved.opened_ms > 0:
            seconds = max(now - resolved.opened_ms, 0) / 1000
            self.metrics.handover_resolution.labels(resolved.route or DEFAULT_ROUTE, outcome).observe(seconds)

    async def first_response(self, cid: str, after_ms: int) -> None:
        """The first relayed agent reply of a handover: its SLA timers stop (agent_message.lua)."""
        route = await self.store.route_of(cid)
        self.metrics.handover_first_response.labels(route or DEFAULT_ROUTE).observe(after_ms / 1000)
        await self.store.mark_home_dirty()

    async def home_opened(self, event: dict[str, Any]) -> None:
        """`app_home_opened`: the viewer is remembered for 24 h, and gets a fresh view at once."""
        user, tab = event.get("user"), event.get("tab")
        if tab != "home" or not isinstance(user, str) or not _USER.match(user):
            self.metrics.slack_events.labels("app_home_opened", "ignored").inc()
            log.info("slack_event_ignored", kind="app_home_opened", reason="not_the_home_tab")
            return
        await self.store.home_opened(user, now_ms())
        self.metrics.slack_events.labels("app_home_opened", "queued").inc()
        log.info("home_opened", user=user)

    async def refresh_gauges(self) -> None:
        """bridge_handovers_waiting{route}, read from Redis so that every replica says the same."""
        waiting: dict[str, int] = dict.fromkeys(self.route_names(), 0)
        for handover in await self.store.open_handovers(excerpts=False):
            if not handover.first_response_ms:
                route = str(handover.header.get("route") or DEFAULT_ROUTE)
                waiting[route] = waiting.get(route, 0) + 1
        for route, count in waiting.items():
            self.metrics.handovers_waiting.labels(route).set(count)
