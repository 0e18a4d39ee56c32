"""Broken peers against a running bridge (`python -m bridge serve`): a proxy's HTML page instead of
Slack's JSON, Retry-After values no one should obey, a reply endpoint that redirects. Each maps to
retry, pause or dead letter, never a crash: afterwards every line is delivered once, in order."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from bridge.embedded import EmbeddedValkey
from tests.harness import eventually, wait_until
from tests.harness.bridge_process import BridgeProcess
from tests.harness.fake_reply import DEFAULT_SECRET, FakeReply
from tests.harness.fake_slack import DEFAULT_TOKEN, FakeSlack
from tests.helpers import (
    CHANNEL,
    WEBHOOK_KEY,
    escalation,
    message,
    relaying_bridge,
    signed_headers,
    thread_reply_event,
)

FAST = {
    "posts_per_second": 50,
    "burst": 10,
    "poll_interval": "100ms",
    "backoff_base": "100ms",
    "backoff_max": "1s",
}


class BrokenProxySlack(FakeSlack):
    """Slack behind a misbehaving proxy, on demand: chat.postMessage answers a 200 HTML page, or a 429
    with a given Retry-After, for the next calls (each recorded in `misbehaved` with its time)."""

    def __init__(self) -> None:
        super().__init__(token=DEFAULT_TOKEN)
        self.html_pages = 0
        self.retry_afters: list[str] = []
        self.misbehaved: list[tuple[str, float]] = []

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["method"] == "chat.postMessage":
            if self.html_pages > 0:
                self.html_pages -= 1
                self.misbehaved.append(("html", time.monotonic()))
                page = "<html><body><h1>502 Bad Gateway</h1></body></html>"
                return web.Response(text=page, status=200, content_type="text/html")
            if self.retry_afters:
                value = self.retry_afters.pop(0)
                self.misbehaved.append((value, time.monotonic()))
                body = {"ok": False, "error": "ratelimited"}
                return web.json_response(body, status=429, headers={"Retry-After": value})
        return await super()._handle(request)


@pytest.fixture
async def slack() -> AsyncIterator[BrokenProxySlack]:
    fake = BrokenProxySlack()
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


@pytest.fixture
async def second_reply() -> AsyncIterator[FakeReply]:
    """Where a redirect points: must receive nothing."""
    fake = FakeReply(DEFAULT_SECRET)
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


@pytest.fixture
async def bridge(
    tmp_path: Path, redis_url: str, slack: BrokenProxySlack, fake_reply: FakeReply
) -> AsyncIterator[BridgeProcess]:
    async with relaying_bridge(
        tmp_path, redis_url, slack.url, fake_reply.url, config={"delivery": FAST}
    ) as bridge:
        yield bridge


def count(slack: FakeSlack, text: str) -> int:
    return sum(p.text.count(text) for p in slack.posts())


async def open_thread(bridge: BridgeProcess, slack: FakeSlack, client: str) -> str:
    assert (await bridge.hook(escalation(client)))[0] == 200
    await wait_until(lambda: len(slack.roots(CHANNEL)) == 1, timeout_s=10)
    return slack.roots(CHANNEL)[0].ts


async def lines_arrive_once_in_order(
    bridge: BridgeProcess, slack: FakeSlack, client: str, n: int, timeout_s: float = 10
) -> None:
    for i in range(n):
        assert (await bridge.hook(message(client, f"{client} m-{i:03d}", "ok")))[0] == 200
    await wait_until(lambda: count(slack, f"{client} m-") >= n, timeout_s=timeout_s)
    texts = "\n".join(p.text for p in slack.posts())
    assert [texts.count(f"{client} m-{i:03d}") for i in range(n)] == [1] * n
    positions = [texts.index(f"{client} m-{i:03d}") for i in range(n)]
    assert positions == sorted(positions)


def assert_never_crashed(bridge: BridgeProcess) -> None:
    assert bridge.running
    assert bridge.log_events("delivery_crashed") == []
    assert "Traceback" not in bridge.stderr_text() + bridge.stdout_path.read_text()


async def test_an_html_page_from_slack_is_retried_never_dead_lettered(
    bridge: BridgeProcess, slack: BrokenProxySlack
) -> None:
    await open_thread(bridge, slack, "html")
    slack.html_pages = 3
    await lines_arrive_once_in_order(bridge, slack, "html", 3)
    assert [kind for kind, _ in slack.misbehaved] == ["html"] * 3
    assert bridge.log_events("dead_letter") == []
    assert len(bridge.log_events("delivery_retry")) >= 3
    assert_never_crashed(bridge)


async def test_retry_after_values_no_one_should_obey_count_as_one_second(
    bridge: BridgeProcess, slack: BrokenProxySlack
) -> None:
    await open_thread(bridge, slack, "ra")
    values = ["nan", "inf", "soon", "-5", "-inf"]
    slack.retry_afters = list(values)
    started = time.monotonic()
    await lines_arrive_once_in_order(bridge, slack, "ra", 3, timeout_s=15)
    assert [value for value, _ in slack.misbehaved] == values
    assert time.monotonic() - started < len(values) * 1.0 + 5  # ~1 s each, not forever
    assert bridge.log_events("dead_letter") == []
    assert_never_crashed(bridge)


@pytest.mark.slow
async def test_a_retry_after_of_1e9_pauses_the_channel_30_s_not_31_years(
    bridge: BridgeProcess, slack: BrokenProxySlack
) -> None:
    await open_thread(bridge, slack, "big")
    slack.retry_afters = ["1e9"]
    await lines_arrive_once_in_order(bridge, slack, "big", 2, timeout_s=45)
    [(_, refused_at)] = slack.misbehaved
    resumed_at = min(
        c.at for c in slack.calls_to("chat.postMessage") if c.at > refused_at and c.status == 200
    )
    assert 25 <= resumed_at - refused_at <= 35, resumed_at - refused_at
    assert bridge.log_events("dead_letter") == []
    assert_never_crashed(bridge)


async def agent_says(bridge: BridgeProcess, root_ts: str, text: str) -> None:
    body = orjson.dumps(thread_reply_event(CHANNEL, root_ts, text))
    async with (
        aiohttp.ClientSession() as session,
        session.post(bridge.url + "/slack/events", data=body, headers=signed_headers(body)) as response,
    ):
        assert response.status == 200


def agent_texts(reply: FakeReply) -> list[str]:
    return [b["text"] for b in reply.bodies() if b.get("type") == "agent_message"]


async def test_a_redirecting_reply_endpoint_is_never_followed(
    bridge: BridgeProcess, slack: BrokenProxySlack, fake_reply: FakeReply, second_reply: FakeReply
) -> None:
    root_ts = await open_thread(bridge, slack, "redir")
    await agent_says(bridge, root_ts, "first")
    await wait_until(lambda: agent_texts(fake_reply) == ["first"], timeout_s=10)
    fake_reply.fail_with_status(302, times=1, headers={"Location": second_reply.url})
    await agent_says(bridge, root_ts, "sent to a redirect")
    await agent_says(bridge, root_ts, "next")
    await wait_until(lambda: "next" in agent_texts(fake_reply), timeout_s=10)

    assert agent_texts(fake_reply) == ["first", "next"]
    assert second_reply.records == []  # neither the body nor its signature went anywhere else
    redirected = [r for r in fake_reply.received() if r.status == 302]
    assert len(redirected) == 1 and redirected[0].json["text"] == "sent to a redirect"
    [dead] = bridge.log_events("dead_letter")
    assert (dead["lane"], dead["reason"]) == ("reply", "redirect")
    [moved] = bridge.log_events("reply_redirected")
    assert (moved["status"], moved["location"]) == (302, second_reply.url)
    # reply_delivered means a 2xx from BRIDGE_REPLY_URL: one line per POST answered 2xx, none more.
    await wait_until(
        lambda: len(bridge.log_events("reply_delivered")) == len(fake_reply.received(ok_only=True))
    )
    assert_never_crashed(bridge)
    listed = await bridge.cli("outbox", "list-dead")
    assert "redirect" in listed.stdout, listed


@pytest.fixture
async def own_redis(tmp_path: Path) -> AsyncIterator[EmbeddedValkey]:
    """A Redis of the test's own, to stop and freeze."""
    server = EmbeddedValkey(tmp_path / "valkey-own")
    await server.start()
    try:
        yield server
    finally:
        if server.pid is not None:
            os.kill(server.pid, signal.SIGCONT)
        await server.stop()


