"""Channel pools' counters, part of the Store: which channel of its pool each open handover's thread
is in, and how many open handovers each channel holds (keys.py: PLACED_KEY, channel_open_key).

A handover is placed once, when its root is first posted (place_handover.lua picks the pool's least
loaded channel atomically), and leaves when it ends (resolve, transfer, forget: handover_left_channel).
The counts are recomputable from the conversations: reconcile_placements() drops what a crash left.
"""

from __future__ import annotations

from collections.abc import Sequence

from .keys import CHANNEL_OPEN_PREFIX, PLACED_KEY, SLACK, channel_open_key
from .results import as_text
from .store_base import StoreBase


class PoolCounters(StoreBase):
    """The pools' part of the Store."""

    async def place_handover(
        self, cid: str, hid: int | str, pool: Sequence[str], now_ms: int, waiting: Sequence[int] = ()
    ) -> str:
        """The channel of handover `hid`'s thread: chosen once, when its root is first posted, as the
        pool's channel with the fewest open handovers (then the fewest `waiting` lines, given in pool
        order); the same channel on every later call for this handover, whatever the pool is then."""
        counts = [*waiting, *([0] * len(pool))][: len(pool)]
        channel = await self._eval(
            "place_handover",
            [PLACED_KEY],
            [cid, str(hid), now_ms, CHANNEL_OPEN_PREFIX, len(pool), *pool, *counts],
        )
        return as_text(channel)

    async def waiting_in_channels(self, channels: Sequence[str]) -> list[int]:
        """Entries waiting in the Slack outboxes of the handovers placed in each channel (a pool's
        tie-break): two pipelined reads, on root posts only."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for channel in channels:
                pipe.zrange(channel_open_key(channel), 0, -1)
            members = [[as_text(cid) for cid in found] for found in await pipe.execute()]
        async with self.redis.pipeline(transaction=False) as pipe:
            for cids in members:
                for cid in cids:
                    pipe.xlen(self.keys(cid).out(SLACK))
            lengths = iter(await pipe.execute())
        return [sum(int(next(lengths)) for _ in cids) for cids in members]

    async def handover_left_channel(self, cid: str, hid: int | str | None = None) -> str | None:
        """Handover `hid` of `cid` (None: whichever is placed) no longer counts in its channel:
        call it whenever a handover ends there (resolved, transferred away, forgotten). Returns
        the channel it left, None when it was not placed."""
        left = as_text(
            await self._eval(
                "leave_channel", [PLACED_KEY], [cid, "" if hid is None else str(hid), CHANNEL_OPEN_PREFIX]
            )
        )
        return left or None

    async def open_in_channels(self, channels: Sequence[str]) -> dict[str, int]:
        """Open handovers placed in each of `channels` (for gauges and check-config)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for channel in channels:
                pipe.zcard(channel_open_key(channel))
            counts = await pipe.execute()
        return {channel: int(count) for channel, count in zip(channels, counts, strict=True)}

    async def placements(self) -> dict[str, tuple[str, str]]:
        """cid → (channel, hid) of every placed handover."""
        raw = await self.redis.hgetall(PLACED_KEY)
        found = {}
        for cid, value in raw.items():
            channel, _, hid = as_text(value).partition(" ")
            found[as_text(cid)] = (channel, hid)
        return found

    async def reconcile_placements(self) -> int:
        """Drop placements whose handover is over (its "left" call lost in a crash, a root posted after
        its resolve): the counts are always recomputable from the conversations. Returns how many."""
        placed = list((await self.placements()).items())
        if not placed:
            return 0
        async with self.redis.pipeline(transaction=False) as pipe:
            for cid, _ in placed:
                pipe.hmget(self.keys(cid).conv, "state", "hid")
            states = await pipe.execute()
        dropped = 0
        for (cid, (_, hid)), (state, current) in zip(placed, states, strict=True):
            if as_text(state) in ("open", "claimed") and as_text(current) == hid:
                continue
            dropped += await self.handover_left_channel(cid, hid) is not None
        return dropped
