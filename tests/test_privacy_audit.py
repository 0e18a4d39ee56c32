"""Issue 18.3: the audit trail. A full handover (opened, a claim, a reply, a resolve) and a forget,
through a running `bridge serve` (real HTTP, real valkey-server, fake Slack), read back with
`bridge audit` as an operator would; message texts never reach the trail."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from redis.asyncio import Redis

from bridge.config import parse_config
from bridge.keys import AUDIT_KEY, conversation_id
from bridge.privacy.audit import audit
from bridge.privacy.store import append_audit, audit_entries
from bridge.runtime import BRIDGE
from bridge.slack_format import CLAIM_ACTION, RESOLVE_ACTION
from bridge.store import Store
from tests.harness import eventually, wait_until
from tests.harness.bridge_process import BridgeProcess
from tests.harness.fake_reply import FakeReply
from tests.harness.fake_slack import FakeSlack
from tests.helpers import (
    CHANNEL,
    QUICK_DELIVERY,
    block_action,
    escalation,
    message,
    relaying_bridge,
    signed_headers,
    thread_reply_event,
)

ADMIN_TOKEN = "admin-token-for-audit-0001"
DELIVERY = QUICK_DELIVERY
USER_WORDS, AGENT_WORDS = "my secret words", "the agent's private answer"


@pytest.fixture
async def bridge(
    tmp_path: Path, redis_url: str, fake_slack: FakeSlack, fake_reply: FakeReply
) -> AsyncIterator[BridgeProcess]:
    async with relaying_bridge(
        tmp_path,
        redis_url,
        fake_slack.url,
        fake_reply.url,
        config={"delivery": DELIVERY, "privacy": {"audit": True}},
        env={"BRIDGE_ADMIN_TOKEN": ADMIN_TOKEN},
    ) as bridge:
        yield bridge


async def post(url: str, body: bytes, content_type: str) -> None:
    headers = signed_headers(body, content_type=content_type)
    async with aiohttp.ClientSession() as http, http.post(url, data=body, headers=headers) as response:
        assert response.status == 200


async def click(bridge: BridgeProcess, root_ts: str, action_id: str, user: str = "UAGENT01") -> None:
    body = block_action(CHANNEL, root_ts, action_id, user=user)
    await post(f"{bridge.url}/slack/interactions", body, "application/x-www-form-urlencoded")


async def agent_says(bridge: BridgeProcess, root_ts: str, text: str, user: str = "UAGENT02") -> None:
    body = orjson.dumps(thread_reply_event(CHANNEL, root_ts, text, user=user))
    await post(f"{bridge.url}/slack/events", body, "application/json")


async def trail(bridge: BridgeProcess, *args: str) -> list[dict[str, Any]]:
    done = await bridge.cli("audit", "--json", *args)
    assert done.returncode == 0, done.stderr
    return [orjson.loads(line) for line in done.stdout.splitlines() if line.strip()]


async def open_thread(bridge: BridgeProcess, fake_slack: FakeSlack, client: str, nth: int = 1) -> str:
    """The `nth` handover of `client` opened, and its thread known to the bridge; its root's ts."""
    assert await bridge.hook(message(client, USER_WORDS, "bot words", seq=nth)) == (200, {"ok": True})
    assert await bridge.hook(escalation(client)) == (200, {"ok": True})
    roots = lambda: [r for r in fake_slack.roots(CHANNEL) if client in r.text]  # noqa: E731
    await wait_until(lambda: len(roots()) == nth, 10)
    opened = lambda: [e for e in bridge.log_events("handover_thread_opened") if client in e["cid"]]  # noqa: E731
    await wait_until(lambda: len(opened()) == nth, 10)
    return roots()[-1].ts


