"""Response-time targets: every replica sweeps the partitions' timers (like the idle auto-resolve);
desk_tick.lua decides atomically, so each reminder is queued once however many replicas sweep.
Which target and which business hours apply is decided here, per route, once per sweep."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from typing import Any

import structlog

from ..config import BusinessHours, FileConfig, SlaSection
from ..keys import REPLY, SLACK
from ..rules import DEFAULT_ROUTE, is_open
from ..store import STORE_ERRORS
from .desk import Desk, now_ms

log = structlog.get_logger("bridge.desk.sla")

TICK_LIMIT = 200  # conversations per partition per script call
# An open handover is looked at again at least this often, or a quarter of its shortest target when
# shorter (business hours may change meanwhile: the clock stops or starts again from the next look on).
CHECK_MS = 60_000
ANY_ROUTE = "*"  # desk_tick.lua's entry for a route no longer configured: the global target


def sla_for(config: FileConfig, route_name: str) -> SlaSection | None:
    """A route's own target replaces the global one."""
    route = next((r for r in config.routes if r.name == route_name), None)
    if route is not None and route.sla is not None:
        return route.sla
    return config.sla


def hours_for(config: FileConfig, route_name: str) -> BusinessHours | None:
    route = next((r for r in config.routes if r.name == route_name), None)
    return route.hours(config.business_hours) if route is not None else config.business_hours


def _ms(seconds: float | None) -> int:
    return int(seconds * 1000) if seconds else 0


def route_table(config: FileConfig, now: datetime) -> dict[str, Any]:
    """What desk_tick.lua needs per route: in hours now, the target in ms, who to ping."""
    table: dict[str, Any] = {}
    mentions = {r.name: r.mention or "" for r in config.routes}
    for name in [*mentions, DEFAULT_ROUTE, ANY_ROUTE]:
        sla = config.sla if name == ANY_ROUTE else sla_for(config, name)
        if sla is None:
            continue
        hours = config.business_hours if name == ANY_ROUTE else hours_for(config, name)
        targets = [_ms(s) for s in (sla.first_response_s, sla.remind_every_s, sla.escalate_after_s) if s]
        table[name] = {
            "h": hours is None or is_open(hours, now),
            "f": _ms(sla.first_response_s),
            "r": _ms(sla.remind_every_s),
            "e": _ms(sla.escalate_after_s),
            "m": mentions.get(name, ""),
            "em": sla.escalate_mention or "",
            # looked at again at least this often: the clock's error at an hours change stays small
            "c": max(min(CHECK_MS, *(t // 4 for t in targets)), 250),
        }
    return table


def sweep_interval_s(config: FileConfig) -> float:
    """Often enough for the shortest target configured (tests use seconds), at most once a second."""
    durations = [
        d
        for sla in [config.sla, *(r.sla for r in config.routes)]
        if sla is not None
        for d in (sla.first_response_s, sla.remind_every_s, sla.escalate_after_s)
        if d
    ]
    return min([1.0, *(d / 4 for d in durations)]) if durations else 1.0


async def sweep(desk: Desk) -> int:
    """One pass over the partitions with due timers; returns the entries queued."""
    config = desk.config()
    now = now_ms()
    routes = route_table(config, datetime.fromtimestamp(now / 1000, UTC))
    queued, dirty = 0, False
    for partition in await desk.store.due_partitions(now):
        tick = await desk.store.tick(
            partition,
            now_ms=now,
            routes=routes,
            replies=desk.replies_enabled,
            check_ms=CHECK_MS,
            limit=TICK_LIMIT,
        )
        if tick.slack:
            desk.wake(SLACK, partition)
        if tick.reply:
            desk.wake(REPLY, partition)
        for route in tick.breaches:
            desk.metrics.sla_breaches.labels(route or DEFAULT_ROUTE).inc()
            log.info("handover_sla_breached", route=route or DEFAULT_ROUTE, partition=partition)
        queued += tick.slack + tick.reply
        dirty = dirty or bool(tick.seen or tick.breaches)
    if dirty:
        await desk.store.mark_home_dirty()
    return queued


async def sweep_forever(desk: Desk, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            await sweep(desk)
        except STORE_ERRORS as e:
            desk.metrics.redis_errors.labels("desk_sweep").inc()
            log.warning("desk_sweep_failed", error=type(e).__name__)
        except Exception:  # a bug must not stop every later reminder
            log.exception("desk_sweep_crashed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=sweep_interval_s(desk.config()))
