"""Parsing webhook bodies: tolerant of unknown fields, strict on what the bridge needs."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.events import IgnoredEvent, MalformedBody, MissingFields, parse_event
from tests.helpers import GUIDE_ESCALATION, GUIDE_MESSAGE_RECEIVED


def test_guide_message_received() -> None:
    event = parse_event(orjson.dumps(GUIDE_MESSAGE_RECEIVED))
    assert (event.skill_id, event.client_id, event.user_id) == ("123abc", "123abc", "123abc")
    assert (event.input, event.answer) == ("aide", "Nous allons vérifier si un agent est disponible")
    assert (event.platform, event.lang, event.intent) == ("webchat", "fr-fr", "HelpIntent")
    assert event.need_help and event.muted and not event.is_simulator
    assert event.confidence == 1.0 and event.understood is True and event.number_of_nounderstood == 0


def test_guide_escalation_reads_plateform() -> None:
    event = parse_event(orjson.dumps(GUIDE_ESCALATION))
    assert (event.event, event.skill_id, event.client_id, event.platform, event.lang) == (
        "escalation_requested",
        "123",
        "123abc",
        "webchat",
        "fr-fr",
    )


def test_numeric_ids_become_text_and_nulls_are_tolerated() -> None:
    body = {
        "event": "message_received",
        "payload": {
            "skill_id": 42,
            "client_id": 7,
            "input": None,
            "answer": None,
            "confidence": None,
            "need_help": "yes",
        },
    }
    event = parse_event(orjson.dumps(body))
    assert (event.skill_id, event.client_id, event.input, event.confidence, event.need_help) == (
        "42",
        "7",
        "",
        None,
        False,
    )


@pytest.mark.parametrize("body", [b"", b"nope", b"[]", b"1", b"null"])
def test_malformed(body: bytes) -> None:
    with pytest.raises(MalformedBody):
        parse_event(body)


def test_unknown_event_is_ignored_not_an_error() -> None:
    with pytest.raises(IgnoredEvent) as caught:
        parse_event(b'{"event": "something_new"}')
    assert caught.value.event == "something_new"


def test_overlong_ids_are_refused() -> None:
    with pytest.raises(MissingFields) as caught:
        parse_event(
            orjson.dumps(
                {"event": "escalation_requested", "payload": {"skill_id": "s", "client_id": "x" * 300}}
            )
        )
    assert caught.value.missing == ["payload.client_id"]


@given(
    st.dictionaries(
        st.text(max_size=10),
        st.one_of(
            st.none(),
            st.integers(-(2**63), 2**63 - 1),
            st.text(),
            st.booleans(),
            st.lists(st.integers(0, 10**6)),
        ),
        max_size=8,
    )
)
def test_any_extra_fields_are_accepted(extra: dict) -> None:
    payload = {**extra, "skill_id": "s1", "client_id": "c1"}
    event = parse_event(orjson.dumps({"event": "message_received", "payload": payload, "more": extra}))
    assert (event.skill_id, event.client_id) == ("s1", "c1")
