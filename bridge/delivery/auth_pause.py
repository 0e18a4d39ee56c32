"""While Slack refuses the bot token, Slack delivery pauses for every channel (entries stay queued):
one step at a time tries again (the probe) every AUTH_RETRY_S, and any call Slack accepts resumes it.
What this replica learns goes to its SlackHealth (readiness, bridge_slack_auth_ok)."""

from __future__ import annotations

from typing import NamedTuple

import structlog

from ..health import AUTH_RETRY_S, SlackHealth
from ..slack_api import SlackApi, SlackFailure
from .step import Step, now_ms

log = structlog.get_logger("bridge.delivery")


class Probe(NamedTuple):
    """What a step saw before it ran: whether it was the probe, and the counters it may move."""

    probing: bool
    answered: int
    failures: int


class AuthPause:
    def __init__(self, health: SlackHealth, slack: SlackApi) -> None:
        self.health = health
        self.slack = slack
        self._next_probe_ms = 0
        self._probing = False
        self._failures = 0

    def gate(self) -> Step | None:
        """None lets this step through (as the probe, when paused); else when to come back."""
        if not self.health.paused:
            return None
        now = now_ms()
        if self._probing:
            return Step.later(now + 1000)  # the probe's answer decides, in a moment
        if now < self._next_probe_ms:
            return Step.later(self._next_probe_ms)
        self._probing = True
        self._next_probe_ms = now + int(AUTH_RETRY_S * 1000)
        return None

    def probe(self) -> Probe:
        return Probe(self._probing, self.slack.answered_ok, self._failures)

    def done(self, before: Probe) -> None:
        """After a step let through by gate(): a probe that Slack answered resumes delivery."""
        if not before.probing:
            return
        self._probing = False
        if self.slack.answered_ok > before.answered and self.health.paused:
            log.info("slack_auth_restored", code=self.health.code)
            self.health.ok()
        elif self._failures == before.failures and self.health.paused:
            self._next_probe_ms = 0  # the step made no call (a token wait): the next one probes

    def failed(self, e: SlackFailure, *, channel: str, cid: str) -> Step:
        self._failures += 1
        self.health.auth_failed(e.reason, e.needed)
        self._next_probe_ms = now_ms() + int(AUTH_RETRY_S * 1000)
        log.error(
            "slack_auth_failed",
            code=e.reason,
            needed=e.needed,
            fix=e.fix(),
            channel=channel,
            cid=cid,
            retry_in_s=AUTH_RETRY_S,
        )
        return Step.later(self._next_probe_ms)
