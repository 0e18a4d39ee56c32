"""Automatic pipelining for the standalone Redis client: every command issued during one event-loop
iteration, by any coroutine, goes to Redis in ONE write (one per FLUSH_AT commands in a busy turn), on
ONE long-lived connection that carries batch after batch without waiting for the previous replies, and
the replies are read back in order by one reader task and parsed exactly as redis-py parses them.

Why: redis-py spends ~100 µs of Python per command (pool lock, a retry wrapper, an asyncio.wait_for task
per write, a timeout context per read, packing in Python). That was most of the bridge's CPU per webhook,
and ~700 µs per Slack post (a delivery makes ~6 small calls). A batch pays the fixed part once, hiredis
packs the commands in C, and the pipelining connection skips the pool's checks on every use. Batches
form by themselves under load (aiohttp decodes many requests per loop iteration, delivery workers run
side by side); a lone command is sent on the next iteration (call_soon, no timer), so nothing waits for
company. Same idea as ioredis' enableAutoPipelining.

Failures: a batch whose connection broke before its replies came (server restart, idle kill) is sent
once more on a new connection, as redis-py retries a single command; a batch without replies within
the deadline fails, and the connection is dropped (its late replies would be misread).

Commands that block a connection (WAIT, BLPOP...) or change its state (SELECT, CLIENT...) keep redis-py's
own path and pool, as do explicit pipelines and transactions. Cluster mode uses RedisCluster instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import math
from collections import deque
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

import hiredis
from redis.asyncio import Redis
from redis.asyncio.connection import Connection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import DataError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .redis_private import EMPTY_RESPONSE, NEVER_DECODE, NOT_ENOUGH_DATA, hiredis_parser, writer
from .store import NotSent

# Never share a connection with these: they block it, or change state other callers would inherit.
SOLO_COMMANDS = frozenset({
    "WAIT", "WAITAOF", "BLPOP", "BRPOP", "BRPOPLPUSH", "BLMOVE", "BLMPOP", "BZPOPMIN", "BZPOPMAX",
    "BZMPOP", "XREAD", "XREADGROUP", "SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE", "MONITOR", "SELECT", "AUTH",
    "HELLO", "CLIENT", "RESET", "QUIT", "MULTI", "EXEC", "DISCARD", "WATCH", "UNWATCH", "DEBUG", "SHUTDOWN",
})  # fmt: skip

Call = tuple[tuple[Any, ...], dict[str, Any], "asyncio.Future[Any]"]

# A turn's batch is sent as soon as it holds this many commands, not only at the end of the turn. When
# aiohttp hands over 50 requests in one turn, one batch of 50 leaves Redis idle while they are parsed
# and then the loop idle while Redis runs 50 scripts back to back: the two take turns, and the event
# loop waited 15-20 % of the time at peak (`make bench`). In batches of 16 Redis works on one while the
# loop prepares the next: +20 % webhooks/s for one more write per 16 commands (4-12: less; 24-32: about
# the same).
FLUSH_AT = 16


_solo: dict[Any, bool] = {}  # command name as redis-py passes it → keeps redis-py's own path


def _is_solo(name: Any) -> bool:
    solo = _solo.get(name)
    if solo is None:
        text = name.decode() if isinstance(name, bytes) else str(name)
        solo = _solo[name] = text.partition(" ")[0].upper() in SOLO_COMMANDS
    return solo


@dataclass(eq=False)
class Batch:
    calls: list[Call]
    deadline: float | None  # loop time by which the replies must be in (kept across a resend)
    resent: bool = False

    def fail(self, error: BaseException) -> None:
        for _, _, future in self.calls:
            if not future.done():
                future.set_exception(error)

    def answer(self, replies: list[Any]) -> None:
        for (_, _, future), reply in zip(self.calls, replies, strict=True):
            if future.done():  # that caller gave up (cancelled); its reply was still read off the wire
                continue
            if isinstance(reply, BaseException):
                future.set_exception(reply)
            else:
                future.set_result(reply)


@dataclass(eq=False)
class Pipe:
    """One pipelining connection and the batches written on it whose replies are still to come."""

    connection: Connection
    sent: deque[Batch] = field(default_factory=deque)
    reading: bool = False
    closed: bool = False

    def usable(self) -> bool:
        stream = writer(self.connection)
        return not self.closed and stream is not None and not stream.transport.is_closing()


class AutoPipelineRedis(Redis):
    """A redis.asyncio.Redis whose single commands are pipelined with their neighbours.

    `batch_timeout` bounds each command, from when it is issued to its reply, connecting and one
    resend included: callers need no timeout of their own, which would cost a timer per command."""

    def __init__(self, *args: Any, batch_timeout: float | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.batch_timeout = batch_timeout
        self._queued: list[Call] = []
        self._pipe: Pipe | None = None
        self._unsent: list[Batch] = []  # flushed while (re)connecting
        self._tasks: set[asyncio.Task[None]] = set()
        self._connecting = False
        self._closed = False
        self._reader = ReplyReader(self.response_callbacks)

    @classmethod
    def from_url(
        cls,
        url: str,
        single_connection_client: bool = False,
        auto_close_connection_pool: bool | None = None,
        *,
        batch_timeout: float | None = None,
        **kwargs: Any,
    ) -> AutoPipelineRedis:
        client = super().from_url(
            url,
            single_connection_client=single_connection_client,
            auto_close_connection_pool=auto_close_connection_pool,
            **kwargs,
        )
        assert isinstance(client, AutoPipelineRedis)  # (redis-py builds `cls`)
        client.batch_timeout = batch_timeout
        return client

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        if self.single_connection_client or _is_solo(args[0]):
            return await super().execute_command(*args, **options)
        if self._closed:
            raise RedisConnectionError("Redis client closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if not self._queued:
            loop.call_soon(self._flush)
        self._queued.append((args, options, future))
        if len(self._queued) >= FLUSH_AT:
            self._flush()
        return await future

    def _flush(self) -> None:
        if not self._queued:
            return
        timeout = self.batch_timeout or self.connection_pool.connection_kwargs.get("socket_timeout")
        deadline = asyncio.get_running_loop().time() + timeout if timeout else None
        batch, self._queued = Batch(self._queued, deadline), []
        self._send(batch)

    def _send(self, batch: Batch) -> None:
        if self._closed:
            batch.fail(RedisConnectionError("Redis client closed"))
            return
        pipe = self._pipe
        if pipe is not None and not pipe.usable():
            self._drop(pipe, RedisConnectionError("Redis connection lost"))
            pipe = None
        if pipe is None:
            self._unsent.append(batch)
            if not self._connecting:
                self._connecting = True
                self._spawn(self._connect())
            return
        try:
            packed = pack(pipe.connection, batch.calls)
        except Exception:  # an argument Redis cannot take (None, a dict...): fail that command only
            batch = self._packable(pipe.connection, batch)
            if not batch.calls:
                return
            packed = pack(pipe.connection, batch.calls)
        stream = writer(pipe.connection)
        try:
            if stream is None:
                raise ConnectionResetError("not connected")
            if isinstance(packed, list):
                stream.writelines(packed)
            else:
                stream.write(packed)
        except (OSError, RuntimeError) as e:  # the transport died under us (uvloop raises here)
            self._drop(pipe, _as_redis_error(e))
            self._resend_or_fail(batch, RedisConnectionError(f"Redis connection lost: {e}"))
            return
        pipe.sent.append(batch)
        if not pipe.reading:
            pipe.reading = True
            self._spawn(self._read(pipe))

    def _packable(self, connection: Connection, batch: Batch) -> Batch:
        """The batch without its commands that cannot be packed, which fail with DataError."""
        kept = []
        for call in batch.calls:
            try:
                pack(connection, [call])
            except Exception as e:
                if not call[2].done():  # (unless its caller has given up already)
                    call[2].set_exception(DataError(f"cannot send {call[0][0]!r} to Redis: {e}"))
            else:
                kept.append(call)
        return Batch(kept, batch.deadline, batch.resent)

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)  # a strong reference until done (the loop keeps only weak ones)
        task.add_done_callback(self._tasks.discard)

    async def _connect(self) -> None:
        try:
            deadline = min((b.deadline for b in self._unsent if b.deadline is not None), default=None)
            try:
                async with asyncio.timeout_at(deadline):
                    connection: Connection = await self.connection_pool.get_connection()
            except TimeoutError as e:
                raise RedisTimeoutError("no connection to Redis within the deadline") from e
        except BaseException as e:  # every waiting caller gets the failure
            unsent, self._unsent = self._unsent, []
            for batch in unsent:  # (a resent batch was written once: Redis may have run it)
                batch.fail(_as_redis_error(e) if batch.resent else _not_sent(e))
            if isinstance(e, asyncio.CancelledError):
                raise
            return
        finally:
            self._connecting = False
        self._pipe = Pipe(connection)
        unsent, self._unsent = self._unsent, []
        for batch in unsent:
            self._send(batch)

    async def _read(self, pipe: Pipe) -> None:
        """Replies of every batch sent on `pipe`, in order, until none is outstanding."""
        try:
            while pipe.sent:
                batch = pipe.sent[0]
                try:
                    async with asyncio.timeout_at(batch.deadline):
                        replies = await self._read_replies(pipe.connection, batch.calls)
                except TimeoutError as e:
                    raise RedisTimeoutError("no reply from Redis within the deadline") from e
                pipe.sent.popleft()
                batch.answer(replies)
        except BaseException as e:
            self._drop(pipe, _as_redis_error(e))
            if isinstance(e, asyncio.CancelledError):
                raise
        finally:
            pipe.reading = False

    def _drop(self, pipe: Pipe, error: BaseException) -> None:
        """The connection cannot be trusted any more: close it, and send what was waiting on it once
        more on a new one (a broken connection) or fail it (a timeout, or a second failure)."""
        if self._pipe is pipe:
            self._pipe = None
        if pipe.closed:
            return
        pipe.closed = True
        sent, pipe.sent = list(pipe.sent), deque()
        for batch in sent:
            self._resend_or_fail(batch, error)
        self._spawn(self._close(pipe.connection))

    def _resend_or_fail(self, batch: Batch, error: BaseException) -> None:
        broken = isinstance(error, RedisConnectionError) and not isinstance(error, RedisTimeoutError)
        if broken and not batch.resent:
            batch.resent = True
            self._send(batch)
        else:
            batch.fail(error)

    async def _close(self, connection: Connection) -> None:
        with contextlib.suppress(Exception):
            await connection.disconnect()
        with contextlib.suppress(Exception):
            await self.connection_pool.release(connection)

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        self._closed = True
        closed = RedisConnectionError("Redis client closed")
        pending = [*self._unsent, Batch(self._queued, None)]
        if self._pipe is not None:
            pending += self._pipe.sent
            self._pipe.closed = True
            await self._close(self._pipe.connection)
            self._pipe = None
        for batch in pending:
            batch.fail(closed)
        self._unsent, self._queued = [], []
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await super().aclose(close_connection_pool)

    async def _read_replies(self, connection: Connection, batch: list[Call]) -> list[Any]:
        return await self._reader.read(connection, batch)


class ReplyReader:
    """Reads a batch's replies off one connection, through redis-py's response callbacks (the
    client's own table, so a callback registered later is seen too)."""

    def __init__(self, callbacks: Any) -> None:
        self.callbacks = callbacks

    async def read(self, connection: Connection, batch: list[Call]) -> list[Any]:
        """One reply per command, in order; an error reply becomes that command's exception."""
        hiredis_parts = hiredis_parser(connection)
        if hiredis_parts is None:
            return [await self._reply_or_error(connection, args[0], options) for args, options, _ in batch]
        # hiredis straight from its buffer, as _AsyncHiredisParser.read_response does, minus two layers
        # of redis-py per reply (a socket read only when the buffer runs dry).
        parser, reader, push_type = hiredis_parts
        replies: list[Any] = []
        for args, options, _ in batch:
            raw = NEVER_DECODE in options
            while True:
                reply = reader.gets(False) if raw else reader.gets()
                while reply is NOT_ENOUGH_DATA:
                    await parser.read_from_socket()
                    reply = reader.gets(False) if raw else reader.gets()
                if push_type is None or not isinstance(reply, push_type):
                    break
                await parser.handle_push_response(reply)  # out of band (RESP3): not this command's reply
            if isinstance(reply, RedisConnectionError):
                raise reply
            if isinstance(reply, ResponseError):
                replies.append(options.get(EMPTY_RESPONSE, reply))
                continue
            if args[0] not in self.callbacks:  # EVALSHA and most others: the reply as is
                replies.append(reply)
                continue
            try:
                replies.append(await self._parsed(args[0], reply, options))
            except Exception as e:  # a callback that chokes on its reply fails that command only
                replies.append(e)
        return replies

    async def _reply_or_error(self, connection: Connection, command: Any, options: dict[str, Any]) -> Any:
        try:
            return await self._parse_reply(connection, command, options)
        except ResponseError as e:
            return e

    async def _parse_reply(self, connection: Connection, command: Any, options: dict[str, Any]) -> Any:
        """Redis.parse_response, minus its per-reply timeout (the batch has one)."""
        try:
            response = await connection.read_response(
                disable_decoding=NEVER_DECODE in options, timeout=math.inf
            )
        except ResponseError:
            if EMPTY_RESPONSE in options:
                return options[EMPTY_RESPONSE]
            raise
        return await self._parsed(command, response, options)

    async def _parsed(self, command: Any, response: Any, options: dict[str, Any]) -> Any:
        """A reply through redis-py's response callback for its command, as Redis.parse_response does."""
        callback = self.callbacks.get(command)
        if callback is None:
            return response
        extra = {k: v for k, v in options.items() if k not in (NEVER_DECODE, EMPTY_RESPONSE, "keys")}
        parsed = callback(response, **extra)
        return await parsed if inspect.isawaitable(parsed) else parsed


def pack(connection: Connection, batch: list[Call]) -> bytes | list[bytes]:
    """A batch as bytes for one write: hiredis packs utf-8 commands (fast), redis-py any other encoding."""
    encoder = connection.encoder
    if encoder.encoding.lower().replace("-", "") != "utf8" or encoder.encoding_errors != "strict":
        return connection.pack_commands(args for args, _, _ in batch)  # another encoding: redis-py packs
    return b"".join(hiredis.pack_command(_split_name(args)) for args, _, _ in batch)


def _as_redis_error(error: BaseException) -> BaseException:
    """A socket error under hiredis (ECONNRESET...) as the redis ConnectionError redis-py's own read
    path would raise: callers handle RedisError, and a broken connection is worth one resend."""
    if isinstance(error, OSError) and not isinstance(error, RedisConnectionError):
        wrapped = RedisConnectionError(f"Redis connection lost: {error}")
        wrapped.__cause__ = error
        return wrapped
    return error


def _not_sent(error: BaseException) -> NotSent:
    not_sent = NotSent(f"Redis not reached: {type(error).__name__}: {error}")
    not_sent.__cause__ = error
    return not_sent


def _split_name(args: tuple[Any, ...]) -> tuple[Any, ...]:
    """redis-py writes some commands as one word ("SCRIPT LOAD"); Redis wants two."""
    name = args[0]
    if (" " in name) if isinstance(name, str) else (b" " in name):
        return (*name.split(), *args[1:])
    return args
