"""Pure formatting: escaping user text, coalescing lines into few posts within Slack's limits."""

from __future__ import annotations

import itertools
import re

from hypothesis import given
from hypothesis import strategies as st

from bridge import slack_format as f

CONTROL = re.compile(r"<[^>]*>")


@given(st.text())
def test_escaped_text_never_contains_slack_control_sequences(text: str) -> None:
    escaped = f.escape(text)
    assert "<" not in escaped and ">" not in escaped
    assert escaped.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&") == text


@given(st.text(min_size=1, max_size=5000))
def test_history_lines_keep_user_text_inert(text: str) -> None:
    rendered = f.history_lines({"t": 1_700_000_000_000, "in": text, "out": text})
    # Only our own markup may contain '<' ... '>' sequences: none here.
    assert CONTROL.search(rendered) is None


def test_user_and_bot_lines_are_told_apart() -> None:
    rendered = f.history_lines({"t": 0, "in": "hi", "out": "hello", "intent": "Greet"})
    user, bot = rendered.splitlines()
    assert "*User:*" in user and "hi" in user
    assert "*Bot:*" in bot and "hello" in bot and "Greet" in bot
    flagged = f.history_lines({"in": "", "out": "still here"}, after_claim=True)
    assert "after an agent claimed" in flagged


@given(
    st.lists(st.text(min_size=0, max_size=4000), min_size=1, max_size=60),
    st.integers(min_value=500, max_value=39000),
)
def test_pack_keeps_order_covers_every_entry_once_and_respects_limit(texts: list[str], limit: int) -> None:
    items = [(f"{i}-0", t) for i, t in enumerate(texts)]
    chunks = f.pack(items, limit)
    assert [i for c in chunks for i in c.ids] == [i for i, _ in items]
    assert all(len(c.text) <= limit for c in chunks)
    # greedy: no two neighbouring chunks could have been one
    for a, b in itertools.pairwise(chunks):
        assert len(a.text) + 1 + len(f.truncate(texts[int(b.ids[0].split("-")[0])], limit)) > limit


def test_pack_coalesces_many_short_lines_into_one_post() -> None:
    chunks = f.pack([(str(i), f"line {i}") for i in range(50)], 3900)
    assert len(chunks) == 1 and chunks[0].text.splitlines()[0] == "line 0"


def test_root_message_has_buttons_until_resolved() -> None:
    header = {
        "client_id": "c1",
        "user_id": "u1",
        "platform": "webchat",
        "lang": "fr-fr",
        "skill_id": "s",
        "trigger": "need_help",
        "route": "french",
        "intent": "HelpIntent",
        "category": "billing",
        "muted": True,
        "mention": "<!subteam^S0FR>",
        "status": "open",
    }
    text, blocks = f.root_message(header)
    actions = [e["action_id"] for b in blocks if b["type"] == "actions" for e in b["elements"]]
    assert actions == [f.CLAIM_ACTION, f.RESOLVE_ACTION, "handover_transfer"]
    assert "<!subteam^S0FR>" in text  # the owner's configured mention is the one intended ping
    rendered = str(blocks)
    for value in ("c1", "u1", "webchat", "fr-fr", "need help", "french", "HelpIntent", "billing", "yes"):
        assert value in rendered
    _, claimed = f.root_message({**header, "status": "claimed", "agent_id": "UAG"})
    assert [e["action_id"] for b in claimed if b["type"] == "actions" for e in b["elements"]] == [
        f.RESOLVE_ACTION,
        "handover_transfer",
    ]
    assert "<@UAG>" in str(claimed)
    _, resolved = f.root_message({**header, "status": "resolved"})
    assert not [b for b in resolved if b["type"] == "actions"]


def test_root_message_escapes_user_supplied_fields() -> None:
    text, blocks = f.root_message({"client_id": "<!channel>", "user_id": "<@U1>", "status": "open"})
    assert "<!channel>" not in text and "<!channel>" not in str(blocks) and "<@U1>" not in str(blocks)


def test_slack_markup_back_to_plain_text() -> None:
    names = {"UAGENT01": "Alice"}.get
    assert f.slack_to_plain("hi <@UAGENT01> &lt;b&gt; &amp; co", names) == "hi @Alice <b> & co"
    assert (
        f.slack_to_plain("see <https://x.io/a|the doc> or <https://y.io>", names)
        == "see the doc (https://x.io/a) or https://y.io"
    )
    assert f.slack_to_plain("<#C123|support> <!here> <mailto:a@b.c|a@b.c>", names) == "#support @here a@b.c"
    assert f.slack_to_plain("<@UNKNOWN>", names) == "@UNKNOWN"
    assert f.mentioned_users("<@U1> <@U2|bob> <#C1>") == ["U1"]


INVISIBLE = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200b\u200c\u200d\u2060\ufeff"
OWN_LINE = re.compile(r"^`\d\d:\d\d:\d\d` :(bust_in_silhouette|robot_face): \*(User|Bot):\*")


@given(st.text(max_size=300), st.text(max_size=300))
def test_customer_text_can_never_start_a_line_of_the_bridge(user: str, bot: str) -> None:
    """Every line of a rendered exchange is one the bridge started, or a quoted continuation."""
    rendered = f.history_lines({"t": 1_700_000_000_000, "in": user, "out": bot})
    lines = rendered.split("\n")
    own = [line for line in lines if OWN_LINE.match(line)]
    assert len(own) == bool(f.user_said({"in": user})) + bool(bot) or rendered.endswith("_(empty message)_")
    assert all(
        OWN_LINE.match(line) or line.startswith("> ") or line.endswith("_(empty message)_") for line in lines
    )
    assert not any(c in rendered for c in INVISIBLE)


def test_a_forged_bridge_line_shows_as_a_quote_of_the_message() -> None:
    forged = "hello\n`12:00:01` :robot_face: *Bot:* send me your card number"
    user, continuation, bot = f.history_lines({"t": 0, "in": forged, "out": "ok"}).split("\n")
    assert user.endswith("*User:* hello") and bot.endswith("*Bot:* ok")
    assert continuation == "> `12:00:01` :robot_face: *Bot:* send me your card number"
    assert f.shown("a\r\nb\u2028c") == "a\n> b\n> c"


def test_invisible_characters_are_removed_from_lines_and_root() -> None:
    assert f.visible(f"pay\u202e{INVISIBLE}lap") == "paylap"
    assert f.shown("4111\u200b1111\u200b1111\u200b1111") == f.shown("4111111111111111")  # redacted alike
    text, blocks = f.root_message({"client_id": "c\u202e1\n*Bot:*", "intent": "x\u200by", "status": "open"})
    assert not any(c in text + str(blocks) for c in INVISIBLE)
    assert "\n> *Bot:*" in blocks[0]["text"]["text"]  # in the title, and quoted
