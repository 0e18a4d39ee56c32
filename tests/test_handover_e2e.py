"""Issue: end-to-end handover, through the real webhook endpoint, a real valkey-server and a fake Slack."""

from __future__ import annotations

import asyncio

import orjson

from bridge.keys import conversation_id
from bridge.runtime import BRIDGE
from tests.harness import eventually, wait_until
from tests.harness.fake_slack import FakeSlack
from tests.helpers import CHANNEL, GUIDE_ESCALATION, GUIDE_MESSAGE_RECEIVED, BridgeClient, escalation, message


def thread_texts(fake: FakeSlack, root_ts: str) -> str:
    return "\n".join(m.text for m in fake.replies(CHANNEL, root_ts))


async def test_history_then_escalation_opens_one_thread_with_history_in_order(
    bridge: BridgeClient, fake_slack: FakeSlack
) -> None:
    for i in range(5):
        assert await bridge.hook(message("alice", f"question {i}", f"answer {i}")) == (200, {"ok": True})
    assert fake_slack.posts() == []  # no handover yet: nothing in Slack

    status, body = await bridge.hook(escalation("alice"))
    assert (status, body) == (200, {"ok": True})
    await wait_until(
        lambda: (
            len(fake_slack.roots(CHANNEL)) == 1
            and fake_slack.replies(CHANNEL, fake_slack.roots(CHANNEL)[0].ts)
        )
    )
    root = fake_slack.roots(CHANNEL)[0]
    assert "alice" in root.text and "escalation requested" in root.text
    text = thread_texts(fake_slack, root.ts)
    positions = [text.index(f"question {i}") for i in range(5)] + [text.index("answer 4")]
    assert positions[:5] == sorted(positions[:5])
    assert text.index("question 4") < text.index("answer 4")

    # live follow
    for i in range(3):
        await bridge.hook(message("alice", f"live {i}", f"live answer {i}"))
    await wait_until(lambda: "live answer 2" in thread_texts(fake_slack, root.ts))
    text = thread_texts(fake_slack, root.ts)
    assert text.index("live 0") < text.index("live 1") < text.index("live 2")
    assert len(fake_slack.roots(CHANNEL)) == 1


async def test_guide_payloads_exactly_as_written(bridge: BridgeClient, fake_slack: FakeSlack) -> None:
    assert await bridge.hook(GUIDE_MESSAGE_RECEIVED) == (200, {"ok": True})
    # need_help: true in the guide's payload opens a handover
    await wait_until(lambda: len(fake_slack.roots(CHANNEL)) == 1)
    root = fake_slack.roots(CHANNEL)[0]
    assert "123abc" in root.text
    blocks = orjson.dumps(root.blocks).decode()
    assert "webchat" in blocks and "fr-fr" in blocks and "HelpIntent" in blocks
    await wait_until(lambda: "aide" in thread_texts(fake_slack, root.ts))
    assert "Nous allons vérifier si un agent est disponible" in thread_texts(fake_slack, root.ts)

    assert await bridge.hook(GUIDE_ESCALATION) == (200, {"ok": True})
    await wait_until(lambda: len(fake_slack.roots(CHANNEL)) == 2)  # skill "123" is another conversation
    escalated = fake_slack.roots(CHANNEL)[1]
    assert "escalation requested" in escalated.text and "webchat" in orjson.dumps(escalated.blocks).decode()


async def test_concurrent_escalations_open_one_thread(bridge: BridgeClient, fake_slack: FakeSlack) -> None:
    await bridge.hook(message("bob", "hello"))
    results = await asyncio.gather(*(bridge.hook(escalation("bob")) for _ in range(50)))
    assert all(status == 200 for status, _ in results)
    await wait_until(lambda: len(fake_slack.roots(CHANNEL)) >= 1)
    store = bridge.app[BRIDGE].store
    assert (await store.conversation(conversation_id("skill1", "bob")))["hid"] == "1"  # one handover opened

    async def all_delivered() -> bool:
        return not any((await store.pending_counts()).values())  # every lane drained

    await eventually(all_delivered)
    assert len(fake_slack.roots(CHANNEL)) == 1
