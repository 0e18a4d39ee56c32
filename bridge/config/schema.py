"""The schema of config.yaml: one frozen pydantic model per section."""

from __future__ import annotations

import re
from datetime import date
from functools import cached_property
from typing import Annotated, Any, ClassVar
from zoneinfo import ZoneInfo

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from ..events import ESCALATION_REQUESTED, HANDLED_EVENTS
from ..matching import compile_glob
from ..privacy.redact import BUILTINS, Redactor
from .values import (
    _ONCE_HINT,
    AgentId,
    ChannelPool,
    DayHours,
    DayRange,
    DaySpan,
    Duration,
    EventName,
    Globs,
    Invalid,
    Keywords,
    Mention,
    TimeZoneName,
    _check_detector_name,
    _check_glob,
    _check_pattern,
    _days_given_twice,
    _non_empty,
    _one_or_many,
    _Repeated,
    expand_days,
)


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    # Shown in the hint when a mapping was expected and something else was written.
    example: ClassVar[str] = ""


class OutsideHours(Section):
    channel: ChannelPool | None = None
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


class SlaSection(Section):
    """Response-time targets (bridge/desk/sla.py); a route's own `sla` replaces the global one."""

    example: ClassVar[str] = "{first_response: 5m, remind_every: 5m, escalate_after: 15m}"

    first_response_s: Annotated[Duration, Field(ge=1.0)] = Field(alias="first_response")
    remind_every_s: Annotated[Duration, Field(ge=1.0)] | None = Field(None, alias="remind_every")
    escalate_after_s: Annotated[Duration, Field(ge=1.0)] | None = Field(None, alias="escalate_after")
    escalate_mention: Mention | None = None


def _check_outcome(name: str) -> str:
    if not re.fullmatch(r"[a-z0-9_-]{1,32}", name):
        raise Invalid(
            f"{name!r} is not a short outcome name", "use 1-32 of a-z, 0-9, _ and -, e.g. no_answer"
        )
    return name


def _outcomes_once(names: list[str]) -> list[str]:
    if len(set(names)) != len(names):
        raise Invalid("an outcome is listed twice", "list each outcome once")
    return names


Outcomes = Annotated[
    list[Annotated[str, AfterValidator(_check_outcome)]],
    Field(max_length=100),  # a Slack select holds at most 100 options
    AfterValidator(_outcomes_once),
]


class Route(Section):
    example: ClassVar[str] = "- {name: french, match: {lang: fr-*}, channel: C0123FRENCH}"

    name: Annotated[str, Field(max_length=64), AfterValidator(_check_route_name)]
    match: RouteMatch = RouteMatch()
    channel: ChannelPool | None = None  # None: the default channel (pool)
    mention: Mention | None = None
    # None: the global hours apply; ALWAYS_OPEN: `always` or null in the file.
    business_hours: Annotated[BusinessHours | None, BeforeValidator(_business_hours_or_always)] = None
    sla: SlaSection | None = None  # None: the global `sla` applies

    def hours(self, global_hours: BusinessHours | None) -> BusinessHours | None:
        """The hours this route keeps: its own if it has some, else the global ones."""
        return global_hours if self.business_hours is None else self.business_hours


# --- sections ------------------------------------------------------------------------------------


ROOT_FIELDS = (
    "user_id",
    "client_id",
    "platform",
    "lang",
    "skill_id",
    "trigger",
    "route",
    "intent",
    "category",
    "muted",
    "first_message",
)


def _check_root_field(name: str) -> str:
    if name not in ROOT_FIELDS:
        raise Invalid(f"unknown root field {name!r}", "root fields: " + ", ".join(ROOT_FIELDS))
    return name


class SlackSection(Section):
    default_channel: ChannelPool | None = None
    # Who may Claim, Resolve and be relayed (None: anyone of the bridge's workspace): U…/W… users
    # and S… user groups (expanded with usergroups.users.list, see agents.py).
    agents: Annotated[list[AgentId], BeforeValidator(_one_or_many), AfterValidator(_non_empty)] | None = None
    # What the root message shows (None: every field); a privacy choice, see privacy.redact too.
    root_fields: (
        Annotated[list[Annotated[str, AfterValidator(_check_root_field)]], BeforeValidator(_one_or_many)]
        | None
    ) = None


