"""The desk's Redis access (SLA timers, reopen, transfer, Home tab), beside bridge/store.py's Store,
whose client and loaded scripts it shares (keys in bridge/keys.py, scripts in bridge/lua/)."""

from __future__ import annotations

from typing import Any, NamedTuple

import orjson

from ..keys import (
    HOME_DIRTY_KEY,
    HOME_LEASE_KEY,
    HOME_PENDING_KEY,
    HOME_VIEWERS_KEY,
    REPLY,
    SLACK,
    permalink_key,
)
from ..results import as_text, flag
from ..store import Store

PERMALINK_CACHE_S = 30 * 86400
HOME_VIEWER_S = 86400  # a Home tab opened within this long gets fresh views


class OpenHandover(NamedTuple):
    cid: str
    state: str  # open | claimed
    header: dict[str, Any]
    opened_ms: int
    first_response_ms: int  # 0: no agent reply yet
    said: str  # the last line the user typed ('' when not asked for, or none)
    channel: str  # where its thread is ('' until the root is posted)
    ts: str


class Tick(NamedTuple):
    """desk_tick.lua's answer for one partition."""

    slack: int  # slack-lane entries queued (reminders, escalations, root updates)
    reply: int  # reply-lane entries queued (handover_sla_breached)
    seen: int  # handovers looked at for the first time (new on the Home tab)
    breaches: list[str]  # the route of each SLA breach


