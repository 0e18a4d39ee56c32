"""decide(): triggers, routes and business hours, with the clock injected."""

from __future__ import annotations

import textwrap
import unicodedata
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.config import FileConfig, parse_config
from bridge.events import SmartlyEvent
from bridge.rules import Decision, decide, has_keyword

DEFAULT = "C0DEFAULT0"
DEFAULT_POOL = (DEFAULT,)
# A Monday, 10:00 in Paris: inside any office hours used below.
MONDAY_MORNING = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def make_event(**fields: Any) -> SmartlyEvent:
    base: dict[str, Any] = {
        "event": "message_received",
        "skill_id": "skill1",
        "client_id": "client1",
        "payload": {},
    }
    return SmartlyEvent(**{**base, **fields})


def config_from(text: str) -> FileConfig:
    return parse_config(textwrap.dedent(text))


def with_triggers(*items: str) -> FileConfig:
    return config_from("handover:\n  triggers:\n" + "".join(f"    - {item}\n" for item in items))


def fired(config: FileConfig, event: SmartlyEvent, now: datetime = MONDAY_MORNING) -> str | None:
    decision = decide(event, config, DEFAULT_POOL, now)
    return decision.trigger if decision else None


# --- triggers -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("trigger", "fires", "stays_quiet"),
    [
        (
            "event: escalation_requested",
            {"event": "escalation_requested"},
            {"event": "message_received", "need_help": True},
        ),
        ("need_help: true", {"need_help": True}, {"need_help": False}),
        ("nounderstood_at_least: 3", {"number_of_nounderstood": 3}, {"number_of_nounderstood": 2}),
        ("nounderstood_at_least: 3", {"number_of_nounderstood": 7}, {"number_of_nounderstood": 0}),
        (
            "confidence_below: 0.3",
            {"understood": True, "confidence": 0.29},
            {"understood": True, "confidence": 0.3},
        ),
        (
            "confidence_below: 0.3",
            {"understood": True, "confidence": 0.0},
            {"understood": False, "confidence": 0.1},
        ),
        (
            "confidence_below: 0.3",
            {"understood": True, "confidence": 0.1},
            {"understood": None, "confidence": 0.1},
        ),
        (
            "confidence_below: 0.3",
            {"understood": True, "confidence": 0.1},
            {"understood": True, "confidence": None},
        ),
        ("intents: [HumanAgentIntent]", {"intent": "HumanAgentIntent"}, {"intent": "HelpIntent"}),
        (
            "intents: [HumanAgentIntent]",
            {"intent_slug": "humanagentintent"},
            {"intent_slug": "HumanAgentIntentfr"},
        ),
        (
            "intents: ['sysHelp*']",
            {"intent": "x", "intent_slug": "sysHelpIntentfrfr"},
            {"intent": "HelpIntent"},
        ),
        ("intents: ['*']", {"intent": "anything"}, {"intent": "", "intent_slug": ""}),
        ("keywords: [agent]", {"input": "Je veux un agent"}, {"input": "Je veux des agents"}),
        ("keywords: [conseiller]", {"input": "un CONSEILLER svp"}, {"input": "conseillerez-vous ?"}),
        ("keywords: [humain]", {"input": "Un humain!!"}, {"input": "inhumain"}),
        ("keywords: [conseillère]", {"input": "une conseillere"}, {"input": "un conseiller"}),
        ("keywords: [parler à quelqu'un]", {"input": "Je veux PARLER a quelqu’un."}, {"input": "parler à"}),
    ],
)
def test_each_trigger_alone(trigger: str, fires: dict[str, Any], stays_quiet: dict[str, Any]) -> None:
    config = with_triggers(trigger)
    name = config.handover.triggers[0].name
    assert fired(config, make_event(**fires)) == name
    assert fired(config, make_event(**stays_quiet)) is None


def test_trigger_names() -> None:
    config = with_triggers(
        "event: escalation_requested",
        "need_help: true",
        "nounderstood_at_least: 3",
        "confidence_below: 0.3",
        "intents: [HumanAgentIntent]",
        "keywords: [agent]",
    )
    assert [trigger.name for trigger in config.handover.triggers] == [
        "escalation_requested",
        "need_help",
        "nounderstood_at_least",
        "confidence_below",
        "intents",
        "keywords",
    ]


