"""The bridge's Redis access: every Lua script and command, behind one Store (keys in keys.py,
parsed answers in results.py)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from typing import Any, NamedTuple

import orjson
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import (
    NoScriptError,
)

from .keys import (
    LANES,
    record_keys,
)
from .results import (
    DeadLetter,
    RecordResult,
    as_text,
    stream_id_key,
)
from .store_agents import HandoverStore
from .store_base import (
    _REDIRECTS,
    DEAD_MAXLEN,
    STORE_DEADLINE_S,
    STORE_ERRORS,
    STORE_OR_SOCKET_ERRORS,
    STORE_OR_TIMEOUT_ERRORS,
    STORE_UNREACHABLE_ERRORS,
    AnyRedis,
    NotSent,
    PartitionMismatch,
    StoreBase,
    never_sent,
)
from .store_delivery import DeliveryStore

__all__ = [  # the Store, and what its callers catch and read from store_base
    "DEAD_MAXLEN",
    "STORE_DEADLINE_S",
    "STORE_ERRORS",
    "STORE_OR_SOCKET_ERRORS",
    "STORE_OR_TIMEOUT_ERRORS",
    "STORE_UNREACHABLE_ERRORS",
    "AnyRedis",
    "NotSent",
    "PartitionMismatch",
    "RecordArgs",
    "Store",
    "StoreBase",
    "body_digest",
    "close_quietly",
    "never_sent",
]


class RecordArgs(NamedTuple):
    """record.lua's ARGV, field for field in the order of the ARGV comment at the top of
    bridge/lua/record.lua (change both together)."""

    now_ms: int
    dedupe_ms: int  # 0: no dedupe
    hist_max: int
    ttl_ms: int
    cid: str
    skill_id: str
    client_id: str
    user_id: str
    lang: str
    platform: str
    muted: str  # '1' | '0' | '' (unknown)
    entry: bytes | str  # history entry JSON, or '' (no message)
    header: bytes | str  # root header JSON when a handover should open, else ''
    shown_on_open: int
    line_chars_on_open: int  # a shown exchange longer than this (as JSON) may need the transcript file
    opening_bytes: int  # shown history (as JSON) longer than this may too (opening.py decides)


class Store(DeliveryStore, HandoverStore):
    """Redis access for the bridge: every Lua script and command (keys in keys.py, parsed answers in
    results.py), in parts by concept: store_base, store_delivery, store_agents, store_pools."""

    # -- webhook path ----------------------------------------------------------------------------------

    async def record(self, args: RecordArgs, digest: str) -> RecordResult:
        """record.lua for one webhook (`digest`: its body's, the dedupe key)."""
        return self._record_result(
            await self._eval("record", self._record_keys(args.cid, digest), args), args
        )

    def _record_keys(self, cid: str, digest: str) -> list[str]:
        conv, hist, out, ready, open_, stats, lines, out_file, ready_file = record_keys(self.partitions, cid)
        k = self.keys(cid)
        return [conv, hist, out, ready, open_, k.dedupe(digest), stats, lines, k.timers, out_file, ready_file]

    def _record_result(self, raw: list[Any], args: RecordArgs) -> RecordResult:
        recorded, queued, opened, hid = raw
        cid = args.cid
        return RecordResult(bool(recorded), bool(queued), bool(opened), int(hid), self.partition_of(cid), cid)

    async def record_and_wait(
        self, args: RecordArgs, digest: str, replicas: int, timeout_ms: int
    ) -> tuple[RecordResult, int]:
        """record.lua then WAIT, pipelined in one round trip on ONE connection: WAIT only counts the
        writes of the connection it runs on. In cluster mode both go to the primary that owns the
        conversation's slot. Returns the result and how many replicas acknowledged within `timeout_ms`."""
        script = self._scripts["record"]
        keys = self._record_keys(args.cid, digest)
        cluster = isinstance(self.redis, RedisCluster)
        last: Exception | None = None
        for _ in range(3):
            async with self.redis.pipeline(transaction=False) as pipe:
                # EVALSHA by hand: redis-py's ClusterPipeline refuses pipe.evalsha() and Script objects.
                pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
                if cluster:
                    await self.redis.initialize()  # (a no-op unless a failure reset the slot map)
                    node = self.redis.get_node_from_key(keys[0])  # type: ignore[union-attr]
                    pipe.execute_command("WAIT", replicas, timeout_ms, target_nodes=node)
                    # Redirections are ours to handle: redis-py would re-send the EVALSHA alone elsewhere.
                    raw, acked = await pipe.execute(  # type: ignore[call-arg]
                        raise_on_error=False, allow_redirections=False
                    )
                else:
                    pipe.execute_command("WAIT", replicas, timeout_ms)
                    raw, acked = await pipe.execute(raise_on_error=False)
            if isinstance(raw, NoScriptError):  # a fresh (or restarted, or promoted) server: load, send again
                last = raw
                await self.redis.script_load(script.script)
                continue
            if isinstance(raw, _REDIRECTS):  # the slot moved (failover): a plain command refreshes the map
                last = raw
                await self.redis.exists(keys[0])
                continue
            for value in (raw, acked):
                if isinstance(value, Exception):
                    raise value
            return self._record_result(raw, args), int(acked)
        assert last is not None
        raise last

    # -- operations ------------------------------------------------------------------------------------

    async def pending_counts(self) -> dict[str, int]:
        rows = await self._per_partition("hgetall", lambda k: k.stats)
        totals = dict.fromkeys(LANES, 0)
        for row in rows:
            for lane in LANES:
                totals[lane] += int(as_text(row.get(lane.encode(), b"0")) or 0)
        return totals

    async def open_handover_count(self) -> int:
        return sum(await self._per_partition("zcard", lambda k: k.open))

    async def open_handovers(self) -> list[tuple[str, int]]:
        """Every open handover's conversation id and last activity (ms), for `bridge handovers list`."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for p in range(self.partitions):
                pipe.zrange(self.partition_keys(p).open, 0, -1, withscores=True)
            rows = await pipe.execute()
        return [(as_text(cid), int(score)) for row in rows for cid, score in row]

    async def outbox_length(self, lane: str, cid: str) -> int:
        """Entries of one conversation still waiting in `lane`."""
        return int(await self.redis.xlen(self.keys(cid).out(lane)))

    async def dead_letters(self, limit: int = 1000) -> list[DeadLetter]:
        rows = await self._per_partition("xrange", lambda k: k.dead, "-", "+", limit)
        letters = [
            _dead_letter(partition, entry_id, fields)
            for partition, entries in enumerate(rows)
            for entry_id, fields in entries
        ]
        letters.sort(key=lambda d: stream_id_key(d.id))  # burial order: "…-10" after "…-9"
        return letters

    async def dead_letter(self, cid: str, dead_id: str) -> DeadLetter | None:
        """One dead letter of `cid`'s partition by id (a reply_retry button names it)."""
        k = self.keys(cid)
        found = await self.redis.xrange(k.dead, dead_id, dead_id)
        letter = _dead_letter(k.partition, *found[0]) if found else None
        return letter if letter is not None and letter.cid == cid else None

    async def replay(self, letter: DeadLetter, now_ms: int) -> bool:
        k = self.keys(letter.cid)
        return bool(
            await self._eval(
                "replay",
                [k.dead, k.out(letter.lane), k.ready(letter.lane), k.stats],
                [letter.id, letter.cid, letter.lane, now_ms],
            )
        )


def _dead_letter(partition: int, entry_id: Any, fields: Any) -> DeadLetter:
    f = {as_text(a): as_text(b) for a, b in fields.items()}
    return DeadLetter(
        id=as_text(entry_id),
        partition=partition,
        lane=f.get("lane", ""),
        cid=f.get("cid", ""),
        reason=f.get("reason", ""),
        kind=f.get("k", ""),
        at_ms=int(f.get("at") or 0),
        data=orjson.loads(f["e"]) if f.get("e") else {},
        channel=f.get("channel", ""),
    )


def body_digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()[:32]


async def close_quietly(redis: AnyRedis) -> None:
    with contextlib.suppress(OSError, asyncio.CancelledError, RuntimeError):
        await redis.aclose()
