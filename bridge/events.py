"""Smartly.ai webhook payloads, parsed into the few fields the bridge uses.

Pure module (no aiohttp, no redis). Payloads carry dozens of fields and gain more over time, so we
validate only what we read and keep the rest of the payload untouched for rules to look at.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, NoReturn

import orjson

MESSAGE_RECEIVED = "message_received"
ESCALATION_REQUESTED = "escalation_requested"
HANDLED_EVENTS = frozenset({MESSAGE_RECEIVED, ESCALATION_REQUESTED})

TEXT_INPUT = "text"
# An input_type is shown to agents as "[image]": anything but a short lowercase word becomes "other".
_INPUT_TYPE = re.compile(r"[a-z][a-z0-9_-]{0,31}")

# Identifiers end up in Redis keys and Slack messages: bound them so one bad sender cannot blow up keys.
MAX_ID_LENGTH = 256


class EventError(Exception):
    """A webhook body the bridge refuses; `status` is the HTTP answer it deserves."""

    status = 400

    def __init__(self, message: str, *, missing: list[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.missing = missing or []


class MalformedBody(EventError):
    status = 400


class MissingFields(EventError):
    status = 422


class IgnoredEvent(Exception):
    """A well-formed event the bridge does not handle (answered 202)."""

    def __init__(self, event: str) -> None:
        super().__init__(event)
        self.event = event


@dataclass(slots=True)
class SmartlyEvent:
    """One webhook event, reduced to what the bridge needs; `payload` keeps everything else."""

    event: str
    skill_id: str
    client_id: str
    payload: dict[str, Any] = field(repr=False)
    lang: str = ""
    platform: str = ""
    user_id: str = ""
    input: str = ""
    answer: str = ""
    intent: str = ""
    intent_slug: str = ""
    confidence: float | None = None
    understood: bool | None = None
    need_help: bool = False
    number_of_nounderstood: int = 0
    handover_category: str = ""
    is_simulator: bool = False
    muted: bool = False
    input_type: str = TEXT_INPUT  # "image", "file", "audio", "location"...: see slack_format.user_said

    @property
    def is_message(self) -> bool:
        return self.event == MESSAGE_RECEIVED


def _text(value: Any) -> str:
    """Smartly sends null, numbers and strings where text is expected; all become text."""
    if type(value) is str:
        return value
    if value is None:
        return ""
    if isinstance(value, str):
        return str(value)
    if isinstance(value, bool | int | float):
        return str(value)
    return ""


def _identifier(value: Any) -> str:
    if isinstance(value, bool):
        return ""
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return value.strip()
    return ""


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def parse_event(body: bytes) -> SmartlyEvent:
    """Parse a webhook body. Raises MalformedBody, MissingFields or IgnoredEvent."""
    event, payload = _envelope(body)
    skill_id = _identifier(payload.get("skill_id"))
    client_id = _identifier(payload.get("client_id"))
    if not (0 < len(skill_id) <= MAX_ID_LENGTH and 0 < len(client_id) <= MAX_ID_LENGTH):
        _refuse_ids(skill_id, client_id)

    get = payload.get
    nounderstood = _number(get("number_of_nounderstood"))
    understood = get("understood")
    # Positional, in field order: this runs for every webhook (keywords cost a third more).
    return SmartlyEvent(
        event,
        skill_id,
        client_id,
        payload,
        _text(get("lang")),
        # The escalation payload spells it "plateform"; message_received spells it "platform".
        _text(get("platform") or get("plateform")),
        _text(get("user_id")),
        _text(get("input")),
        _text(get("answer")),
        _text(get("intent")),
        _text(get("intent_slug")),
        _number(get("confidence")),
        understood if isinstance(understood, bool) else None,
        get("need_help") is True,
        int(nounderstood) if nounderstood is not None else 0,
        _text(get("handover_category_name")),
        get("is_simulator") is True,
        get("muted") is True,
        _input_type(get("input_type")),
    )


def _envelope(body: bytes) -> tuple[str, dict[str, Any]]:
    """(event name, payload) of a JSON body of a handled event."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise MalformedBody("body is not valid JSON") from e
    if not isinstance(data, dict):
        raise MalformedBody("body must be a JSON object")

    event = data.get("event")
    if not isinstance(event, str) or not event:
        raise MissingFields("missing required fields: event", missing=["event"])
    if event not in HANDLED_EVENTS:
        raise IgnoredEvent(event[:100])

    payload = data.get("payload")
    if not isinstance(payload, dict):
        raise MissingFields(
            "missing required fields: payload.skill_id, payload.client_id",
            missing=["payload.skill_id", "payload.client_id"],
        )
    return event, payload


def _input_type(value: Any) -> str:
    kind = _text(value).strip().lower()
    if not kind:
        return TEXT_INPUT
    return kind if _INPUT_TYPE.fullmatch(kind) else "other"


def _refuse_ids(skill_id: str, client_id: str) -> NoReturn:
    ids = (("payload.skill_id", skill_id), ("payload.client_id", client_id))
    missing = [name for name, value in ids if not value]
    if missing:
        raise MissingFields("missing required fields: " + ", ".join(missing), missing=missing)
    too_long = [name for name, value in ids if len(value) > MAX_ID_LENGTH]
    raise MissingFields(
        f"fields longer than {MAX_ID_LENGTH} characters: " + ", ".join(too_long), missing=too_long
    )
