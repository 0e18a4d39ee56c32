"""Automatic pipelining for the standalone Redis client: every command issued during one event-loop
iteration, by any coroutine, goes to Redis in ONE write, on ONE long-lived connection that carries
batch after batch without waiting for the previous replies, and the replies are read back in order by
one reader task and parsed exactly as redis-py parses them.

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
from dataclasses import dataclass
from typing import Any

import hiredis
from redis._parsers.hiredis import NOT_ENOUGH_DATA, _AsyncHiredisParser
from redis.asyncio import Redis
from redis.asyncio.connection import Connection
from redis.client import EMPTY_RESPONSE, NEVER_DECODE
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

# Never share a connection with these: they block it, or change state other callers would inherit.
SOLO_COMMANDS = frozenset({
    "WAIT", "WAITAOF", "BLPOP", "BRPOP", "BRPOPLPUSH", "BLMOVE", "BLMPOP", "BZPOPMIN", "BZPOPMAX",
    "BZMPOP", "XREAD", "XREADGROUP", "SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE", "MONITOR", "SELECT", "AUTH",
    "HELLO", "CLIENT", "RESET", "QUIT", "MULTI", "EXEC", "DISCARD", "WATCH", "UNWATCH", "DEBUG", "SHUTDOWN",
})  # fmt: skip

Call = tuple[tuple[Any, ...], dict[str, Any], "asyncio.Future[Any]"]


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


class AutoPipelineRedis(Redis):
    """A redis.asyncio.Redis whose single commands are pipelined with their neighbours.

    `batch_timeout` bounds the wait for a batch's connection and for its replies: callers need no
    timeout of their own, which would cost a timer per command."""

    def __init__(self, *args: Any, batch_timeout: float | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.batch_timeout = batch_timeout
        self._queued: list[Call] = []
        self._connection: Connection | None = None
        self._unsent: list[Batch] = []  # flushed while (re)connecting
        self._sent: deque[Batch] = deque()  # written, replies not read yet, oldest first
        self._tasks: set[asyncio.Task[None]] = set()
        self._connecting = False
        self._reader_for: Connection | None = None  # the connection a reader task is serving

    @classmethod
    def from_url(cls, url: str, *, batch_timeout: float | None = None, **kwargs: Any) -> AutoPipelineRedis:
        client = super().from_url(url, **kwargs)
        client.batch_timeout = batch_timeout
        return client

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        if self.single_connection_client or _is_solo(args[0]):
            return await super().execute_command(*args, **options)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if not self._queued:
            loop.call_soon(self._flush)
        self._queued.append((args, options, future))
        return await future

    def _flush(self) -> None:
        batch, self._queued = Batch(self._queued), []
        self._send(batch)

    def _send(self, batch: Batch) -> None:
        connection = self._connection
        if connection is None or not connection.is_connected:
            self._unsent.append(batch)
            if not self._connecting:
                self._connecting = True
                self._spawn(self._connect())
            return
        packed = self._pack(connection, batch.calls)
        try:
            if isinstance(packed, list):
                connection._writer.writelines(packed)
            else:
                connection._writer.write(packed)
        except (OSError, RuntimeError) as e:  # a transport already closed
            batch.fail(RedisConnectionError(f"Redis connection lost: {e}"))
            return
        self._sent.append(batch)
        if self._reader_for is not connection:
            self._reader_for = connection
            self._spawn(self._read(connection))

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)  # a strong reference until done (the loop keeps only weak ones)
        task.add_done_callback(self._tasks.discard)

    def _deadline(self, connection: Connection | None = None) -> float | None:
        return self.batch_timeout or (connection.socket_timeout if connection else None)

    async def _connect(self) -> None:
        try:
            try:
                async with asyncio.timeout(self._deadline()):
                    try:
                        connection: Connection = await self.connection_pool.get_connection()
                    except TypeError:  # redis-py < 5.3 wants a command name
                        connection = await self.connection_pool.get_connection("PING")
            except TimeoutError as e:
                raise RedisTimeoutError(f"no connection to Redis within {self._deadline()}s") from e
        except BaseException as e:  # every waiting caller gets the failure
            unsent, self._unsent = self._unsent, []
            for batch in unsent:
                batch.fail(_as_redis_error(e))
            if isinstance(e, asyncio.CancelledError):
                raise
            return
        finally:
            self._connecting = False
        self._connection = connection
        unsent, self._unsent = self._unsent, []
        for batch in unsent:
            self._send(batch)

    async def _read(self, connection: Connection) -> None:
        """Replies of every batch sent on `connection`, in order, until none is outstanding."""
        try:
            while self._sent:
                batch = self._sent[0]
                try:
                    async with asyncio.timeout(self._deadline(connection)):
                        replies = await self._read_replies(connection, batch.calls)
                except TimeoutError as e:
                    deadline = self._deadline(connection)
                    raise RedisTimeoutError(f"no reply from Redis within {deadline}s") from e
                self._sent.popleft()
                batch.answer(replies)
        except BaseException as e:
            await self._lost(connection, _as_redis_error(e))
            if isinstance(e, asyncio.CancelledError):
                raise
        finally:
            if self._reader_for is connection:
                self._reader_for = None

    async def _lost(self, connection: Connection, error: BaseException) -> None:
        """The connection cannot be trusted any more: drop it, and send what was waiting on it once
        more on a new one (a broken connection) or fail it (a timeout, or a second failure)."""
        if self._connection is connection:
            self._connection = None
        if self._reader_for is connection:
            self._reader_for = None
        sent, self._sent = list(self._sent), deque()
        with contextlib.suppress(Exception):
            await connection.disconnect()
            await self.connection_pool.release(connection)
        retry = isinstance(error, RedisConnectionError) and not isinstance(error, RedisTimeoutError)
        for batch in sent:
            if retry and not batch.resent:
                batch.resent = True
                self._send(batch)
            else:
                batch.fail(error)

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        closed = RedisConnectionError("Redis client closed")
        for batch in [*self._unsent, *self._sent, Batch(self._queued)]:
            batch.fail(closed)
        self._unsent, self._sent, self._queued = [], deque(), []
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._connection is not None:
            connection, self._connection = self._connection, None
            with contextlib.suppress(Exception):
                await connection.disconnect()
                await self.connection_pool.release(connection)
        await super().aclose(close_connection_pool)

    async def _read_replies(self, connection: Connection, batch: list[Call]) -> list[Any]:
        """One reply per command, in order; an error reply becomes that command's exception."""
        parser = connection._parser
        if not isinstance(parser, _AsyncHiredisParser):
            return [await self._reply_or_error(connection, args[0], options) for args, options, _ in batch]
        # hiredis straight from its buffer, as _AsyncHiredisParser.read_response does, minus two layers
        # of redis-py per reply (a socket read only when the buffer runs dry).
        reader = parser._reader
        push_type = parser._hiredis_PushNotificationType
        callbacks = self.response_callbacks
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
            callback = callbacks.get(args[0])
            if callback is not None:
                extra = {k: v for k, v in options.items() if k not in (NEVER_DECODE, EMPTY_RESPONSE, "keys")}
                reply = callback(reply, **extra)
                if inspect.isawaitable(reply):
                    reply = await reply
            replies.append(reply)
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
        callback = self.response_callbacks.get(command)
        if callback is None:
            return response
        extra = {k: v for k, v in options.items() if k not in (NEVER_DECODE, EMPTY_RESPONSE, "keys")}
        parsed = callback(response, **extra)
        return await parsed if inspect.isawaitable(parsed) else parsed

    @staticmethod
    def _pack(connection: Connection, batch: list[Call]) -> bytes | list[bytes]:
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


def _split_name(args: tuple[Any, ...]) -> tuple[Any, ...]:
    """redis-py writes some commands as one word ("SCRIPT LOAD"); Redis wants two."""
    name = args[0]
    if (" " in name) if isinstance(name, str) else (b" " in name):
        return (*name.split(), *args[1:])
    return args
