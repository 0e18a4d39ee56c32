"""Value parsers and small value types of config.yaml: durations, channel IDs, mentions, globs,
keywords, days and opening hours. Each raises Invalid with a hint the author can act on."""

from __future__ import annotations

import difflib
import math
import re
from datetime import date
from decimal import Decimal
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import regex
from pydantic import (
    AfterValidator,
    BeforeValidator,
)

from ..events import HANDLED_EVENTS
from ..matching import normalize_words
from ..privacy.redact import compile_pattern

DEFAULT_CONFIG_PATH = "config.yaml"
CONFIG_PATH_ENV = "BRIDGE_CONFIG"
SECRET_ENV_VARS = (
    "SLACK_BOT_TOKEN",
    "SLACK_SIGNING_SECRET",
    "SMARTLY_WEBHOOK_KEY",
    "BRIDGE_REPLY_SECRET",
    "SLACK_APP_TOKEN",
)


class Invalid(ValueError):
    """A ValueError that knows how to fix itself: the hint is printed next to the line number."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint


# --- durations -----------------------------------------------------------------------------------

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_DURATION_HINT = "write a number and a unit: 250ms, 90s, 30m, 24h or 7d (a bare number means seconds)"


def parse_duration(value: Any) -> float:
    """'90s', '30m', '24h', '7d', '250ms' or a bare number of seconds → seconds."""
    if isinstance(value, bool):
        raise Invalid("expected a duration, got true/false", _DURATION_HINT)
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        match = _DURATION.match(value)
        if not match:
            raise Invalid(f"bad duration {value!r}", _DURATION_HINT)
        seconds = float(match.group(1)) * _UNIT_S[match.group(2)]
    else:
        raise Invalid(f"expected a duration, got {_kind_of(value)}", _DURATION_HINT)
    if not math.isfinite(seconds) or seconds <= 0:
        raise Invalid("a duration must be a finite number greater than zero", _DURATION_HINT)
    return seconds


def format_duration(seconds: float) -> str:
    """The shortest spelling that parse_duration reads back as exactly `seconds` (for summaries)."""
    for unit in ("d", "h", "m", "s"):
        count = seconds / _UNIT_S[unit]
        if count >= 1 and count.is_integer() and int(count) * _UNIT_S[unit] == seconds:
            return f"{int(count)}{unit}"
    return f"{Decimal(repr(seconds)):f}s"


Duration = Annotated[float, BeforeValidator(parse_duration)]


# --- small value types ---------------------------------------------------------------------------

_CHANNEL_ID = re.compile(r"^[CG][A-Z0-9]{2,}$")
_DM_CHANNEL_ID = re.compile(r"^D[A-Z0-9]{2,}$")
_AGENT_ID = re.compile(r"^[UWS][A-Z0-9]{2,}$")
_MENTION = re.compile(r"^\s*(?:<[!@][^<>\s]+>\s*)+$")


def _kind_of(value: Any) -> str:
    """Name a YAML value's type the way a config author thinks of it (never its content)."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _check_channel(value: str) -> str:
    if _DM_CHANNEL_ID.match(value):
        # Replies in a DM would need other events and scopes (message.im, im:history): never read.
        raise Invalid(
            f"{value!r} is a direct message, not a channel",
            "handover threads need a channel (C…) or private channel (G…): create one, "
            "invite the app with /invite, and use its ID",
        )
    if not _CHANNEL_ID.match(value):
        raise Invalid(
            f"{value!r} is not a Slack channel ID",
            "use the channel ID (C… or G… in capitals and digits, shown at the bottom of the "
            "channel's details in Slack), not its #name",
        )
    return value


def parse_channel_pool(text: str) -> tuple[str, ...]:
    """SLACK_CHANNEL: one channel ID or a comma-separated pool, each ID checked by the file's rule."""
    pool = tuple(part.strip() for part in text.split(","))
    for channel in pool:
        if not channel:
            raise Invalid(f"empty item in {text!r}", "separate channel IDs by commas: C0AAA,C0BBB")
        _check_channel(channel)
    return _check_pool(pool)


