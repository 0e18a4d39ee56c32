"""What agents do in Slack: thread replies become replies to the user; buttons claim and resolve.

Transport-free: the same handlers serve the HTTP Events API (web.py) and Socket Mode (socket_mode.py).
Each handler does its few Redis writes and returns; delivery happens in the background. The parts:
events_base.py (what every handler shares), thread_replies.py (replies, edits, files),
button_clicks.py (Claim, Resolve, Take over, Retry), and this module's dispatch of an envelope.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import structlog

from .button_clicks import ButtonClicks
from .slack_payloads import (
    Envelope,
    EventHead,
    MessageEvent,
    PayloadError,
    parse,
)
from .thread_replies import ThreadReplies

log = structlog.get_logger("bridge.slack_events")


@dataclass
class SlackEvents(ThreadReplies, ButtonClicks):
    """The agent-facing half of the bridge, as the transports call it."""

    async def on_event(self, body: dict[str, Any]) -> dict[str, Any] | None:
        """An Events API envelope. Returns a body to answer with (url_verification), else None.
        A payload of the wrong shape is ignored (logged): Slack would only retry it."""
        try:
            envelope = parse(Envelope, body)
            if envelope.type == "url_verification":
                return {"challenge": envelope.challenge}
            if envelope.type == "app_rate_limited":
                self._rate_limited(envelope)
                return None
            if envelope.type != "event_callback":
                self._ignore("envelope", "type", type=envelope.type)
                return None
            kind = parse(EventHead, envelope.event, "event").type
            if kind == "app_home_opened" and self.desk is not None:
                await self.desk.home_opened(envelope.event or {})
                return None
            if kind != "message":
                self._ignore("event", "type", type=str((envelope.event or {}).get("type")))
                return None
            event = parse(MessageEvent, envelope.event, "event")
        except PayloadError as e:
            self._ignore("event", "invalid_payload", problem=e.problem)
            return None
        await self._on_message(event, envelope.event_id)
        return None

    def _rate_limited(self, envelope: Envelope) -> None:
        """Slack drops this app's events for the rest of the minute: replies in threads are being lost."""
        self.metrics.slack_events.labels("app_rate_limited", "received").inc()
        log.error(
            "slack_app_rate_limited",
            team_id=envelope.team_id,
            minute_rate_limited=envelope.minute_rate_limited,
            effect="Slack sends no events to the bridge until the minute ends: agents' replies are lost",
        )
