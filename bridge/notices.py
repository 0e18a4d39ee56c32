"""What an agent is told, privately, when Slack shows them something the bridge did not do.

A click that changed nothing, a refused click, a thread reply the user never got: without a word the
agent believes the customer read it. Each gets an ephemeral message (chat.postEphemeral) to its author.
Private notes and bots get none (a note is meant to stay in Slack; a bot cannot read).

Ephemerals are sent in the background, best effort: Slack does not keep them either (they vanish on
reload), so they are not worth an outbox entry, and the event or click is acked without waiting.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog

from .agents import NOT_AN_AGENT, OTHER_WORKSPACE
from .config import format_duration
from .slack_api import SlackApi, SlackFailure
from .slack_format import escape

log = structlog.get_logger("bridge.notices")

TAKE_OVER_ACTION = "handover_take_over"
MAX_PENDING = 200  # ephemerals in flight; beyond that they are dropped (logged), never queued forever

# Why a thread reply was not relayed -> what its author reads. The one place to narrow when the bridge
# learns to relay more: remove the reason here and stop ignoring it upstream (edits, deletions and
# files are relayed now; what is left of them is explained by late_edit and files_not_relayed below).
NOT_RELAYED: dict[str, str] = {
    NOT_AN_AGENT: "Only the agents listed in the bridge's slack.agents can answer the user: "
    "your reply was not sent to them.",
    OTHER_WORKSPACE: "Replies from another workspace are never sent to the user: your reply stayed in Slack.",
    "subtype": "This kind of message is not sent to the user: write a plain reply in the thread.",
    "empty": "Only text and files are sent to the user: this message had neither.",
    "handover_closed": "This handover is resolved: your reply was not sent to the user.",
}

# What a click that changed nothing (or was refused) tells the clicker.
CLICK: dict[str, str] = {
    NOT_AN_AGENT: "Only the agents listed in the bridge's slack.agents can claim or resolve handovers.",
    OTHER_WORKSPACE: "Users of another workspace cannot claim or resolve handovers.",
    "unchanged": "You already have this handover.",
    "not_open": "This handover is already resolved.",
}


def files_not_relayed(refused: list[str], *, text_sent: bool) -> str:
    """Files of a reply that were not relayed (file_links.relay_files says why, one line each)."""
    lines = ["Not sent to the user:", *(f"• {escape(line)}" for line in refused)]
    if text_sent:
        lines.append("The text of your message was sent.")
    return "\n".join(lines)


def late_edit(window_s: float) -> str:
    """An edit of a relayed reply after replies.edit_window: the user keeps the version they have."""
    return (
        f"Your edit was not sent to the user: a reply can be edited for {format_duration(window_s)} "
        "after it is sent. Send a new reply instead."
    )


def taken_blocks(holder: str, root_ts: str) -> tuple[str, list[dict[str, Any]]]:
    """A Claim on a handover someone else has: who has it, and a button to take it over."""
    text = f"<@{holder}> is already handling this handover."
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": text}},
        {
            "type": "actions",
            "elements": [
                {
                    "type": "button",
                    "action_id": TAKE_OVER_ACTION,
                    "text": {"type": "plain_text", "text": "Take it over"},
                    "value": root_ts,  # the click arrives on this ephemeral: the root travels in the value
                }
            ],
        },
    ]
    return text, blocks


class Notifier:
    def __init__(self, slack: SlackApi) -> None:
        self.slack = slack
        self._pending: set[asyncio.Task[None]] = set()

    def tell(
        self,
        channel: str,
        user: str,
        text: str,
        *,
        thread_ts: str = "",
        blocks: list[dict[str, Any]] | None = None,
    ) -> None:
        """Send `user` an ephemeral in `channel` (in the thread when given), without waiting."""
        if len(self._pending) >= MAX_PENDING:
            log.warning("ephemeral_dropped", channel=channel, user=user, pending=len(self._pending))
            return
        task = asyncio.create_task(self._send(channel, user, text, thread_ts, blocks))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _send(
        self, channel: str, user: str, text: str, thread_ts: str, blocks: list[dict[str, Any]] | None
    ) -> None:
        try:
            await self.slack.post_ephemeral(channel, user, text, thread_ts=thread_ts, blocks=blocks)
        except SlackFailure as e:
            log.warning("ephemeral_failed", channel=channel, user=user, reason=e.reason)
        else:
            log.info("ephemeral_sent", channel=channel, user=user)

    async def drain(self, timeout_s: float = 2.0) -> None:
        """Let ephemerals in flight finish (shutdown), then give up on the rest."""
        if self._pending:
            await asyncio.wait(set(self._pending), timeout=timeout_s)