def _check_pool(channels: tuple[str, ...]) -> tuple[str, ...]:
    if not channels:
        raise Invalid("an empty channel pool", "list at least one channel ID, or remove the key")
    seen: set[str] = set()
    for channel in channels:
        if channel in seen:
            raise Invalid(f"{channel!r} is listed twice in the pool", "list each channel once")
        seen.add(channel)
    return channels


def _check_agent(value: str) -> str:
    if not _AGENT_ID.match(value):
        raise Invalid(
            f"{value!r} is not a Slack user or user group ID",
            "list user IDs (U… or W…, from the user's profile: ⋮ > Copy member ID) and user group "
            "IDs (S…), not names",
        )
    return value


def _check_mention(value: str) -> str:
    if not _MENTION.match(value):
        raise Invalid(
            f"{value!r} is not a Slack mention",
            "write a user group as <!subteam^S0123ABCD>, a user as <@U0123ABCD>, or <!here>",
        )
    return value


def _check_glob(pattern: str) -> str:
    """fnmatch silently reads an unclosed '[' as a literal; an author almost never means that."""
    if pattern == "":
        raise Invalid("empty pattern", "use '*' to match anything, or remove the key")
    position = 0
    while position < len(pattern):
        char = pattern[position]
        position += 1
        if char != "[":
            continue
        end = position
        if end < len(pattern) and pattern[end] == "!":
            end += 1
        if end < len(pattern) and pattern[end] == "]":
            end += 1
        while end < len(pattern) and pattern[end] != "]":
            end += 1
        if end >= len(pattern):
            raise Invalid(
                f"unbalanced '[' in pattern {pattern!r}",
                "close the set with ']', or write [[] for a literal '['",
            )
        position = end + 1
    return pattern


_DETECTOR_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


def _check_detector_name(name: str) -> str:
    if not _DETECTOR_NAME.match(name):
        raise Invalid(
            f"{name!r} is not a detector name",
            "lowercase letters, digits and _, starting with a letter (it shows as [name] in Slack)",
        )
    return name


def _check_pattern(pattern: str) -> str:
    """A custom detector's regular expression must compile (matching time is bounded at run time)."""
    if not pattern:
        raise Invalid("empty pattern", "write a regular expression, e.g. ORD-\\d{8}")
    try:
        compile_pattern(pattern)
    except regex.error as e:
        at = f" at character {e.pos + 1} of the pattern" if e.pos is not None else ""
        raise Invalid(
            f"invalid regular expression: {e.msg}{at}",
            "quote the pattern in YAML and double every backslash inside double quotes",
        ) from e
    return pattern


def _check_keyword(keyword: str) -> str:
    if not normalize_words(keyword):
        raise Invalid(f"keyword {keyword!r} has no letters or digits", "keywords are whole words, like agent")
    return keyword


def _one_or_many(value: Any) -> Any:
    """Authors write `lang: fr-*` as often as `lang: [fr-*, be-fr]`; code always sees a list."""
    if isinstance(value, int) and not isinstance(value, bool):
        return [str(value)]
    if isinstance(value, str | date):
        return [value]
    if isinstance(value, list):
        return [str(item) if isinstance(item, int) and not isinstance(item, bool) else item for item in value]
    return value


def _non_empty(items: list[str]) -> list[str]:
    if not items:
        raise Invalid("an empty list never matches", "list at least one value, or remove the key")
    return items


def _check_event_name(name: str) -> str:
    if name not in HANDLED_EVENTS:
        raise Invalid(f"unknown event {name!r}", "known events: " + ", ".join(sorted(HANDLED_EVENTS)))
    return name


def _check_timezone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as e:
        close = difflib.get_close_matches(name, sorted(available_timezones()), n=1)
        suggestion = f"did you mean {close[0]}? " if close else ""
        raise Invalid(f"unknown time zone {name!r}", suggestion + "use an IANA name like Europe/Paris") from e
    return name


ChannelId = Annotated[str, AfterValidator(_check_channel)]
# One channel ID or a list of them: a new handover goes to the pool's least loaded channel.
ChannelPool = Annotated[tuple[ChannelId, ...], BeforeValidator(_one_or_many), AfterValidator(_check_pool)]


