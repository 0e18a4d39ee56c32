"""Block Kit clicks of agents: Claim and Resolve on a root, Take it over on the ephemeral a Claim on
someone else's handover answers with, Retry on a dead-lettered reply; the desk's own buttons and
modals (bridge/desk) first when it runs."""

from __future__ import annotations

import time
from typing import Any

import structlog

from .desk import NOT_MINE, DeskActions
from .events_base import EventsBase
from .keys import REPLY
from .notices import (
    CLICK,
    TAKE_OVER_ACTION,
    taken_blocks,
)
from .privacy.audit import audit
from .slack_format import CLAIM_ACTION, RESOLVE_ACTION, RETRY_ACTION
from .slack_payloads import (
    Interaction,
    InteractionUser,
    parse,
)

log = structlog.get_logger("bridge.slack_events")

# Store answers of claim/resolve -> outcome label (-2: another agent has it, see claim_handover.lua).
_OUTCOMES = {1: "done", 0: "unchanged", -1: "not_open", -2: "taken"}
_AUDITED = {CLAIM_ACTION: "claimed", TAKE_OVER_ACTION: "taken_over", RESOLVE_ACTION: "resolved"}


class ButtonClicks(EventsBase):
    async def on_interaction(self, body: dict[str, Any]) -> dict[str, Any] | None:
        """Block Kit button clicks: Claim and Resolve on a root, Take it over on the ephemeral a Claim
        on someone else's handover answers with; the desk's buttons and modals (bridge/desk) when it
        runs. Returns a body to answer with (a modal's errors), else None. Raises PayloadError for a
        payload of the wrong shape (the HTTP endpoint answers 400)."""
        if self.desk is not None:
            answer = await DeskActions(self.desk, self._refusal, self._act).on_interaction(body)
            if answer is not NOT_MINE:
                return answer
        payload = parse(Interaction, body)
        if payload.type != "block_actions":
            self._ignore("interaction", "type", type=payload.type)
            return None
        for action in payload.actions:
            if action.action_id == RETRY_ACTION:  # on the ephemeral about a dead-lettered reply
                await self._retry(action.value, payload.user.id)
            elif action.action_id == TAKE_OVER_ACTION:  # clicked on the ephemeral: the root is in the value
                await self._act(action.action_id, payload.user, payload.channel_id, action.value)
            elif action.action_id in (CLAIM_ACTION, RESOLVE_ACTION):
                await self._act(action.action_id, payload.user, payload.channel_id, payload.message_ts)
            else:
                self._ignore("interaction", "action", action_id=action.action_id)
        return None

    async def _act(self, action_id: str, user: InteractionUser, channel: str, root_ts: str) -> None:
        cid = await self.store.thread_conversation(channel, root_ts)
        if cid is None:
            return self._ignore("interaction", "unknown_thread", channel=channel, thread_ts=root_ts)
        refusal = self._refusal(user.id, user.team_id)
        status = -3 if refusal else await self._change(action_id, cid, user, root_ts)
        outcome = refusal or _OUTCOMES[status]
        self.metrics.slack_events.labels(action_id, outcome).inc()
        log.info(
            "handover_action",
            action=action_id,
            outcome=outcome,
            cid=cid,
            agent=user.id,
            channel=channel,
            thread_ts=root_ts,
        )
        if status > 0:
            if self.desk is not None:  # delivery woken, and the Home tab is out of date
                await self.desk.changed(cid)
            else:
                self._wake(cid)
            action = _AUDITED[action_id]
            await audit(self.store, self.config().privacy, action, actor=user.id, cid=cid, detail="button")
        elif status == -2 and self.notifier:
            holder = (await self.store.conversation(cid)).get("agent_id", "")
            text, blocks = taken_blocks(holder, root_ts)
            self.notifier.tell(channel, user.id, text, blocks=blocks)
        elif self.notifier and outcome in CLICK:
            self.notifier.tell(channel, user.id, CLICK[outcome])
        return None

    async def _change(self, action_id: str, cid: str, user: InteractionUser, root_ts: str) -> int:
        common: dict[str, Any] = {
            "thread_ts": root_ts,
            "agent_id": user.id,
            "agent_name": user.name or user.username,
            "now_ms": int(time.time() * 1000),
            "replies": self.replies_enabled,
        }
        if action_id == RESOLVE_ACTION and self.desk is not None:  # (its reopen window and numbers)
            return await self.desk.resolve(
                cid, thread_ts=root_ts, agent_id=common["agent_id"], agent_name=common["agent_name"]
            )
        if action_id == RESOLVE_ACTION:
            return await self.store.resolve_handover(cid, **common)
        return await self.store.claim_handover(cid, take_over=action_id == TAKE_OVER_ACTION, **common)

    async def _retry(self, value: str, agent_id: str) -> None:
        """The reply_retry button: its dead-lettered reply goes back to the end of the reply outbox
        (as `bridge outbox replay` does); delivered then, it gets its check mark."""
        cid, _, dead_id = value.rpartition(" ")
        letter = await self.store.dead_letter(cid, dead_id) if cid and dead_id else None
        if letter is None or letter.lane != REPLY:  # replayed already, or not ours to replay
            return self._ignore("interaction", "retry_unknown", agent=agent_id)
        replayed = await self.store.replay(letter, int(time.time() * 1000))
        self.metrics.slack_events.labels(RETRY_ACTION, "done" if replayed else "unchanged").inc()
        log.info("reply_retry", cid=cid, dead=dead_id, agent=agent_id, replayed=replayed)
        if replayed:
            self._wake(cid)
        return None
