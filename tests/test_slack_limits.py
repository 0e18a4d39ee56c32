"""Issue 14 item 3: every message within Slack's limits. Pure cutting, then through the real webhook
endpoint against the strict fake Slack (which refuses what Slack refuses)."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from structlog.testing import capture_logs

from bridge import slack_format as f
from bridge.slack_limits import (
    CONTEXT_ELEMENTS_MAX,
    HEADER_TEXT_MAX,
    MESSAGE_TEXT_MAX,
    SECTION_FIELD_MAX,
    SECTION_TEXT_MAX,
    cut,
    fit_blocks,
)
from tests.harness import wait_until
from tests.harness.fake_reply import FakeReply
from tests.harness.fake_slack import FakeSlack
from tests.helpers import CHANNEL, BridgeClient, message, thread_reply_event


@given(st.text(max_size=300), st.integers(min_value=2, max_value=200))
def test_cut_fits_ends_in_ellipsis_and_never_splits_an_entity(text: str, limit: int) -> None:
    escaped = f.escape(text)
    out = cut(escaped, limit)
    assert len(out) <= limit
    if len(escaped) <= limit:
        assert out == escaped
    else:
        assert out.endswith("…") and escaped.startswith(out[:-1])
        assert out[:-1].count("&") == out[:-1].count(";")  # every &amp; / &lt; / &gt; whole


def test_root_message_fits_block_kit_with_huge_fields() -> None:
    huge = "&<x>" * 3000
    text, blocks = f.root_message(
        {
            "client_id": "c" * 5000,
            "user_id": "u" * 5000,
            "intent": huge,
            "category": huge,
            "trigger": "intents",
            "note": huge,
            "skill_id": "s" * 3000,
        }
    )
    assert len(text) <= MESSAGE_TEXT_MAX
    for block in blocks:
        if block["type"] == "section" and "text" in block:
            assert len(block["text"]["text"]) <= SECTION_TEXT_MAX
        for field in block.get("fields", []):
            assert len(field["text"]) <= SECTION_FIELD_MAX
        if block["type"] == "context":
            assert len(block["elements"]) <= CONTEXT_ELEMENTS_MAX
            assert all(len(e["text"]) <= 3000 for e in block["elements"])
    intent = next(
        fl["text"] for b in blocks for fl in b.get("fields", []) if fl["text"].startswith("*Intent*")
    )
    assert intent.endswith("…") and "&amp;&lt;x&gt;" in intent


def test_fit_blocks_cuts_headers_and_context_elements() -> None:
    blocks = fit_blocks(
        [
            {"type": "header", "text": {"type": "plain_text", "text": "h" * 500}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": "c"}] * 15},
        ]
    )
    assert len(blocks[0]["text"]["text"]) == HEADER_TEXT_MAX
    assert len(blocks[1]["elements"]) == CONTEXT_ELEMENTS_MAX


async def test_a_handover_with_a_huge_intent_and_first_message_still_opens(
    bridge: BridgeClient, fake_slack: FakeSlack
) -> None:
    """Before: the Intent field over 2,000 characters made Slack refuse the root (invalid_blocks),
    the handover never appeared."""
    long_intent = "OrderStatus" * 400  # 4,400 characters
    opening = message(
        "zed",
        "where is my parcel " * 300,
        "Let me check",
        need_help=True,
        intent=long_intent,
        handover_category_name="Delivery & returns " * 200,
    )
    assert await bridge.hook(opening) == (200, {"ok": True})
    await wait_until(lambda: len(fake_slack.roots(CHANNEL)) == 1)
    root = fake_slack.roots(CHANNEL)[0]
    assert root.blocks is not None
    assert [c for c in fake_slack.calls if not c.response.get("ok")] == []
    fields = [fl["text"] for b in root.blocks for fl in b.get("fields", [])]
    assert any(t.startswith("*Intent*\nOrderStatusOrderStatus") and t.endswith("…") for t in fields)
    await wait_until(lambda: len(fake_slack.replies(CHANNEL, root.ts)) >= 1)


async def test_root_refused_for_its_blocks_is_posted_again_as_text_only(
    make_bridge: Any, fake_slack: FakeSlack, fake_reply: FakeReply
) -> None:
    """Whatever slack_limits missed: Slack answers invalid_blocks to every call with blocks. The thread
    still opens (text only, no buttons), its lines follow, an agent's reply claims it and the root's
    updates go as text too; nothing is dead-lettered."""
    bridge = await make_bridge()
    fake_slack.fail_with_error(
        "invalid_blocks",
        methods=["chat.postMessage", "chat.update"],
        only_with="blocks",
        errors=["invalid additional property: x"],
    )
    with capture_logs() as logs:
        assert await bridge.hook(message("yan", "my parcel", "Let me check", need_help=True)) == (
            200,
            {"ok": True},
        )
        await wait_until(lambda: len(fake_slack.roots(CHANNEL)) == 1)
        root = fake_slack.roots(CHANNEL)[0]
        assert root.blocks is None and "Handover: need help" in root.text
        assert "*Platform*: webchat" in root.text and "reply in the thread to claim" in root.text
        await wait_until(lambda: any("my parcel" in t for t in fake_slack.thread(CHANNEL, root.ts)[1:]))
        await wait_until(lambda: root.ts in [b.get("thread_ts") for b in fake_reply.bodies()])
        envelope = thread_reply_event(CHANNEL, root.ts, "hello, I am on it")
        assert await bridge.slack_event(envelope) == (200, {"ok": True})
        await wait_until(
            lambda: "Claimed by <@UAGENT01>" in (fake_slack.message(CHANNEL, root.ts) or root).text
        )
        await wait_until(
            lambda: (
                [b.get("text") for b in fake_reply.bodies() if b["type"] == "agent_message"]
                == ["hello, I am on it"]
            )
        )
    rejected = [e for e in logs if e["event"] == "root_blocks_rejected"]
    assert len(rejected) == 2 and all(e["log_level"] == "error" for e in rejected)  # the post, the update
    assert rejected[0]["reason"] == "invalid_blocks" and rejected[0]["channel"] == CHANNEL
    assert not [e for e in logs if e["event"] == "dead_letter"]
    assert (fake_slack.message(CHANNEL, root.ts) or root).blocks is None