def test_the_first_matching_trigger_in_file_order_names_the_handover() -> None:
    event = make_event(need_help=True, input="un agent svp", number_of_nounderstood=4)
    assert fired(with_triggers("keywords: [agent]", "need_help: true"), event) == "keywords"
    assert fired(with_triggers("need_help: true", "keywords: [agent]"), event) == "need_help"
    assert fired(with_triggers("event: escalation_requested", "nounderstood_at_least: 3"), event) == (
        "nounderstood_at_least"
    )


def test_combined_triggers_any_one_opens() -> None:
    config = with_triggers("keywords: [agent]", "confidence_below: 0.3", "intents: [HumanAgentIntent]")
    assert fired(config, make_event(input="agent")) == "keywords"
    assert fired(config, make_event(understood=True, confidence=0.1)) == "confidence_below"
    assert fired(config, make_event(intent="HumanAgentIntent")) == "intents"
    assert fired(config, make_event(input="bonjour", understood=True, confidence=0.9, intent="Hello")) is None


def test_default_triggers_are_escalation_and_need_help() -> None:
    config = FileConfig()
    assert fired(config, make_event(event="escalation_requested")) == "escalation_requested"
    assert fired(config, make_event(need_help=True)) == "need_help"
    assert fired(config, make_event(input="agent", number_of_nounderstood=9)) is None


def test_simulator_events_never_open_unless_allowed() -> None:
    simulated = make_event(event="escalation_requested", is_simulator=True)
    assert decide(simulated, FileConfig(), DEFAULT_POOL, MONDAY_MORNING) is None
    allowed = config_from("handover:\n  ignore_simulator: false\n")
    assert fired(allowed, simulated) == "escalation_requested"


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        decide(make_event(need_help=True), FileConfig(), DEFAULT_POOL, datetime(2026, 3, 2, 10, 0))


# --- keywords, property-based ---------------------------------------------------------------------

ACCENTS = ["\u0301", "\u0300", "\u0302", "\u0308", "\u0327", ""]
words = st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=12)


@st.composite
def disguised(draw: st.DrawFn, word: str) -> str:
    """The same word as a user might type it: random case, random accents."""
    letters = []
    for letter in word:
        letter = letter.upper() if draw(st.booleans()) else letter
        letters.append(unicodedata.normalize("NFC", letter + draw(st.sampled_from(ACCENTS))))
    return "".join(letters)


@given(st.data(), words, st.lists(words, max_size=4), st.lists(words, max_size=4))
def test_keyword_found_whatever_case_accents_and_punctuation(
    data: st.DataObject, keyword: str, before: list[str], after: list[str]
) -> None:
    typed = data.draw(disguised(keyword))
    text = " ".join([*before, f"«{typed}»,", *after]) + " ?"
    assert has_keyword(text, [keyword])
    assert has_keyword(keyword, [typed])  # and the other way round: accented keyword, plain input


@given(words, st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=5))
def test_keyword_inside_a_longer_word_does_not_count(keyword: str, extra: str) -> None:
    assert not has_keyword(f"{keyword}{extra}, {extra}{keyword}", [keyword])


# --- routes ---------------------------------------------------------------------------------------

ROUTES = config_from(
    """\
    handover:
      triggers:
        - event: escalation_requested
        - need_help: true
        - keywords: [agent]
    routes:
      - name: quebec
        match: {lang: fr-ca}
        channel: C0QUEBEC01
      - name: french
        match: {lang: "fr-*", platform: [webchat, messenger]}
        channel: C0123FRENCH
        mention: "<!subteam^S0FRENCH1>"
      - name: billing
        match: {handover_category: billing}
        channel: C0BILLING1
      - name: vip
        match: {skill_id: ["vip-*", "gold-?"], intent: "*Agent*"}
      - name: typed
        match: {trigger: keywords}
        channel: C0TYPED001
    """
)


def route_of(**fields: Any) -> Decision | None:
    return decide(make_event(**{"need_help": True, **fields}), ROUTES, DEFAULT_POOL, MONDAY_MORNING)


