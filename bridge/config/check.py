"""`bridge check-config`: validate the file and say, in plain words, what the bridge will do with it."""

from __future__ import annotations

import os
import sys
from typing import Any, TextIO

from .diagnostics import ConfigError, ConfigUnreadable, _load
from .schema import ALWAYS_OPEN, BusinessHours, FileConfig, Route, SlaSection
from .values import (
    CONFIG_PATH_ENV,
    DEFAULT_CONFIG_PATH,
    Invalid,
    format_duration,
    format_minutes,
    parse_channel_pool,
)

CHANNEL_ENV = "SLACK_CHANNEL"

# --- bridge check-config -------------------------------------------------------------------------


def _describe_value(value: Any) -> str:
    return ", ".join(map(str, value)) if isinstance(value, list) else str(value).lower()


def describe_pool(pool: tuple[str, ...]) -> str:
    """One channel as itself; a pool as what it does: `pool of 3 (C1, C2, C3), least loaded`."""
    if len(pool) == 1:
        return pool[0]
    return f"pool of {len(pool)} ({', '.join(pool)}), least loaded"


def _describe_route(route: Route, default_channel: str) -> str:
    criteria = (
        " ".join(f"{key}={'|'.join(patterns)}" for key, patterns in route.match.criteria) or "every event"
    )
    channel = describe_pool(route.channel) if route.channel else default_channel
    text = f"  {route.name}: {criteria} -> {channel}"
    if route.mention:
        text += f", mentions {route.mention}"
    if route.business_hours == ALWAYS_OPEN:
        text += ", always open"
    elif route.business_hours is not None:
        text += f", own hours ({route.business_hours.timezone})"
    return text


def _describe_hours(hours: BusinessHours) -> str:
    days = "; ".join(
        f"{span} " + (", ".join(f"{format_minutes(a)}-{format_minutes(b)}" for a, b in ranges) or "closed")
        for span, ranges in hours.weekly.items()
    )
    closed = f"; closed on {len(hours.closed_on)} date(s)" if hours.closed_on else ""
    pool = hours.outside_hours.channel
    outside = describe_pool(pool) if pool else "the route's channel"
    return f"business hours: {hours.timezone}: {days}{closed}; outside hours -> {outside}"


def default_channel_source(config: FileConfig, env_channel: str | None) -> tuple[str, str]:
    """The channel handovers go to when no route takes them, and where that comes from: the
    environment wins over the file (the running bridge decides the same way, settings.py)."""
    if env_channel:
        try:
            return describe_pool(parse_channel_pool(env_channel)), f"from the environment: {CHANNEL_ENV}"
        except Invalid:
            return env_channel, f"from the environment: {CHANNEL_ENV} (invalid)"
    if config.slack.default_channel:
        return describe_pool(config.slack.default_channel), "from the file: slack.default_channel"
    return "nowhere", f"set {CHANNEL_ENV} (or slack.default_channel): the bridge will not start without it"


def check_env_channel(value: str | None) -> str | None:
    """SLACK_CHANNEL (one ID or a comma-separated pool) checked by the rule the file's channels
    follow; the problem in words, or None."""
    if not value or not value.strip():
        return None
    try:
        parse_channel_pool(value)
    except Invalid as e:
        return f"{CHANNEL_ENV}: {e} (hint: {e.hint})"
    return None


def summarize(config: FileConfig, env_channel: str | None = None) -> list[str]:
    """What the bridge will do with this config, in the order it decides."""
    default_channel, source = default_channel_source(config, env_channel)
    lines = ["triggers (the first that matches names the handover):"]
    lines += [
        f"  {key}: {_describe_value(value)}" for key, value in (t.condition for t in config.handover.triggers)
    ] or ["  none"]
    lines.append("routes (first match wins):")
    lines += [_describe_route(route, default_channel) for route in config.routes]
    lines.append(f"  otherwise -> {default_channel} ({source})")
    lines.append(
        _describe_hours(config.business_hours) if config.business_hours else "business hours: always open"
    )
    lines += _describe_desk(config)
    return lines


def _describe_sla(sla: SlaSection) -> str:
    parts = [f"remind after {format_duration(sla.first_response_s)}"]
    if sla.remind_every_s:
        parts.append(f"then every {format_duration(sla.remind_every_s)}")
    if sla.escalate_after_s:
        parts.append(
            f"escalate after {format_duration(sla.escalate_after_s)} to {sla.escalate_mention or 'nobody'}"
        )
    return ", ".join(parts)


def _describe_desk(config: FileConfig) -> list[str]:
    """The agent desk's settings (bridge/desk): response-time targets, outcomes, reopen window."""
    lines = [f"response-time target: {_describe_sla(config.sla) if config.sla else 'none'}"]
    lines += [f"  route {r.name}: {_describe_sla(r.sla)}" for r in config.routes if r.sla is not None]
    outcomes = ", ".join(config.handover.outcomes) or "none (Resolve acts at once)"
    lines.append(
        f"outcomes on resolve: {outcomes}; reopen within {format_duration(config.handover.reopen_window_s)}"
    )
    return lines


def check_config_main(path: str | None, *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """`bridge check-config [PATH]`: 0 if usable, 1 if the file has problems, 2 if it cannot be read.

    out/err default to the sys streams *at call time*, so redirections and test capture work.
    """
    out = out or sys.stdout
    err = err or sys.stderr
    resolved = path or os.environ.get(CONFIG_PATH_ENV) or DEFAULT_CONFIG_PATH
    try:
        config, warnings = _load(resolved)
    except ConfigError as e:
        print(e, file=err)
        return 2 if isinstance(e, ConfigUnreadable) else 1
    env_channel = os.environ.get(CHANNEL_ENV, "").strip() or None
    env_problem = check_env_channel(env_channel)
    if env_problem:
        print(env_problem, file=err)
        return 1
    print(f"{resolved}: OK", file=out)
    for line in summarize(config, env_channel):
        print(line, file=out)
    for warning in warnings:
        print(f"warning: {warning}", file=out)
    return 0
