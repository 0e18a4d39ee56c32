"""Issue 3: permanent Slack errors go to the dead-letter stream — logged with the reason, counted,
listed and replayed by an operator with `python -m bridge outbox list-dead|replay` (a real subprocess,
REDIS_URL set), and a replay after the fix delivers the root, then its lines, in order."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from bridge.keys import conversation_id
from tests.harness import wait_until
from tests.harness.bridge_process import BridgeProcess
from tests.harness.fake_slack import FakeSlack
from tests.helpers import CHANNEL, escalation, message, suite_fleet

DELIVERY = {
    "posts_per_second": 100,
    "burst": 100,
    "poll_interval": "100ms",
    "backoff_base": "100ms",
    "backoff_max": "1s",
    "lease": "3s",
}
LINE_NUMBER = re.compile(r"\bm-(\d{3})\b")


@pytest.fixture
async def bridge(tmp_path: Path, redis_url: str, fake_slack: FakeSlack) -> AsyncIterator[BridgeProcess]:
    fleet = suite_fleet(tmp_path, redis_url, fake_slack.url)
    try:
        yield await fleet.start(config={"delivery": DELIVERY})
    finally:
        await fleet.close()


async def list_dead(bridge: BridgeProcess) -> list[dict[str, Any]]:
    done = await bridge.cli("outbox", "list-dead", "--json")
    assert done.returncode == 0, done.stderr
    return [orjson.loads(line) for line in done.stdout.splitlines() if line.strip()]


async def send(bridge: BridgeProcess, client: str, lines: range) -> None:
    assert await bridge.hook(escalation(client)) == (200, {"ok": True})
    for i in lines:
        assert await bridge.hook(message(client, f"m-{i:03d}", "ok")) == (200, {"ok": True})


def thread_numbers(fake: FakeSlack, cid: str) -> tuple[int, list[int]]:
    """(roots posted for `cid`, line numbers in its thread in order)."""
    roots = [r for r in fake.roots(CHANNEL) if (r.metadata or {})["event_payload"]["conversation"] == cid]
    replies = [m for root in roots for m in fake.replies(CHANNEL, root.ts)]
    return len(roots), [int(n) for m in replies for n in LINE_NUMBER.findall(m.text)]


async def test_list_dead_on_an_empty_outbox(bridge: BridgeProcess) -> None:
    done = await bridge.cli("outbox", "list-dead")
    assert (done.returncode, done.stdout) == (0, "")
    assert "0 dead letter(s)" in done.stderr


@pytest.mark.parametrize("error", ["channel_not_found", "not_in_channel", "is_archived", "restricted_action"])
async def test_dead_root_then_no_thread_lines_replayed_in_order_after_the_fix(
    bridge: BridgeProcess, fake_slack: FakeSlack, error: str
) -> None:
    fake_slack.fail_channel(CHANNEL, error)
    cid = conversation_id("skill1", "dead")
    await send(bridge, "dead", range(5))
    await wait_until(lambda: len(bridge.log_events("dead_letter")) == 6, 10)

    letters = await list_dead(bridge)
    assert [(d["kind"], d["reason"], d["conversation"], d["lane"]) for d in letters] == (
        [("root", error, cid, "slack")] + [("line", "no_thread", cid, "slack")] * 5
    )
    assert letters[0]["channel"] == CHANNEL  # where the root was going (the lines had no thread yet)
    assert fake_slack.posts() == []  # one failed attempt for the root, none for the lines
    assert len(fake_slack.calls_to("chat.postMessage")) == 1
    logged = bridge.log_events("dead_letter")
    assert [e["reason"] for e in logged] == [error] + ["no_thread"] * 5
    assert all(e["cid"] == cid and e["level"] == "error" for e in logged)
    assert logged[0]["channel"] == CHANNEL
    assert await bridge.metric("bridge_dead_letters_total", lane="slack", reason=error) == 1
    assert await bridge.metric("bridge_dead_letters_total", lane="slack", reason="no_thread") == 5
    human = await bridge.cli("outbox", "list-dead")
    assert human.returncode == 0 and "6 dead letter(s)" in human.stderr
    assert len(human.stdout.splitlines()) == 6 and error in human.stdout.splitlines()[0]
    assert human.stdout.splitlines()[0].endswith(CHANNEL)

    # Still broken: a replay dead-letters them again, in the same order, and nothing is lost.
    done = await bridge.cli("outbox", "replay", "--all")
    assert (done.returncode, done.stdout.strip()) == (0, "replayed 6 dead letter(s)")
    await wait_until(lambda: len(bridge.log_events("dead_letter")) == 12, 10)
    assert [(d["kind"], d["reason"]) for d in await list_dead(bridge)] == (
        [("root", error)] + [("line", "no_thread")] * 5
    )

    fake_slack.fail_channel(CHANNEL, None)  # the operator fixes the channel
    done = await bridge.cli("outbox", "replay", "--all")
    assert (done.returncode, done.stdout.strip()) == (0, "replayed 6 dead letter(s)")
    await wait_until(lambda: thread_numbers(fake_slack, cid)[1] == list(range(5)), 10)
    assert await list_dead(bridge) == []

    # and the handover goes on in the thread that now exists
    assert await bridge.hook(message("dead", "m-005", "ok")) == (200, {"ok": True})
    await wait_until(lambda: thread_numbers(fake_slack, cid)[1] == list(range(6)), 10)
    assert thread_numbers(fake_slack, cid)[0] == 1
    print(f"DEAD-LETTER {error}: buried=12 replayed=12 delivered=6/6 duplicated=0 out_of_order=0")


async def test_replay_chosen_ids_and_by_reason(bridge: BridgeProcess, fake_slack: FakeSlack) -> None:
    fake_slack.fail_channel(CHANNEL, "channel_not_found")
    await send(bridge, "pick", range(2))
    await wait_until(lambda: len(bridge.log_events("dead_letter")) == 3, 10)
    letters = await list_dead(bridge)

    nothing = await bridge.cli("outbox", "replay")
    assert nothing.returncode == 2 and "--all" in nothing.stderr

    unknown = await bridge.cli("outbox", "replay", "1-1", letters[0]["id"])
    assert unknown.returncode == 1
    assert "no dead letter 1-1" in unknown.stderr and "replayed 1 dead letter(s)" in unknown.stdout
    # the replayed root failed again (channel still broken): buried anew, under a new id, at the end
    await wait_until(lambda: len(bridge.log_events("dead_letter")) == 4, 10)
    again = await list_dead(bridge)
    assert [d["kind"] for d in again] == ["line", "line", "root"]
    assert letters[0]["id"] not in {d["id"] for d in again}

    fake_slack.fail_channel(CHANNEL, None)
    done = await bridge.cli("outbox", "replay", "--all", "--reason", "channel_not_found")
    assert done.stdout.strip() == "replayed 1 dead letter(s)"
    cid = conversation_id("skill1", "pick")
    await wait_until(lambda: thread_numbers(fake_slack, cid)[0] == 1, 10)
    assert [d["reason"] for d in await list_dead(bridge)] == ["no_thread", "no_thread"]
    done = await bridge.cli("outbox", "replay", "--all", "--reason", "no_thread")
    assert done.stdout.strip() == "replayed 2 dead letter(s)"
    await wait_until(lambda: thread_numbers(fake_slack, cid)[1] == [0, 1], 10)
    assert await list_dead(bridge) == []