async def test_audit_trail_of_a_full_handover_and_a_forget(
    bridge: BridgeProcess, fake_slack: FakeSlack, fake_reply: FakeReply, redis_url: str
) -> None:
    root_ts = await open_thread(bridge, fake_slack, "ann")
    await click(bridge, root_ts, CLAIM_ACTION, user="UAGENT01")
    await agent_says(bridge, root_ts, AGENT_WORDS, user="UAGENT01")
    await wait_until(lambda: any(b.get("type") == "agent_message" for b in fake_reply.bodies()), 10)
    await click(bridge, root_ts, RESOLVE_ACTION, user="UAGENT01")
    # A second handover, claimed by replying (no button), still open when ann is forgotten.
    root2 = await open_thread(bridge, fake_slack, "ann", 2)
    await agent_says(bridge, root2, "taking this one", user="UAGENT02")
    await wait_until(lambda: len([b for b in fake_reply.bodies() if b.get("type") == "agent_message"]) == 2)
    async with aiohttp.ClientSession() as http:
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        async with http.delete(f"{bridge.url}/admin/conversations/skill1/ann", headers=headers) as response:
            assert response.status == 200
            forgotten = orjson.loads(await response.read())
    assert forgotten["backend_notified"], forgotten
    # bob's root is refused for good, then replayed by an operator.
    fake_slack.fail_channel(CHANNEL, "is_archived")
    assert await bridge.hook(escalation("bob")) == (200, {"ok": True})
    await wait_until(lambda: bridge.log_events("dead_letter"), 10)
    fake_slack.fail_channel(CHANNEL, None)
    replayed = await bridge.cli("outbox", "replay", "--all")
    assert replayed.returncode == 0, replayed.stderr

    await wait_until(lambda: len(fake_slack.roots(CHANNEL)) == 3, 10)
    entries = await trail(bridge, "--client-id", "ann")
    assert [(e["actor"], e["action"]) for e in entries] == [
        ("system", "opened"),
        ("UAGENT01", "claimed"),
        ("UAGENT01", "reply_relayed"),
        ("UAGENT01", "resolved"),
        ("system", "opened"),
        ("UAGENT02", "claimed"),
        ("UAGENT02", "reply_relayed"),
        ("admin", "resolved"),
        ("admin", "forgotten"),
    ]
    assert all(e["skill_id"] == "skill1" and e["client_id"] == "ann" for e in entries)
    assert [e["detail"] for e in entries][:2] == [
        "hid=1 trigger=escalation_requested route=default",
        "button",
    ]
    assert entries[7]["detail"] == "forgotten" and "dead_letters=0" in entries[-1]["detail"]
    times = [e["at"] for e in entries]
    assert times == sorted(times) and all(t.endswith("+00:00") for t in times)

    # Filters; newest last; another user's entries apart.
    resolved = await trail(bridge, "--action", "resolved", "--since", "1h")
    assert [(e["client_id"], e["actor"]) for e in resolved] == [("ann", "UAGENT01"), ("ann", "admin")]
    done = await bridge.cli("audit", "--client-id", "ann")
    assert done.returncode == 0 and "admin         forgotten" in done.stdout
    assert done.stderr.strip() == "9 audit entries"
    (replay,) = await trail(bridge, "--action", "dead_letter_replayed")
    assert (replay["actor"], replay["client_id"], replay["detail"]) == (
        "cli",
        "bob",
        "slack root (was is_archived)",
    )

    # No message text anywhere in the trail.
    redis = Redis.from_url(redis_url)
    try:
        raw = repr(await redis.xrange(AUDIT_KEY))
    finally:
        await redis.aclose()
    for words in (USER_WORDS, AGENT_WORDS, "taking this one", "bot words"):
        assert words not in raw


async def test_audit_is_off_by_default_and_trimmed_by_retention(redis_url: str) -> None:
    redis = Redis.from_url(redis_url)
    store = Store(redis, partitions=4)
    cid = conversation_id("s", "c")
    try:
        off = parse_config("").privacy
        await audit(store, off, "opened", actor="system", cid=cid)
        assert await redis.exists(AUDIT_KEY) == 0
        on = parse_config("privacy: {audit: true, audit_retention: 1s}").privacy
        await audit(store, on, "opened", actor="system", cid=cid)
        assert len(await audit_entries(store, 0)) == 1
        with pytest.raises(ValueError):
            await audit(store, on, "deleted", actor="cli", cid=cid)
        # An entry older than the retention goes with the next append.
        await asyncio.sleep(0.2)
        now_ms = int(time.time() * 1000)
        await append_audit(store, {"action": "claimed"}, now_ms=now_ms, retention_ms=100)
        assert [e["action"] for e in await audit_entries(store, 0)] == ["claimed"]
    finally:
        await redis.aclose()


async def test_audit_of_take_over_outcome_reopen_and_transfer(
    make_bridge: Any, fake_slack: FakeSlack, fake_reply: FakeReply
) -> None:
    """The other features' changes land in the same trail: taken_over (the take-over button),
    resolved with its outcome (the desk's modal), reopened and transferred."""
    from tests.test_agents import ALICE, BOB, open_handover
    from tests.test_desk import BILLING, button, interact, selected, submission
    from tests.test_slack_agents import take_over

    route = {"name": "billing", "match": {"lang": "en-*"}, "channel": BILLING}
    file = {
        "privacy": {"audit": True},
        "handover": {"outcomes": ["solved", "spam"], "reopen_window": "1m"},
        "routes": [route],
    }
    bridge = await make_bridge(file=file)
    root_ts = await open_handover(bridge, fake_slack, fake_reply, client_id="kim")
    assert await interact(bridge, button(fake_slack, root_ts, "handover_claim", user=ALICE)) == (200, {})
    assert await bridge.interaction(take_over(root_ts, user=BOB)) == 200
    assert await interact(bridge, button(fake_slack, root_ts, "handover_resolve", user=BOB)) == (200, {})
    outcome = submission(fake_slack.modals[-1], {"outcome": selected("solved")}, user=BOB)
    assert await interact(bridge, outcome) == (200, {})
    await wait_until(lambda: any(b.get("type") == "handover_resolved" for b in fake_reply.bodies()))
    assert await interact(bridge, button(fake_slack, root_ts, "handover_reopen", user=ALICE)) == (200, {})
    assert await interact(bridge, button(fake_slack, root_ts, "handover_transfer", user=ALICE)) == (200, {})
    moved = submission(fake_slack.modals[-1], {"route": selected("billing")}, user=ALICE)
    assert await interact(bridge, moved) == (200, {})

    store = bridge.app[BRIDGE].store
    entries: list[dict[str, str]] = []

    async def transferred() -> bool:
        entries[:] = [e for e in await audit_entries(store, 0) if e["client_id"] == "kim"]
        return any(e["action"] == "transferred" for e in entries)

    await eventually(transferred)
    assert [(e["actor"], e["action"], e["detail"]) for e in entries] == [
        ("system", "opened", "hid=1 trigger=escalation_requested route=default"),
        (ALICE, "claimed", "button"),
        (BOB, "taken_over", "button"),
        (BOB, "resolved", "outcome=solved"),
        (ALICE, "reopened", "button"),
        (ALICE, "transferred", "to_route=billing"),
    ]