class DeskStore:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.redis = store.redis

    # -- handover changes ------------------------------------------------------------------------

    async def reopen(
        self, cid: str, *, thread_ts: str, agent_id: str, agent_name: str, now_ms: int, replies: bool
    ) -> int:
        """Its hid (> 0) reopened; -1 not a resolved handover of this thread; -2 another one is open;
        -3 too late."""
        k = self.store.keys(cid)
        return int(
            await self.store._eval(
                "reopen_handover",
                [*k.handover_keys(), k.timers],
                [now_ms, cid, thread_ts, agent_id, agent_name, flag(replies)],
            )
        )

    async def transfer(
        self,
        cid: str,
        *,
        thread_ts: str,
        agent_id: str,
        agent_name: str,
        to_route: str,
        to_pool: tuple[str, ...],
        to_mention: str,
        from_link: str,
        team_url: str,
        shown_on_open: int,
        now_ms: int,
    ) -> int:
        """1 transferred; -1 not an open handover of this thread; -2 it is on that route already."""
        k = self.store.keys(cid)
        answer = await self.store._eval(
            "transfer_handover",
            [*k.handover_keys(), k.timers, k.hist],
            [
                now_ms,
                cid,
                thread_ts,
                agent_id,
                agent_name,
                to_route,
                orjson.dumps(list(to_pool)),
                to_mention,
                from_link,
                team_url,
                shown_on_open,
            ],
        )
        if int(answer[0]) > 0:  # (the old handover no longer counts in its pool channel)
            await self.store.handover_left_channel(cid, int(answer[2]))
        return int(answer[0])

    async def route_of(self, cid: str) -> str:
        """The route of the conversation's current handover ('' when none)."""
        raw = await self.redis.hget(self.store.keys(cid).conv, "header")
        if not raw:
            return ""
        return str(orjson.loads(raw).get("route") or "")

    # -- timers ------------------------------------------------------------------------------------

    async def due_partitions(self, now_ms: int) -> list[int]:
        counts = await self.store._per_partition("zcount", lambda k: k.timers, "-inf", now_ms)
        return [p for p, n in enumerate(counts) if int(n)]

    async def tick(
        self, partition: int, *, now_ms: int, routes: dict[str, Any], replies: bool, check_ms: int, limit: int
    ) -> Tick:
        p = self.store.partition_keys(partition)
        slack_n, reply_n, seen, breaches = await self.store._eval(
            "desk_tick",
            [p.timers, p.ready(SLACK), p.stats, p.ready(REPLY)],
            [
                now_ms,
                limit,
                p.conv_prefix,
                p.out_prefix(SLACK),
                p.out_prefix(REPLY),
                flag(replies),
                check_ms,
                orjson.dumps(routes),
            ],
        )
        return Tick(int(slack_n), int(reply_n), int(seen), [as_text(r) for r in breaches or []])

    # -- what is open --------------------------------------------------------------------------------

    async def open_handovers(self, *, excerpts: bool) -> list[OpenHandover]:
        rows: list[OpenHandover] = []
        async with self.redis.pipeline(transaction=False) as pipe:
            for partition in range(self.store.partitions):
                p = self.store.partition_keys(partition)
                script = self.store._scripts["desk_open"]
                pipe.execute_command("EVALSHA", script.sha, 1, p.open, p.conv_prefix, p.hist, flag(excerpts))
            answers = await pipe.execute(raise_on_error=False)
        if any(isinstance(a, Exception) for a in answers):  # NOSCRIPT on a fresh server: one by one
            answers = [
                await self.store._eval("desk_open", [p.open], [p.conv_prefix, p.hist, flag(excerpts)])
                for p in map(self.store.partition_keys, range(self.store.partitions))
            ]
        for answer in answers:
            for cid, state, header, opened, first, said, channel, ts in answer:
                rows.append(
                    OpenHandover(
                        as_text(cid),
                        as_text(state),
                        orjson.loads(header),
                        int(as_text(opened) or 0),
                        int(as_text(first) or 0),
                        as_text(said),
                        as_text(channel),
                        as_text(ts),
                    )
                )
        return rows

    # -- Home tab ------------------------------------------------------------------------------------

    async def home_opened(self, user_id: str, now_ms: int) -> None:
        """Remember the viewer, and have their view published at once."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zadd(HOME_VIEWERS_KEY, {user_id: now_ms})
            pipe.zadd(HOME_PENDING_KEY, {user_id: now_ms}, lt=True)
            await pipe.execute()

    async def mark_home_dirty(self) -> None:
        await self.redis.set(HOME_DIRTY_KEY, "1")

    async def take_home_dirty(self, now_ms: int) -> int:
        """When a handover changed since last asked: every recent viewer is due; returns how many."""
        if not await self.redis.getdel(HOME_DIRTY_KEY):
            return 0
        since = now_ms - HOME_VIEWER_S * 1000
        await self.redis.zremrangebyscore(HOME_VIEWERS_KEY, "-inf", f"({since}")
        viewers = await self.redis.zrange(HOME_VIEWERS_KEY, 0, -1)
        if viewers:
            await self.redis.zadd(HOME_PENDING_KEY, {as_text(v): now_ms for v in viewers}, lt=True)
        return len(viewers)

    async def due_viewers(self, now_ms: int, limit: int) -> list[str]:
        users = await self.redis.zrangebyscore(HOME_PENDING_KEY, "-inf", now_ms, start=0, num=limit)
        return [as_text(u) for u in users]

    async def published(self, user_id: str) -> None:
        await self.redis.zrem(HOME_PENDING_KEY, user_id)

    async def postpone(self, user_id: str, due_ms: int) -> None:
        await self.redis.zadd(HOME_PENDING_KEY, {user_id: due_ms}, xx=True)

    async def home_has_work(self, now_ms: int) -> bool:
        """A handover changed, or a viewer is due: reads only, so an idle bridge writes nothing."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.exists(HOME_DIRTY_KEY)
            pipe.zcount(HOME_PENDING_KEY, "-inf", now_ms)
            dirty, due = await pipe.execute()
        return bool(int(dirty) or int(due))

    async def hold_lease(self, worker: str, lease_ms: int) -> bool:
        """Whether this replica is (still, or now) the one publishing Home views."""
        if await self.redis.set(HOME_LEASE_KEY, worker, nx=True, px=lease_ms):
            return True
        if as_text(await self.redis.get(HOME_LEASE_KEY)) == worker:
            await self.redis.pexpire(HOME_LEASE_KEY, lease_ms)
            return True
        return False

    async def cached_permalink(self, channel: str, ts: str) -> str | None:
        value = await self.redis.get(permalink_key(channel, ts))
        return as_text(value) if value is not None else None

    async def cache_permalink(self, channel: str, ts: str, link: str) -> None:
        await self.redis.set(permalink_key(channel, ts), link, ex=PERMALINK_CACHE_S)
