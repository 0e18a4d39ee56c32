"""Automatic pipelining for the standalone Redis client: every command issued during one event-loop
iteration, by any coroutine, goes to Redis in ONE write on ONE pooled connection, and the replies are
read back in order and parsed exactly as redis-py parses them.

Why: redis-py spends ~100 µs of Python per command (pool lock, a retry wrapper, an asyncio.wait_for task
per write, a timeout context per read, packing in Python). That was most of the bridge's CPU per webhook,
and ~700 µs per Slack post (a delivery makes ~7 small calls). A batch pays the fixed part once, and
hiredis packs the commands in C. Batches form by themselves under load (aiohttp decodes many requests
per loop iteration, delivery workers run side by side); a lone command is sent on the next iteration
(call_soon, no timer), so nothing waits for company. Same idea as ioredis' enableAutoPipelining.

Commands that block a connection (WAIT, BLPOP...) or change its state (SELECT, CLIENT...) keep redis-py's
own path, as do explicit pipelines and transactions. Cluster mode uses RedisCluster, not this class.
"""

from __future__ import annotations

import asyncio
import inspect
import math
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


class AutoPipelineRedis(Redis):
    """A redis.asyncio.Redis whose single commands are pipelined with their neighbours.

    `batch_timeout` bounds a whole batch, retry included (connect, write, every reply): callers need
    no timeout of their own, which would cost a timer per command."""

    def __init__(self, *args: Any, batch_timeout: float | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.batch_timeout = batch_timeout
        self._queued: list[Call] = []
        self._batches: set[asyncio.Task[None]] = set()

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
        batch, self._queued = self._queued, []
        task = asyncio.ensure_future(self._send(batch))
        self._batches.add(task)  # a strong reference until done (the loop keeps only weak ones)
        task.add_done_callback(self._batches.discard)

    async def _send(self, batch: list[Call]) -> None:
        try:
            try:
                async with asyncio.timeout(self.batch_timeout):
                    try:
                        replies = await self._round_trip(batch)
                    except RedisConnectionError:
                        # Typically a pooled connection the server closed (restart, idle timeout): one
                        # more try on a fresh one, as redis-py's own retry would do for one command.
                        replies = await self._round_trip(batch)
            except TimeoutError as e:
                raise RedisTimeoutError(f"no answer from Redis within {self.batch_timeout}s") from e
        except BaseException as e:  # every caller of the batch gets the failure
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(e)
            if isinstance(e, asyncio.CancelledError):
                raise
            return
        for (_, _, future), reply in zip(batch, replies, strict=True):
            if future.done():  # that caller gave up (cancelled); its reply was still read off the wire
                continue
            if isinstance(reply, BaseException):
                future.set_exception(reply)
            else:
                future.set_result(reply)

    async def _round_trip(self, batch: list[Call]) -> list[Any]:
        """Write every command of the batch at once; parse one reply per command, in order (an error
        reply becomes that command's exception, the others are unaffected)."""
        pool = self.connection_pool
        try:
            connection: Connection = await pool.get_connection()
        except TypeError:  # redis-py < 5.3 wants a command name
            connection = await pool.get_connection("PING")
        complete = False
        try:
            await connection.send_packed_command(self._pack(connection, batch))
            try:
                # One deadline for the whole batch, not a timeout context per reply.
                async with asyncio.timeout(connection.socket_timeout):
                    replies = await self._read_replies(connection, batch)
            except TimeoutError as e:
                raise RedisTimeoutError(f"no reply from Redis within {connection.socket_timeout}s") from e
            complete = True
            return replies
        finally:
            if not complete:  # replies may still be on the way: this connection cannot be reused
                await connection.disconnect()
            await pool.release(connection)

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


def _split_name(args: tuple[Any, ...]) -> tuple[Any, ...]:
    """redis-py writes some commands as one word ("SCRIPT LOAD"); Redis wants two."""
    name = args[0]
    if (" " in name) if isinstance(name, str) else (b" " in name):
        return (*name.split(), *args[1:])
    return args
