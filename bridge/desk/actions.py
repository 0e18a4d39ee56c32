"""Clicks and modal submissions of the desk: Claim / Resolve (on a root or on the Home tab), Transfer,
Reopen, and the Resolve and Transfer modals. Transport-free like slack_events.py, which hands these
over. A payload of the wrong shape is ignored with one log line; a modal's bad input gets Slack's
`response_action: errors` so the agent sees what to fix."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any, Final

import orjson
import structlog

from ..notices import CLICK
from ..privacy.audit import audit
from ..slack_api import SlackFailure
from ..slack_format import CLAIM_ACTION, RESOLVE_ACTION
from ..slack_payloads import Interaction, InteractionUser, parse
from . import text
from .desk import Desk, now_ms

log = structlog.get_logger("bridge.desk.actions")

NOT_MINE: Final = object()  # what on_interaction answers for payloads the desk leaves to slack_events
BUTTONS = frozenset({CLAIM_ACTION, RESOLVE_ACTION, text.TRANSFER_ACTION, text.REOPEN_ACTION})
_TS = re.compile(r"^\d{1,10}\.\d{1,9}$")
_CHANNEL = re.compile(r"^[A-Z0-9]{2,32}$")
_REOPEN_REFUSED = {
    -1: "This handover cannot be reopened from here.",
    -2: "A newer handover is open for this user: continue there.",
    -3: "The reopen window has passed: the user's next escalation opens a new thread.",
}


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _errors(block_id: str, message: str) -> dict[str, Any]:
    return {"response_action": "errors", "errors": {block_id: message}}


def _thread(channel: str, ts: str) -> tuple[str, str] | None:
    return (channel, ts) if _CHANNEL.match(channel) and _TS.match(ts) else None


Refusal = Callable[[str, str], str | None]  # (user, team) -> why they may not act (slack.agents), or None
Act = Callable[[str, InteractionUser, str, str], Awaitable[None]]  # slack_events' Claim / Resolve


class DeskActions:
    """`refusal` and `act` are slack_events': who may act, and the root's own Claim / Resolve (with
    its take-over and notices), which a Home tab click goes through too."""

    def __init__(self, desk: Desk, refusal: Refusal, act: Act) -> None:
        self.desk = desk
        self.refusal = refusal
        self.act = act

    async def _audit(self, action: str, actor: str, cid: str, detail: str) -> None:
        await audit(self.desk.base, self.desk.config().privacy, action, actor=actor, cid=cid, detail=detail)

    def _count(self, kind: str, result: str, **fields: Any) -> None:
        self.desk.metrics.slack_events.labels(kind, result).inc()
        log.info("handover_action", action=kind, result=result, **fields)

    async def on_interaction(self, payload: dict[str, Any]) -> Any:
        """None or a body to answer with (modal errors); NOT_MINE for what slack_events handles."""
        kind = payload.get("type")
        if kind == "view_submission":
            view = _dict(payload.get("view"))
            callback = view.get("callback_id")
            if callback == text.RESOLVE_CALLBACK:
                return await self._resolve_submitted(payload, view)
            if callback == text.TRANSFER_CALLBACK:
                return await self._transfer_submitted(payload, view)
            return NOT_MINE
        actions = payload.get("actions")
        if kind != "block_actions" or not isinstance(actions, list) or not actions:
            return NOT_MINE
        ids = [_dict(a).get("action_id") for a in actions]
        home = _dict(payload.get("container")).get("type") == "view"
        plain = {CLAIM_ACTION} if self.desk.config().handover.outcomes else {CLAIM_ACTION, RESOLVE_ACTION}
        if not all(i in BUTTONS for i in ids) or (not home and any(i in plain for i in ids)):
            return NOT_MINE  # the root's own Claim (and Resolve without outcomes): slack_events
        interaction = parse(Interaction, payload)  # the shape slack_events checks too: PayloadError, a 400
        for action in actions:
            await self._button(payload, interaction, _dict(action), home)
        return None

    # -- buttons ---------------------------------------------------------------------------------------

    def _clicked_thread(
        self, payload: dict[str, Any], action: dict[str, Any], home: bool
    ) -> tuple[str, str] | None:
        if home:  # the Home tab: the button's value names the thread
            channel, _, ts = _str(action.get("value")).partition(" ")
            return _thread(channel, ts)
        container = _dict(payload.get("container"))
        channel = _str(_dict(payload.get("channel")).get("id")) or _str(container.get("channel_id"))
        ts = _str(_dict(payload.get("message")).get("ts")) or _str(container.get("message_ts"))
        return _thread(channel, ts)

    async def _button(
        self, payload: dict[str, Any], interaction: Interaction, action: dict[str, Any], home: bool
    ) -> None:
        action_id = _str(action.get("action_id"))
        user = interaction.user
        thread = self._clicked_thread(payload, action, home)
        if thread is None:
            return self._count(action_id, "ignored_no_thread")
        channel, ts = thread
        outcomes = self.desk.config().handover.outcomes
        if action_id == CLAIM_ACTION or (action_id == RESOLVE_ACTION and not outcomes):
            return await self.act(action_id, user, channel, ts)  # a Home click: as on the root
        refused = self.refusal(user.id, user.team_id)
        if refused:
            await self.desk.slack.tell(channel, user.id, CLICK.get(refused, "You cannot act on handovers."))
            return self._count(action_id, refused, agent=user.id)
        cid = await self.desk.base.thread_conversation(channel, ts)
        if cid is None:
            return self._count(action_id, "ignored_unknown_thread", channel=channel, thread_ts=ts)
        fields = {"cid": cid, "agent": user.id, "channel": channel, "thread_ts": ts}
        trigger_id = _str(payload.get("trigger_id"))
        if action_id == RESOLVE_ACTION:
            view = text.resolve_modal(outcomes, channel, ts)
            return await self._open(action_id, trigger_id, view, fields)
        if action_id == text.TRANSFER_ACTION:
            current = await self.desk.store.route_of(cid)
            choices = [name for name in self.desk.route_names() if name != current]
            if not choices:
                await self.desk.slack.tell(channel, user.id, "There is no other route to transfer to.")
                return self._count(action_id, "no_other_route", **fields)
            return await self._open(action_id, trigger_id, text.transfer_modal(choices, channel, ts), fields)
        await self._reopen(cid, user, fields)

    async def _reopen(self, cid: str, user: InteractionUser, fields: dict[str, Any]) -> None:
        status = await self.desk.store.reopen(
            cid,
            thread_ts=fields["thread_ts"],
            agent_id=user.id,
            agent_name=user.name or user.username,
            now_ms=now_ms(),
            replies=self.desk.replies_enabled,
        )
        if status > 0:  # back in its pool channel's count (its resolve took it out)
            await self.desk.base.place_handover(cid, status, [fields["channel"]], now_ms())
            await self.desk.changed(cid)
            await self._audit("reopened", user.id, cid, "button")
        else:
            await self.desk.slack.tell(fields["channel"], user.id, _REOPEN_REFUSED[status])
        self._count(text.REOPEN_ACTION, "done" if status > 0 else "refused", **fields)

    async def _open(
        self, action_id: str, trigger_id: str, view: dict[str, Any], fields: dict[str, Any]
    ) -> None:
        """A modal, within the click's 3 s (Slack refuses an older trigger_id)."""
        if not trigger_id:
            return self._count(action_id, "ignored_no_trigger", **fields)
        try:
            await self.desk.slack.open_modal(trigger_id, view)
        except SlackFailure as e:
            return self._count(action_id, "modal_failed", reason=e.reason, **fields)
        self._count(action_id, "modal_opened", **fields)

    # -- modals -----------------------------------------------------------------------------------------

    async def _submitted_thread(self, view: dict[str, Any]) -> tuple[str, str, str] | None:
        try:
            meta = _dict(orjson.loads(_str(view.get("private_metadata")) or "{}"))
        except orjson.JSONDecodeError:
            return None
        thread = _thread(_str(meta.get("channel")), _str(meta.get("ts")))
        if thread is None:
            return None
        cid = await self.desk.base.thread_conversation(*thread)
        return (cid, *thread) if cid is not None else None

    @staticmethod
    def _value(view: dict[str, Any], block_id: str, *, selected: bool) -> str:
        state = _dict(_dict(_dict(_dict(view.get("state")).get("values")).get(block_id)).get(block_id))
        if selected:
            return _str(_dict(state.get("selected_option")).get("value"))
        return _str(state.get("value"))

    def _refused(self, payload: dict[str, Any], block_id: str) -> dict[str, Any] | None:
        """A submit by someone who may not act (slack.agents): the modal says so, nothing changes."""
        user = _dict(payload.get("user"))
        refused = self.refusal(_str(user.get("id")), _str(user.get("team_id")))
        if not refused:
            return None
        self._count("view_submission", refused, agent=_str(user.get("id")))
        return _errors(block_id, CLICK.get(refused, "You cannot act on handovers."))

    async def _resolve_submitted(
        self, payload: dict[str, Any], view: dict[str, Any]
    ) -> dict[str, Any] | None:
        if refused := self._refused(payload, "outcome"):
            return refused
        outcome = self._value(view, "outcome", selected=True)
        if outcome not in self.desk.config().handover.outcomes:
            self._count("handover_resolve", "invalid_outcome")
            return _errors("outcome", "Pick one of the listed outcomes.")
        found = await self._submitted_thread(view)
        user = _dict(payload.get("user"))
        agent_id, agent_name = _str(user.get("id")), _str(user.get("name")) or _str(user.get("username"))
        status = -1
        if found is not None:
            cid, _, ts = found
            note = self._value(view, "note", selected=False)[: text.NOTE_CHARS]
            status = await self.desk.resolve(
                cid, thread_ts=ts, agent_id=agent_id, agent_name=agent_name, outcome=outcome, note=note
            )
        self._count("handover_resolve", "done" if status > 0 else "not_open", outcome=outcome, agent=agent_id)
        if status > 0 and found is not None:
            await self.desk.changed(found[0])
            await self._audit("resolved", agent_id, found[0], f"outcome={outcome}")
        return None if status > 0 else _errors("outcome", "This handover is no longer open.")

    async def _transfer_submitted(
        self, payload: dict[str, Any], view: dict[str, Any]
    ) -> dict[str, Any] | None:
        if refused := self._refused(payload, "route"):
            return refused
        route = self._value(view, "route", selected=True)
        if route not in self.desk.route_names():
            self._count("handover_transfer", "invalid_route")
            return _errors("route", "Pick one of the listed routes.")
        found = await self._submitted_thread(view)
        if found is None:
            self._count("handover_transfer", "not_open")
            return _errors("route", "This handover is no longer open.")
        cid, channel, ts = found
        user = _dict(payload.get("user"))
        agent_id, agent_name = _str(user.get("id")), _str(user.get("name")) or _str(user.get("username"))
        me = self.desk.identity()
        team_url = me.url if me is not None else ""
        target = self.desk.route(route)
        status = await self.desk.store.transfer(
            cid,
            thread_ts=ts,
            agent_id=agent_id,
            agent_name=agent_name,
            to_route=route,
            to_pool=self.desk.route_pool(route),
            to_mention=(target.mention if target is not None else None) or "",
            from_link=text.thread_link(team_url, channel, ts),
            team_url=team_url if text.thread_link(team_url, channel, ts) else "",
            shown_on_open=self.desk.config().history.shown_on_open,
            now_ms=now_ms(),
        )
        fields = {"cid": cid, "agent": agent_id, "to_route": route}
        if status == -2:
            self._count("handover_transfer", "same_route", **fields)
            return _errors("route", "The handover is on that route already.")
        if status < 0:
            self._count("handover_transfer", "not_open", **fields)
            return _errors("route", "This handover is no longer open.")
        await self.desk.changed(cid)
        self._count("handover_transfer", "done", **fields)
        await self._audit("transferred", agent_id, cid, f"to_route={route}")
        return None
