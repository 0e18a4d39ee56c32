"""The bridge's Redis client pipelines concurrent single commands (bridge/autopipeline.py): one round trip
for many, same answers as redis-py, errors kept per command, and it recovers like redis-py does."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import uvloop
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import DataError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from bridge.app import redis_client
from bridge.autopipeline import FLUSH_AT, AutoPipelineRedis, Batch
from bridge.embedded import EmbeddedValkey


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[AutoPipelineRedis]:
    redis = redis_client(redis_url, cluster=False)
    assert isinstance(redis, AutoPipelineRedis)  # what the bridge runs with
    try:
        yield redis
    finally:
        await redis.aclose()


async def reads_processed(observer: Redis) -> int:
    """Client socket reads the server did so far (one per round trip, whatever it carried)."""
    return int((await observer.info("stats"))["total_reads_processed"])


async def test_concurrent_commands_share_one_round_trip_and_answer_like_redis_py(
    client: AutoPipelineRedis, redis_url: str
) -> None:
    observer = Redis.from_url(redis_url)
    await client.ping()  # both connected: handshakes are not what we count
    before = await reads_processed(observer)
    answers = await asyncio.gather(
        *(client.hset(f"h{i}", mapping={"n": i, "name": f"é{i}"}) for i in range(50)),
        *(client.hgetall(f"h{i}") for i in range(50)),
        client.set("s", "v", nx=True),
        client.set("s", "w", nx=True),
        client.zadd("z", {"a": 1.5}),
        client.zrangebyscore("z", "-inf", "+inf", withscores=True),
    )
    reads = await reads_processed(observer) - before
    await observer.aclose()
    # 104 commands in batches of FLUSH_AT, written in the same turn (plus the observer's INFO)
    assert reads <= -(-104 // FLUSH_AT) + 1, reads
    assert answers[:50] == [2] * 50
    assert answers[50:100] == [{b"n": str(i).encode(), b"name": f"é{i}".encode()} for i in range(50)]
    assert answers[100:] == [True, None, 1, [(b"a", 1.5)]]  # redis-py's response callbacks applied


async def test_an_error_reply_fails_its_own_command_only(client: AutoPipelineRedis) -> None:
    await client.set("text", "not a number")
    results = await asyncio.gather(
        client.incr("counter"), client.incr("text"), client.incr("counter"), return_exceptions=True
    )
    assert results[0] == 1 and results[2] == 2
    assert isinstance(results[1], ResponseError)


async def test_scripts_are_reloaded_after_the_script_cache_is_flushed(client: AutoPipelineRedis) -> None:
    script = client.register_script("return redis.call('INCR', KEYS[1])")
    assert await script(keys=["k"]) == 1
    await client.script_flush()  # as after a restart or a failover: EVALSHA answers NOSCRIPT
    assert await asyncio.gather(script(keys=["k"]), script(keys=["k"])) == [2, 3]


async def test_a_connection_killed_by_the_server_is_replaced_transparently(
    client: AutoPipelineRedis, redis_url: str
) -> None:
    await client.set("a", "1")
    killer = Redis.from_url(redis_url)
    try:  # as a server restart or an idle timeout does to pooled connections
        killed = await killer.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
    finally:
        await killer.aclose()
    assert killed >= 1
    assert await asyncio.gather(client.get("a"), client.incr("b")) == [b"1", 1]


async def test_blocking_commands_keep_a_connection_of_their_own(client: AutoPipelineRedis) -> None:
    waiting = asyncio.create_task(client.blpop(["queue"], timeout=2))
    await asyncio.sleep(0.05)
    assert await client.set("x", "1") is True  # not stuck behind the BLPOP
    assert await client.rpush("queue", "item") == 1
    assert tuple(await waiting) == (b"queue", b"item")


async def test_every_caller_gets_the_error_while_redis_is_down(tmp_path: Path) -> None:
    server = EmbeddedValkey(tmp_path / "valkey")
    url = await server.start()
    redis = redis_client(url, cluster=False)
    try:
        assert await redis.ping() is True
        await server.stop()
        results = await asyncio.gather(redis.get("a"), redis.set("b", "1"), return_exceptions=True)
        assert all(isinstance(r, RedisConnectionError) for r in results), results
        await server.start()
        assert await redis.set("b", "1") is True  # and it recovers by itself
    finally:
        await redis.aclose()
        await server.stop()


async def test_a_turns_batch_leaves_once_it_holds_flush_at_commands(
    client: AutoPipelineRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis starts on the first commands of a busy turn while the loop still prepares the rest."""
    await client.ping()  # connected: batches flushed while connecting are sent again once it is up
    sizes: list[int] = []
    send = client._send

    def counted(batch: Batch) -> None:
        sizes.append(len(batch.calls))
        send(batch)

    monkeypatch.setattr(client, "_send", counted)
    count = 2 * FLUSH_AT + 5
    assert await asyncio.gather(*(client.incr("n") for _ in range(count))) == list(range(1, count + 1))
    assert sizes == [FLUSH_AT, FLUSH_AT, 5]


