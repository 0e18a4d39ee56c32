"""Issue 15 item 4: `bridge handovers list|show|resolve` as an operator runs them (a real subprocess with
the bridge's environment) on real handovers opened through a running `bridge serve`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from bridge.slack_format import CLAIM_ACTION
from tests.harness import wait_until
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
)

DELIVERY = QUICK_DELIVERY


@pytest.fixture
async def bridge(
    tmp_path: Path, redis_url: str, fake_slack: FakeSlack, fake_reply: FakeReply
) -> AsyncIterator[BridgeProcess]:
    async with relaying_bridge(
        tmp_path, redis_url, fake_slack.url, fake_reply.url, config={"delivery": DELIVERY}
    ) as bridge:
        yield bridge


async def open_two(bridge: BridgeProcess, fake_slack: FakeSlack) -> None:
    """ann: open with history and a line waiting; bob: claimed by Alice through the Claim button."""
    for client in ("ann", "bob"):
        assert await bridge.hook(message(client, f"hello from {client}", "bot answer")) == (200, {"ok": True})
        assert await bridge.hook(escalation(client)) == (200, {"ok": True})
    await wait_until(lambda: len(fake_slack.roots(CHANNEL)) == 2, 10)
    bob_root = next(r for r in fake_slack.roots(CHANNEL) if "bob" in r.text)
    body = block_action(CHANNEL, bob_root.ts, CLAIM_ACTION)
    headers = signed_headers(body, content_type="application/x-www-form-urlencoded")
    url = f"{bridge.url}/slack/interactions"
    async with aiohttp.ClientSession() as http, http.post(url, data=body, headers=headers) as response:
        assert response.status == 200


async def cli_json_lines(bridge: BridgeProcess, *args: str) -> list[dict[str, Any]]:
    done = await bridge.cli(*args, "--json")
    assert done.returncode == 0, done.stderr
    return [orjson.loads(line) for line in done.stdout.splitlines() if line.strip()]


async def test_list_shows_every_open_handover_and_filters(
    bridge: BridgeProcess, fake_slack: FakeSlack
) -> None:
    await open_two(bridge, fake_slack)
    await wait_until(lambda: fake_slack.calls_to("chat.update"), 10)

    rows = {row["client_id"]: row for row in await cli_json_lines(bridge, "handovers", "list")}
    assert set(rows) == {"ann", "bob"}
    ann, bob = rows["ann"], rows["bob"]
    assert (ann["skill_id"], ann["route"], ann["channel"]) == ("skill1", "default", CHANNEL)
    assert ann["state"] == "open"
    assert ann["agent"] is None and bob["state"] == "claimed"
    assert bob["agent"] == {"slack_user_id": "UAGENT01", "name": "alice"}
    root = next(r for r in fake_slack.roots(CHANNEL) if "ann" in r.text)
    assert ann["thread_ts"] == root.ts
    link = f"https://fake-workspace.slack.com/archives/{CHANNEL}/p{root.ts.replace('.', '')}"
    assert ann["permalink"] == link
    assert ann["waiting_for_slack"] == 0 and ann["opened_ago"].endswith("s")
    assert fake_slack.calls_to("chat.getPermalink")

    claimed = await cli_json_lines(bridge, "handovers", "list", "--state", "claimed")
    assert [row["client_id"] for row in claimed] == ["bob"]
    assert await cli_json_lines(bridge, "handovers", "list", "--channel", "C0OTHER1") == []

    done = await bridge.cli("handovers", "list")
    assert done.returncode == 0 and done.stderr.strip() == "2 open handover(s)"
    ann_line = next(line for line in done.stdout.splitlines() if "  ann  " in line)
    assert f"route=default  {CHANNEL}  open  agent=-" in ann_line and "archives" in ann_line


async def test_show_gives_state_history_pending_and_dead_letters(
    bridge: BridgeProcess, fake_slack: FakeSlack
) -> None:
    fake_slack.fail_channel(CHANNEL, "is_archived")  # the root is dead-lettered, its lines wait behind
    assert await bridge.hook(message("cy", "first words", "bot says")) == (200, {"ok": True})
    assert await bridge.hook(escalation("cy")) == (200, {"ok": True})
    await wait_until(lambda: bridge.log_events("dead_letter"), 10)

    [shown] = await cli_json_lines(bridge, "handovers", "show", "skill1", "cy")
    assert shown["state"] == "open" and shown["header"]["route"] == "default"
    assert [(e["in"], e["out"]) for e in shown["history"]] == [("first words", "bot says")]
    assert [(d["kind"], d["reason"]) for d in shown["dead_letters"]] == [
        ("root", "is_archived"),
        ("hist", "no_thread"),  # the lines behind a dead root
    ]
    assert shown["pending"] == {"slack": [], "reply": [], "file": []}

    fake_slack.fail_channel(CHANNEL, None)
    fake_slack.fail_with_status(503, methods=["chat.postMessage"])  # Slack away: dee's posts wait
    assert await bridge.hook(message("dee", "hi", "hello")) == (200, {"ok": True})
    assert await bridge.hook(escalation("dee")) == (200, {"ok": True})
    await wait_until(lambda: bridge.log_events("delivery_retry"), 10)
    [shown] = await cli_json_lines(bridge, "handovers", "show", "skill1", "dee")
    assert [e["kind"] for e in shown["pending"]["slack"]] == ["root", "hist"]
    assert shown["dead_letters"] == [] and shown["permalink"] == ""  # no thread yet
    rows = {
        row["client_id"]: row
        for row in await cli_json_lines(bridge, "handovers", "list", "--channel", CHANNEL)
    }
    dee = rows["dee"]  # before its thread exists, the channel its route chose
    assert (dee["channel"], dee["thread_ts"], dee["permalink"]) == (CHANNEL, "", "")
    assert dee["waiting_for_slack"] == 2

    done = await bridge.cli("handovers", "show", "skill1", "cy")
    assert done.returncode == 0
    assert "skill1 cy: open" in done.stdout and "first words" in done.stdout and "is_archived" in done.stdout

    missing = await bridge.cli("handovers", "show", "skill1", "nobody")
    assert missing.returncode == 1 and "no conversation skill1 nobody" in missing.stderr


async def test_resolve_closes_it_as_the_button_does(
    bridge: BridgeProcess, fake_slack: FakeSlack, fake_reply: FakeReply
) -> None:
    await open_two(bridge, fake_slack)
    ann_root = next(r for r in fake_slack.roots(CHANNEL) if "ann" in r.text)

    done = await bridge.cli("handovers", "resolve", "skill1", "ann", "--reason", "customer called back")
    assert done.returncode == 0, done.stderr
    assert "resolved skill1 ann" in done.stdout

    def resolved_told() -> list[dict[str, Any]]:
        return [
            b for b in fake_reply.bodies() if b["type"] == "handover_resolved" and b["client_id"] == "ann"
        ]

    await wait_until(resolved_told, 10)
    [told] = resolved_told()
    assert told["agent"] is None and told["reason"] == "customer called back"
    assert told["thread_ts"] == ann_root.ts
    await wait_until(lambda: any("Resolved" in str(e.get("blocks")) for e in ann_root.edits), 10)
    await wait_until(
        lambda: any("customer called back" in t for t in fake_slack.thread(CHANNEL, ann_root.ts)), 10
    )
    rows = await cli_json_lines(bridge, "handovers", "list")
    assert [row["client_id"] for row in rows] == ["bob"]

    again = await bridge.cli("handovers", "resolve", "skill1", "ann")
    assert again.returncode == 1 and "no open handover for skill1 ann" in again.stderr
