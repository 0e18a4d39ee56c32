"""The Store's delivery side: leasing conversations, reading and committing their outboxes, pacing
posts per channel (tokens, turns, pauses), dead letters, and thread mappings."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from redis.asyncio.cluster import RedisCluster

from .keys import (
    rate_key,
    thread_key,
    wait_key,
)
from .results import (
    Commit,
    Fetched,
    Turn,
    as_text,
    flag,
    parse_fetched,
    parse_turn,
)
from .store_base import DEAD_MAXLEN, THREAD_MAPPING_S, StoreBase


class DeliveryStore(StoreBase):
    # -- delivery ------------------------------------------------------------------------------------

    async def claim_due(
        self,
        lane: str,
        partition: int,
        worker: str,
        now_ms: int,
        lease_ms: int,
        limit: int,
        *,
        fetch_limit: int = 0,
    ) -> dict[str, Fetched | None]:
        """Lease up to `limit` due conversations; with `fetch_limit`, each comes with what fetch()
        would return for it (one round trip instead of one more per conversation)."""
        p = self.partition_keys(partition)
        taken = await self._eval(
            "claim_due",
            [p.ready(lane)],
            [
                now_ms,
                worker,
                lease_ms,
                limit,
                p.lease_prefix(lane),
                fetch_limit,
                p.conv_prefix,
                p.out_prefix(lane),
            ],
        )
        if not fetch_limit:
            return {as_text(cid): None for cid in taken}
        return {as_text(cid): parse_fetched(conv, entries) for cid, conv, entries in taken}

    async def fetch(self, lane: str, cid: str, limit: int) -> Fetched:
        """The conversation hash and the oldest pending entries (only the lease holder removes them)."""
        k = self.keys(cid)
        return parse_fetched(*await self._eval("fetch", [k.conv, k.out(lane)], [limit]))

    async def mark_inflight(self, lane: str, cid: str, worker: str, marker: str, *, lease_ms: int) -> bool:
        """Record the post about to start and renew the lease; False when `worker` lost its lease
        (then it must not post: another worker may be delivering the same entries)."""
        k = self.keys(cid)
        marked = await self._eval("mark_inflight", [k.conv, k.lease(lane)], [worker, lease_ms, lane, marker])
        return bool(marked)

    async def bump_attempts(self, lane: str, cid: str) -> int:
        return int(await self.redis.hincrby(self.keys(cid).conv, f"attempts:{lane}", 1))

    async def commit(
        self,
        lane: str,
        cid: str,
        worker: str,
        ids: Sequence[str],
        *,
        lease_ms: int,
        now_ms: int,
        root: tuple[str, str, str] | None = None,
        replies: bool = False,
        release: bool = False,
        fetch_limit: int = 0,
        receipt: dict[str, Any] | None = None,
    ) -> Commit:
        """Drop delivered entries; `root` = (hid, channel, ts) of a root message that was just posted;
        `release`: hand the conversation back too if nothing is left (saves release()'s call);
        `fetch_limit`: when entries are left, read them as fetch() would (saves fetch()'s call);
        `receipt`: a reaction to queue in the slack lane for what was delivered (lib.lua `notice`)."""
        k = self.keys(cid)
        hid, channel, ts = root or ("", "", "")
        held, pending, released, *fetched = await self._eval(
            "commit",
            k.commit_keys(lane),
            [
                worker,
                lease_ms,
                lane,
                hid,
                channel,
                ts,
                flag(replies),
                now_ms,
                cid,
                flag(release),
                fetch_limit,
                orjson.dumps(receipt) if receipt else "",
                *ids,
            ],
        )
        return Commit(bool(held), int(pending), bool(released), parse_fetched(*fetched) if fetched else None)

    async def release(self, lane: str, cid: str, worker: str, due_ms: int) -> bool:
        """Hand the conversation back; returns True when entries remain (due again at `due_ms`)."""
        k = self.keys(cid)
        return bool(
            await self._eval("release", [k.lease(lane), k.out(lane), k.ready(lane)], [worker, cid, due_ms])
        )

    async def bury(
        self, lane: str, cid: str, ids: Sequence[str], reason: str, now_ms: int, channel: str = ""
    ) -> int:
        """Move entries to the dead letters; `channel`: where they were going (for operators)."""
        k = self.keys(cid)
        return int(
            await self._eval(
                "bury",
                [k.out(lane), k.dead, k.stats, k.conv],
                [lane, cid, reason, now_ms, DEAD_MAXLEN, channel, *ids],
            )
        )

    async def take_token(self, channel: str, now_ms: int, per_second: float, burst: int) -> int:
        """Milliseconds to wait before the next post to `channel` (0: go now, token taken)."""
        return int(await self._eval("take_token", [rate_key(channel)], [now_ms, per_second, burst]))

    async def begin_turn(
        self,
        lane: str,
        cid: str,
        worker: str,
        marker: str,
        *,
        channel: str,
        score: int,
        now_ms: int,
        per_second: float,
        burst: int,
        lease_ms: int,
    ) -> Turn:
        """Before a post: join `channel`'s queue with `score` and try for its turn. When the turn is
        this conversation's own, the in-flight marker is written and the lease renewed; when it is
        another's, the caller has that turn (token spent) to hand on (see take_lease, give_back).
        One call on standalone Redis; in a cluster the channel's keys live in another slot: the turn
        first, then the marker (a lease found lost then gives the turn back)."""
        k = self.keys(cid)
        if not isinstance(self.redis, RedisCluster):
            held, *turn = await self._eval(
                "begin_turn",
                [k.conv, k.lease(lane), rate_key(channel), wait_key(channel)],
                [worker, lease_ms, lane, marker, now_ms, per_second, burst, cid, score],
            )
            return parse_turn(bool(held), turn)
        taken = await self.take_turn(channel, cid, score, now_ms=now_ms, per_second=per_second, burst=burst)
        if taken.chosen != cid:
            return taken
        if await self.mark_inflight(lane, cid, worker, marker, lease_ms=lease_ms):
            return taken
        await self.give_back(channel, cid, score, token=True, burst=burst)
        return taken._replace(held=False, chosen="")

    async def take_turn(
        self,
        channel: str,
        cid: str,
        score: int,
        *,
        now_ms: int,
        per_second: float,
        burst: int,
        have_token: bool = False,
        skip: Sequence[str] = (),
    ) -> Turn:
        """The channel's side of begin_turn (cid '' joins nothing); with `have_token`, the turn of the
        next conversation not in `skip`, for a token already taken (given back if none waits)."""
        raw = await self._eval(
            "take_turn",
            [rate_key(channel), wait_key(channel)],
            [now_ms, per_second, burst, cid, score, flag(have_token), *skip],
        )
        return parse_turn(True, raw)

    async def give_back(self, channel: str, cid: str, score: int, *, token: bool, burst: int) -> None:
        """A turn that could not be used: `cid` back in the queue (unless it joined again meanwhile),
        and with `token`, the unspent token back in the bucket."""
        await self._eval(
            "give_back", [rate_key(channel), wait_key(channel)], [cid, score, flag(token), burst]
        )

    async def take_lease(
        self, lane: str, cid: str, worker: str, *, lease_ms: int, now_ms: int, fetch_limit: int
    ) -> Fetched | None:
        """Lease `cid` (its turn was taken for it) and read it as fetch() would; None when another
        worker holds it."""
        k = self.keys(cid)
        taken = await self._eval(
            "take_lease",
            [k.conv, k.out(lane), k.lease(lane), k.ready(lane)],
            [worker, lease_ms, now_ms, cid, fetch_limit],
        )
        return parse_fetched(taken[1], taken[2]) if int(taken[0]) else None

    async def first_in(self, key: str, window_ms: int, now_ms: int) -> bool:
        """True for the first caller within `window_ms` (across replicas) of a once-a-while `key`."""
        return bool(await self.redis.set(key, now_ms, nx=True, px=window_ms))

    async def channel_queues(self, channels: Sequence[str]) -> dict[str, list[tuple[str, int]]]:
        """The few oldest conversations waiting in each channel's queue, with their scores."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for channel in channels:
                pipe.zrange(wait_key(channel), 0, 3, withscores=True)
            rows = await pipe.execute()
        return {
            channel: [(as_text(cid), int(score)) for cid, score in row]
            for channel, row in zip(channels, rows, strict=True)
        }

    async def pause_channel(self, channel: str, until_ms: int, now_ms: int) -> None:
        await self._eval("pause_channel", [rate_key(channel)], [until_ms, now_ms])

    async def paused_until(self, channel: str) -> int:
        """Until when (ms) a 429 paused `channel` (0: not paused); read without taking a token."""
        return int(as_text(await self.redis.hget(rate_key(channel), "paused_until")) or 0)

    async def map_thread(self, channel: str, ts: str, cid: str) -> None:
        await self.redis.set(thread_key(channel, ts), cid, ex=THREAD_MAPPING_S)

    async def thread_conversation(self, channel: str, ts: str) -> str | None:
        value = await self.redis.get(thread_key(channel, ts))
        return as_text(value) if value is not None else None
