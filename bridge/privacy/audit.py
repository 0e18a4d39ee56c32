"""The audit trail (privacy.audit): every change of a handover and every admin action, in ONE Redis
stream (bridge:audit), trimmed to privacy.audit_retention with XADD MINID. Entries hold `at`, `actor`
(a Slack user ID, or system, cli, admin), `action`, `skill_id`, `client_id` and `detail`; never a
message's text.

Call `audit()` right after the change it records (the Lua script that made it has reported it).
The stream lives in a cluster slot of its own, so scripts do not XADD to it themselves: appending
from Python keeps every script single-slot (cluster-safe). The trade: the entry is not atomic with
the change — a process dying between the two loses that entry, and entries from several replicas
are ordered by when they were appended, not by when the change happened (`at` is the change's time).
An append that fails is logged (audit_append_failed) and never undoes or fails the change.
"""

from __future__ import annotations

import asyncio
import time

import structlog

from ..config.schema import PrivacySection
from ..keys import split_conversation_id
from ..store import STORE_ERRORS, Store
from .store import append_audit

log = structlog.get_logger("bridge.audit")

ACTIONS = (
    "opened",
    "claimed",
    "taken_over",
    "transferred",
    "resolved",
    "reopened",
    "reply_relayed",
    "forgotten",
    "dead_letter_replayed",
)
SYSTEM, CLI, ADMIN = "system", "cli", "admin"  # actors that are not a Slack user
_background: set[asyncio.Task[None]] = set()


async def audit(
    store: Store,
    privacy: PrivacySection,
    action: str,
    *,
    actor: str,
    cid: str,
    detail: str = "",
    at_ms: int | None = None,
) -> None:
    """Append one entry when `privacy.audit` is on (`privacy`: the config's PrivacySection).
    `detail` is a short fact (a reason, a channel, counts), never text a user or an agent wrote."""
    if not privacy.audit:
        return
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")
    now_ms = int(time.time() * 1000)
    skill_id, client_id = split_conversation_id(cid)
    fields = {
        "at": str(at_ms or now_ms),
        "actor": actor or SYSTEM,
        "action": action,
        "skill_id": skill_id,
        "client_id": client_id,
        "detail": detail,
    }
    try:
        await append_audit(store, fields, now_ms=now_ms, retention_ms=int(privacy.audit_retention_s * 1000))
    except STORE_ERRORS as e:
        log.error("audit_append_failed", action=action, cid=cid, actor=actor, error=type(e).__name__)


def audit_soon(
    store: Store, privacy: PrivacySection, action: str, *, actor: str, cid: str, detail: str = ""
) -> None:
    """audit() in the background, for the webhook path (which stays one Redis round trip)."""
    if not privacy.audit:
        return
    at_ms = int(time.time() * 1000)
    task = asyncio.create_task(
        audit(store, privacy, action, actor=actor, cid=cid, detail=detail, at_ms=at_ms)
    )
    _background.add(task)
    task.add_done_callback(_background.discard)