AgentId = Annotated[str, AfterValidator(_check_agent)]
Mention = Annotated[str, AfterValidator(_check_mention)]
Glob = Annotated[str, AfterValidator(_check_glob)]
Globs = Annotated[list[Glob], BeforeValidator(_one_or_many), AfterValidator(_non_empty)]
Keywords = Annotated[
    list[Annotated[str, AfterValidator(_check_keyword)]],
    BeforeValidator(_one_or_many),
    AfterValidator(_non_empty),
]
EventName = Annotated[str, AfterValidator(_check_event_name)]
TimeZoneName = Annotated[str, AfterValidator(_check_timezone)]


# --- business hours ------------------------------------------------------------------------------

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_FULL_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_DAY_HINT = "use mon, tue, wed, thu, fri, sat, sun, or a range like mon-fri"
_TIME_RANGE = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")
_RANGE_HINT = "write opening hours as HH:MM-HH:MM (e.g. 09:00-18:00), a list of such ranges, or closed"
DayRange = tuple[int, int]  # [start, end) in minutes after local midnight


def _day_index(name: str) -> int:
    name = name.strip().lower()
    for names in (DAYS, _FULL_DAYS):
        if name in names:
            return names.index(name)
    raise Invalid(f"unknown day {name!r}", _DAY_HINT)


def expand_days(span: str) -> tuple[int, ...]:
    """'mon-fri' → (0, 1, 2, 3, 4); ranges may wrap around the week ('fri-mon')."""
    first, dash, last = span.partition("-")
    start = _day_index(first)
    if not dash:
        return (start,)
    length = (_day_index(last) - start) % 7 + 1
    return tuple((start + offset) % 7 for offset in range(length))


def _check_day_span(span: str) -> str:
    expand_days(span)
    return span.strip().lower()


def _minutes(hours: str, minutes: str, text: str) -> int:
    hour, minute = int(hours), int(minutes)
    if minute > 59 or hour > 24 or (hour == 24 and minute):
        raise Invalid(f"{hours}:{minutes} in {text!r} is not a time of day", _RANGE_HINT)
    return hour * 60 + minute


def _parse_time_range(value: Any) -> Any:
    if isinstance(value, tuple):  # already parsed (a model built in Python)
        return value
    if not isinstance(value, str):
        raise Invalid(f"expected a time range, got {_kind_of(value)}", _RANGE_HINT)
    match = _TIME_RANGE.match(value)
    if not match:
        raise Invalid(f"bad time range {value!r}", _RANGE_HINT)
    start = _minutes(match[1], match[2], value)
    end = _minutes(match[3], match[4], value)
    if end <= start:
        raise Invalid(
            f"time range {value!r} does not end after it starts",
            "a range cannot cross midnight: split 22:00-02:00 into 22:00-24:00 on one day "
            "and 00:00-02:00 on the next",
        )
    return (start, end)


def _day_hours(value: Any) -> Any:
    """A day's hours: one range, a list or comma-separated ranges, or closed (YAML `off` means closed too)."""
    if value is False or (isinstance(value, str) and value.strip().lower() == "closed"):
        return ()
    if value is None:
        raise Invalid("no hours given", _RANGE_HINT)
    if isinstance(value, str):
        return [part for part in value.split(",") if part.strip()] or [value]
    return value


class _Repeated(Invalid):
    """A repeat that _repeated_entries() also finds in the raw data, where it can point at the culprit."""


_ONCE_HINT = "give each day once"


def _days_given_twice(weekly: dict[Any, Any]) -> list[tuple[Any, str]]:
    """(span, message) for each span repeating a day of an earlier span; invalid spans are skipped."""
    given_in: dict[int, str] = {}
    repeats = []
    for span in weekly:
        try:
            days = expand_days(span) if isinstance(span, str) else ()
        except Invalid:
            continue
        clash = [day for day in days if day in given_in]
        if clash:
            repeats.append(
                (span, f"{DAYS[clash[0]]} is given twice, in {given_in[clash[0]]!r} and in {span!r}")
            )
        for day in days:
            given_in.setdefault(day, span)
    return repeats


def format_minutes(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


TimeRange = Annotated[DayRange, BeforeValidator(_parse_time_range)]
DayHours = Annotated[tuple[TimeRange, ...], BeforeValidator(_day_hours)]
DaySpan = Annotated[str, AfterValidator(_check_day_span)]
