"""What delivery does with each kind of Slack answer: a refused token pauses every channel and resumes
by itself, an error code the bridge does not know is tried `delivery.unknown_error_attempts` times and
then dead-lettered with its code and channel; no answer ever crashes a worker (`delivery_crashed`).

In-process bridges on real HTTP, a real valkey-server and the fake Slack Web API over HTTP."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from structlog.testing import capture_logs

from bridge.config import DeliverySection
from bridge.delivery import DeliveryContext, SlackLane, auth_pause, pacing
from bridge.keys import SLACK, conversation_id
from bridge.metrics import Metrics
from bridge.runtime import BRIDGE
from bridge.slack_api import SlackApi
from bridge.store import Store
from tests.conftest import MakeBridge
from tests.harness import wait_until
from tests.harness.fake_slack import DEFAULT_TOKEN, FakeSlack
from tests.helpers import CHANNEL, escalation, message
from tests.test_outbox import LEASE_MS, claim, now_ms, pending_ids, store, thread_opened  # noqa: F401


@pytest.fixture
def logs() -> Iterator[list[dict[str, Any]]]:
    with capture_logs() as captured:
        yield captured


def events(logs: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in logs if e.get("event") == name]


async def metric(bridge: Any, name: str) -> float:
    response = await bridge.client.get("/metrics")
    for line in (await response.text()).splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{name} not exported")


async def test_a_refused_token_pauses_delivery_then_it_resumes_by_itself(
    make_bridge: MakeBridge,
    fake_slack: FakeSlack,
    logs: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(auth_pause, "AUTH_RETRY_S", 1.0)  # 30 s in production
    bridge = await make_bridge(replies=False)
    runtime = bridge.app[BRIDGE]
    await wait_until(lambda: runtime.identity is not None, 5)
    fake_slack.token = "xoxb-revoked"  # Slack now answers invalid_auth to everything
    assert await bridge.hook(escalation("tom")) == (200, {"ok": True})
    for i in range(3):
        assert await bridge.hook(message("tom", f"m-{i:03d}", "ok")) == (200, {"ok": True})

    await wait_until(lambda: runtime.slack_health.paused, 5)
    (failed, *_) = events(logs, "slack_auth_failed")
    assert failed["log_level"] == "error" and failed["code"] == "invalid_auth"
    assert "SLACK_BOT_TOKEN" in failed["fix"] and failed["channel"] == CHANNEL
    assert await metric(bridge, "bridge_slack_auth_ok") == 0
    # the probe tries again about once a second here (every 30 s in production), burying nothing
    await wait_until(lambda: len(fake_slack.calls_to("chat.postMessage")) >= 3, 10)
    posts = fake_slack.calls_to("chat.postMessage")
    gaps = [b.at - a.at for a, b in itertools.pairwise(posts)]
    assert all(gap > 0.8 for gap in gaps), gaps  # one probe at a time, not every conversation
    assert await runtime.store.dead_letters() == []
    assert fake_slack.posts() == []

    fake_slack.token = DEFAULT_TOKEN  # the owner fixes the token
    await wait_until(lambda: len(fake_slack.posts()) >= 2, 10)
    (root,) = fake_slack.roots(CHANNEL)
    await wait_until(lambda: "m-002" in " ".join(fake_slack.thread(CHANNEL, root.ts)), 10)
    assert " ".join(fake_slack.thread(CHANNEL, root.ts)).count("m-00") == 3
    assert not runtime.slack_health.paused and events(logs, "slack_auth_restored")
    assert await metric(bridge, "bridge_slack_auth_ok") == 1
    assert events(logs, "delivery_crashed") == [] and events(logs, "dead_letter") == []


async def test_an_unknown_error_is_tried_n_times_then_dead_lettered_with_its_code_and_channel(
    make_bridge: MakeBridge, fake_slack: FakeSlack, logs: list[dict[str, Any]]
) -> None:
    bridge = await make_bridge(replies=False, file={"delivery": {"unknown_error_attempts": 3}})
    runtime = bridge.app[BRIDGE]
    fake_slack.fail_with_status(200, methods=["chat.postMessage"], error="brand_new_error")
    assert await bridge.hook(escalation("una")) == (200, {"ok": True})

    await wait_until(lambda: len(events(logs, "dead_letter")) >= 1, 15)
    assert len(fake_slack.calls_to("chat.postMessage")) == 3  # tried 3 times, then given up
    (dead,) = events(logs, "dead_letter")
    assert (dead["reason"], dead["channel"], dead["kinds"]) == ("brand_new_error", CHANNEL, ["root"])
    assert [e["reason"] for e in events(logs, "delivery_retry")] == ["brand_new_error"] * 2
    (letter,) = await runtime.store.dead_letters()
    assert (letter.cid, letter.reason, letter.channel) == (
        conversation_id("skill1", "una"),
        "brand_new_error",
        CHANNEL,
    )
    assert events(logs, "delivery_crashed") == []


async def test_a_saturated_channel_is_visible_in_gauges_and_logged_once_a_minute(
    make_bridge: MakeBridge,
    fake_slack: FakeSlack,
    logs: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two replicas: both export the channel's lag and open handovers read from Redis, and the
    warning is logged once for the channel, not once per replica or per check."""
    monkeypatch.setattr(pacing, "WATCH_INTERVAL_S", 0.2)  # 5 s in production
    slow = {"delivery": {"posts_per_second": 0.5, "burst": 1, "saturation_warning": "1s"}}
    bridges = [await make_bridge(replies=False, file=slow) for _ in range(2)]
    for i in range(4):
        assert await bridges[i % 2].hook(escalation(f"sat-{i}")) == (200, {"ok": True})
        assert await bridges[i % 2].hook(message(f"sat-{i}", "hello", "ok")) == (200, {"ok": True})

    await wait_until(lambda: events(logs, "slack_channel_saturated"), 10)
    (warning,) = events(logs, "slack_channel_saturated")
    assert warning["log_level"] == "warning" and warning["channel"] == CHANNEL
    assert warning["lag_s"] >= 1 and warning["open_handovers"] == 4 and "pool" in warning["hint"]
    for bridge in bridges:
        assert await metric(bridge, f'bridge_slack_channel_open_handovers{{channel="{CHANNEL}"}}') == 4
        assert await metric(bridge, f'bridge_slack_channel_lag_seconds{{channel="{CHANNEL}"}}') > 0.5
    await asyncio.sleep(1.0)  # five more checks on each replica
    assert len(events(logs, "slack_channel_saturated")) == 1


