"""The harness works and can fail: real valkey processes, the fake Slack (through the real slack-sdk),
the fake reply endpoint, and the cluster's formation and failover."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as aredis
from redis.asyncio.cluster import RedisCluster
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bridge.embedded import EmbeddedValkey, EmbeddedValkeyError, free_port
from tests.conftest import fresh_redis_url
from tests.harness import wait_until
from tests.harness.fake_reply import DEFAULT_SECRET, SIGNATURE_HEADER, TIMESTAMP_HEADER, FakeReply, sign
from tests.harness.fake_slack import BOT_USER_ID, DEFAULT_TOKEN, FakeSlack
from tests.harness.valkey import ValkeyCluster

CHANNEL = "C0SUPPORT"


def _pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def slack(fake: FakeSlack, token: str = DEFAULT_TOKEN, **kwargs) -> AsyncWebClient:
    return AsyncWebClient(token=token, base_url=fake.url, timeout=5, **kwargs)


# -- embedded valkey -----------------------------------------------------------------------------


def test_free_port_is_bindable() -> None:
    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
    bus_port = free_port(cluster_bus=True)
    assert bus_port + 10000 <= 65535
    assert port != free_port()


async def test_embedded_start_stop_kill(tmp_path: Path) -> None:
    server = EmbeddedValkey(tmp_path / "data")
    try:
        url = await server.start()
        assert url == f"redis://127.0.0.1:{server.port}/0" == server.url
        pid = server.pid
        assert pid is not None and _pid_alive(pid)
        client = aredis.Redis.from_url(url, decode_responses=True)
        try:
            assert await client.ping()
            assert await client.config_get("appendonly") == {"appendonly": "yes"}
            assert await client.config_get("save") == {"save": ""}
        finally:
            await client.aclose()
        await server.stop()
        assert server.pid is None and not _pid_alive(pid)
        await server.stop()  # idempotent

        await server.start()
        pid = server.pid
        assert pid is not None
        server.kill()
        await wait_until(lambda: not server.running, 5)
        assert server.returncode == -9
        await server.stop()
        assert not _pid_alive(pid)
    finally:
        await server.stop()


async def test_embedded_aof_survives_restart(tmp_path: Path) -> None:
    server = EmbeddedValkey(tmp_path / "aof")
    try:
        await server.start()
        client = aredis.Redis.from_url(server.url)
        await client.set("bridge:test:key", "persisted")
        await client.aclose()
    finally:
        await server.stop()

    again = EmbeddedValkey(tmp_path / "aof")
    try:
        await again.start()
        client = aredis.Redis.from_url(again.url)
        assert await client.get("bridge:test:key") == b"persisted"
        await client.aclose()
    finally:
        await again.stop()


async def test_embedded_failure_is_explained(tmp_path: Path) -> None:
    bad = EmbeddedValkey(tmp_path / "bad", extra_args=["--no-such-directive", "x"])
    try:
        with pytest.raises(EmbeddedValkeyError, match="no-such-directive"):
            await bad.start(timeout_s=5)
        assert not bad.running
    finally:
        await bad.stop()

    first = EmbeddedValkey(tmp_path / "first")
    await first.start()
    try:
        clash = EmbeddedValkey(tmp_path / "clash", port=first.port)
        with pytest.raises(EmbeddedValkeyError, match="already in use"):
            await clash.start(timeout_s=5)
        assert not clash.running
        await clash.stop()
    finally:
        await first.stop()


async def test_redis_url_fixture_hands_each_test_an_empty_server(valkey_server: EmbeddedValkey) -> None:
    client = aredis.Redis.from_url(valkey_server.url)
    try:
        await client.set("leftover", "1")  # what an earlier test could have left
        assert await fresh_redis_url(valkey_server) == valkey_server.url
        assert await client.dbsize() == 0
    finally:
        await client.aclose()


# -- fake Slack through the real slack-sdk --------------------------------------------------------


async def test_slack_post_thread_update_and_read(fake_slack: FakeSlack) -> None:
    client = slack(fake_slack)
    auth = await client.auth_test()
    assert auth["user_id"] == BOT_USER_ID and auth["bot_id"] == "BBRIDGE"

    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*New handover*"}}]
    metadata = {"event_type": "handover_opened", "event_payload": {"conv": "skill:client"}}
    root = await client.chat_postMessage(
        channel=CHANNEL, text="New handover", blocks=blocks, metadata=metadata
    )
    assert root["ok"] and root["channel"] == CHANNEL and root["message"]["metadata"] == metadata
    r1 = await client.chat_postMessage(channel=CHANNEL, thread_ts=root["ts"], text="user: hello")
    r2 = await client.chat_postMessage(channel=CHANNEL, thread_ts=root["ts"], text="user: anyone?")
    assert root["ts"] < r1["ts"] < r2["ts"]
    await client.chat_postMessage(channel=CHANNEL, text="another root")

    await client.chat_update(channel=CHANNEL, ts=root["ts"], text="Handover (claimed)", blocks=[])
    assert fake_slack.thread(CHANNEL, root["ts"]) == ["Handover (claimed)", "user: hello", "user: anyone?"]
    assert [m.text for m in fake_slack.roots(CHANNEL)] == ["Handover (claimed)", "another root"]
    assert len(fake_slack.posts()) == 4 and len(fake_slack.posts("C0OTHER")) == 0
    assert fake_slack.posts(CHANNEL)[0].blocks is None  # updated with an empty list: blocks cleared

    agent = fake_slack.add_message(CHANNEL, "agent here", thread_ts=root["ts"])
    replies = await client.conversations_replies(channel=CHANNEL, ts=root["ts"], include_all_metadata=True)
    texts = [m["text"] for m in replies["messages"]]
    assert texts == ["Handover (claimed)", "user: hello", "user: anyone?", "agent here"]
    assert replies["messages"][0]["metadata"] == metadata
    assert replies["messages"][0]["reply_count"] == 3
    assert replies["messages"][3]["user"] == agent.user and "bot_id" not in replies["messages"][3]
    page = await client.conversations_replies(channel=CHANNEL, ts=root["ts"], limit=2)
    assert page["has_more"] and page["response_metadata"]["next_cursor"]
    rest = await client.conversations_replies(
        channel=CHANNEL, ts=root["ts"], limit=2, cursor=page["response_metadata"]["next_cursor"]
    )
    assert [m["text"] for m in page["messages"] + rest["messages"]] == texts

    history = await client.conversations_history(channel=CHANNEL, oldest=root["ts"], inclusive=True)
    assert [m["text"] for m in history["messages"]] == ["another root", "Handover (claimed)"]
    history = await client.conversations_history(channel=CHANNEL, oldest=root["ts"])
    assert [m["text"] for m in history["messages"]] == ["another root"]

    with pytest.raises(SlackApiError) as err:
        await client.conversations_replies(channel=CHANNEL, ts="1.000001")
    assert err.value.response["error"] == "thread_not_found"

    post = fake_slack.calls_to("chat.postMessage")[0]
    assert post.params["blocks"] == blocks and post.status == 200
    assert [c.method for c in fake_slack.calls][:2] == ["auth.test", "chat.postMessage"]


async def test_slack_users_ephemeral_unknown_and_auth(fake_slack: FakeSlack) -> None:
    client = slack(fake_slack)
    user = (await client.users_info(user="UAGENT01"))["user"]
    assert user["id"] == "UAGENT01" and user["profile"]["display_name"] == "Alice"
    assert user["real_name"] == user["profile"]["real_name"] == "Alice Martin"
    fake_slack.add_user("UNEW", "carol", real_name="Carol C")
    assert (await client.users_info(user="UNEW"))["user"]["name"] == "carol"
    with pytest.raises(SlackApiError) as err:
        await client.users_info(user="UNOBODY")
    assert err.value.response["error"] == "user_not_found"

    eph = await client.chat_postEphemeral(channel=CHANNEL, user="UAGENT01", text="only you")
    assert eph["ok"] and fake_slack.ephemerals[0]["text"] == "only you"

    with pytest.raises(SlackApiError) as err:
        await client.api_call("chat.nope", json={"channel": CHANNEL})
    assert err.value.response["error"] == "unknown_method"

    for token in ("xoxb-wrong", None):
        with pytest.raises(SlackApiError) as err:
            await slack(fake_slack, token=token).chat_postMessage(channel=CHANNEL, text="x")
        assert err.value.response["error"] == "invalid_auth"

    # form-encoded body with the token as a field (older callers) is accepted too
    form = {"token": DEFAULT_TOKEN, "channel": CHANNEL, "text": "form", "metadata": json.dumps({"x": 1})}
    with pytest.raises(SlackApiError) as err:  # metadata without event_type/event_payload
        await AsyncWebClient(base_url=fake_slack.url).api_call("chat.postMessage", data=form)
    assert err.value.response["error"] == "invalid_metadata_format"
    form["metadata"] = json.dumps({"event_type": "t", "event_payload": {"a": 1}})
    ok = await AsyncWebClient(base_url=fake_slack.url).api_call("chat.postMessage", data=form)
    assert ok["ok"] and fake_slack.posts(CHANNEL)[-1].metadata == {
        "event_type": "t",
        "event_payload": {"a": 1},
    }

    with pytest.raises(SlackApiError) as err:
        await client.chat_postMessage(channel=CHANNEL, text="x" * 40_001)
    assert err.value.response["error"] == "msg_too_long"
    assert len(fake_slack.posts()) == 1  # failed posts are not messages


async def test_slack_429_window_with_retry_after(fake_slack: FakeSlack) -> None:
    client = slack(fake_slack)
    fake_slack.rate_limit_for(0.5, retry_after=7)
    with pytest.raises(SlackApiError) as err:
        await client.chat_postMessage(channel=CHANNEL, text="too soon")
    assert err.value.response.status_code == 429
    assert err.value.response.headers["Retry-After"] == "7"
    assert err.value.response["error"] == "ratelimited"
    assert fake_slack.calls[-1].status == 429 and fake_slack.posts() == []
    await asyncio.sleep(0.55)
    assert (await client.chat_postMessage(channel=CHANNEL, text="later"))["ok"]


async def test_slack_enforced_rate_per_channel(fake_slack: FakeSlack) -> None:
    client = slack(fake_slack)
    fake_slack.enforce_rate(per_channel_per_s=2.0, burst=1)
    assert (await client.chat_postMessage(channel=CHANNEL, text="1"))["ok"]
    with pytest.raises(SlackApiError) as err:
        await client.chat_postMessage(channel=CHANNEL, text="2")
    assert err.value.response.status_code == 429 and err.value.response.headers["Retry-After"] == "1"
    assert (await client.chat_postMessage(channel="C0OTHER", text="other channel"))["ok"]
    assert fake_slack.rate_violations == 1 and fake_slack.rate_violations_by_channel == {CHANNEL: 1}
    await asyncio.sleep(0.55)
    assert (await client.chat_postMessage(channel=CHANNEL, text="3"))["ok"]
    fake_slack.reset_counters()
    assert fake_slack.rate_violations == 0 and fake_slack.calls == []


async def test_slack_5xx_channel_errors_and_latency(fake_slack: FakeSlack) -> None:
    client = slack(fake_slack)
    fake_slack.fail_with_status(500, times=2)
    for _ in range(2):
        with pytest.raises(SlackApiError) as err:
            await client.chat_postMessage(channel=CHANNEL, text="x")
        assert err.value.response.status_code == 500
    assert (await client.chat_postMessage(channel=CHANNEL, text="x"))["ok"]

    fake_slack.fail_with_status(503, for_s=0.3, methods=["chat.update"])
    assert (await client.auth_test())["ok"]
    fake_slack.reset_faults()

    fake_slack.add_channel("C0GONE")
    fake_slack.fail_channel("C0GONE")
    with pytest.raises(SlackApiError) as err:
        await client.chat_postMessage(channel="C0GONE", text="x")
    assert err.value.response.status_code == 200 and err.value.response["error"] == "channel_not_found"
    fake_slack.fail_channel("C0GONE", error=None)
    assert (await client.chat_postMessage(channel="C0GONE", text="x"))["ok"]

    fake_slack.delay(0.3)
    started = time.monotonic()
    await client.auth_test()
    assert time.monotonic() - started >= 0.3
    with pytest.raises(TimeoutError):
        await AsyncWebClient(token=DEFAULT_TOKEN, base_url=fake_slack.url, timeout=0.1).auth_test()


async def test_slack_goes_down_and_comes_back_on_same_port(fake_slack: FakeSlack) -> None:
    client = slack(fake_slack)
    posted = await client.chat_postMessage(channel=CHANNEL, text="before")
    port = fake_slack.port
    await fake_slack.go_down()
    with pytest.raises(aiohttp.ClientConnectorError):
        await client.chat_postMessage(channel=CHANNEL, text="while down")
    await fake_slack.come_back()
    assert fake_slack.port == port
    assert (await client.chat_postMessage(channel=CHANNEL, text="after", thread_ts=posted["ts"]))["ok"]
    assert fake_slack.thread(CHANNEL, posted["ts"]) == ["before", "after"]


async def test_slack_go_down_drops_keepalive_connections(fake_slack: FakeSlack) -> None:
    async with aiohttp.ClientSession() as session:
        client = slack(fake_slack, session=session)
        assert (await client.auth_test())["ok"]  # the pooled connection is now open
        await fake_slack.go_down()
        with pytest.raises(aiohttp.ClientError):
            await client.auth_test()
        await fake_slack.come_back()
        assert (await client.auth_test())["ok"]


# -- fake reply endpoint --------------------------------------------------------------------------


async def _post(url: str, body: bytes, headers: dict[str, str]) -> int:
    async with aiohttp.ClientSession() as session, session.post(url, data=body, headers=headers) as resp:
        return resp.status


def _signed(body: bytes, secret: str = DEFAULT_SECRET) -> dict[str, str]:
    ts = str(int(time.time()))
    return {
        "Content-Type": "application/json",
        TIMESTAMP_HEADER: ts,
        SIGNATURE_HEADER: sign(secret, ts, body),
    }


async def test_reply_signature_checked(fake_reply: FakeReply) -> None:
    body = json.dumps({"conversation": "skill:client", "text": "hi"}).encode()
    assert await _post(fake_reply.url, body, _signed(body)) == 200
    assert await _post(fake_reply.url, body, _signed(body, secret="wrong")) == 200
    tampered = _signed(body)
    assert await _post(fake_reply.url, body + b" ", tampered) == 200
    assert await _post(fake_reply.url, body, {"Content-Type": "application/json"}) == 200
    assert [r.signature_valid for r in fake_reply.received()] == [True, False, False, False]
    first = fake_reply.received()[0]
    assert first.json == {"conversation": "skill:client", "text": "hi"} and first.body == body
    assert first.headers[SIGNATURE_HEADER.lower()].startswith("v1=")

    fake_reply.set_reject_invalid()
    assert await _post(fake_reply.url, body, _signed(body, secret="wrong")) == 401
    assert await _post(fake_reply.url, body, _signed(body)) == 200

    unsigned = FakeReply()  # no secret: nothing to verify
    await unsigned.start()
    try:
        assert await _post(unsigned.url, body, {}) == 200
        assert unsigned.received()[0].signature_valid is None
    finally:
        await unsigned.stop()


async def test_reply_faults(fake_reply: FakeReply) -> None:
    body = b'{"n": 1}'
    fake_reply.fail_with_status(503, times=2)
    statuses = [await _post(fake_reply.url, body, _signed(body)) for _ in range(3)]
    assert statuses == [503, 503, 200]
    assert len(fake_reply.received()) == 3 and len(fake_reply.received(ok_only=True)) == 1

    fake_reply.fail_with_status(500, for_s=0.3)
    assert await _post(fake_reply.url, body, _signed(body)) == 500
    await asyncio.sleep(0.35)
    assert await _post(fake_reply.url, body, _signed(body)) == 200

    port = fake_reply.port
    await fake_reply.go_down()
    with pytest.raises(aiohttp.ClientConnectorError):
        await _post(fake_reply.url, body, _signed(body))
    await fake_reply.come_back()
    assert fake_reply.port == port
    assert await _post(fake_reply.url, body, _signed(body)) == 200

    fake_reply.delay(0.2)
    started = time.monotonic()
    assert await _post(fake_reply.url, body, _signed(body)) == 200
    assert time.monotonic() - started >= 0.2
    records = await fake_reply.wait_for(4, timeout_s=1)
    assert all(r.signature_valid for r in records)


# -- cluster ----------------------------------------------------------------------------------------


async def test_cluster_set_get(cluster: ValkeyCluster) -> None:
    client = RedisCluster.from_url(cluster.seed_url)
    try:
        for i in range(20):
            await client.set(f"{{conv{i}}}:k", str(i))
        assert [await client.get(f"{{conv{i}}}:k") for i in range(20)] == [str(i).encode() for i in range(20)]
        owners = {cluster.primary_for_key(f"{{conv{i}}}:k") for i in range(20)}
        assert owners == set(cluster.primary_ports)  # keys spread over the three primaries
    finally:
        await client.aclose()


async def test_cluster_failover_promotes_replica(cluster: ValkeyCluster) -> None:
    client = RedisCluster.from_url(cluster.seed_url)
    try:
        await client.set("{failover}:key", "v")
        victim = cluster.primary_for_key("{failover}:key")
        replica = cluster.replica_ports[cluster.primary_ports.index(victim)]
        started = time.monotonic()
        cluster.kill_node(victim)
        await cluster.wait_ok(timeout_s=8)
        elapsed = time.monotonic() - started
        assert elapsed < 6, f"failover took {elapsed:.1f}s"
        assert cluster.primary_for_key("{failover}:key") == replica
        assert (await cluster.roles())[replica] == "master"
        assert await client.get("{failover}:key") == b"v"
    finally:
        await client.aclose()
    await cluster.restart_node(victim)  # leave the module's cluster whole again
    await cluster.wait_ok(timeout_s=10)
    assert (await cluster.roles())[victim] == "slave"


def test_cluster_cleans_up_after_failed_start(tmp_path: Path) -> None:
    broken = ValkeyCluster(tmp_path, extra_args=["--no-such-directive", "x"])
    with pytest.raises(EmbeddedValkeyError):
        asyncio.run(broken.start(timeout_s=10))
    assert broken.nodes and not any(node.running for node in broken.nodes.values())


async def test_bench_slack_fast_post_path_answers_like_the_fake_and_measures_delays() -> None:
    from bench.fake_slack_server import BenchSlack, stamp

    fake = BenchSlack()
    await fake.start(0)
    try:
        client = AsyncWebClient(token=DEFAULT_TOKEN, base_url=fake.url)
        fake.add_channel("C1")
        root = await client.chat_postMessage(channel="C1", text="root")
        reply = await client.chat_postMessage(
            channel="C1", text=f"line {stamp(time.time() - 0.25)}", thread_ts=root["ts"]
        )
        assert reply["ok"] and reply["ts"] > root["ts"]
        messages = fake.messages("C1")
        assert [m.text for m in messages] == ["root", reply["message"]["text"]]
        assert messages[1].thread_ts == root["ts"]
        intruder = AsyncWebClient(token="xoxb-wrong", base_url=fake.url)
        with pytest.raises(SlackApiError) as refused:
            await intruder.chat_postMessage(channel="C1", text="x")
        assert refused.value.response["error"] == "invalid_auth"
        async with aiohttp.ClientSession() as session, session.get(f"{fake.base_url}/bench/stats") as answer:
            stats = await answer.json()
        assert stats["posts"] == 2 and stats["roots"] == 1
        (delay,) = stats["delays_s"]
        assert 0.25 <= delay < 5
    finally:
        await fake.stop()
