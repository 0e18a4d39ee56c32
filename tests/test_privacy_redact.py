"""Issue 18.1: personal data redacted before anything reaches Slack (privacy.redact), what the root
shows (slack.root_fields). Detectors are unit-tested here; every place text reaches Slack is tested
through the real endpoints, a real valkey-server and the fake Slack Web API."""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest

from bridge.config import ConfigError, parse_config
from bridge.keys import conversation_id
from bridge.privacy import Redactor
from bridge.runtime import BRIDGE
from tests.harness import wait_until
from tests.harness.fake_reply import FakeReply
from tests.harness.fake_slack import FakeSlack
from tests.helpers import CHANNEL, escalation, message
from tests.test_agents import click, reply, texts

ALL = ["email", "phone", "card", "iban", {"name": "order_id", "pattern": r"ORD-\d{8}"}]
# What each detector must hide, as a user would type it.
SECRETS = {
    "email": "jane.doe+shop@example.co.uk",
    "phone": "+33 6 12 34 56 78",
    "card": "4111 1111 1111 1111",
    "iban": "FR76 3000 6000 0112 3456 7890 189",
    "order_id": "ORD-12345678",
}
LUHN_INVALID = "4111 1111 1111 1112"  # 16 digits: neither a card nor a phone number


def full_text() -> str:
    return "; ".join(f"my {name} is {value}" for name, value in SECRETS.items())


def everything_sent_to_slack(fake_slack: FakeSlack) -> str:
    """Every argument of every call the bridge made to Slack, as one string."""
    return "\n".join(orjson.dumps(call.params).decode() for call in fake_slack.calls)


def assert_nothing_leaked(sent: str) -> None:
    for name, value in SECRETS.items():
        for form in {value, value.replace(" ", "")}:
            assert form not in sent, f"{name} reached Slack"


# -- detectors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("detector", "text", "expected"),
    [
        ("email", "write to jane.doe+shop@example.co.uk today", "write to [email] today"),
        ("phone", "call +33 6 12 34 56 78.", "call [phone]."),
        ("phone", "call 06 12 34 56 78 or 0612345678", "call [phone] or [phone]"),
        ("phone", "(555) 123-4567 / +1-555-123-4567", "[phone] / [phone]"),
        ("phone", "0044 20 7946 0958", "[phone]"),
        ("phone", "order 1234567, on 2026-11-29", "order 1234567, on 2026-11-29"),  # 7 digits; a date
        ("card", "4111 1111 1111 1111", "[card]"),
        ("card", "pay with 5500-0000-0000-0004 now", "pay with [card] now"),
        ("card", "4111111111111111", "[card]"),
        ("card", LUHN_INVALID, LUHN_INVALID),
        ("iban", "IBAN FR76 3000 6000 0112 3456 7890 189 ok", "IBAN [iban] ok"),
        ("iban", "DE89370400440532013000", "[iban]"),
        ("iban", "FR76 3000 6000 0112 3456 7890 188", "FR76 3000 6000 0112 3456 7890 188"),  # checksum
    ],
)
def test_builtin_detectors(detector: str, text: str, expected: str) -> None:
    assert Redactor([detector]).redact(text) == expected


def test_most_specific_wins_whatever_the_order() -> None:
    card = "4111 1111 1111 1111"  # also 16 digits with spaces: phone-shaped
    for order in (["phone", "card"], ["card", "phone"]):
        assert Redactor(order).redact(f"card {card}") == "card [card]"
    # An email holding a phone-shaped run is an email; a custom pattern beats every built-in.
    assert Redactor(["phone", "email"]).redact("0612345678@example.com") == "[email]"
    custom = Redactor(["phone", "card"], [("ticket", r"T-\d{10}")])
    assert custom.redact("ticket T-0612345678, card 4111111111111111") == "ticket [ticket], card [card]"


