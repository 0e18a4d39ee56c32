"""What this replica last learnt of Slack's answer to its token: readiness, metrics and delivery read it.

Not shared through Redis on purpose: every replica uses the same token, so each learns the same
answer from its own next call, and a replica must not report ready on another's word.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

SlackState = Literal["unknown", "ok", "auth_failed", "unreachable"]
# While the token is refused, delivery tries Slack again this often (any successful call resumes it).
AUTH_RETRY_S = 30.0


@dataclass
class SlackHealth:
    state: SlackState = "unknown"
    code: str = ""  # Slack's error code while auth_failed (invalid_auth, missing_scope, ...)
    needed: str = ""  # the scope Slack said is missing, when it said
    since: float = 0.0  # time.time() of the last change

    def ok(self) -> None:
        self._set("ok", "", "")

    def auth_failed(self, code: str, needed: str | None = None) -> None:
        self._set("auth_failed", code, needed or "")

    def unreachable(self) -> None:
        if self.state != "auth_failed":  # a refused token stays refused until a call succeeds
            self._set("unreachable", "", "")

    @property
    def paused(self) -> bool:
        """Slack delivery waits (entries stay queued) while the token is refused."""
        return self.state == "auth_failed"

    @property
    def ready_reason(self) -> str | None:
        """Why /readyz must answer 503 on Slack's account, or None."""
        return f"slack_auth: {self.code}" if self.state == "auth_failed" else None

    def _set(self, state: SlackState, code: str, needed: str) -> None:
        if (state, code, needed) != (self.state, self.code, self.needed):
            self.since = time.time()
        self.state, self.code, self.needed = state, code, needed