class HistorySection(Section):
    max_entries: int = Field(50, ge=1, le=1000)
    ttl_s: Duration = Field(86400.0, alias="ttl")
    shown_on_open: int = Field(20, ge=0, le=1000)
    # Each line of the opening history is cut here ("…"); the full history goes in a file then.
    line_chars_on_open: int = Field(300, ge=20, le=1500)


class HandoverSection(Section):
    idle_timeout_s: Duration = Field(1800.0, alias="idle_timeout")
    ignore_simulator: bool = True
    triggers: list[Trigger] = Field(
        default_factory=lambda: [Trigger(event=ESCALATION_REQUESTED), Trigger(need_help=True)]
    )
    outcomes: Outcomes = Field(default_factory=list)  # set: Resolve asks for one (bridge/desk)
    reopen_window_s: Duration = Field(86400.0, alias="reopen_window")


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
    unknown_error_attempts: int = Field(5, ge=1, le=1000)  # then an unknown Slack error dead-letters
    saturation_warning_s: Duration = Field(30.0, alias="saturation_warning", gt=0)


class RedisSection(Section):
    cluster: bool = False
    partitions: int = Field(32, ge=1, le=1024)
    wait_replicas: int = Field(0, ge=0, le=10)
    wait_timeout_ms: int = Field(100, ge=1)
    autopipeline: bool = True  # false: plain redis-py (its retry and health check), read at start


class RepliesSection(Section):
    private_prefixes: list[str] = Field(default_factory=lambda: ["note:", "//"])
    timeout_s: Duration = Field(10.0, alias="timeout")
    # Issue 17: files, edits and transcripts of agents' replies.
    file_link_ttl_s: Duration = Field(86400.0, alias="file_link_ttl", gt=0)
    max_file_bytes: int = Field(20 * 1024 * 1024, ge=1)
    edit_window_s: Duration = Field(900.0, alias="edit_window", ge=0)
    transcript_max_bytes: int = Field(256 * 1024, ge=1024)


class RedactDetector(Section):
    """One item of privacy.redact: a built-in name (`email`), or `{name, pattern}` for a custom one."""

    example: ClassVar[str] = '{name: order_id, pattern: "ORD-\\d{8}"}'

    name: Annotated[str, AfterValidator(_check_detector_name)]
    pattern: Annotated[str, AfterValidator(_check_pattern)] | None = None

    @model_validator(mode="before")
    @classmethod
    def _builtin_by_name(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _builtin_or_custom(self) -> RedactDetector:
        if self.pattern is None and self.name not in BUILTINS:
            raise Invalid(
                f"unknown detector {self.name!r}",
                "built-ins: " + ", ".join(BUILTINS) + f"; or a custom one like {self.example}",
            )
        if self.pattern is not None and self.name in BUILTINS:
            raise Invalid(f"{self.name!r} is a built-in detector", "give your pattern another name")
        return self


class PrivacySection(Section):
    redact: list[RedactDetector] = Field(default_factory=list)
    redact_stored: bool = False  # true: history is redacted before it is written to Redis, too
    audit: bool = False  # true: handover changes and admin actions go to the audit trail (bridge audit)
    audit_retention_s: Duration = Field(90 * 86400.0, alias="audit_retention")

    @cached_property
    def redactor(self) -> Redactor:
        """Compiled once per config (it is reloadable)."""
        return Redactor(
            [d.name for d in self.redact if d.pattern is None],
            [(d.name, d.pattern) for d in self.redact if d.pattern is not None],
        )


class FileConfig(Section):
    slack: SlackSection = SlackSection()
    history: HistorySection = HistorySection()
    handover: HandoverSection = HandoverSection()
    routes: list[Route] = Field(default_factory=list)
    business_hours: BusinessHours | None = None
    sla: SlaSection | None = None
    webhook: WebhookSection = WebhookSection()
    delivery: DeliverySection = DeliverySection()
    redis: RedisSection = RedisSection()
    replies: RepliesSection = RepliesSection()
    privacy: PrivacySection = PrivacySection()

    def channel_ids(self) -> list[str]:
        """Every channel this file names (default, routes, outside-hours), in order, each once: what
        the start-up check (channel_check.py) verifies. Add any new place a channel is configured here."""
        hours = [self.business_hours, *(route.business_hours for route in self.routes)]
        pools = [
            self.slack.default_channel,
            *(route.channel for route in self.routes),
            *(h.outside_hours.channel for h in hours if h is not None),
        ]
        return list(dict.fromkeys(channel for pool in pools if pool for channel in pool))
