"""From a parsed Smartly event to one atomic Redis write: history, handover claim and Slack outbox,
within the store deadline (and replicated as configured).

Nothing here talks to Slack: the webhook is acknowledged once Redis has the event, and delivery
happens in the background (bridge/delivery/).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, NamedTuple

import orjson

from . import rules
from .config import FileConfig
from .events import TEXT_INPUT, SmartlyEvent
from .keys import conversation_id
from .privacy import Redactor
from .results import RecordResult, flag
from .store import STORE_DEADLINE_S, RecordArgs, Store

FIRST_MESSAGE_CHARS = 300  # what the root shows of the message that opened the handover


def redacted_stored(entry: dict[str, Any] | None, header: dict[str, Any] | None, redactor: Redactor) -> None:
    """privacy.redact_stored: personal data leaves texts before they are written to Redis (in place)."""
    for data, names in ((entry, ("in", "out")), (header, ("first_message",))):
        for name in names:
            if data and data.get(name):
                data[name] = redactor.redact(data[name])


def history_entry(event: SmartlyEvent, now_ms: int) -> dict[str, Any] | None:
    """What the thread shows of one exchange; escalation events carry no message."""
    non_text = event.input_type != TEXT_INPUT
    if not event.is_message or not (event.input or event.answer or non_text):
        return None
    entry: dict[str, Any] = {"t": now_ms, "in": event.input, "out": event.answer}
    if non_text:  # an image, a file, a location...: shown as "[image] <its URL>", see user_said
        entry["it"] = event.input_type
    if event.intent:
        entry["intent"] = event.intent
    if event.confidence is not None:
        entry["conf"] = event.confidence
    if event.platform:
        entry["platform"] = event.platform
    if event.lang:
        entry["lang"] = event.lang
    if event.user_id:
        entry["user_id"] = event.user_id
    return entry


def root_header(
    event: SmartlyEvent, decision: rules.Decision, root_fields: list[str] | None = None
) -> dict[str, Any]:
    """The root message's facts; record.lua completes user, language and platform from earlier events.
    `root_fields` (slack.root_fields) travels with the header, so a root keeps its shape when updated."""
    header: dict[str, Any] = {
        "skill_id": event.skill_id,
        "client_id": event.client_id,
        "user_id": event.user_id,
        "platform": event.platform,
        "lang": event.lang,
        "trigger": decision.trigger,
        "route": decision.route,
        "pool": list(decision.pool),  # delivery places the handover on one of them (store.place_handover)
    }
    if event.is_message:
        header["intent"] = event.intent or event.intent_slug
        header["category"] = event.handover_category
        if event.input:
            header["first_message"] = event.input[:FIRST_MESSAGE_CHARS]
    if root_fields is not None:
        header["root_fields"] = root_fields
    if decision.mention:
        header["mention"] = decision.mention
    if decision.note:
        header["note"] = decision.note
    if decision.outside_hours:
        header["outside_hours"] = True
    return header


class Recorded(NamedTuple):
    """What recording one event did. `unreplicated` says how short replication fell when
    redis.wait_replicas asks for replicas (None: as durable as configured)."""

    result: RecordResult
    decision: rules.Decision | None
    unreplicated: dict[str, int] | None


Limits = tuple[int, int, int, int, int, int]


class Handover:
    """Records Smartly events: one record.lua call each, within the store deadline. `config` returns
    the current (hot-reloadable) file config."""

    def __init__(
        self,
        store: Store,
        config: Callable[[], FileConfig],
        default_pool: Callable[[], tuple[str, ...]],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.config = config
        self.default_pool = default_pool
        self.clock = clock
        self._limits_of: tuple[FileConfig | None, Limits] = (None, (0, 0, 0, 0, 0, 0))

    async def record(self, event: SmartlyEvent, digest: str) -> Recorded:
        """Record the event (`digest`: its body's, for dedupe) within STORE_DEADLINE_S, plus
        redis.wait_timeout_ms when WAIT is on. Store errors and TimeoutError reach the caller."""
        args, decision = self.prepare(event, digest)
        redis_config = self.config().redis
        wanted = redis_config.wait_replicas
        if wanted:
            async with asyncio.timeout(STORE_DEADLINE_S + redis_config.wait_timeout_ms / 1000):
                result, acked = await self.store.record_and_wait(
                    args, digest, wanted, redis_config.wait_timeout_ms
                )
            return Recorded(result, decision, {"acked": acked, "wanted": wanted} if acked < wanted else None)
        if self.store.bounded:  # the client itself answers within the deadline: no timer per webhook
            return Recorded(await self.store.record(args, digest), decision, None)
        async with asyncio.timeout(STORE_DEADLINE_S):
            return Recorded(await self.store.record(args, digest), decision, None)

    def prepare(self, event: SmartlyEvent, digest: str) -> tuple[RecordArgs, rules.Decision | None]:
        """Pure part of recording: the script's arguments, and the rules' decision."""
        config = self.config()
        dedupe_ms, hist_max, ttl_ms, shown_on_open, line_chars, opening_bytes = self._limits(config)
        now = self.clock()
        now_ms = int(now.timestamp() * 1000)
        decision = rules.decide(event, config, self.default_pool(), now)
        entry = history_entry(event, now_ms)
        header = root_header(event, decision, config.slack.root_fields) if decision else None
        if header is not None and config.handover.outcomes:
            header["resolve_modal"] = True  # (the desk) Resolve opens a modal: no confirm dialog first
        privacy = config.privacy
        if privacy.redact_stored and privacy.redact:
            redacted_stored(entry, header, privacy.redactor)
        args = RecordArgs(
            now_ms=now_ms,
            # An escalation body carries no id or time, so a user's next escalation after a resolve is
            # byte-identical to the first: deduping it would swallow it. It needs no dedupe either: while
            # a handover is open a repeat changes nothing.
            dedupe_ms=dedupe_ms if event.is_message else 0,
            hist_max=hist_max,
            ttl_ms=ttl_ms,
            cid=conversation_id(event.skill_id, event.client_id),
            skill_id=event.skill_id,
            client_id=event.client_id,
            user_id=event.user_id,
            lang=event.lang,
            platform=event.platform,
            muted=flag(event.muted) if event.is_message else "",
            entry=orjson.dumps(entry) if entry is not None else "",
            header=orjson.dumps(header) if header is not None else "",
            shown_on_open=shown_on_open,
            line_chars_on_open=line_chars,
            opening_bytes=opening_bytes,
        )
        return args, decision

    def _limits(self, config: FileConfig) -> Limits:
        """(dedupe_ms, hist_max, ttl_ms, shown_on_open, line_chars_on_open, opening_bytes), read once
        per config (it is reloadable)."""
        cached_for, limits = self._limits_of
        if config is not cached_for:
            history = config.history
            limits = (
                int(config.webhook.dedupe_window_s * 1000),
                history.max_entries,
                int(history.ttl_s * 1000),
                history.shown_on_open,
                history.line_chars_on_open,
                # Shown history (as JSON) up to this size surely fits one opening post: rendered, an
                # exchange takes at most ~6.4 times its JSON (escaping, labels), so no transcript file.
                config.delivery.max_message_chars // 8,
            )
            self._limits_of = (config, limits)
        return limits