async def bridge_on(
    tmp_path: Path, server: EmbeddedValkey, slack: FakeSlack, autopipeline: bool
) -> BridgeProcess:
    proc = BridgeProcess(
        tmp_path,
        redis_url=server.url,
        slack_url=slack.url,
        webhook_key=WEBHOOK_KEY,
        slack_token=DEFAULT_TOKEN,
        channel=CHANNEL,
        config={"delivery": FAST, "redis": {"autopipeline": autopipeline}},
        name=f"bridge-{autopipeline}",
    )
    return await proc.started()


async def not_ready(bridge: BridgeProcess) -> bool:
    async with aiohttp.ClientSession() as session, session.get(bridge.url + "/readyz") as response:
        return response.status == 503


async def acknowledged(bridge: BridgeProcess, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """Send `body` until the bridge answers 200 (as Smartly retries), at most 20 s."""
    deadline = time.monotonic() + 20
    while (answer := await bridge.hook(body))[0] != 200:
        assert answer[0] in (0, 503) and time.monotonic() < deadline, answer
        await asyncio.sleep(0.1)
    return answer


@pytest.mark.parametrize("autopipeline", [True, False])
async def test_503_says_recorded_no_when_redis_was_never_reached(
    tmp_path: Path, own_redis: EmbeddedValkey, slack: BrokenProxySlack, autopipeline: bool
) -> None:
    bridge = await bridge_on(tmp_path, own_redis, slack, autopipeline)
    try:
        await open_thread(bridge, slack, "down")
        await own_redis.stop()
        await eventually(lambda: not_ready(bridge))  # the bridge has noticed Redis is gone
        line = message("down", "down m-000", "ok")
        status, answer = await bridge.hook(line)
        assert (status, answer) == (
            503,
            {"ok": False, "error": "storage unavailable, retry later", "recorded": "no"},
        )
        await wait_until(lambda: bridge.log_events("webhook_unavailable"))
        [unavailable] = bridge.log_events("webhook_unavailable")
        assert unavailable["recorded"] == "no"
        await own_redis.start()
        status, answer = await acknowledged(bridge, line)  # Smartly retries the identical body
        assert answer == {"ok": True}  # recorded now, not a duplicate: the first try never reached Redis
        await wait_until(lambda: count(slack, "down m-000") == 1, timeout_s=10)
        assert_never_crashed(bridge)
    finally:
        await bridge.close()


@pytest.mark.parametrize("autopipeline", [True, False])
async def test_503_says_recorded_unknown_after_a_timeout_and_a_retry_is_counted_once(
    tmp_path: Path, own_redis: EmbeddedValkey, slack: BrokenProxySlack, autopipeline: bool
) -> None:
    bridge = await bridge_on(tmp_path, own_redis, slack, autopipeline)
    try:
        await open_thread(bridge, slack, "frozen")
        line = message("frozen", "frozen m-000", "ok")
        assert own_redis.pid is not None
        os.kill(own_redis.pid, signal.SIGSTOP)  # alive but silent: it may still run what it was sent
        try:
            started = time.monotonic()
            status, answer = await bridge.hook(line)
            waited = time.monotonic() - started
        finally:
            os.kill(own_redis.pid, signal.SIGCONT)
        assert (status, answer.get("recorded"), answer.get("ok")) == (503, "unknown", False)
        assert waited < 4, waited  # the store deadline (2 s), not a hang
        status, answer = await acknowledged(bridge, line)  # the identical body, as Smartly retries it
        assert answer in ({"ok": True}, {"ok": True, "duplicate": True})
        assert (await bridge.hook(message("frozen", "frozen m-001", "ok")))[0] == 200
        await wait_until(lambda: count(slack, "frozen m-001") == 1, timeout_s=10)
        assert count(slack, "frozen m-000") == 1  # recorded once, whichever way it went
        texts = "\n".join(p.text for p in slack.posts())
        assert texts.index("frozen m-000") < texts.index("frozen m-001")
        assert_never_crashed(bridge)
    finally:
        await bridge.close()