@pytest.mark.parametrize(
    ("fields", "route", "channel"),
    [
        ({"lang": "fr-ca", "platform": "webchat"}, "quebec", "C0QUEBEC01"),  # first match wins over french
        ({"lang": "fr-fr", "platform": "webchat"}, "french", "C0123FRENCH"),
        ({"lang": "FR-BE", "platform": "Messenger"}, "french", "C0123FRENCH"),  # case-insensitive
        ({"lang": "fr-fr", "platform": "whatsapp"}, "default", DEFAULT),  # every key must match
        ({"lang": "fr-fr", "platform": "whatsapp", "handover_category": "billing"}, "billing", "C0BILLING1"),
        ({"lang": "fr-fr", "platform": "webchat", "handover_category": "billing"}, "french", "C0123FRENCH"),
        ({"skill_id": "vip-42", "intent": "HumanAgentIntent"}, "vip", DEFAULT),  # no channel: default one
        ({"skill_id": "gold-7", "intent_slug": "talkToAgent"}, "vip", DEFAULT),  # intent matches the slug
        ({"skill_id": "gold-77", "intent": "HumanAgentIntent"}, "default", DEFAULT),
        ({"skill_id": "vip-42", "intent": "HelpIntent"}, "default", DEFAULT),
        ({"lang": "en", "need_help": False, "input": "an agent please"}, "typed", "C0TYPED001"),
        ({"lang": "en"}, "default", DEFAULT),
    ],
)
def test_first_matching_route_wins(fields: dict[str, Any], route: str, channel: str) -> None:
    decision = route_of(**fields)
    assert decision is not None
    assert (decision.route, decision.pool) == (route, (channel,))


def test_route_mention_and_default_route_has_none() -> None:
    assert route_of(lang="fr-fr", platform="webchat") == Decision(
        trigger="need_help", route="french", pool=("C0123FRENCH",), mention="<!subteam^S0FRENCH1>"
    )
    assert route_of(lang="de") == Decision(trigger="need_help", route="default", pool=DEFAULT_POOL)


def test_escalation_payload_platform_spelling_still_routes() -> None:
    """escalation_requested says "plateform"; events.py folds it into platform, routes just see it."""
    event = make_event(event="escalation_requested", lang="fr-fr", platform="messenger")
    decision = decide(event, ROUTES, DEFAULT_POOL, MONDAY_MORNING)
    assert decision is not None and decision.route == "french"


# --- business hours -------------------------------------------------------------------------------

HOURS = config_from(
    """\
    routes:
      - name: night-desk
        match: {lang: en}
        channel: C0NIGHTDESK
        business_hours: always
      - name: montreal
        match: {lang: fr-ca}
        channel: C0QUEBEC01
        mention: "<!subteam^S0QUEBEC1>"
        business_hours:
          timezone: America/Toronto
          weekly: {mon-fri: "08:00-17:00"}
      - name: french
        match: {lang: "fr-*"}
        channel: C0123FRENCH
        mention: "<!subteam^S0FRENCH1>"
    business_hours:
      timezone: Europe/Paris
      weekly: {mon-fri: "09:00-18:00", sat: "10:00-13:00"}
      closed_on: [2026-12-25]
      outside_hours:
        channel: C0AFTERHOURS
        mention: "<!subteam^S0ONCALL1>"
        note: "Outside business hours: an agent will answer at opening."
    """
)


def at(utc: str, lang: str = "fr-fr") -> Decision:
    decision = decide(make_event(need_help=True, lang=lang), HOURS, DEFAULT_POOL, datetime.fromisoformat(utc))
    assert decision is not None
    return decision


