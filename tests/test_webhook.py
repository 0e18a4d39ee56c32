"""The webhook contract: status codes for every kind of bad input, dedupe, and what reaches Slack."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from redis.asyncio import Redis

from tests.harness import wait_until
from tests.harness.fake_slack import FakeSlack
from tests.helpers import CHANNEL, BridgeClient, escalation, message


async def redis_keys(url: str) -> list[bytes]:
    client = Redis.from_url(url)
    try:
        return [k for k in await client.keys("bridge:*") if not k.startswith(b"bridge:meta")]
    finally:
        await client.aclose()


@pytest.mark.parametrize("key", ["", "wrong", "test-webhook-key-0001x", "TEST-WEBHOOK-KEY-0001"])
async def test_wrong_or_missing_key_is_401_and_stores_nothing(
    bridge: BridgeClient, fake_slack: FakeSlack, redis_url: str, key: str
) -> None:
    status, body = await bridge.hook(escalation("eve"), key=key)
    assert status == 401 and body == {"ok": False, "error": "unauthorized"}
    response = await bridge.client.post("/smartly/hooks", data=orjson.dumps(escalation("eve")))
    assert response.status == 401
    await asyncio.sleep(0.3)
    assert await redis_keys(redis_url) == []
    assert fake_slack.posts() == []


async def test_rotated_keys_are_all_accepted(make_bridge, fake_slack: FakeSlack) -> None:
    bridge = await make_bridge(smartly_webhook_key="old-key-123, new-key-456")
    assert (await bridge.hook(message("u1", "hi"), key="old-key-123"))[0] == 200
    assert (await bridge.hook(message("u1", "hi again"), key="new-key-456"))[0] == 200
    assert (await bridge.hook(message("u1", "nope"), key="old-key-123, new-key-456"))[0] == 401


@pytest.mark.parametrize(
    ("body", "status", "error_part"),
    [
        (b"not json", 400, "not valid JSON"),
        (b"", 400, "not valid JSON"),
        (b"[1, 2]", 400, "JSON object"),
        (b'"text"', 400, "JSON object"),
        (b"{", 400, "not valid JSON"),
    ],
)
async def test_malformed_body_is_400(bridge: BridgeClient, body: bytes, status: int, error_part: str) -> None:
    got_status, got = await bridge.hook(body)
    assert got_status == status
    assert got["ok"] is False and error_part in got["error"]


@pytest.mark.parametrize(
    ("body", "missing"),
    [
        ({"payload": {"skill_id": "s", "client_id": "c"}}, ["event"]),
        ({"event": 42, "payload": {"skill_id": "s", "client_id": "c"}}, ["event"]),
        ({"event": "message_received"}, ["payload.skill_id", "payload.client_id"]),
        ({"event": "message_received", "payload": {"client_id": "c"}}, ["payload.skill_id"]),
        ({"event": "escalation_requested", "payload": {"skill_id": "s"}}, ["payload.client_id"]),
        (
            {"event": "escalation_requested", "payload": {"skill_id": "", "client_id": None}},
            ["payload.skill_id", "payload.client_id"],
        ),
    ],
)
async def test_known_event_missing_fields_is_422_naming_them(
    bridge: BridgeClient, redis_url: str, body: dict, missing: list[str]
) -> None:
    status, got = await bridge.hook(body)
    assert status == 422
    assert got["missing"] == missing
    assert all(name in got["error"] for name in missing)
    assert await redis_keys(redis_url) == []


async def test_unknown_event_is_202_ignored(bridge: BridgeClient, redis_url: str) -> None:
    status, got = await bridge.hook({"event": "conversation_ended", "payload": {"client_id": "c"}})
    assert (status, got) == (202, {"ok": True, "ignored": "conversation_ended"})
    assert await redis_keys(redis_url) == []


async def test_body_over_limit_is_413(make_bridge, redis_url: str) -> None:
    bridge = await make_bridge(file={"webhook": {"max_body_bytes": 2048}})
    big = message("big", "x" * 4000)
    status, got = await bridge.hook(big)
    assert status == 413 and got["ok"] is False
    assert (await bridge.hook(message("big", "small")))[0] == 200


async def test_default_limit_is_one_mebibyte(bridge: BridgeClient) -> None:
    def sized(total: int) -> bytes:
        body = message("huge", "", corrected_input="")
        base = len(orjson.dumps(body))
        body["payload"]["input"] = "y" * (total - base)
        data = orjson.dumps(body)
        assert len(data) == total
        return data

    assert (await bridge.hook(sized(1024 * 1024 + 1)))[0] == 413
    assert (await bridge.hook(sized(1024 * 1024)))[0] == 200


async def test_unknown_fields_are_accepted_and_platform_spellings_read(
    bridge: BridgeClient, fake_slack: FakeSlack
) -> None:
    body = message("newfields", "hello", brand_new_field={"nested": [1, 2]}, another=None)
    body["top_level_extra"] = "ok"
    assert (await bridge.hook(body))[0] == 200
    escalate = escalation("newfields")
    escalate["payload"]["plateform"] = "messenger"
    escalate["payload"]["future"] = True
    assert (await bridge.hook(escalate))[0] == 200
    await wait_until(lambda: len(fake_slack.roots(CHANNEL)) == 1)
    assert "messenger" in orjson.dumps(fake_slack.roots(CHANNEL)[0].blocks).decode()


async def test_identical_body_resent_is_recorded_once(bridge: BridgeClient, fake_slack: FakeSlack) -> None:
    await bridge.hook(escalation("dup"))
    await wait_until(lambda: len(fake_slack.roots(CHANNEL)) == 1)
    same = message("dup", "only once please")
    assert await bridge.hook(same) == (200, {"ok": True})
    assert await bridge.hook(same) == (200, {"ok": True, "duplicate": True})
    await bridge.hook(message("dup", "after"))
    root = fake_slack.roots(CHANNEL)[0]
    await wait_until(lambda: any("after" in m.text for m in fake_slack.replies(CHANNEL, root.ts)))
    text = "\n".join(m.text for m in fake_slack.replies(CHANNEL, root.ts))
    assert text.count("only once please") == 2  # the user's line and the bot's echo, once each


async def test_two_users_stay_apart(bridge: BridgeClient, fake_slack: FakeSlack) -> None:
    for i in range(3):
        await bridge.hook(message("anna", f"anna-{i}"))
        await bridge.hook(message("ben", f"ben-{i}"))
    await bridge.hook(escalation("anna"))
    await bridge.hook(escalation("ben"))
    await wait_until(lambda: len(fake_slack.roots(CHANNEL)) == 2)
    await bridge.hook(message("anna", "anna-live"))
    await bridge.hook(message("ben", "ben-live"))
    roots = {("anna" if "anna" in r.text else "ben"): r for r in fake_slack.roots(CHANNEL)}

    def text(who: str) -> str:
        return "\n".join(m.text for m in fake_slack.replies(CHANNEL, roots[who].ts))

    await wait_until(lambda: "anna-live" in text("anna") and "ben-live" in text("ben"))
    assert "ben-" not in text("anna") and "anna-" not in text("ben")
    assert all(f"anna-{i}" in text("anna") for i in range(3))


async def test_user_text_cannot_ping_or_disguise_links(bridge: BridgeClient, fake_slack: FakeSlack) -> None:
    evil = "<!channel> hi <@U123ADMIN> see <https://evil.example|your bank> & <!here>"
    await bridge.hook(message("mallory", evil, answer="<!everyone> bot & co"))
    await bridge.hook(escalation("mallory"))
    await wait_until(
        lambda: fake_slack.roots(CHANNEL) and fake_slack.replies(CHANNEL, fake_slack.roots(CHANNEL)[0].ts)
    )
    root = fake_slack.roots(CHANNEL)[0]
    posted = [m for m in fake_slack.posts(CHANNEL)]
    text = "\n".join(m.text for m in fake_slack.replies(CHANNEL, root.ts))
    assert "&lt;!channel&gt;" in text and "&lt;@U123ADMIN&gt;" in text
    assert "&lt;https://evil.example|your bank&gt;" in text and "&amp;" in text
    for m in posted:
        assert "<!channel>" not in m.text and "<@U123ADMIN>" not in m.text and "<!everyone>" not in m.text
        assert "<https://evil" not in m.text
        assert m.params.get("link_names") in (None, False, 0, "0", "false")
        assert m.params.get("parse") != "full"


async def test_client_ids_with_separators_do_not_collide(bridge: BridgeClient, fake_slack: FakeSlack) -> None:
    await bridge.hook(message("b:c", "first conversation", skill_id="a"))
    await bridge.hook(message("c", "second conversation", skill_id="a:b"))
    await bridge.hook(escalation("b:c", skill_id="a"))
    await wait_until(
        lambda: fake_slack.roots(CHANNEL) and fake_slack.replies(CHANNEL, fake_slack.roots(CHANNEL)[0].ts)
    )
    text = "\n".join(m.text for m in fake_slack.replies(CHANNEL, fake_slack.roots(CHANNEL)[0].ts))
    assert "first conversation" in text and "second conversation" not in text


async def test_second_escalation_while_open_does_not_open_a_new_thread(
    bridge: BridgeClient, fake_slack: FakeSlack
) -> None:
    await bridge.hook(escalation("twice"))
    await wait_until(lambda: len(fake_slack.roots(CHANNEL)) == 1)
    await bridge.hook(message("twice", "still here", need_help=True))
    await bridge.hook(escalation("twice"))
    root = fake_slack.roots(CHANNEL)[0]
    await wait_until(lambda: any("still here" in m.text for m in fake_slack.replies(CHANNEL, root.ts)))
    await asyncio.sleep(0.3)
    assert len(fake_slack.roots(CHANNEL)) == 1


async def test_history_is_capped_and_shown_on_open_is_limited(make_bridge, fake_slack: FakeSlack) -> None:
    bridge = await make_bridge(file={"history": {"max_entries": 5, "shown_on_open": 3}})
    for i in range(8):
        await bridge.hook(message("cap", f"msg-{i:02d}"))
    await bridge.hook(escalation("cap"))
    await wait_until(
        lambda: fake_slack.roots(CHANNEL) and fake_slack.replies(CHANNEL, fake_slack.roots(CHANNEL)[0].ts)
    )
    text = "\n".join(m.text for m in fake_slack.replies(CHANNEL, fake_slack.roots(CHANNEL)[0].ts))
    assert [f"msg-{i:02d}" in text for i in range(8)] == [False] * 5 + [True] * 3
