"""The bridge's Redis access: every Lua script and command, behind one Store (keys in keys.py,
parsed answers in results.py)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Sequence
from importlib import resources
from typing import Any, NamedTuple

import orjson
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.commands.core import AsyncScript
from redis.exceptions import (
    AskError,
    MovedError,
    NoScriptError,
    RedisClusterException,
    RedisError,
    TryAgainError,
)
from redis.exceptions import (
    ConnectionError as RedisConnectionError,
)

from .keys import (
    LANES,
    META_KEY,
    REPLY,
    SLACK,
    Keys,
    conversation_keys,
    rate_key,
    record_keys,
    thread_key,
    user_key,
    usergroup_key,
    wait_key,
)
from .results import (
    Commit,
    DeadLetter,
    Fetched,
    RecordResult,
    Resolution,
    Turn,
    as_text,
    flag,
    parse_fetched,
    parse_turn,
    stream_id_key,
)
from .store_pools import PoolCounters

DEAD_MAXLEN = 100_000
USER_CACHE_S = 86400
THREAD_MAPPING_S = 30 * 86400

AnyRedis = Redis | RedisCluster
# "Redis cannot answer right now": callers answer 503 or back off. RedisClusterException (no reachable
# node, slot not covered during a failover, ...) is NOT a RedisError subclass in redis-py.
STORE_ERRORS: tuple[type[Exception], ...] = (RedisError, RedisClusterException)
# Redis unavailable, or the socket to it broken before redis-py could say so.
STORE_OR_SOCKET_ERRORS: tuple[type[Exception], ...] = (*STORE_ERRORS, OSError)
# Redis unavailable, its socket broken, or no answer within the caller's deadline.
STORE_UNREACHABLE_ERRORS: tuple[type[Exception], ...] = (*STORE_OR_SOCKET_ERRORS, TimeoutError)
# Redis unavailable, or it did not answer within the caller's deadline.
STORE_OR_TIMEOUT_ERRORS: tuple[type[Exception], ...] = (*STORE_ERRORS, TimeoutError)
# The longest a webhook waits on Redis (plus redis.wait_timeout_ms when WAIT is on): during a failover
# it answers 503 within this bound, and the sender retries, instead of holding its connection open.
STORE_DEADLINE_S = 2.0
# A pipelined record+WAIT whose EVALSHA was redirected is sent again once the client knows the new owner.
_REDIRECTS = (MovedError, AskError, TryAgainError)


class NotSent(RedisConnectionError):
    """A command that never left the bridge (no connection to Redis could be made): Redis did not
    run it. The autopipelining client raises it; any other failure may come after Redis ran it."""


def never_sent(error: BaseException) -> bool:
    """Whether Redis certainly did not run the command that failed with `error`: a timeout (Redis may
    still run it, e.g. when frozen) or a connection lost after sending leaves it unknown. Plain
    redis-py says so only through a refused connection (it may have sent once before retrying)."""
    if isinstance(error, NotSent):
        return True
    return isinstance(error, RedisConnectionError) and isinstance(error.__context__, ConnectionRefusedError)


def _script_source(name: str) -> str:
    lua = resources.files("bridge") / "lua"
    return (lua / "lib.lua").read_text() + "\n" + (lua / f"{name}.lua").read_text()


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


class PartitionMismatch(Exception):
    """The Redis data was written with another partition count: conversations would be lost."""


class Store(PoolCounters):
    """Redis access for the bridge. Holds no state of its own beyond the client and loaded scripts."""

    def __init__(self, redis: AnyRedis, *, partitions: int, client_deadline_s: float | None = None) -> None:
        """`client_deadline_s`: the bound the client itself puts on every command, when it has one
        (the autopipelining client's batch timeout)."""
        self.redis = redis
        self.partitions = partitions
        self.client_deadline_s = client_deadline_s
        self._scripts: dict[str, AsyncScript] = {}
        for name in (
            "record",
            "fetch",
            "claim_due",
            "release",
            "commit",
            "bury",
            "replay",
            "mark_inflight",
            "take_token",
            "begin_turn",
            "take_turn",
            "give_back",
            "take_lease",
            "pause_channel",
            "agent_message",
            "claim_handover",
            "resolve_handover",
            "place_handover",
            "leave_channel",
            "forget",
            # the desk's (bridge/desk/store.py)
            "reopen_handover",
            "transfer_handover",
            "desk_tick",
            "desk_open",
            "bury_reply",
            "agent_edit",
        ):
            self._scripts[name] = redis.register_script(_script_source(name))

    # -- layout ------------------------------------------------------------------------------------

    def partition_of(self, cid: str) -> int:
        return conversation_keys(self.partitions, cid).partition

    def keys(self, cid: str) -> Keys:
        return conversation_keys(self.partitions, cid)

    def partition_keys(self, partition: int) -> Keys:
        """Keys of a partition as a whole (work queues, dead letters, stats)."""
        return Keys(partition, "")

    async def check_partitions(self) -> None:
        """Refuse to run with another partition count than the data was written with."""
        await self.redis.hsetnx(META_KEY, "partitions", self.partitions)
        stored = int(as_text(await self.redis.hget(META_KEY, "partitions")) or self.partitions)
        if stored != self.partitions:
            raise PartitionMismatch(
                f"Redis holds data for redis.partitions={stored}, config says {self.partitions}: "
                f"set redis.partitions back to {stored}"
            )

    @property
    def bounded(self) -> bool:
        """Whether the client itself answers or fails each command within STORE_DEADLINE_S of issuing
        it (connecting and one resend included). A NOSCRIPT reply costs one more command."""
        return self.client_deadline_s is not None and self.client_deadline_s <= STORE_DEADLINE_S

    async def ping(self) -> bool:
        return bool(await self.redis.ping())

    async def _eval(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """EVALSHA, loading the script when the server lacks it (fresh, restarted or promoted).
        Straight to execute_command: redis-py's Script object costs more than the command itself."""
        script = self._scripts[name]
        try:
            return await self.redis.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
        except NoScriptError:
            await self.redis.script_load(script.script)
            return await self.redis.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)

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
            [
                k.conv,
                k.out(lane),
                k.lease(lane),
                k.stats,
                k.out(REPLY),
                k.ready(REPLY),
                k.ready(lane),
                k.out(SLACK),
                k.ready(SLACK),
            ],
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

    # -- agents ----------------------------------------------------------------------------------------

    async def agent_message(
        self,
        cid: str,
        *,
        thread_ts: str,
        agent_id: str,
        message: dict[str, Any],
        event_id: str,
        now_ms: int,
        dedupe_ms: int,
        claim_on_reply: bool,
        slack_ts: str = "",
    ) -> tuple[int, int]:
        """Queue an agent reply; returns (1 queued | 2 queued and claimed by this reply | 0 duplicate |
        -1 not open, first response ms). `slack_ts`: the reply's own message, mapped to the reply's id
        for its edits (agent_edit)."""
        k = self.keys(cid)
        status, first_after = await self._eval(
            "agent_message",
            [*k.handover_keys(), k.seen(event_id), k.sent],
            [
                now_ms,
                cid,
                thread_ts,
                agent_id,
                orjson.dumps(message),
                dedupe_ms,
                flag(claim_on_reply),
                slack_ts,
            ],
        )
        return int(status), int(first_after)

    async def agent_edit(
        self,
        cid: str,
        *,
        thread_ts: str,
        agent_id: str,
        slack_ts: str,
        deleted: bool,
        slack_text: str,
        window_ms: int,
        event_id: str,
        now_ms: int,
        dedupe_ms: int,
    ) -> tuple[int, str]:
        """Queue agent_message_edited / _deleted for the relayed reply at `slack_ts`: (status, reply id),
        status 1 queued, 0 duplicate, -1 not open, -2 not a relayed reply, -3 edit past `window_ms`."""
        k = self.keys(cid)
        status, reply_id = await self._eval(
            "agent_edit",
            [*k.handover_keys(), k.seen(event_id), k.sent],
            [
                now_ms,
                cid,
                thread_ts,
                agent_id,
                slack_ts,
                "deleted" if deleted else "edited",
                slack_text,
                window_ms,
                dedupe_ms,
            ],
        )
        return int(status), as_text(reply_id)

    async def bury_reply(
        self,
        cid: str,
        entry_id: str,
        reason: str,
        now_ms: int,
        *,
        reaction: dict[str, Any] | None,
        ephemeral: dict[str, Any] | None,
        hid: str,
    ) -> str:
        """Dead-letter one reply-lane entry and queue its notices (bury_reply.lua); the dead id."""
        k = self.keys(cid)
        dead_id = await self._eval(
            "bury_reply",
            [k.out(REPLY), k.dead, k.stats, k.conv, k.out(SLACK), k.ready(SLACK)],
            [
                cid,
                reason,
                now_ms,
                DEAD_MAXLEN,
                entry_id,
                orjson.dumps(reaction) if reaction else "",
                orjson.dumps(ephemeral) if ephemeral else "",
                hid,
            ],
        )
        return as_text(dead_id)

    async def claim_handover(
        self,
        cid: str,
        *,
        thread_ts: str,
        agent_id: str,
        agent_name: str,
        now_ms: int,
        replies: bool,
        take_over: bool = False,
    ) -> int:
        """1 claimed, 0 already this agent's, -1 not open, -2 another agent's (see claim_handover.lua)."""
        k = self.keys(cid)
        return int(
            await self._eval(
                "claim_handover",
                k.handover_keys(),
                [now_ms, cid, thread_ts, agent_id, agent_name, flag(replies), flag(take_over)],
            )
        )

    async def resolve_handover(
        self,
        cid: str,
        *,
        thread_ts: str,
        agent_id: str,
        agent_name: str,
        now_ms: int,
        replies: bool,
        reason: str = "agent",  # or "idle" (with idle_before_ms), from the idle auto-resolve
        idle_before_ms: int = 0,
    ) -> int:
        """1 resolved, -1 nothing to resolve (resolution() says more)."""
        resolved = await self.resolution(
            cid,
            thread_ts=thread_ts,
            agent_id=agent_id,
            agent_name=agent_name,
            now_ms=now_ms,
            replies=replies,
            reason=reason,
            idle_before_ms=idle_before_ms,
        )
        return resolved.status

    async def resolution(
        self,
        cid: str,
        *,
        thread_ts: str,
        agent_id: str,
        agent_name: str,
        now_ms: int,
        replies: bool,
        reason: str = "agent",
        idle_before_ms: int = 0,
        outcome: str = "",
        note: str = "",
        reopen_window_ms: int = 0,
    ) -> Resolution:
        """Resolve, and say when the handover had opened and on which route (for the desk's numbers)."""
        k = self.keys(cid)
        hid, opened_ms, route = await self._eval(
            "resolve_handover",
            [*k.handover_keys(), k.timers],
            [
                now_ms,
                cid,
                thread_ts,
                agent_id,
                agent_name,
                flag(replies),
                reason,
                idle_before_ms,
                outcome,
                note,
                reopen_window_ms,
            ],
        )
        if int(hid) < 0:
            return Resolution(-1)
        # A second call (the pool counters live in a slot of their own); were it lost, reconcile()
        # finds the placement stale later.
        await self.handover_left_channel(cid, int(hid))
        return Resolution(1, int(opened_ms), as_text(route))

    async def idle_handovers(self, partition: int, before_ms: int, limit: int = 100) -> list[str]:
        members = await self.redis.zrangebyscore(
            self.partition_keys(partition).open, "-inf", before_ms, start=0, num=limit
        )
        return [as_text(m) for m in members]

    async def conversation(self, cid: str) -> dict[str, str]:
        raw = await self.redis.hgetall(self.keys(cid).conv)
        return {as_text(f): as_text(v) for f, v in raw.items()}

    async def history(self, cid: str) -> list[dict[str, Any]]:
        return [orjson.loads(e) for e in await self.redis.lrange(self.keys(cid).hist, 0, -1)]

    async def cached_usergroup(self, group: str) -> list[str] | None:
        """Members of a user group as last fetched by any replica (None: not cached or expired)."""
        value = await self.redis.get(usergroup_key(group))
        return [str(u) for u in orjson.loads(value)] if value is not None else None

    async def cache_usergroup(self, group: str, members: list[str], ttl_s: int) -> None:
        await self.redis.set(usergroup_key(group), orjson.dumps(members), ex=ttl_s)

    async def cached_user_name(self, user_id: str) -> str | None:
        value = await self.redis.get(user_key(user_id))
        return as_text(value) if value is not None else None

    async def cache_user_name(self, user_id: str, name: str) -> None:
        await self.redis.set(user_key(user_id), name, ex=USER_CACHE_S)

    # -- operations ------------------------------------------------------------------------------------

    async def _per_partition(self, command: str, key_of: Any, *args: Any) -> list[Any]:
        """One command on every partition, pipelined (grouped per node in cluster mode)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for p in range(self.partitions):
                getattr(pipe, command)(key_of(self.partition_keys(p)), *args)
            return await pipe.execute()

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