class HtmlLookupSlack(FakeSlack):
    """Slack behind a proxy that answers the crash-recovery lookups with an HTML page."""

    pages = 0
    content_type = "text/html"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["method"] in ("conversations.replies", "conversations.history"):
            self.pages += 1
            page = "<html>502 Bad Gateway</html>"  # labelled JSON (or not: both are seen behind proxies)
            return web.Response(text=page, status=200, content_type=self.content_type)
        return await super()._handle(request)


@pytest.mark.parametrize("content_type", ["text/html", "application/json"])
async def test_an_html_page_answering_the_crash_lookup_is_retried_not_a_crash(
    store: Store,  # noqa: F811
    content_type: str,
) -> None:
    """The lookup goes through slack-sdk, which wraps a non-JSON body differently from Slack's own
    errors: still a transient failure (retried with backoff), never delivery_crashed, never a
    second post made blindly."""
    fake = HtmlLookupSlack()
    fake.content_type = content_type
    await fake.start()
    try:
        async with aiohttp.ClientSession() as session:
            settings = lambda: DeliverySection(posts_per_second=100, burst=100)  # noqa: E731
            slack = SlackApi.create(DEFAULT_TOKEN, fake.url, session, Metrics())
            lane = SlackLane(DeliveryContext(store, Metrics(), settings, False), slack)
            cid = await thread_opened(store, "hal", 1)
            first = (await pending_ids(store, cid))[0]
            assert await claim(store, cid, "w1")
            await store.mark_inflight(SLACK, cid, "w1", f"{first} {first} {now_ms()}", lease_ms=LEASE_MS)
            step = await lane.deliver(cid, "w1")
        assert step.action == "later" and step.due_ms > now_ms()  # retried after a backoff
        assert fake.pages == 1 and fake.calls_to("chat.postMessage") == []
        assert await store.dead_letters() == []
        assert (await store.conversation(cid))["attempts:slack"] == "1"
    finally:
        await fake.stop()
