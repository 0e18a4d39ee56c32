"""Issue 13: signed Slack payloads of the wrong shape never answer 500. Events -> 200 and one
`slack_event_ignored` line with the reason (Slack retries any non-2xx); interactions -> 400 JSON.
Through the real /slack/events and /slack/interactions endpoints of an in-process bridge."""

from __future__ import annotations

import urllib.parse
from typing import Any

import orjson
import pytest
from structlog.testing import capture_logs

from tests.harness import wait_until
from tests.harness.fake_reply import FakeReply
from tests.harness.fake_slack import FakeSlack
from tests.helpers import CHANNEL, BridgeClient, block_action, signed_headers, thread_reply_event
from tests.test_agents import open_handover, texts


def _reply_with(**event: Any) -> dict[str, Any]:
    envelope = thread_reply_event(CHANNEL, "1700000000.000100", "hello")
    envelope["event"].update(event)
    return envelope


WRONG_EVENTS = {
    "event_string": {**thread_reply_event(CHANNEL, "1.1", "x"), "event": "message"},
    "event_list": {**thread_reply_event(CHANNEL, "1.1", "x"), "event": [{"type": "message"}]},
    "ts_abc": _reply_with(ts="abc"),
    "ts_1e999": _reply_with(ts="1e999"),
    "thread_ts_1e999": _reply_with(thread_ts="1e999"),
    "user_object": _reply_with(user={"id": "UAGENT01"}),
    "channel_list": _reply_with(channel=["C1"]),
    "text_number": _reply_with(text=12),
    "subtype_object": _reply_with(subtype={"x": 1}),
    "event_id_object": {**thread_reply_event(CHANNEL, "1.1", "x"), "event_id": {"a": 1}},
    "edited_message_string": _reply_with(subtype="message_changed", message="edited"),
}


@pytest.mark.parametrize("case", sorted(WRONG_EVENTS))
async def test_event_of_the_wrong_shape_is_acked_and_logged(bridge: BridgeClient, case: str) -> None:
    with capture_logs() as logs:
        status, body = await bridge.slack_event(WRONG_EVENTS[case])
    assert (status, body) == (200, {"ok": True})
    ignored = [e for e in logs if e["event"] == "slack_event_ignored"]
    assert len(ignored) == 1, logs
    assert ignored[0]["reason"] == "invalid_payload" and ignored[0]["problem"].startswith("event")
    assert not [e for e in logs if e.get("log_level") in ("error", "critical")]


def _interaction(payload: Any) -> bytes:
    return urllib.parse.urlencode({"payload": orjson.dumps(payload).decode()}).encode()


def _click_with(**fields: Any) -> dict[str, Any]:
    raw = urllib.parse.parse_qs(block_action(CHANNEL, "1700000000.000100", "handover_claim").decode())
    payload = orjson.loads(raw["payload"][0])
    payload.update(fields)
    return payload


WRONG_INTERACTIONS = {
    "actions_string": _click_with(actions="handover_claim"),
    "actions_of_strings": _click_with(actions=["handover_claim"]),
    "actions_of_numbers": _click_with(actions=[1, 2]),
    "user_string": _click_with(user="UAGENT01"),
    "channel_string": _click_with(channel=CHANNEL),
    "container_string": _click_with(container="message"),
    "message_string": _click_with(message="1700000000.000100"),
    "message_ts_1e999": _click_with(message={"ts": "1e999"}),
}


@pytest.mark.parametrize("case", sorted(WRONG_INTERACTIONS))
async def test_interaction_of_the_wrong_shape_is_a_400(bridge: BridgeClient, case: str) -> None:
    body = _interaction(WRONG_INTERACTIONS[case])
    with capture_logs() as logs:
        response = await bridge.client.post(
            "/slack/interactions",
            data=body,
            headers=signed_headers(body, content_type="application/x-www-form-urlencoded"),
        )
        answer = orjson.loads(await response.read())
    assert response.status == 400 and response.content_type == "application/json"
    assert answer["ok"] is False and answer["error"].startswith("invalid interaction payload")
    rejected = [e for e in logs if e["event"] == "slack_request_rejected"]
    assert len(rejected) == 1 and rejected[0]["status"] == 400
    assert not [e for e in logs if e["event"] == "request_failed"]


async def test_well_shaped_payloads_still_work_after_wrong_ones(
    bridge: BridgeClient, fake_slack: FakeSlack, fake_reply: FakeReply
) -> None:
    """The bridge stays healthy: a real reply after the bad ones is relayed, with its exact time."""
    for envelope in WRONG_EVENTS.values():
        assert (await bridge.slack_event(envelope))[0] == 200
    root_ts = await open_handover(bridge, fake_slack, fake_reply)
    envelope = thread_reply_event(CHANNEL, root_ts, "on my way", ts="1795600000.123456")
    assert await bridge.slack_event(envelope) == (200, {"ok": True})
    await wait_until(lambda: texts(fake_reply) == ["on my way"])
    sent = next(b for b in fake_reply.bodies() if b.get("type") == "agent_message")
    assert sent["sent_at"] == "2026-11-25T09:46:40.123Z"  # the ts read exactly, without a float


async def test_null_text_is_empty_not_a_wrong_shape(bridge: BridgeClient) -> None:
    with capture_logs() as logs:
        assert await bridge.slack_event(_reply_with(text=None)) == (200, {"ok": True})
    assert [e["reason"] for e in logs if e["event"] == "slack_event_ignored"] == ["empty"]
