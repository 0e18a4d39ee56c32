"""What every Slack event and interaction handler shares: the bridge's parts, and how an event
that changes nothing is logged, counted and (where useful) explained to its author."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from .agents import AgentDirectory
from .config import FileConfig
from .desk import Desk
from .file_links import FileLinks
from .keys import REPLY, SLACK
from .metrics import Metrics
from .notices import (
    Notifier,
)
from .slack_api import Identity
from .store import Store

log = structlog.get_logger("bridge.slack_events")

EVENT_DEDUPE_MS = 24 * 3600 * 1000


@dataclass
class EventsBase:
    store: Store
    identity: Callable[[], Identity | None]
    config: Callable[[], FileConfig]
    metrics: Metrics
    wake: Callable[[str, int], None]
    replies_enabled: bool
    agents: AgentDirectory | None = None  # None: anyone may act (tests of the transport alone)
    notifier: Notifier | None = None  # None: nobody is told why
    desk: Desk | None = None  # the agent desk (bridge/desk): Home tab, modals, desk buttons
    file_links: FileLinks | None = None  # None: files shared by agents are not relayed

    def _ignore(self, kind: str, reason: str, **fields: Any) -> None:
        self.metrics.slack_events.labels(kind, f"ignored_{reason}").inc()
        log.info("slack_event_ignored", kind=kind, reason=reason, **fields)

    def _is_private(self, text: str) -> bool:
        stripped = text.lstrip().lower()
        return any(stripped.startswith(p.lower()) for p in self.config().replies.private_prefixes)

    def _refusal(self, user: str, team: str) -> str | None:
        me = self.identity()
        return self.agents.refusal(user, team, me.team_id if me else "") if self.agents else None

    def _tell(self, channel: str, thread_ts: str, user: str, text: str) -> None:
        if self.notifier and user:
            self.notifier.tell(channel, user, text, thread_ts=thread_ts)

    def _wake(self, cid: str) -> None:
        partition = self.store.partition_of(cid)
        self.wake(SLACK, partition)
        self.wake(REPLY, partition)
