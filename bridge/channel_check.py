"""Channels the bridge cannot use, found before a customer waits (conversations.info at start and after
every config reload).

A root posted to a missing, archived or foreign channel is refused by Slack only when the first handover
arrives: the customer waits, the entry is dead-lettered. Checking each configured channel up front turns
that into one `slack_channel_unusable` line naming the fix, and a gauge an alert can watch.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import structlog

from .metrics import Metrics
from .slack_api import SlackApi, SlackFailure
from .store import STORE_ERRORS, Store

log = structlog.get_logger("bridge.channel_check")

NOT_FOUND = "not_found"
ARCHIVED = "archived"
NOT_MEMBER = "not_member"


def invite_fix(app_name: str) -> str:
    return f"invite the app with /invite @{app_name or '<app name>'}"


def fix_for(reason: str, app_name: str) -> str:
    invite = invite_fix(app_name)
    if reason == NOT_FOUND:
        return (
            f"check the channel ID in config.yaml or SLACK_CHANNEL; a private channel the app is not in "
            f"also looks missing: {invite}"
        )
    if reason == ARCHIVED:
        return f"unarchive the channel (then {invite}) or configure another channel"
    return invite


async def channel_problem(slack: SlackApi, channel: str) -> str | None:
    """Why the bridge cannot post in `channel`, or None when it can. SlackFailure when Slack could not
    say (token, scope, network): the caller logs it and tries again later."""
    try:
        info = await slack.channel_info(channel)
    except SlackFailure as e:
        if e.reason == "channel_not_found":
            return NOT_FOUND
        if e.permanent:
            return e.reason  # e.g. channel_is_limited_access
        raise
    if info.get("is_archived"):
        return ARCHIVED
    if info.get("is_member") is False:
        return NOT_MEMBER
    return None


class ChannelCheck:
    """Checks a set of channels and keeps bridge_slack_channel_usable{channel} in step with it."""

    def __init__(self, slack: SlackApi, metrics: Metrics, store: Store) -> None:
        self.slack = slack
        self.metrics = metrics
        self.store = store
        self._exported: set[str] = set()

    async def run(self, channels: Iterable[str], app_name: str) -> bool:
        """Check each channel once; False when Slack could not answer for some (retry later)."""
        wanted = list(dict.fromkeys(channels))
        for gone in self._exported - set(wanted):  # no longer configured: no stale 0 to alert on
            self.metrics.slack_channel_usable.remove(gone)
            self._exported.discard(gone)
        complete = True
        for channel in wanted:
            try:
                if await self.store.paused_until(channel) > time.time() * 1000:
                    complete = False  # a 429's Retry-After covers every call on the channel
                    continue
                reason = await channel_problem(self.slack, channel)
            except STORE_ERRORS as e:
                complete = False
                log.warning("slack_channel_check_failed", channel=channel, reason=type(e).__name__)
                continue
            except SlackFailure as e:
                complete = False
                fields = {"fix": e.fix()} if e.auth else {}
                log.warning("slack_channel_check_failed", channel=channel, reason=e.reason, **fields)
                continue
            self.metrics.slack_channel_usable.labels(channel).set(0 if reason else 1)
            self._exported.add(channel)
            if reason:
                log.error(
                    "slack_channel_unusable", channel=channel, reason=reason, fix=fix_for(reason, app_name)
                )
            else:
                log.info("slack_channel_usable", channel=channel)
        return complete