@pytest.mark.parametrize(
    ("utc", "is_open"),
    [
        # Last week of winter time (UTC+1): 09:00 Paris is 08:00 UTC.
        ("2026-03-27T07:59:00+00:00", False),
        ("2026-03-27T08:00:00+00:00", True),
        ("2026-03-27T16:59:00+00:00", True),
        ("2026-03-27T17:00:00+00:00", False),
        # Summer time from Sunday 29 March (UTC+2): 09:00 Paris is 07:00 UTC.
        ("2026-03-30T06:59:00+00:00", False),
        ("2026-03-30T07:00:00+00:00", True),
        ("2026-03-30T15:59:00+00:00", True),
        ("2026-03-30T16:00:00+00:00", False),
        # Last week of summer time.
        ("2026-10-23T07:00:00+00:00", True),
        ("2026-10-23T16:00:00+00:00", False),
        # Winter time again from Sunday 25 October.
        ("2026-10-26T07:30:00+00:00", False),
        ("2026-10-26T08:00:00+00:00", True),
        ("2026-10-26T16:30:00+00:00", True),
        ("2026-10-26T17:00:00+00:00", False),
        # Saturday morning only; Sunday closed.
        ("2026-10-24T08:30:00+00:00", True),
        ("2026-10-24T11:00:00+00:00", False),
        ("2026-10-25T09:00:00+00:00", False),
    ],
)
def test_global_business_hours_follow_paris_dst(utc: str, is_open: bool) -> None:
    decision = at(utc)
    assert decision.outside_hours is (not is_open)
    assert decision.pool == ("C0123FRENCH" if is_open else "C0AFTERHOURS",)


def test_outside_hours_decision_carries_the_note_and_the_on_call_mention() -> None:
    assert at("2026-03-30T20:00:00+00:00") == Decision(
        trigger="need_help",
        route="french",
        pool=("C0AFTERHOURS",),
        mention="<!subteam^S0ONCALL1>",
        note="Outside business hours: an agent will answer at opening.",
        outside_hours=True,
    )
    assert at("2026-03-30T10:00:00+00:00").mention == "<!subteam^S0FRENCH1>"


def test_closed_day_is_closed_all_day() -> None:
    assert at("2026-12-25T10:00:00+00:00").outside_hours  # a Friday
    assert not at("2026-12-24T10:00:00+00:00").outside_hours
    # 23:30 UTC on the 24th is already the 25th in Paris.
    assert at("2026-12-24T23:30:00+00:00").outside_hours


def test_any_aware_clock_is_read_in_the_teams_zone() -> None:
    new_york = ZoneInfo("America/New_York")
    assert not at(datetime(2026, 3, 30, 4, 0, tzinfo=new_york).isoformat()).outside_hours  # 10:00 Paris
    assert at(datetime(2026, 3, 30, 13, 0, tzinfo=new_york).isoformat()).outside_hours  # 19:00 Paris


def test_route_with_its_own_hours_ignores_the_global_ones() -> None:
    # Monday 30 March 15:00 UTC: 17:00 in Paris (open), 11:00 in Toronto (open).
    assert not at("2026-03-30T15:00:00+00:00", lang="fr-ca").outside_hours
    # 20:00 UTC: 22:00 Paris, 16:00 Toronto: the Montreal team is still in.
    montreal = at("2026-03-30T20:00:00+00:00", lang="fr-ca")
    assert (montreal.outside_hours, montreal.pool, montreal.mention) == (
        False,
        ("C0QUEBEC01",),
        "<!subteam^S0QUEBEC1>",
    )
    # 22:00 UTC: 18:00 Toronto, closed; no outside_hours section there, so the route's channel.
    late = at("2026-03-30T22:00:00+00:00", lang="fr-ca")
    assert (late.outside_hours, late.pool, late.mention) == (True, ("C0QUEBEC01",), None)
    assert late.note == "Outside business hours: an agent will answer when we open."
    # Christmas is closed only for routes using the global hours.
    assert not at("2026-12-25T15:00:00+00:00", lang="fr-ca").outside_hours


def test_route_opted_out_of_business_hours_is_always_open() -> None:
    for utc in ("2026-03-29T03:00:00+00:00", "2026-12-25T10:00:00+00:00", "2026-03-30T22:00:00+00:00"):
        decision = at(utc, lang="en")
        assert (decision.outside_hours, decision.pool, decision.note) == (False, ("C0NIGHTDESK",), None)


def test_default_route_uses_global_hours() -> None:
    decision = at("2026-03-30T22:00:00+00:00", lang="de")
    assert (decision.route, decision.pool, decision.outside_hours) == ("default", ("C0AFTERHOURS",), True)
