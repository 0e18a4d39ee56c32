"""The desk's pure parts: what it shows in Slack (views within Slack's limits, user text escaped) and
its config keys (sla, handover.outcomes, handover.reopen_window) with located errors."""

from __future__ import annotations

import textwrap
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.config import parse_config
from bridge.desk import text
from bridge.desk.store import OpenHandover
from tests.test_config import only_problem

NOW = 1_800_000_000_000


def handover(i: int, *, state: str = "open", said: str = "", **header: Any) -> OpenHandover:
    head = {"client_id": f"c{i}", "route": "fr", "lang": "fr-fr", "platform": "webchat", **header}
    return OpenHandover(
        f"s:c{i}", state, head, NOW - 1000 * (i + 1), 0, said, "C0FR", f"17000000{i:02d}.000100"
    )


def view_of(entries: list[OpenHandover]) -> dict[str, Any]:
    return text.home_view(
        entries, lambda h: f"https://x.slack.com/archives/C0FR/p{h.cid}", lambda h: None, NOW
    )


@pytest.mark.parametrize("count", [0, 1, 50, 51, 300])
def test_home_view_stays_within_100_blocks_and_says_the_total(count: int) -> None:
    view = view_of([handover(i) for i in range(count)])
    assert view["type"] == "home" and len(view["blocks"]) <= 100
    entries = [b for b in view["blocks"] if b["type"] == "section" and "accessory" in b]
    assert len(entries) == min(count, text.HOME_ENTRIES)
    if count > text.HOME_ENTRIES:
        assert f"{count} open" in str(view["blocks"][1]) and "most urgent" in str(view["blocks"][1])


def test_home_view_entries_stay_within_block_kit_limits_whatever_the_webhook_sent() -> None:
    long = "x" * 5000  # lang and platform come from webhooks, with no length bound
    view = view_of([handover(1, lang=long, platform=long, said=long)])
    sections = [b for b in view["blocks"] if b["type"] == "section"]
    assert sections and all(len(b["text"]["text"]) <= 3000 for b in sections if "text" in b)
    assert all(len(f["text"]) <= 2000 for b in sections for f in b.get("fields", []))


def test_home_orders_unclaimed_oldest_first_then_claimed() -> None:
    entries = [handover(1), handover(5, state="claimed", agent_id="UB"), handover(3), handover(9)]
    order = [e.cid for e in text.urgent_first(entries)]
    assert order == ["s:c9", "s:c3", "s:c1", "s:c5"]


@given(st.text(max_size=400))
def test_home_excerpt_never_pings_or_breaks_out(said: str) -> None:
    block = text.home_entry(handover(1, said=said), "", "", NOW)
    rendered = block["text"]["text"]
    excerpt = rendered.split("\n> ", 1)[1] if "\n> " in rendered else ""
    assert "<" not in excerpt and ">" not in excerpt.replace("&gt;", "")
    assert len(rendered) <= 3000


def test_waited_reads_like_a_human_wrote_it() -> None:
    assert [text.waited(ms) for ms in (0, 59_000, 60_000, 3_600_000, 5_400_000, 90_000_000)] == [
        "0s",
        "59s",
        "1m",
        "1h",
        "1h 30m",
        "1d 1h",
    ]


def test_modals_hold_slacks_required_parts() -> None:
    modal = text.resolve_modal(["solved", "spam"], "C0FR", "1700000000.000100")
    assert modal["callback_id"] == "handover_resolve" and len(modal["title"]["text"]) <= 24
    assert [b["block_id"] for b in modal["blocks"]] == ["outcome", "note"]
    transfer = text.transfer_modal(["billing"], "C0FR", "1700000000.000100")
    assert (
        transfer["callback_id"] == "handover_transfer"
        and transfer["blocks"][0]["element"]["action_id"] == "route"
    )


def test_config_reads_sla_outcomes_and_reopen_window() -> None:
    config = parse_config(
        textwrap.dedent(
            """
            handover: {outcomes: [solved, no_answer], reopen_window: 2h}
            sla:
              {first_response: 5m, remind_every: 5m, escalate_after: 15m,
               escalate_mention: "<!subteam^S0ONCALL1>"}
            routes:
              - {name: fr, match: {lang: fr-*}, channel: C0FRENCH1, sla: {first_response: 2m}}
            """
        )
    )
    assert config.handover.outcomes == ["solved", "no_answer"] and config.handover.reopen_window_s == 7200
    assert config.sla is not None and config.sla.escalate_after_s == 900
    assert config.routes[0].sla is not None and config.routes[0].sla.first_response_s == 120


@pytest.mark.parametrize(
    ("yaml", "says"),
    [
        ("sla: {first_response: 500ms}", "greater than or equal to 1"),
        ("sla: {remind_every: 5m}", "first_response"),
        ("sla: {first_response: 5m, escalate_mention: oncall}", "not a Slack mention"),
        ("handover: {outcomes: [Solved!]}", "not a short outcome name"),
        ("handover: {outcomes: [spam, spam]}", "listed twice"),
    ],
)
def test_config_mistakes_are_located(yaml: str, says: str) -> None:
    problem = only_problem(yaml)
    assert says in str(problem) and problem.line == 1


def test_check_config_summarises_the_desk_settings() -> None:
    from bridge.config import summarize

    config = parse_config(
        textwrap.dedent(
            """
            handover: {outcomes: [solved, spam], reopen_window: 2h}
            sla: {first_response: 5m, escalate_after: 15m, escalate_mention: "<!subteam^S0ONCALL1>"}
            routes:
              - {name: fr, match: {lang: fr-*}, channel: C0FRENCH1,
                 sla: {first_response: 2m, remind_every: 1m}}
            """
        )
    )
    lines = summarize(config, "C0DEFAULT1")
    assert "response-time target: remind after 5m, escalate after 15m to <!subteam^S0ONCALL1>" in lines
    assert "  route fr: remind after 2m, then every 1m" in lines
    assert "outcomes on resolve: solved, spam; reopen within 2h" in lines
