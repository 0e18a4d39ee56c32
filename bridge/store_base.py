"""What every part of the Store shares: the client, the loaded scripts, the partition layout, and
the errors that mean Redis cannot answer."""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from typing import Any

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
    META_KEY,
    Keys,
    conversation_keys,
)
from .results import (
    as_text,
)

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


class PartitionMismatch(Exception):
    """The Redis data was written with another partition count: conversations would be lost."""


class StoreBase:
    """Redis access: holds no state of its own beyond the client and loaded scripts."""

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

    async def _per_partition(self, command: str, key_of: Any, *args: Any) -> list[Any]:
        """One command on every partition, pipelined (grouped per node in cluster mode)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for p in range(self.partitions):
                getattr(pipe, command)(key_of(self.partition_keys(p)), *args)
            return await pipe.execute()
