"""Fair pacing per channel, and how saturated each channel is.

Slack takes about one post per second per channel. Every conversation waiting to post in a channel
sits in the channel's queue in Redis (keys.wait_key), scored by its oldest waiting entry; the token
and the choice of the conversation whose turn it is are taken together in one script (take_turn.lua),
so the oldest waiting thread gets the next post, with all its waiting lines, whichever replica holds
the token. A new handover's opening entries (root, history shown at open) score OPENING_FIRST_MS
lower: they go before live lines waiting in the same channel.

The queue is an index, rebuilt by whoever touches a conversation: the partitions' ready queues stay
the record of what is pending, so a crash between a turn and its post loses no entry, only the
conversation's place until it is claimed again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import structlog

from ..config import DeliverySection
from ..keys import saturation_key
from ..metrics import Metrics
from ..results import OutboxEntry, stream_id_key
from ..store import STORE_ERRORS, Store
from .step import now_ms

log = structlog.get_logger("bridge.delivery")

OPENING_KINDS = frozenset({"root", "hist"})
# Opening entries' scores are this much lower (~31 years): below every live line's, in arrival order.
OPENING_FIRST_MS = 10**12
# How often each replica reads the channels' queues for the gauges and the saturation warning.
WATCH_INTERVAL_S = 5.0
SATURATION_LOG_EVERY_MS = 60_000


def score(entry: OutboxEntry) -> int:
    """The queue score of a conversation whose oldest waiting entry is `entry`."""
    received = entry.received_ms or stream_id_key(entry.id)[0]
    return received - OPENING_FIRST_MS if entry.kind in OPENING_KINDS else received


def waiting_since(queue_score: int) -> int:
    """When the entry behind a queue score was received (ms)."""
    return queue_score + OPENING_FIRST_MS if queue_score < OPENING_FIRST_MS else queue_score


async def channel_lag_s(store: Store, channels: list[str], now: int) -> dict[str, float]:
    """Age of the oldest entry waiting for each channel (0 when none waits)."""
    queues = await store.channel_queues(channels)
    return {
        channel: max((now - waiting_since(s) for _, s in waiting), default=0) / 1000
        for channel, waiting in queues.items()
    }


class SaturationWatch:
    """Every WATCH_INTERVAL_S: bridge_slack_channel_lag_seconds and _open_handovers per channel, read
    from Redis so replicas agree, and `slack_channel_saturated` once a minute per channel (across
    replicas) while its lag passes delivery.saturation_warning."""

    def __init__(
        self, store: Store, metrics: Metrics, settings: Callable[[], DeliverySection], seen: set[str]
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.settings = settings
        self.seen = seen  # channels this replica posted to (the pools' placements name the others)

    async def run(self) -> None:
        while True:
            with contextlib.suppress(*STORE_ERRORS):
                await self.check()
            await asyncio.sleep(WATCH_INTERVAL_S)

    async def check(self) -> None:
        channels = sorted(self.seen | {channel for channel, _ in (await self.store.placements()).values()})
        if not channels:
            return
        now = now_ms()
        lags = await channel_lag_s(self.store, channels, now)
        opened = await self.store.open_in_channels(channels)
        threshold = self.settings().saturation_warning_s
        for channel in channels:
            self.metrics.slack_channel_lag.labels(channel).set(lags[channel])
            self.metrics.slack_channel_open.labels(channel).set(opened[channel])
            if lags[channel] > threshold and await self.store.first_in(
                saturation_key(channel), SATURATION_LOG_EVERY_MS, now
            ):
                log.warning(
                    "slack_channel_saturated",
                    channel=channel,
                    lag_s=round(lags[channel], 1),
                    open_handovers=opened[channel],
                    hint="Slack allows ~1 post/s per channel: add channels to this route's pool "
                    "(a list of channel IDs) to spread its handovers",
                )
