"""What one delivery step leaves a conversation in: the one result type every lane step returns."""

from __future__ import annotations

import os
import socket
import time
import uuid
from datetime import UTC, datetime
from typing import Literal, NamedTuple

from ..results import Fetched

Action = Literal["next", "drained", "later"]


class Step(NamedTuple):
    """`next`: deliver more of this conversation now (`fetched`: what the last commit read of what is
    left; None: read it again). `drained`: the outbox is empty (`released`: the last commit already
    handed the conversation back). `later`: stop, the conversation is due again at `due_ms`.
    Only the scheduler releases a lease, from the final Step (Deliverer._finish)."""

    action: Action
    due_ms: int = 0
    fetched: Fetched | None = None
    released: bool = False

    @classmethod
    def go_on(cls, fetched: Fetched | None = None) -> Step:
        return cls("next", fetched=fetched)

    @classmethod
    def drained(cls, *, released: bool) -> Step:
        return cls("drained", released=released)

    @classmethod
    def later(cls, due_ms: int) -> Step:
        return cls("later", due_ms=due_ms)

    @property
    def stops(self) -> bool:
        return self.action != "next"


def now_ms() -> int:
    return int(time.time() * 1000)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def inflight_marker(first: str, last: str) -> str:
    """What a conversation's in-flight marker holds for a post of entries `first`..`last` starting
    now; SlackLane reads it back after a crash to find that post in Slack."""
    return f"{first} {last} {now_ms()}"
