"""Handover rules: pure functions from (event, config, clock) to a Decision. No I/O.

Whether a handover is *already* open is not decided here: that part of the conversation state is
settled atomically in Redis (store.py), so the webhook path needs a single round trip.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from functools import lru_cache
from typing import Any

from .config import BusinessHours, FileConfig, Route, RouteMatch, Trigger
from .events import SmartlyEvent
from .matching import glob_matches, normalize_words

DEFAULT_ROUTE = "default"


@dataclass(frozen=True, slots=True)
class Decision:
    """Open a handover: why (trigger), where (route, channel pool) and what to add to the root message.
    The pool's channel is chosen when the root is posted (delivery), not here."""

    trigger: str
    route: str
    pool: tuple[str, ...]
    mention: str | None = None
    note: str | None = None
    outside_hours: bool = False


def _intents(event: SmartlyEvent) -> tuple[str, ...]:
    """Owners know an intent by its name or by its slug; either one may be missing."""
    return tuple(value for value in (event.intent, event.intent_slug) if value)


# Configured keywords are few and fixed per config: normalise each once, not on every message.
_normalized_keyword = lru_cache(maxsize=4096)(normalize_words)


def has_keyword(text: str, keywords: list[str]) -> bool:
    """Whole words (or phrases), ignoring case, accents and punctuation: 'Conseillère?' has 'conseillere'."""
    words = f" {normalize_words(text)} "
    return any(f" {_normalized_keyword(keyword)} " in words for keyword in keywords)


_CONDITIONS: dict[str, Callable[[Any, SmartlyEvent], bool]] = {
    "event": lambda name, event: event.event == name,
    "need_help": lambda _, event: event.need_help,
    "nounderstood_at_least": lambda count, event: event.number_of_nounderstood >= count,
    # Smartly reports a confidence for misunderstood inputs too; only a shaky *understanding* counts.
    "confidence_below": lambda threshold, event: (
        event.understood is True and event.confidence is not None and event.confidence < threshold
    ),
    "intents": lambda patterns, event: any(glob_matches(patterns, intent) for intent in _intents(event)),
    "keywords": lambda keywords, event: has_keyword(event.input, keywords),
}


def trigger_fires(trigger: Trigger, event: SmartlyEvent) -> bool:
    key, value = trigger.condition
    return _CONDITIONS[key](value, event)


def first_trigger(event: SmartlyEvent, triggers: list[Trigger]) -> str | None:
    """The name of the first trigger, in file order, that this event fires."""
    return next((trigger.name for trigger in triggers if trigger_fires(trigger, event)), None)


_MATCHED_VALUES: dict[str, Callable[[SmartlyEvent, str], tuple[str, ...]]] = {
    "skill_id": lambda event, _: (event.skill_id,),
    "lang": lambda event, _: (event.lang,),
    "platform": lambda event, _: (event.platform,),
    "handover_category": lambda event, _: (event.handover_category,),
    # An event without an intent still has "" to match, so `intent: "*"` means "any, even none".
    "intent": lambda event, _: _intents(event) or ("",),
    "trigger": lambda _, trigger: (trigger,),
}


def route_matches(match: RouteMatch, event: SmartlyEvent, trigger: str) -> bool:
    """Every key given must match one of its patterns; a route without keys takes every event."""
    return all(
        any(glob_matches(patterns, value) for value in _MATCHED_VALUES[key](event, trigger))
        for key, patterns in match.criteria
    )


def first_route(event: SmartlyEvent, trigger: str, routes: list[Route]) -> Route | None:
    return next((route for route in routes if route_matches(route.match, event, trigger)), None)


def is_open(hours: BusinessHours, now: datetime) -> bool:
    """Wall-clock time in the team's zone, so opening hours follow DST without anyone editing the file."""
    local = now.astimezone(hours.zone)
    if local.date() in hours.closed_on:
        return False
    minute = local.hour * 60 + local.minute
    return any(start <= minute < end for start, end in hours.opening[local.weekday()])


def decide(
    event: SmartlyEvent, config: FileConfig, default_pool: tuple[str, ...], now: datetime
) -> Decision | None:
    """Return a Decision when this event asks for a human, else None."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("decide() needs an aware datetime: a naive one would be read in the server's zone")
    if event.is_simulator and config.handover.ignore_simulator:
        return None
    trigger = first_trigger(event, config.handover.triggers)
    if trigger is None:
        return None
    route = first_route(event, trigger, config.routes)
    if route is None:
        decision = Decision(trigger=trigger, route=DEFAULT_ROUTE, pool=default_pool)
        hours = config.business_hours
    else:
        pool = route.channel or default_pool
        decision = Decision(trigger=trigger, route=route.name, pool=pool, mention=route.mention)
        hours = route.hours(config.business_hours)
    if hours is None or is_open(hours, now):
        return decision
    # Outside hours the route's team is not paged; outside_hours.mention (an on-call group) may be.
    outside = hours.outside_hours
    return replace(
        decision,
        pool=outside.channel or decision.pool,
        mention=outside.mention,
        note=outside.note or None,
        outside_hours=True,
    )