def test_luhn_invalid_digit_run_is_not_redacted_anywhere() -> None:
    redactor = Redactor(["email", "phone", "card", "iban"])
    assert redactor.redact(f"ref {LUHN_INVALID}") == f"ref {LUHN_INVALID}"


def test_pathological_custom_pattern_is_bounded() -> None:
    redactor = Redactor([], [("evil", r"(a|aa)+$")])  # exponential backtracking without a bound
    started = time.monotonic()
    assert redactor.redact("a" * 64 + "!") == "[evil]"  # cannot tell where: the whole text is hidden
    assert time.monotonic() - started < 0.5


# -- config ----------------------------------------------------------------------------------------


def test_config_reads_builtins_and_custom_patterns() -> None:
    config = parse_config(
        'privacy:\n  redact: [email, phone, card, iban, {name: order_id, pattern: "ORD-\\\\d{8}"}]\n'
        "  redact_stored: true\nslack:\n  root_fields: [lang, trigger]\n"
    )
    assert [d.name for d in config.privacy.redactor.detectors] == [
        "order_id",
        "card",
        "iban",
        "email",
        "phone",
    ]
    assert config.privacy.redact_stored and config.slack.root_fields == ["lang", "trigger"]
    assert parse_config("").privacy.redact == [] and not parse_config("").privacy.redactor


def test_invalid_pattern_is_reported_with_line_and_column() -> None:
    text = "privacy:\n  redact:\n    - email\n    - name: order\n      pattern: 'ORD-(\\d{8}'\n    - mail\n"
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "config.yaml")
    problems = caught.value.problems
    assert any(
        p.startswith("config.yaml:5:16: privacy.redact[1].pattern: invalid regular expression")
        for p in problems
    ), problems
    assert any(p.startswith("config.yaml:6:7: privacy.redact[2]: unknown detector 'mail'") for p in problems)


def test_unknown_root_field_is_reported() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config("slack:\n  root_fields: [lang, phone_number]\n", "config.yaml")
    assert "config.yaml:2:23: slack.root_fields[1]: unknown root field 'phone_number'" in str(caught.value)


# -- every place text reaches Slack ----------------------------------------------------------------


async def test_redacted_in_root_history_live_lines_and_updates_but_not_in_replies(
    make_bridge: Any, fake_slack: FakeSlack, fake_reply: FakeReply
) -> None:
    bridge = await make_bridge(file={"privacy": {"redact": ALL}})
    client = "+33612345678"  # e.g. WhatsApp: the client id is the user's phone number
    # Opening history (before the handover), the opening message (root's first_message), a live line.
    assert await bridge.hook(message(client, full_text(), f"noted {SECRETS['card']}"))
    assert await bridge.hook(message(client, f"help, {SECRETS['email']}", need_help=True)) == (
        200,
        {"ok": True},
    )
    await wait_until(lambda: len(fake_slack.roots(CHANNEL)) == 1)
    root = fake_slack.roots(CHANNEL)[0]
    assert await bridge.hook(message(client, f"{full_text()} and {LUHN_INVALID}", SECRETS["iban"]))
    await wait_until(lambda: LUHN_INVALID in "\n".join(fake_slack.thread(CHANNEL, root.ts)))
    await click(bridge, root.ts, "handover_claim")
    await reply(bridge, root.ts, f"I will call you on {SECRETS['phone']}")
    await click(bridge, root.ts, "handover_resolve")
    await wait_until(lambda: len(fake_slack.calls_to("chat.update")) >= 2)

    sent = everything_sent_to_slack(fake_slack)
    assert_nothing_leaked(sent)
    assert "33612345678" not in sent  # not even percent-encoded in a conversation id (message metadata)
    thread = "\n".join(fake_slack.thread(CHANNEL, root.ts))
    for placeholder in ("[email]", "[phone]", "[card]", "[iban]", "[order_id]"):
        assert placeholder in thread
    assert "[phone]" in root.text  # the client id in the root's title
    assert (
        "First message" in orjson.dumps(root.blocks).decode()
        and "[email]" in orjson.dumps(root.blocks).decode()
    )
    # The reply endpoint is not Slack: it gets what the agent typed.
    await wait_until(lambda: texts(fake_reply) == [f"I will call you on {SECRETS['phone']}"])
    # Redis keeps the originals unless redact_stored is on.
    store = bridge.app[BRIDGE].store
    assert SECRETS["iban"] in orjson.dumps(await store.history(conversation_id("skill1", client))).decode()


