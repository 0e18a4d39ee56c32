"""Redis access of the privacy features (forget, audit trail), beside bridge/store.py's Store: its
script runner and client, the keys from keys.py, the scripts in bridge/lua/ (forget.lua)."""

from __future__ import annotations

from redis.asyncio.cluster import RedisCluster

from ..keys import AUDIT_KEY, FILE, LANES, REPLY, SLACK, permalink_key, thread_in, thread_key, wait_key
from ..results import Forgotten, as_text
from ..store import Store


async def append_audit(store: Store, fields: dict[str, str], *, now_ms: int, retention_ms: int) -> None:
    """One audit entry (privacy/audit.py); entries older than the retention go (exact MINID: the
    trail is small, and an entry past its retention must not linger for a macro node to fill)."""
    minid = str(max(now_ms - retention_ms, 0))
    await store.redis.xadd(AUDIT_KEY, dict(fields), minid=minid, approximate=False)  # type: ignore[arg-type]


async def audit_entries(store: Store, since_ms: int) -> list[dict[str, str]]:
    """The audit trail from `since_ms` on, oldest first."""
    rows = await store.redis.xrange(AUDIT_KEY, min=str(since_ms), max="+") or []
    return [{as_text(k): as_text(v) for k, v in (fields or {}).items()} for _, fields in rows]


async def forget_keys(store: Store, cid: str) -> Forgotten:
    """Delete everything Redis holds for one conversation (forget.lua, one slot), then what other
    slots hold of its threads: their mappings, cached permalinks, its turn in their channel queue."""
    k = store.keys(cid)
    keys = [k.conv, k.hist, k.lines, k.sent, k.open, k.stats, k.dead, k.timers]
    for lane in LANES:
        keys += [k.out(lane), k.ready(lane), k.lease(lane)]
    deleted, hist, dead, *rest = await store._eval("forget", keys, [cid, *LANES])
    pending = dict(zip(LANES, (int(n) for n in rest[: len(LANES)]), strict=True))
    mappings = 0
    for thread in rest[len(LANES) :]:
        channel, _, ts = as_text(thread).partition(" ")
        mappings += int(await store.redis.delete(thread_key(channel, ts)))
        await store.redis.delete(permalink_key(channel, ts))  # the desk's cached link to it
        await store.redis.zrem(wait_key(channel), cid)  # its turn in the channel's queue
    return Forgotten(
        int(deleted), int(hist), pending[SLACK], pending[REPLY], pending[FILE], int(dead), mappings
    )


async def threads_of(store: Store, cid: str) -> list[tuple[str, str]]:
    """(channel, ts) of every root posted for this conversation (its `t:<hid>` fields)."""
    conv = await store.conversation(cid)
    return [thread for field in conv if field.startswith("t:") if (thread := thread_in(conv, field[2:]))]


async def pending_of(store: Store, cid: str) -> int:
    """Entries of this conversation still to deliver, every lane."""
    k = store.keys(cid)
    return sum([int(await store.redis.xlen(k.out(lane))) for lane in LANES])


async def keys_named_after(store: Store, cid: str) -> list[str]:
    """Keys of the conversation's partition whose name ends with its id (a full SCAN: for admin
    commands and tests only; standalone Redis only, [] in a cluster)."""
    if isinstance(store.redis, RedisCluster):
        return []
    pattern = f"{store.keys(cid).tag}*:{cid}"
    return [as_text(key) async for key in store.redis.scan_iter(match=pattern, count=1000)]
