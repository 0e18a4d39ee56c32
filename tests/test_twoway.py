"""Issue 17: every message, both ways, visibly delivered. Through the bridge's real endpoints, a real
valkey-server, the fake Slack Web API and the fake reply endpoint (which verifies every signature)."""

from __future__ import annotations

from typing import Any

import orjson

from bridge import transcript as t
from bridge.events import parse_event
from bridge.handover import history_entry
from bridge.slack_format import history_lines, user_said
from tests.harness import wait_until
from tests.harness.fake_reply import FakeReply
from tests.harness.fake_slack import FakeSlack
from tests.helpers import message
from tests.test_agents import ALICE, BOB, click, of_type, open_handover, reply, thread_replies

# -- non-text input from the user ------------------------------------------------------------------


def test_input_type_is_parsed_and_bounded() -> None:
    def parsed(value: Any) -> str:
        return parse_event(orjson.dumps(message("u", "x", input_type=value))).input_type

    assert [parsed(v) for v in ("text", "IMAGE", " audio ", None, "", 3, "<!channel>", "x" * 40)] == [
        "text",
        "image",
        "audio",
        "text",
        "text",
        "other",
        "other",
        "other",
    ]


def test_non_text_input_shows_its_type_and_urls() -> None:
    event = parse_event(
        orjson.dumps(
            message(
                "u",
                "see https://cdn.example/img/1.png?a=1&b=2 and http://x.example/y ftp://no",
                "Nice picture",
                input_type="image",
            )
        )
    )
    entry = history_entry(event, 0)
    assert entry is not None and entry["it"] == "image"
    assert user_said(entry) == "[image] https://cdn.example/img/1.png?a=1&b=2 http://x.example/y"
    assert "*User:* [image] https://cdn.example/img/1.png?a=1&amp;b=2 http://x.example/y" in (
        history_lines(entry)
    )
    bare = history_entry(parse_event(orjson.dumps(message("u", "", "", input_type="location"))), 0)
    assert bare is not None and user_said({**bare, "out": ""}) == "[location]"


async def test_non_text_input_is_mirrored_with_type_and_url(
    make_bridge: Any, fake_slack: FakeSlack, fake_reply: FakeReply
) -> None:
    bridge = await make_bridge()
    root_ts = await open_handover(bridge, fake_slack, fake_reply, client_id="ivy")
    body = message("ivy", "https://cdn.example/u/ivy/photo.jpg", "", input_type="image")
    body["payload"]["answer"] = ""
    assert await bridge.hook(body) == (200, {"ok": True})
    assert await bridge.hook(message("ivy", "", "", input_type="audio")) == (200, {"ok": True})
    await wait_until(lambda: any("[audio]" in line for line in thread_replies(fake_slack, root_ts)))
    lines = "\n".join(thread_replies(fake_slack, root_ts))
    assert "*User:* [image] https://cdn.example/u/ivy/photo.jpg" in lines
    assert "*User:* [audio]" in lines and "(empty message)" not in lines


# -- the transcript on resolve ---------------------------------------------------------------------


def test_fit_drops_the_oldest_lines_first() -> None:
    lines = [{"at": "x", "from": "user", "name": "u", "text": f"line {i:03d}"} for i in range(100)]
    size = len(orjson.dumps(lines))
    assert t.fit(lines, size) == (lines, False)
    kept, dropped = t.fit(lines, size - 1)
    assert dropped and kept == lines[1:]
    kept, dropped = t.fit(lines, 1024)
    assert dropped and kept == lines[-len(kept) :] and len(orjson.dumps(kept)) <= 1024
    assert len(orjson.dumps(lines[-len(kept) - 1 :])) > 1024


async def test_transcript_on_resolve_matches_what_was_said(
    make_bridge: Any, fake_slack: FakeSlack, fake_reply: FakeReply
) -> None:
    bridge = await make_bridge(file={"history": {"shown_on_open": 2}})
    for i in range(3):  # only the last two exchanges before the escalation are shown at open
        assert await bridge.hook(message("jack", f"before {i}", f"bot before {i}")) == (200, {"ok": True})
    root_ts = await open_handover(bridge, fake_slack, fake_reply, client_id="jack")
    await reply(bridge, root_ts, "Hi <@UAGENT02>, I am on it &amp; back soon")
    await reply(bridge, root_ts, "note: private, never in the transcript")
    await bridge.hook(message("jack", "thanks", "You are welcome"))
    await reply(bridge, root_ts, "Anything else?", user=BOB)
    await wait_until(lambda: len(of_type(fake_reply, "agent_message")) == 2)
    await click(bridge, root_ts, "handover_resolve")
    await wait_until(lambda: len(of_type(fake_reply, "handover_resolved")) == 1)
    resolved = of_type(fake_reply, "handover_resolved")[0]
    said = [(line["from"], line["name"], line["text"]) for line in resolved["transcript"]]
    assert said == [
        ("user", "user-jack", "before 2"),
        ("bot", "bot", "bot before 2"),
        ("user", "user-jack", "my parcel is late"),
        ("bot", "bot", "Let me check"),
        ("agent", "Alice", "Hi @Bob Dupont, I am on it & back soon"),
        ("user", "user-jack", "thanks"),
        ("bot", "bot", "You are welcome"),
        ("agent", "Bob Dupont", "Anything else?"),
    ]
    assert resolved["transcript_truncated"] is False
    stamps = [line["at"] for line in resolved["transcript"]]
    assert stamps == sorted(stamps) and all(s.endswith("Z") for s in stamps)
    assert "lines" not in resolved and "lines_cut" not in resolved

    # The next handover's transcript starts afresh, from the history shown when it opened.
    new_ts = await open_handover(bridge, fake_slack, fake_reply, client_id="jack")
    await click(bridge, new_ts, "handover_resolve", user=ALICE)
    await wait_until(lambda: len(of_type(fake_reply, "handover_resolved")) == 2)
    again = of_type(fake_reply, "handover_resolved")[1]["transcript"]
    assert [(line["from"], line["text"]) for line in again] == [
        ("user", "thanks"),
        ("bot", "You are welcome"),
        ("user", "still late (1)"),
        ("bot", "Let me check"),
    ]


async def test_transcript_over_the_cap_drops_the_oldest_lines(
    make_bridge: Any, fake_slack: FakeSlack, fake_reply: FakeReply
) -> None:
    bridge = await make_bridge(file={"replies": {"transcript_max_bytes": 2048}})
    root_ts = await open_handover(bridge, fake_slack, fake_reply, client_id="kim")
    for i in range(30):
        await bridge.hook(message("kim", f"message number {i:02d} " + "x" * 40, f"answer {i:02d}"))
    await click(bridge, root_ts, "handover_resolve")
    await wait_until(lambda: len(of_type(fake_reply, "handover_resolved")) == 1, timeout_s=10)
    resolved = of_type(fake_reply, "handover_resolved")[0]
    assert resolved["transcript_truncated"] is True
    lines = resolved["transcript"]
    assert len(orjson.dumps(lines)) <= 2048
    assert lines[-1]["text"] == "answer 29" and lines[-2]["text"].startswith("message number 29 ")
    assert not any("my parcel is late" in line["text"] for line in lines)  # the oldest went first