async def test_redact_stored_redacts_history_before_redis(make_bridge: Any, fake_slack: FakeSlack) -> None:
    bridge = await make_bridge(replies=False, file={"privacy": {"redact": ALL, "redact_stored": True}})
    assert await bridge.hook(message("dave", full_text(), f"noted {SECRETS['card']}")) == (200, {"ok": True})
    assert await bridge.hook(message("dave", f"help {SECRETS['email']}", need_help=True)) == (
        200,
        {"ok": True},
    )
    store = bridge.app[BRIDGE].store
    cid = conversation_id("skill1", "dave")
    stored = orjson.dumps([await store.history(cid), await store.conversation(cid)]).decode()
    assert_nothing_leaked(stored)
    assert "[order_id]" in stored and "[card]" in stored
    await wait_until(lambda: len(fake_slack.posts(CHANNEL)) >= 2)  # root, then the history
    assert_nothing_leaked(everything_sent_to_slack(fake_slack))


async def test_pathological_pattern_on_the_webhook_path_is_bounded(
    make_bridge: Any, fake_slack: FakeSlack
) -> None:
    evil = {"name": "evil", "pattern": "(a|aa)+$"}
    bridge = await make_bridge(replies=False, file={"privacy": {"redact": [evil], "redact_stored": True}})
    started = time.monotonic()
    status, _ = await bridge.hook(message("erin", "a" * 64 + "!", "a" * 64 + "?", need_help=True))
    elapsed = time.monotonic() - started
    assert status == 200
    assert elapsed < 2.0, f"webhook took {elapsed:.2f}s"
    history = await bridge.app[BRIDGE].store.history(conversation_id("skill1", "erin"))
    assert history[-1]["in"] == "[evil]" and history[-1]["out"] == "[evil]"
    # The bridge keeps serving (and the thread shows the placeholder, not the text).
    assert await bridge.hook(message("erin", "still there?")) == (200, {"ok": True})
    await wait_until(lambda: len(fake_slack.roots(CHANNEL)) == 1)
    root_ts = fake_slack.roots(CHANNEL)[0].ts
    await wait_until(lambda: "still there?" in "\n".join(fake_slack.thread(CHANNEL, root_ts)))
    assert "a" * 64 not in everything_sent_to_slack(fake_slack)


async def test_root_fields_choose_what_the_root_shows(make_bridge: Any, fake_slack: FakeSlack) -> None:
    bridge = await make_bridge(replies=False, file={"slack": {"root_fields": ["lang", "trigger"]}})
    assert await bridge.hook(message("frank-42", "hello", need_help=True, platform="whatsapp")) == (
        200,
        {"ok": True},
    )
    assert await bridge.hook(escalation("frank-42"))
    await wait_until(lambda: len(fake_slack.roots(CHANNEL)) == 1)
    root = fake_slack.roots(CHANNEL)[0]
    shown = root.text + orjson.dumps(root.blocks).decode()
    assert "fr-fr" in shown and "need help" in shown
    for hidden in ("frank-42", "user-frank-42", "whatsapp", "skill1", "Bot muted", "hello", "SmallTalk"):
        assert hidden not in shown
    # Claim: the updated root keeps the same shape.
    await click(bridge, root.ts, "handover_claim")
    await wait_until(lambda: bool(fake_slack.calls_to("chat.update")))
    assert "frank-42" not in orjson.dumps(fake_slack.calls_to("chat.update")[-1].params).decode()


