"""Issue 18.2: forget a user, through `bridge forget` (a real subprocess next to a running `bridge
serve`) and DELETE /admin/conversations/{skill_id}/{client_id}: no key of the conversation is left in
Redis (checked by SCAN), the backend hears handover_resolved (reason forgotten), the bridge's own posts
are deleted with chat.delete, agents' messages are counted, and forgetting twice is fine."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from redis.asyncio import Redis

from bridge.keys import conversation_id
from bridge.slack_format import CLAIM_ACTION
from tests.harness import wait_until
from tests.harness.bridge_process import BridgeProcess
from tests.harness.fake_reply import FakeReply
from tests.harness.fake_slack import BOT_ID, FakeSlack
from tests.helpers import (
    CHANNEL,
    QUICK_DELIVERY,
    BridgeClient,
    block_action,
    escalation,
    message,
    raw_exchange,
    relaying_bridge,
    signed_headers,
    thread_reply_event,
)

ADMIN_TOKEN = "admin-token-for-tests-0001"
DELIVERY = QUICK_DELIVERY
AUDIT_KEY = b"bridge:audit"  # one stream for every conversation: holds ids, never texts


@pytest.fixture
async def bridge(
    tmp_path: Path, redis_url: str, fake_slack: FakeSlack, fake_reply: FakeReply
) -> AsyncIterator[BridgeProcess]:
    async with relaying_bridge(
        tmp_path,
        redis_url,
        fake_slack.url,
        fake_reply.url,
        config={"delivery": DELIVERY},
        env={"BRIDGE_ADMIN_TOKEN": ADMIN_TOKEN},
    ) as bridge:
        yield bridge


async def open_claimed(bridge: BridgeProcess, fake_slack: FakeSlack, client: str, exchanges: int = 3) -> str:
    """History, an escalation, the thread posted, a claim by Alice, an agent's message in the thread
    (more than 20 exchanges: the opening post shows the last ones, a transcript file has them all)."""
    for i in range(exchanges):
        assert await bridge.hook(message(client, f"{client} says {i}", f"bot answers {i}")) == (
            200,
            {"ok": True},
        )
    assert await bridge.hook(escalation(client)) == (200, {"ok": True})
    await wait_until(lambda: any(client in r.text for r in fake_slack.roots(CHANNEL)), 10)
    root = next(r for r in fake_slack.roots(CHANNEL) if client in r.text)
    await wait_until(lambda: len(fake_slack.replies(CHANNEL, root.ts)) >= 1, 10)
    body = block_action(CHANNEL, root.ts, CLAIM_ACTION)
    headers = signed_headers(body, content_type="application/x-www-form-urlencoded")
    url = f"{bridge.url}/slack/interactions"
    async with aiohttp.ClientSession() as http, http.post(url, data=body, headers=headers) as response:
        assert response.status == 200
    await wait_until(lambda: any("is handling" in m.text for m in fake_slack.replies(CHANNEL, root.ts)), 10)
    fake_slack.add_message(CHANNEL, "an agent's words", user="UAGENT01", thread_ts=root.ts)
    return root.ts


async def traces(redis_url: str, skill_id: str, client_id: str) -> list[str]:
    """Every place in Redis that still names the conversation (keys, values, members, stream fields),
    by SCAN over the whole keyspace; the audit trail is left out (ids only, by design)."""
    cid = conversation_id(skill_id, client_id).encode()
    found = []
    redis = Redis.from_url(redis_url)
    try:
        async for key in redis.scan_iter(count=1000):
            if key == AUDIT_KEY:
                continue
            kind = (await redis.type(key)).decode()
            if kind == "string":
                content = [await redis.get(key)]
            elif kind == "hash":
                content = [*(await redis.hgetall(key)).items()]
            elif kind == "zset":
                content = await redis.zrange(key, 0, -1)
            elif kind == "list":
                content = await redis.lrange(key, 0, -1)
            elif kind == "stream":
                content = [await redis.xrange(key)]
            else:
                content = []
            if cid in key or cid in repr(content).encode() or client_id.encode() in key:
                found.append(key.decode())
    finally:
        await redis.aclose()
    return found


async def admin_delete(
    url: str, skill_id: str, client_id: str, *, token: str | None = ADMIN_TOKEN, slack: bool = False
) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    target = f"{url}/admin/conversations/{skill_id}/{client_id}" + ("?slack=1" if slack else "")
    async with aiohttp.ClientSession() as http, http.delete(target, headers=headers) as response:
        assert response.content_type == "application/json"
        return response.status, orjson.loads(await response.read())


def bridge_posts_in(fake_slack: FakeSlack, root_ts: str) -> list[str]:
    root = fake_slack.message(CHANNEL, root_ts)
    replies = fake_slack.replies(CHANNEL, root_ts)
    return [m.ts for m in [*([root] if root else []), *replies] if m.bot_id == BOT_ID]


async def test_forget_over_http_with_slack_removes_everything_and_twice_is_fine(
    bridge: BridgeProcess, fake_slack: FakeSlack, fake_reply: FakeReply, redis_url: str
) -> None:
    root_ts = await open_claimed(bridge, fake_slack, "ann", exchanges=25)
    await wait_until(lambda: len(fake_slack.uploaded(CHANNEL, root_ts)) == 1, 10)  # the transcript file
    # An agent's reply relayed to the user (the bridge remembers its Slack ts), then a line Slack
    # refuses for good: a dead letter of ann's.
    envelope = orjson.dumps(thread_reply_event(CHANNEL, root_ts, "on it", user="UAGENT01"))
    async with aiohttp.ClientSession() as http:
        url, headers = f"{bridge.url}/slack/events", signed_headers(envelope)
        async with http.post(url, data=envelope, headers=headers) as response:
            assert response.status == 200
    await wait_until(lambda: any(b.get("type") == "agent_message" for b in fake_reply.bodies()), 10)
    fake_slack.fail_channel(CHANNEL, "is_archived")
    assert await bridge.hook(message("ann", "lost line", "lost answer")) == (200, {"ok": True})
    await wait_until(lambda: "dead_letter" in [e.get("event") for e in bridge.log_events()], 10)
    fake_slack.fail_channel(CHANNEL, None)
    await open_claimed(bridge, fake_slack, "zoe")  # someone else, who must not be touched
    ours = bridge_posts_in(fake_slack, root_ts)
    assert await traces(redis_url, "skill1", "ann")

    status, body = await admin_delete(bridge.url, "skill1", "ann", slack=True)
    assert status == 200, body
    assert body["ok"] and body["handover_resolved"] and body["backend_notified"]
    removed = body["removed"]
    assert removed["dead_letters"] == 1 and removed["thread_mappings"] == 1
    assert removed["history_entries"] >= 4 and removed["keys"] >= 2 and removed["other_keys"] == 0
    resolved = [b for b in fake_reply.bodies() if b.get("type") == "handover_resolved"]
    assert [(b["client_id"], b["reason"]) for b in resolved] == [("ann", "forgotten")]

    # Slack: every post of the bridge in ann's thread deleted (the resolve's note and root update
    # included), the agent's message left and counted; the root stays as a tombstone above it.
    assert set(ours) <= {ts for _, ts in fake_slack.deleted}
    assert body["slack"]["deleted"] == len(fake_slack.deleted) >= len(ours)
    assert body["slack"] == {
        "threads": 1,
        "deleted": len(fake_slack.deleted),
        "files_deleted": 1,
        "others_remaining": 1,
    }
    [transcript] = fake_slack.uploaded(CHANNEL, root_ts)
    assert transcript.deleted and transcript.content is None
    assert [m.text for m in fake_slack.replies(CHANNEL, root_ts)] == ["an agent's words"]
    assert fake_slack.message(CHANNEL, root_ts).subtype == "tombstone"  # type: ignore[union-attr]
    assert all(call.response["ok"] for call in fake_slack.calls_to("chat.delete"))

    assert await traces(redis_url, "skill1", "ann") == []
    assert await traces(redis_url, "skill1", "zoe")  # untouched

    status, again = await admin_delete(bridge.url, "skill1", "ann", slack=True)
    assert status == 200 and again["ok"] and not again["handover_resolved"]
    assert set(again["removed"].values()) == {0}
    assert again["slack"] == {"threads": 0, "deleted": 0, "files_deleted": 0, "others_remaining": 0}
    # A new message from ann after being forgotten starts from nothing.
    assert await bridge.hook(message("ann", "hello again", "hi")) == (200, {"ok": True})


async def test_forget_through_the_cli(
    bridge: BridgeProcess, fake_slack: FakeSlack, fake_reply: FakeReply, redis_url: str
) -> None:
    root_ts = await open_claimed(bridge, fake_slack, "bob")
    ours = bridge_posts_in(fake_slack, root_ts)
    done = await bridge.cli("forget", "skill1", "bob", "--slack", "--json")
    assert done.returncode == 0, done.stderr
    report = orjson.loads(done.stdout)
    assert report["handover_resolved"] and report["backend_notified"]
    assert report["removed"]["thread_mappings"] == 1 and report["slack"]["others_remaining"] == 1
    assert set(ours) <= {ts for _, ts in fake_slack.deleted}
    assert await traces(redis_url, "skill1", "bob") == []
    assert [b["reason"] for b in fake_reply.bodies() if b.get("type") == "handover_resolved"] == ["forgotten"]

    done = await bridge.cli("forget", "skill1", "bob")
    assert done.returncode == 0, done.stderr
    assert "forgot skill1 / bob" in done.stdout and "removed from Redis: 0 key(s)" in done.stdout
    assert "resolved" not in done.stdout


async def test_forget_without_a_handover_and_without_slack(bridge: BridgeProcess, redis_url: str) -> None:
    assert await bridge.hook(message("cy", "just chatting", "sure")) == (200, {"ok": True})
    done = await bridge.cli("forget", "skill1", "cy")
    assert done.returncode == 0, done.stderr
    assert "removed from Redis: 2 key(s), 1 history entries" in done.stdout, done.stdout
    assert await traces(redis_url, "skill1", "cy") == []


async def test_admin_endpoint_answers_401_on_a_wrong_token(bridge: BridgeProcess) -> None:
    for token in ("wrong", ADMIN_TOKEN[:-1], None):
        status, body = await admin_delete(bridge.url, "skill1", "ann", token=token)
        assert (status, body) == (401, {"ok": False, "error": "unauthorized"})
    assert not any(ADMIN_TOKEN in line for line in bridge.stdout_path.read_text().splitlines())


async def test_admin_token_bytes_that_are_not_utf8_are_a_401_not_a_500(bridge: BridgeProcess) -> None:
    request = (
        b"DELETE /admin/conversations/skill1/ann HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Authorization: Bearer \xff\xfe\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    status, body, _ = await raw_exchange(bridge, request)
    assert (status, orjson.loads(body)) == (401, {"ok": False, "error": "unauthorized"})
    assert bridge.log_events("request_failed") == []


async def test_admin_endpoint_is_404_without_an_admin_token(make_bridge: Any) -> None:
    bridge: BridgeClient = await make_bridge()
    response = await bridge.client.delete(
        "/admin/conversations/skill1/ann", headers={"Authorization": "Bearer anything"}
    )
    assert response.status == 404
    assert await response.json() == {"ok": False, "error": "not found"}
