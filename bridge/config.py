"""config.yaml: the owner's rules and tuning, loaded into pydantic models.

Secrets never live here (environment only, see settings.py). Durations are written like 90s, 30m,
24h, 7d in YAML and held as float seconds in attributes suffixed `_s`.

A mistake in this file must be easy to fix and must never take a running bridge down, so loading
collects *every* problem (YAML syntax, duplicate keys, schema, secrets), each with its line, column
and a hint, and raises them together in one ConfigError. Slack channel IDs must match
^[CGD][A-Z0-9]{2,}$ (public C…, private G…, direct D…): a #name or a lowercase ID is rejected here
rather than failing later at the first handover.
"""

from __future__ import annotations

import difflib
import fnmatch
import math
import os
import re
import sys
import types
import unicodedata
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Annotated, Any, ClassVar, TextIO, Union, get_args, get_origin
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from .events import ESCALATION_REQUESTED, HANDLED_EVENTS

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

_CHANNEL_ID = re.compile(r"^[CGD][A-Z0-9]{2,}$")
_MENTION = re.compile(r"^\s*(?:<[!@][^<>\s]+>\s*)+$")
_WORD = re.compile(r"\w+")


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
    if not _CHANNEL_ID.match(value):
        raise Invalid(
            f"{value!r} is not a Slack channel ID",
            "use the channel ID (C…, G… or D… in capitals and digits, shown at the bottom of the "
            "channel's details in Slack), not its #name",
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


@lru_cache(maxsize=4096)
def compile_glob(pattern: str) -> re.Pattern[str]:
    """fnmatch-style and case-insensitive: 'FR-fr' and 'fr-FR' are the same language to a human."""
    return re.compile(fnmatch.translate(pattern), re.IGNORECASE | re.DOTALL)


def glob_matches(patterns: list[str], value: str) -> bool:
    return any(compile_glob(pattern).match(value) for pattern in patterns)


def normalize_words(text: str) -> str:
    """Casefold, strip accents and punctuation, one space between words: 'Conseillère !' → 'conseillere'."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    bare = "".join(char for char in decomposed if not unicodedata.combining(char))
    return " ".join(_WORD.findall(bare))


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


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    # Shown in the hint when a mapping was expected and something else was written.
    example: ClassVar[str] = ""


class OutsideHours(Section):
    channel: ChannelId | None = None
    mention: Mention | None = None
    note: str = "Outside business hours: an agent will answer when we open."


class BusinessHours(Section):
    example: ClassVar[str] = '{timezone: Europe/Paris, weekly: {mon-fri: "09:00-18:00"}}'

    timezone: TimeZoneName
    weekly: dict[DaySpan, DayHours]
    closed_on: Annotated[list[date], BeforeValidator(_one_or_many)] = Field(default_factory=list)
    outside_hours: OutsideHours = OutsideHours()

    @field_validator("weekly")
    @classmethod
    def _each_day_once(cls, weekly: dict[str, tuple[DayRange, ...]]) -> dict[str, tuple[DayRange, ...]]:
        if not weekly:
            raise Invalid("no opening hours at all", "list the open days, e.g. mon-fri: 09:00-18:00")
        if repeats := _days_given_twice(weekly):
            raise _Repeated(repeats[0][1], _ONCE_HINT)
        return weekly

    @cached_property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @cached_property
    def opening(self) -> tuple[tuple[DayRange, ...], ...]:
        """Opening ranges per weekday, Monday first; days not mentioned are closed."""
        by_day: list[tuple[DayRange, ...]] = [()] * 7
        for span, ranges in self.weekly.items():
            for day in expand_days(span):
                by_day[day] = ranges
        return tuple(by_day)


# What a route's `business_hours: always` means. A value of its own rather than None, which already
# means "inherit the global hours", so that the two read differently and compare unequal on reload.
ALWAYS_OPEN = BusinessHours(timezone="UTC", weekly={"mon-sun": ((0, 24 * 60),)})


def _business_hours_or_always(value: Any) -> Any:
    """`business_hours: always` (or null) on a route opts it out of the global hours."""
    if value is None or (isinstance(value, str) and value.strip().lower() == "always"):
        return ALWAYS_OPEN
    if isinstance(value, str):
        raise Invalid(
            f"expected business hours or 'always', got {value!r}",
            f"write always, or a mapping like {BusinessHours.example}",
        )
    return value


# --- triggers and routes -------------------------------------------------------------------------


class Trigger(Section):
    """One condition that opens a handover; each list item holds exactly one."""

    example: ClassVar[str] = "- need_help: true   or   - keywords: [agent, humain]"

    event: EventName | None = None
    need_help: bool | None = None
    nounderstood_at_least: int | None = Field(None, ge=1)
    confidence_below: float | None = Field(None, gt=0, le=1)
    intents: Globs | None = None
    keywords: Keywords | None = None

    @field_validator("need_help")
    @classmethod
    def _need_help_is_true(cls, value: bool | None) -> bool | None:
        if value is False:
            raise Invalid(
                "need_help: false never opens a handover", "write need_help: true, or remove the trigger"
            )
        return value

    @model_validator(mode="after")
    def _exactly_one_condition(self) -> Trigger:
        given = self.conditions
        if len(given) != 1:
            found = ", ".join(given) if given else "none"
            raise Invalid(
                f"a trigger holds exactly one condition, found {len(given)} ({found})",
                f"write each condition as its own list item: {self.example}",
            )
        return self

    @property
    def conditions(self) -> list[str]:
        return [name for name in type(self).model_fields if getattr(self, name) is not None]

    @cached_property
    def condition(self) -> tuple[str, Any]:
        """(key, value) of the one condition, e.g. ('keywords', ['agent']); computed once, it is read
        for every webhook."""
        key = self.conditions[0]
        return key, getattr(self, key)

    @property
    def name(self) -> str:
        """What Decision.trigger and routes' `match.trigger` call it: the event name for `event:`."""
        key, value = self.condition
        return value if key == "event" else key


TRIGGER_NAMES = (*sorted(HANDLED_EVENTS), *(key for key in Trigger.model_fields if key != "event"))


def _names_a_trigger(pattern: str) -> str:
    if not any(compile_glob(pattern).match(name) for name in TRIGGER_NAMES):
        raise Invalid(f"{pattern!r} matches no trigger", "trigger names: " + ", ".join(TRIGGER_NAMES))
    return pattern


TriggerGlobs = Annotated[
    list[Annotated[str, AfterValidator(_check_glob), AfterValidator(_names_a_trigger)]],
    BeforeValidator(_one_or_many),
    AfterValidator(_non_empty),
]


class RouteMatch(Section):
    """All given keys must match (a list means any of); no key at all matches every event."""

    skill_id: Globs | None = None
    lang: Globs | None = None
    platform: Globs | None = None
    handover_category: Globs | None = None
    intent: Globs | None = None
    trigger: TriggerGlobs | None = None

    @property
    def criteria(self) -> list[tuple[str, list[str]]]:
        return [
            (key, getattr(self, key)) for key in type(self).model_fields if getattr(self, key) is not None
        ]


def _check_route_name(name: str) -> str:
    if not name.strip():
        raise Invalid("a route needs a name", "names show up in logs and metrics, e.g. french")
    if name == "default":
        raise Invalid("'default' is reserved for events no route matches", "pick another name")
    return name


class Route(Section):
    example: ClassVar[str] = "- {name: french, match: {lang: fr-*}, channel: C0123FRENCH}"

    name: Annotated[str, Field(max_length=64), AfterValidator(_check_route_name)]
    match: RouteMatch = RouteMatch()
    channel: ChannelId | None = None  # None: the default channel
    mention: Mention | None = None
    # None: the global hours apply; ALWAYS_OPEN: `always` or null in the file.
    business_hours: Annotated[BusinessHours | None, BeforeValidator(_business_hours_or_always)] = None

    def hours(self, global_hours: BusinessHours | None) -> BusinessHours | None:
        """The hours this route keeps: its own if it has some, else the global ones."""
        return global_hours if self.business_hours is None else self.business_hours


# --- sections ------------------------------------------------------------------------------------


class SlackSection(Section):
    default_channel: ChannelId | None = None


class HistorySection(Section):
    max_entries: int = Field(50, ge=1, le=1000)
    ttl_s: Duration = Field(86400.0, alias="ttl")
    shown_on_open: int = Field(20, ge=0, le=1000)


class HandoverSection(Section):
    idle_timeout_s: Duration = Field(1800.0, alias="idle_timeout")
    ignore_simulator: bool = True
    triggers: list[Trigger] = Field(
        default_factory=lambda: [Trigger(event=ESCALATION_REQUESTED), Trigger(need_help=True)]
    )


class WebhookSection(Section):
    max_body_bytes: int = Field(1024 * 1024, ge=1024)
    dedupe_window_s: Duration = Field(600.0, alias="dedupe_window")


class DeliverySection(Section):
    posts_per_second: float = Field(1.0, gt=0)
    burst: int = Field(3, ge=1)
    workers: int = Field(16, ge=1, le=1024)
    max_message_chars: int = Field(3900, ge=500, le=39000)
    backoff_base_s: Duration = Field(0.5, alias="backoff_base")
    backoff_max_s: Duration = Field(30.0, alias="backoff_max")
    lease_s: Duration = Field(15.0, alias="lease", ge=0.5)  # Slack calls time out at half of it (max 10s)
    poll_interval_s: Duration = Field(0.5, alias="poll_interval")
    shutdown_grace_s: Duration = Field(10.0, alias="shutdown_grace")


class RedisSection(Section):
    cluster: bool = False
    partitions: int = Field(32, ge=1, le=1024)
    wait_replicas: int = Field(0, ge=0, le=10)
    wait_timeout_ms: int = Field(100, ge=1)


class RepliesSection(Section):
    private_prefixes: list[str] = Field(default_factory=lambda: ["note:", "//"])
    timeout_s: Duration = Field(10.0, alias="timeout")


class FileConfig(Section):
    slack: SlackSection = SlackSection()
    history: HistorySection = HistorySection()
    handover: HandoverSection = HandoverSection()
    routes: list[Route] = Field(default_factory=list)
    business_hours: BusinessHours | None = None
    webhook: WebhookSection = WebhookSection()
    delivery: DeliverySection = DeliverySection()
    redis: RedisSection = RedisSection()
    replies: RepliesSection = RepliesSection()


# --- problems and errors -------------------------------------------------------------------------

Loc = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong (or suspicious) in the file, where it is and how to fix it."""

    path: str
    line: int | None  # 1-based; None when the file has no content to point at
    column: int | None
    where: str  # dotted key path, e.g. routes[0].match.lang
    message: str
    hint: str = ""

    def __str__(self) -> str:
        position = f"{self.path}:{self.line}:{self.column}" if self.line is not None else self.path
        where = f" {self.where}:" if self.where else ""
        hint = f" (hint: {self.hint})" if self.hint else ""
        return f"{position}:{where} {self.message}{hint}"


class ConfigError(Exception):
    """The config file is unusable; str() lists every problem, one per line."""

    def __init__(self, path: str, problems: list[str], details: list[Problem] | None = None) -> None:
        self.path = path
        self.problems = problems
        self.details = details or []
        count = f"{len(problems)} problem" + ("s" if len(problems) != 1 else "")
        super().__init__(f"{path}: {count}\n" + "\n".join(problems))

    @classmethod
    def from_problems(cls, path: str, details: list[Problem]) -> ConfigError:
        return cls(path, [str(problem) for problem in details], details)


class ConfigUnreadable(ConfigError):
    """The file could not be read at all (missing, unreadable, not UTF-8)."""


# --- YAML with positions -------------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """SafeLoader whose impossible dates (2026-13-01) stay text, so they get a located error."""


def _timestamp_or_text(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    try:
        return yaml.SafeLoader.construct_yaml_timestamp(loader, node)
    except ValueError:
        return loader.construct_scalar(node)


_Loader.add_constructor("tag:yaml.org,2002:timestamp", _timestamp_or_text)

_SECRET_KEY = re.compile(r"token|secret|passw|api_?key|webhook_?key|signing", re.IGNORECASE)
_SECRET_VALUE = re.compile(r"\b(?:xox[a-z]|xapp)-[A-Za-z0-9]")
_SECRET_ENV_BY_CLUE = (
    (re.compile(r"signing", re.I), "SLACK_SIGNING_SECRET"),
    (re.compile(r"webhook|smartly", re.I), "SMARTLY_WEBHOOK_KEY"),
    (re.compile(r"repl", re.I), "BRIDGE_REPLY_SECRET"),
    (re.compile(r"xapp|app_?token", re.I), "SLACK_APP_TOKEN"),
    (re.compile(r"xox|bot|token", re.I), "SLACK_BOT_TOKEN"),
)


def _secret_hint(clue: str) -> str:
    """Name the environment variable this secret belongs in; the clue is a key name or a token prefix."""
    for pattern, variable in _SECRET_ENV_BY_CLUE:
        if pattern.search(clue):
            return f"remove it and set the environment variable {variable} instead"
    return "remove it and use the environment variables " + ", ".join(SECRET_ENV_VARS)


def _dotted(loc: Loc) -> str:
    text = ""
    for step in loc:
        if step == "[key]":
            continue
        text += f"[{step}]" if isinstance(step, int) else (f".{step}" if text else str(step))
    return text


def _yaml_problem(path: str, error: yaml.YAMLError) -> Problem:
    """A syntax problem, described without the offending line's text (it might hold a secret)."""
    if not isinstance(error, yaml.MarkedYAMLError):
        return Problem(path, None, None, "", f"YAML syntax: {error}")
    mark = error.problem_mark or error.context_mark
    message = "; ".join(part for part in (error.context, error.problem) if part) or "invalid YAML"
    if isinstance(error, yaml.constructor.ConstructorError):
        hint = "only plain YAML is read: remove the !tag"
    elif "\\t" in message:
        hint = "indent with spaces, not tabs"
    else:
        hint = "check indentation, colons and quotes on this line and the one before"
    line, column = (mark.line + 1, mark.column + 1) if mark else (None, None)
    return Problem(path, line, column, "", f"YAML: {message}", hint)


class _Document:
    """The YAML node tree next to the plain data, to turn a key path back into line:column."""

    def __init__(self, path: str, loader: _Loader, root: yaml.Node | None) -> None:
        self.path = path
        self.root = root
        self._loader = loader

    @classmethod
    def compose(cls, text: str, path: str) -> _Document:
        loader = _Loader(text)
        try:
            return cls(path, loader, loader.get_single_node())
        except yaml.YAMLError as e:
            raise ConfigError.from_problems(path, [_yaml_problem(path, e)]) from e
        finally:
            loader.dispose()

    def construct(self) -> Any:
        """Plain Python data; after compose() because merge keys (<<) rewrite the node tree."""
        if self.root is None:
            return None
        try:
            return self._loader.construct_document(self.root)
        except yaml.YAMLError as e:
            raise ConfigError.from_problems(self.path, [_yaml_problem(self.path, e)]) from e
        except (ValueError, TypeError) as e:  # e.g. `!!int abc`
            raise ConfigError.from_problems(
                self.path, [Problem(self.path, None, None, "", f"YAML value cannot be read: {e}")]
            ) from e

    def node_at(self, loc: Loc, *, key: bool = False) -> tuple[yaml.Node | None, int]:
        """(deepest node on `loc`, steps followed); the key's node when `key`; a missing key stops early."""
        node, key_node = self.root, None
        for depth, step in enumerate(loc):
            if step == "[key]":
                return key_node or node, depth + 1
            if isinstance(node, yaml.MappingNode):
                pair = next(
                    (
                        (k, v)
                        for k, v in reversed(node.value)  # YAML keeps the last of duplicated keys
                        if isinstance(k, yaml.ScalarNode) and k.value == str(step)
                    ),
                    None,
                )
                if pair is None:
                    return node, depth
                key_node, node = pair
            elif isinstance(node, yaml.SequenceNode) and isinstance(step, int) and step < len(node.value):
                key_node, node = None, node.value[step]
            else:
                return node, depth
        return (key_node if key and key_node is not None else node), len(loc)

    def problem(self, loc: Loc, message: str, hint: str = "", *, key: bool = False) -> Problem:
        node, followed = self.node_at(loc, key=key)
        if all(isinstance(step, int) for step in loc[followed:]):
            loc = loc[:followed]  # `lang: fr-*` was read as [fr-*]: do not show the author an index
        mark = node.start_mark if node is not None else None
        return Problem(
            self.path,
            mark.line + 1 if mark else None,
            mark.column + 1 if mark else None,
            _dotted(loc),
            message,
            hint,
        )

    def walk(self) -> list[tuple[Loc, yaml.Node | None, yaml.Node]]:
        """Every (key path, key node, value node) once, even through aliases and recursive anchors."""
        found: list[tuple[Loc, yaml.Node | None, yaml.Node]] = []
        seen: set[int] = set()
        pending: list[tuple[Loc, yaml.Node]] = [((), self.root)] if self.root is not None else []
        while pending:
            loc, node = pending.pop()
            if id(node) in seen:
                continue
            seen.add(id(node))
            if isinstance(node, yaml.MappingNode):
                children = [
                    ((*loc, k.value if isinstance(k, yaml.ScalarNode) else "?"), k, v) for k, v in node.value
                ]
            elif isinstance(node, yaml.SequenceNode):
                children = [((*loc, index), None, v) for index, v in enumerate(node.value)]
            else:
                continue
            found.extend(children)
            pending.extend((child_loc, value) for child_loc, _, value in reversed(children))
        return found

    def duplicate_keys(self) -> list[Problem]:
        """PyYAML silently keeps the last of two equal keys; the author of the first deserves to know."""
        problems = []
        for loc, _, mapping in [((), None, self.root), *self.walk()]:
            if not isinstance(mapping, yaml.MappingNode):
                continue
            first_line: dict[str, int] = {}
            for key_node, _ in mapping.value:
                if not isinstance(key_node, yaml.ScalarNode) or key_node.value == "<<":
                    continue
                if key_node.value in first_line:
                    problems.append(
                        self.problem(
                            (*loc, key_node.value),
                            f"key given twice (first on line {first_line[key_node.value]}); "
                            "YAML keeps only the last",
                            key=True,
                        )
                    )
                first_line.setdefault(key_node.value, key_node.start_mark.line + 1)
        return problems

    def secrets(self) -> tuple[list[Problem], list[Loc], list[str]]:
        """Things that look like credentials: (problems, their key paths, values to never echo)."""
        problems: list[Problem] = []
        locs: list[Loc] = []
        values: list[str] = []
        for loc, key_node, value_node in self.walk():
            if isinstance(key_node, yaml.ScalarNode) and (
                _SECRET_KEY.search(key_node.value) or _SECRET_VALUE.search(key_node.value)
            ):
                problems.append(
                    self.problem(
                        loc,
                        "this key looks like it holds a secret; secrets do not belong in the config file",
                        _secret_hint(key_node.value),
                        key=True,
                    )
                )
            elif isinstance(value_node, yaml.ScalarNode) and _SECRET_VALUE.search(value_node.value):
                problems.append(
                    self.problem(
                        loc,
                        "this value looks like a Slack token; secrets do not belong in the config file",
                        _secret_hint(value_node.value[:5]),
                    )
                )
            else:
                continue
            locs.append(loc)
            if isinstance(value_node, yaml.ScalarNode) and value_node.value:
                values.append(value_node.value)
        return problems, locs, values


# --- validation errors, explained ----------------------------------------------------------------

_TYPE_HINTS = {
    "bool_type": "write true or false",
    "bool_parsing": "write true or false",
    "int_type": "write a whole number, without quotes",
    "int_parsing": "write a whole number, without quotes",
    "int_from_float": "write a whole number, without quotes",
    "float_type": "write a number, like 0.3",
    "float_parsing": "write a number, like 0.3",
    "string_type": "write text; quote it if YAML would read it as a number, a date or true/false",
    "list_type": "write a list: [a, b], or one '- item' per line",
    "tuple_type": "write a list: [a, b], or one '- item' per line",
    "dict_type": "write a mapping: one 'key: value' per line, indented under this key",
    "date_type": "write dates as YYYY-MM-DD",
    "date_parsing": "write dates as YYYY-MM-DD",
    "date_from_datetime_parsing": "write dates as YYYY-MM-DD",
    "date_from_datetime_inexact": "write dates as YYYY-MM-DD, without a time",
}


def _unwrap(annotation: Any) -> Any:
    """Annotated[X, ...] and X | None → X, to walk the schema the way the YAML nests."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            rest = [arg for arg in get_args(annotation) if arg is not type(None)]
            if len(rest) != 1:
                return annotation
            annotation = rest[0]
        else:
            return annotation


def _model_at(loc: Loc) -> type[BaseModel] | None:
    """The model class that validates the value at `loc`, if that value is a mapping of known keys."""
    current: Any = FileConfig
    for step in loc:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = next(
                (info for name, info in current.model_fields.items() if step in (name, info.alias)),
                None,
            )
            if field is None:
                return None
            current = field.annotation
        elif get_origin(current) in (list, tuple) and isinstance(step, int):
            current = get_args(current)[0]
        elif get_origin(current) is dict and step != "[key]":
            current = get_args(current)[1]
        else:
            return None
    current = _unwrap(current)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _yaml_keys(model: type[BaseModel]) -> list[str]:
    return [info.alias or name for name, info in model.model_fields.items()]


def _explain(error: Any) -> tuple[str, str, bool]:
    """(message, hint, points at the key) for one pydantic error, without echoing the input."""
    loc: Loc = tuple(error["loc"])
    cause = (error.get("ctx") or {}).get("error")
    if isinstance(cause, Invalid):
        return str(cause), cause.hint, False
    if isinstance(cause, Exception):
        return str(cause), "", False
    kind = error["type"]
    if kind == "extra_forbidden":
        model = _model_at(loc[:-1])
        allowed = _yaml_keys(model) if model else []
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        hint = (f"did you mean {close[0]}? " if close else "") + ("valid keys here: " + ", ".join(allowed))
        return f"unknown key {loc[-1]!r}", hint, True
    if kind == "missing":
        return f"required key {loc[-1]!r} is missing", "", False
    if kind in ("model_type", "model_attributes_type"):
        model = _model_at(loc)
        example = f", like {model.example}" if model and model.example else ""
        return f"expected a mapping, got {_kind_of(error.get('input'))}", f"write a mapping{example}", False
    return error["msg"], _TYPE_HINTS.get(kind, ""), False


def _repeated_entries(document: _Document, data: dict[str, Any]) -> list[Problem]:
    """Repeated route names and days, checked on the raw data so they show up next to every other
    problem (a model validator would only run once everything else in its model is valid)."""
    routes = data.get("routes") if isinstance(data.get("routes"), list) else []
    problems = []
    first_index: dict[str, int] = {}
    for index, route in enumerate(routes):
        name = route.get("name") if isinstance(route, dict) else None
        if isinstance(name, str) and name in first_index:
            problems.append(
                document.problem(
                    ("routes", index, "name"),
                    f"route name {name!r} is already used by routes[{first_index[name]}]",
                    "give each route its own name: logs and metrics tell routes apart by name",
                )
            )
        if isinstance(name, str):
            first_index.setdefault(name, index)
    hours_by_loc: list[tuple[Loc, Any]] = [(("business_hours",), data.get("business_hours"))]
    hours_by_loc += [
        (("routes", index, "business_hours"), route.get("business_hours"))
        for index, route in enumerate(routes)
        if isinstance(route, dict)
    ]
    for loc, hours in hours_by_loc:
        weekly = hours.get("weekly") if isinstance(hours, dict) else None
        if isinstance(weekly, dict):
            problems += [
                document.problem((*loc, "weekly", span, "[key]"), message, _ONCE_HINT)
                for span, message in _days_given_twice(weekly)
            ]
    return problems


def _redact(problem: Problem, secret_values: list[str]) -> Problem:
    """Secrets must not reach a terminal or a log, even inside another problem's message."""
    where, message = problem.where, problem.message
    for value in secret_values:
        where, message = where.replace(value, "<redacted>"), message.replace(value, "<redacted>")
    return Problem(problem.path, problem.line, problem.column, where, message, problem.hint)


def _within(loc: Loc, prefixes: list[Loc]) -> bool:
    return any(loc[: len(prefix)] == prefix for prefix in prefixes)


def _config_warnings(config: FileConfig, document: _Document) -> list[Problem]:
    """Valid but surely not what the author meant; check-config shows these, loading ignores them."""
    warnings = []
    if not config.handover.triggers:
        warnings.append(document.problem(("handover", "triggers"), "no triggers: no handover will ever open"))
    configured = {trigger.name for trigger in config.handover.triggers}
    catch_all: str | None = None
    for index, route in enumerate(config.routes):
        if catch_all is not None:
            warnings.append(
                document.problem(
                    ("routes", index),
                    f"route {route.name!r} never matches: route {catch_all!r} before it matches every event",
                    "routes are tried in order; move the catch-all route last",
                )
            )
        if route.match.trigger and not any(glob_matches(route.match.trigger, name) for name in configured):
            warnings.append(
                document.problem(
                    ("routes", index, "match", "trigger"),
                    f"route {route.name!r} matches a trigger that handover.triggers does not configure",
                    "configured triggers: " + (", ".join(sorted(configured)) or "none"),
                )
            )
        if not route.match.criteria and catch_all is None:
            catch_all = route.name
    return warnings


def _schema_problems(
    document: _Document, data: Any, skip: list[Loc]
) -> tuple[FileConfig | None, list[Problem]]:
    if not isinstance(data, dict):
        found = _kind_of(data)
        return None, [
            document.problem((), f"the file must be a mapping of sections, got {found}", "start with slack:")
        ]
    problems = _repeated_entries(document, data)
    try:
        return FileConfig.model_validate(data), problems
    except ValidationError as e:
        for error in e.errors():
            loc = tuple(error["loc"])
            if _within(loc, skip):
                continue  # already reported as a secret: better say nothing more about it
            if isinstance((error.get("ctx") or {}).get("error"), _Repeated):
                continue  # already reported by _repeated_entries, with a better position
            message, hint, at_key = _explain(error)
            problems.append(document.problem(loc, message, hint, key=at_key))
        return None, problems


def _parse(text: str, path: str) -> tuple[FileConfig, list[Problem]]:
    """(config, warnings), or ConfigError listing every problem in file order."""
    document = _Document.compose(text, path)
    secret_problems, secret_locs, secret_values = document.secrets()
    problems = document.duplicate_keys() + secret_problems
    try:
        data = document.construct()
    except ConfigError as e:
        problems += e.details
        data = None
    else:
        config, schema_problems = _schema_problems(document, {} if data is None else data, secret_locs)
        problems += schema_problems
    if problems or config is None:
        ordered = sorted(problems, key=lambda problem: (problem.line or 0, problem.column or 0))
        raise ConfigError.from_problems(path, [_redact(problem, secret_values) for problem in ordered])
    return config, _config_warnings(config, document)


def _decode(source: bytes, path: str) -> str:
    try:
        return source.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigUnreadable.from_problems(
            path,
            [Problem(path, None, None, "", f"not UTF-8 text (byte {e.start})", "save the file as UTF-8")],
        ) from e


def parse_config(source: str | bytes, path: str = DEFAULT_CONFIG_PATH) -> FileConfig:
    """Validate config text; `path` only names the file in messages."""
    text = _decode(source, path) if isinstance(source, bytes) else source
    return _parse(text, path)[0]


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        reason = e.strerror or str(e)
        raise ConfigUnreadable.from_problems(
            path, [Problem(path, None, None, "", f"cannot read the config file: {reason}")]
        ) from e


def _load(path: str) -> tuple[FileConfig, list[Problem]]:
    return _parse(_decode(_read(path), path), path)


def load_config(path: str | Path | None) -> FileConfig:
    """Read and validate a config file; a missing path means all defaults."""
    if path is None:
        return FileConfig()
    return _load(str(path))[0]


# --- bridge check-config -------------------------------------------------------------------------


def _describe_value(value: Any) -> str:
    return ", ".join(map(str, value)) if isinstance(value, list) else str(value).lower()


def _describe_route(route: Route, default_channel: str) -> str:
    criteria = (
        " ".join(f"{key}={'|'.join(patterns)}" for key, patterns in route.match.criteria) or "every event"
    )
    text = f"  {route.name}: {criteria} -> {route.channel or default_channel}"
    if route.mention:
        text += f", mentions {route.mention}"
    if route.business_hours == ALWAYS_OPEN:
        text += ", always open"
    elif route.business_hours is not None:
        text += f", own hours ({route.business_hours.timezone})"
    return text


def _describe_hours(hours: BusinessHours) -> str:
    days = "; ".join(
        f"{span} " + (", ".join(f"{format_minutes(a)}-{format_minutes(b)}" for a, b in ranges) or "closed")
        for span, ranges in hours.weekly.items()
    )
    closed = f"; closed on {len(hours.closed_on)} date(s)" if hours.closed_on else ""
    outside = hours.outside_hours.channel or "the route's channel"
    return f"business hours: {hours.timezone}: {days}{closed}; outside hours -> {outside}"


def summarize(config: FileConfig) -> list[str]:
    """What the bridge will do with this config, in the order it decides."""
    default_channel = config.slack.default_channel or "$SLACK_CHANNEL"
    lines = ["triggers (the first that matches names the handover):"]
    lines += [
        f"  {key}: {_describe_value(value)}" for key, value in (t.condition for t in config.handover.triggers)
    ] or ["  none"]
    lines.append("routes (first match wins):")
    lines += [_describe_route(route, default_channel) for route in config.routes]
    lines.append(f"  otherwise -> {default_channel} (slack.default_channel; env SLACK_CHANNEL overrides)")
    lines.append(
        _describe_hours(config.business_hours) if config.business_hours else "business hours: always open"
    )
    return lines


def check_config_main(path: str | None, *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """`bridge check-config [PATH]`: 0 if usable, 1 if the file has problems, 2 if it cannot be read.

    out/err default to the sys streams *at call time*, so redirections and test capture work.
    """
    out = out or sys.stdout
    err = err or sys.stderr
    resolved = path or os.environ.get(CONFIG_PATH_ENV) or DEFAULT_CONFIG_PATH
    try:
        config, warnings = _load(resolved)
    except ConfigError as e:
        print(e, file=err)
        return 2 if isinstance(e, ConfigUnreadable) else 1
    print(f"{resolved}: OK", file=out)
    for line in summarize(config):
        print(line, file=out)
    for warning in warnings:
        print(f"warning: {warning}", file=out)
    return 0