async def test_redacted_in_the_home_tab(
    make_bridge: Any, fake_slack: FakeSlack, fake_reply: FakeReply
) -> None:
    bridge = await make_bridge(file={"privacy": {"redact": ALL}})
    client = "+33612345678"
    assert await bridge.hook(message(client, full_text(), "noted", need_help=True)) == (200, {"ok": True})
    await wait_until(lambda: len(fake_slack.roots(CHANNEL)) == 1)
    home = {
        "type": "event_callback",
        "team_id": "TFAKE0001",
        "api_app_id": "ABRIDGE",
        "event": {"type": "app_home_opened", "user": "UAGENT01", "channel": "D0HOME", "tab": "home"},
        "event_id": "EvHOMEPRIVACY1",
        "event_time": int(time.time()),
    }
    assert await bridge.slack_event(home) == (200, {"ok": True})
    await wait_until(lambda: "UAGENT01" in fake_slack.home_views)
    view = orjson.dumps(fake_slack.home_views["UAGENT01"]).decode()
    assert "[phone]" in view and "[order_id]" in view  # the client id and the user's last words
    assert_nothing_leaked(everything_sent_to_slack(fake_slack))


async def test_redacted_in_the_transcript_file(make_bridge: Any, fake_slack: FakeSlack) -> None:
    bridge = await make_bridge(replies=False, file={"privacy": {"redact": ALL}})
    client = "+33612345678"
    for n in range(30):  # more than the opening post shows: the full history goes in a file
        said = message(client, f"{n:02d} {full_text()}", f"noted {SECRETS['card']}")
        assert await bridge.hook(said) == (200, {"ok": True})
    assert await bridge.hook(escalation(client)) == (200, {"ok": True})
    await wait_until(lambda: len(fake_slack.uploaded(CHANNEL)) == 1, 10)
    [upload] = fake_slack.uploaded(CHANNEL)
    assert upload.text.count("[order_id]") == 30 and upload.text.count("[card]") == 60  # user and bot
    shown = f"{upload.filename} {upload.title} {upload.text} {upload.initial_comment}"
    assert_nothing_leaked(shown)
    assert "33612345678" not in shown and "[phone]" in upload.title
    assert_nothing_leaked(everything_sent_to_slack(fake_slack))


def test_a_config_reload_changes_the_detectors_in_force(tmp_path: Any) -> None:
    from bridge import privacy
    from bridge.reload import ConfigHolder

    path = tmp_path / "config.yaml"
    path.write_text("privacy: {redact: [phone]}\n")
    holder = ConfigHolder(path, parse_config(path.read_text()))
    assert privacy.redact("a@b.example or 06 12 34 56 78") == "a@b.example or [phone]"
    path.write_text("privacy: {redact: [email]}\n")
    assert holder.reload()
    assert privacy.redact("a@b.example or 06 12 34 56 78") == "[email] or 06 12 34 56 78"
    path.write_text("privacy: {redact: [{name: bad, pattern: '(unclosed'}]}\n")
    assert not holder.reload()  # rejected: the last good detectors stay
    assert privacy.redact("a@b.example") == "[email]"


def test_builtin_detectors_take_linear_time_on_adversarial_text() -> None:
    """The built-ins run without a timeout: their patterns must stay linear (a quadratic one takes
    minutes on these 200 KB, the largest webhook body is 1 MB)."""
    redactor = Redactor(["email", "phone", "card", "iban"])
    n = 50_000
    for text in (
        "1 " * n + "a",
        "1" * 4 * n,
        "(1)" * n + "a",
        "1." * n + "x",
        "+1" * n,
        "a@" * n,
        "a@" + "b." * n + "1",
        "AB12 " * n,
        "a" * 4 * n + "@",
    ):
        started = time.monotonic()
        redactor.redact(text)
        assert time.monotonic() - started < 1.0, text[:20]
