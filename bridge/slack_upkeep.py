"""Background checks against Slack that follow the config: the channels can be used (channel_check.py)
and the agents' user groups are expanded (agents.py), at start and after every config reload."""

from __future__ import annotations

import asyncio
import contextlib
import time

import structlog

from .agents import AgentDirectory
from .channel_check import ChannelCheck
from .runtime import Bridge

log = structlog.get_logger("bridge.slack_upkeep")

POLL_S = 1.0  # how soon a reloaded config is checked
RETRY_S = 30.0  # Slack could not answer for every channel: try those again this often
AGENTS_EVERY_S = 60.0  # re-read the groups' cache (Slack is asked only once it expired, every 10 min)


async def slack_upkeep(bridge: Bridge, agents: AgentDirectory, stop: asyncio.Event) -> None:
    check = ChannelCheck(bridge.slack, bridge.metrics, bridge.store)
    while bridge.identity is None and not stop.is_set():  # the app's name goes in the fix
        await _pause(stop, POLL_S)
    checked = None
    channels_due = agents_due = 0.0
    while not stop.is_set():
        config, now = bridge.config(), time.monotonic()
        if config is not checked:
            checked, channels_due, agents_due = config, now, now
        try:
            if now >= channels_due:
                name = bridge.identity.name if bridge.identity else ""
                complete = await check.run(bridge.app_config.channels_in(config), name)
                channels_due = float("inf") if complete else now + RETRY_S
            if now >= agents_due:
                await agents.refresh()
                agents_due = now + AGENTS_EVERY_S
        except Exception:  # a dead loop would silently stop following reloads
            log.exception("slack_upkeep_failed")
            channels_due = agents_due = now + RETRY_S
        await _pause(stop, POLL_S)


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