async def test_batches_follow_each_other_on_one_connection_without_waiting_for_replies(
    client: AutoPipelineRedis, redis_url: str
) -> None:
    observer = Redis.from_url(redis_url)
    await observer.ping()
    baseline = int((await observer.info("clients"))["connected_clients"])
    pending = []
    for i in range(20):  # a new batch every loop iteration, while earlier ones are still unanswered
        pending.append(asyncio.ensure_future(client.incr("n")))
        pending.append(asyncio.ensure_future(client.rpush("order", i)))
        await asyncio.sleep(0)
    results = await asyncio.gather(*pending)
    clients = int((await observer.info("clients"))["connected_clients"])
    order = await observer.lrange("order", 0, -1)
    await observer.aclose()
    assert sorted(results[0::2]) == list(range(1, 21))
    assert order == [str(i).encode() for i in range(20)]  # one connection keeps them in order
    assert clients - baseline <= 1, clients - baseline


async def test_a_stalled_server_fails_callers_within_the_deadline_and_the_client_recovers(
    tmp_path: Path,
) -> None:
    server = EmbeddedValkey(tmp_path / "valkey")
    url = await server.start()
    redis = AutoPipelineRedis.from_url(url, batch_timeout=0.3)
    try:
        assert await redis.set("a", "1") is True
        assert server.pid is not None
        os.kill(server.pid, signal.SIGSTOP)  # alive but silent, as during a long fork or a network stall
        try:
            started = time.monotonic()
            results = await asyncio.gather(redis.get("a"), redis.incr("b"), return_exceptions=True)
            waited = time.monotonic() - started
        finally:
            os.kill(server.pid, signal.SIGCONT)
        assert all(isinstance(r, RedisTimeoutError) for r in results), results
        assert waited < 1.5, waited
        # The stalled connection was dropped: its late replies cannot be taken for new commands' ones.
        # (The timed-out commands may still have run, as with any client: the INCR did reach Redis.)
        assert await asyncio.gather(redis.get("a"), redis.set("c", "x"), redis.get("c")) == [b"1", True, b"x"]
    finally:
        await redis.aclose()
        await server.stop()


async def test_a_caller_cancelled_mid_flight_does_not_shift_the_replies_of_others(
    client: AutoPipelineRedis,
) -> None:
    await client.set("k", "v")
    doomed = asyncio.ensure_future(client.get("k"))
    await asyncio.sleep(0)  # queued and about to be written
    doomed.cancel()
    assert await asyncio.gather(client.get("k"), client.set("k2", "w"), client.get("k2")) == [
        b"v",
        True,
        b"w",
    ]
    assert doomed.cancelled()


async def test_a_reset_connection_reaches_callers_as_a_redis_error_after_one_resend(
    client: AutoPipelineRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A socket error under hiredis (ECONNRESET when Redis dies) is what redis-py would raise, a
    redis ConnectionError: the webhook answers 503 for it, never 500. The batch is sent once more."""
    await client.set("k", "v")
    resets = 1
    real_read = AutoPipelineRedis._read_replies

    async def read_or_reset(self: AutoPipelineRedis, connection: Any, calls: list[Any]) -> list[Any]:
        nonlocal resets
        if resets:
            resets -= 1
            raise ConnectionResetError(104, "Connection reset by peer")
        return await real_read(self, connection, calls)

    monkeypatch.setattr(AutoPipelineRedis, "_read_replies", read_or_reset)
    assert await client.get("k") == b"v"  # one reset: resent on a new connection
    resets = 2  # the resend breaks too: the caller gets a redis error, not an OSError
    with pytest.raises(RedisConnectionError):
        await client.get("k")


async def test_a_command_that_cannot_be_sent_fails_alone(client: AutoPipelineRedis) -> None:
    results = await asyncio.gather(
        client.set("a", "1"),
        client.execute_command("SET", "b", None),
        client.get("a"),
        return_exceptions=True,
    )
    assert results[0] is True and results[2] == b"1"
    assert isinstance(results[1], DataError)
    assert await client.get("b") is None


def test_a_transport_closed_under_uvloop_is_replaced_not_written_to(redis_url: str) -> None:
    """uvloop raises on a write to a closed transport (stock asyncio ignores it): the client must take
    that as a lost connection and carry on with a new one, not fail every later command."""

    async def scenario() -> list[Any]:
        redis = redis_client(redis_url, cluster=False)
        try:
            await redis.set("a", "1")
            assert isinstance(redis, AutoPipelineRedis) and redis._pipe is not None
            redis._pipe.connection._writer.transport.abort()  # as an RST from a proxy would
            await asyncio.sleep(0.01)
            return [await redis.get("a"), await redis.incr("n"), await redis.get("a")]
        finally:
            await redis.aclose()

    assert uvloop.run(scenario()) == [b"1", 1, b"1"]


async def test_a_closed_client_answers_at_once_and_opens_nothing(client: AutoPipelineRedis) -> None:
    await client.set("a", "1")
    await client.aclose()
    with pytest.raises(RedisConnectionError):
        await client.get("a")
    assert client._pipe is None and not client._tasks
