"""Receipts: an agent sees in Slack what became of each reply. A check mark when the owner's endpoint
accepted it; a warning and an ephemeral message with a Retry button (reply_retry) when it was
dead-lettered. (What is not relayed at all is explained at once, by slack_events.py via notices.py.)

These Slack calls are slack-lane outbox entries ("reaction", "ephemeral": lib.lua `notice`) of the
handover whose thread the agent's message is in, queued by the reply lane's commit or burial
(atomically with it: commit.lua, bury_reply.lua), and posted by the slack lane (delivery/notices.py)
through the channel's token bucket: paced like posts, never in the way of a reply.
"""

from __future__ import annotations

from typing import Any

from . import slack_format
from .results import OutboxEntry
from .slack_api import SlackApi

DELIVERED = "white_check_mark"
DEAD = "warning"
NOTICE_KINDS = frozenset({"reaction", "ephemeral"})
# Fields of an agent_message entry that are for the bridge, not for the owner.
SLACK_FIELDS = ("slack_channel", "slack_ts")


def _message(entry: OutboxEntry) -> tuple[str, str] | None:
    """(channel, ts) of the agent's Slack message behind a reply-lane entry, if it is one."""
    channel, ts = entry.data.get("slack_channel"), entry.data.get("slack_ts")
    if entry.kind != "agent_message" or not channel or not ts:
        return None
    return str(channel), str(ts)


def delivered(entry: OutboxEntry) -> dict[str, Any] | None:
    """The reaction to queue with the commit of a delivered reply (None: not an agent's message)."""
    where = _message(entry)
    return {"channel": where[0], "ts": where[1], "name": DELIVERED, "hid": entry.hid} if where else None


def dead(entry: OutboxEntry, cid: str, reason: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The reaction and the ephemeral (its `dead` id filled in by bury_reply.lua) for a reply the
    owner refused for good; None when the entry is not an agent's message."""
    where = _message(entry)
    agent = entry.data.get("agent") or {}
    user = str(agent.get("slack_user_id") or "") if isinstance(agent, dict) else ""
    if where is None or not user:
        return None
    channel, ts = where
    ephemeral = {
        "channel": channel,
        "user": user,
        "thread_ts": str(entry.data.get("thread_ts") or ""),
        "reason": reason,
        "cid": cid,
    }
    return {"channel": channel, "ts": ts, "name": DEAD}, ephemeral


async def send(slack: SlackApi, kind: str, notice: dict[str, Any]) -> None:
    """One notice, as Slack calls it (the slack lane took the channel's token already)."""
    channel = str(notice.get("channel", ""))
    if kind == "reaction":
        await slack.react(channel, str(notice.get("ts", "")), str(notice.get("name", "")))
        return
    text, blocks = slack_format.ephemeral_message(notice)
    await slack.post_ephemeral(
        channel, str(notice.get("user", "")), text, thread_ts=str(notice.get("thread_ts", "")), blocks=blocks
    )
