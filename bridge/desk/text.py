"""What the desk adds to Slack messages and views, built from data. Pure: no aiohttp, no redis.

User-typed text goes through slack_format.shown (redacted, escaped) like everywhere else; mentions
come from config only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import orjson

from ..config import SlaSection
from ..privacy import redact
from ..slack_format import _TRIGGER_LABELS, CLAIM_ACTION, RESOLVE_ACTION, escape, shown
from ..slack_limits import fit_blocks

TRANSFER_ACTION = "handover_transfer"
REOPEN_ACTION = "handover_reopen"
RESOLVE_CALLBACK = "handover_resolve"
TRANSFER_CALLBACK = "handover_transfer"
HOME_ENTRIES = 50  # more open handovers than this: the most urgent ones and a line with the total
EXCERPT_CHARS = 200
NOTE_CHARS = 500  # the optional note on resolve
DESK_NOTES = frozenset({"sla_reminder", "sla_escalated", "transferred", "reopened"})


def waited(ms: int) -> str:
    """12s, 5m, 1h 20m, 2d 3h: how long, for a human glancing at it."""
    s = max(int(ms // 1000), 0)
    if s < 60:
        return f"{s}s"
    m = s // 60
    if m < 60:
        return f"{m}m"
    h, m = divmod(m, 60)
    if h < 24:
        return f"{h}h {m}m" if m else f"{h}h"
    d, h = divmod(h, 24)
    return f"{d}d {h}h" if h else f"{d}d"


def thread_link(team_url: str, channel: str, ts: str) -> str:
    """A root message's permalink, as chat.getPermalink gives it, from auth.test's workspace url."""
    if not team_url.startswith("https://"):
        return ""
    return f"{team_url.rstrip('/')}/archives/{channel}/p{ts.replace('.', '')}"


def _link(url: str, label: str) -> str:
    return f"<{url}|{escape(label)}>" if url else escape(label)


# -- lines in the thread ------------------------------------------------------------------------------


def note_text(note: dict[str, Any]) -> str:
    """The desk's own thread lines (slack_format.note_text hands these over)."""
    kind = note.get("type")
    agent = f"<@{note['agent_id']}>" if note.get("agent_id") else "an agent"
    mention = f"{note['mention']} " if note.get("mention") else ""  # owner-configured: a ping is intended
    if kind == "sla_reminder":
        return f":alarm_clock: {mention}The user has waited {waited(note.get('waited_ms', 0))} for an agent."
    if kind == "sla_escalated":
        return (
            f":rotating_light: {mention}Response-time target missed: the user has waited "
            f"{waited(note.get('waited_ms', 0))} without an answer."
        )
    if kind == "transferred":
        where = _link(str(note.get("link") or ""), f"the new thread in {note.get('to_route', '')}")
        channel = f" (<#{note['channel']}>)" if note.get("channel") else ""
        return (
            f":twisted_rightwards_arrows: Transferred by {agent}: continued in {where}{channel}. "
            "This thread is closed."
        )
    if kind == "reopened":
        return f":arrows_counterclockwise: Reopened by {agent}. Replies in this thread go to the user again."
    return ""


def outcome_suffix(note: dict[str, Any]) -> str:
    """What a resolve with an outcome adds to the closing line."""
    text = ""
    if note.get("outcome"):
        text += f" Outcome: *{escape(str(note['outcome']))}*."
    if note.get("note"):
        text += f"\n> {shown(str(note['note']), NOTE_CHARS)}"
    return text


# -- the root message -------------------------------------------------------------------------------


def root_context(header: dict[str, Any]) -> list[str]:
    """Status details the desk adds to a root's context line."""
    parts = []
    if header.get("sla_breached") and header.get("status") in ("open", "claimed"):
        parts.append(":rotating_light: Response-time target missed")
    moved = header.get("transfer")
    if moved and header.get("status") != "transferred":
        agent = f" by <@{moved['agent_id']}>" if moved.get("agent_id") else ""
        source = _link(moved.get("from_link", ""), moved.get("from_route") or "default")
        parts.append(f"Transferred from {source}{agent}")
    to = header.get("transferred_to")
    if to and header.get("status") == "transferred":
        parts.append(f"to {_link(to.get('link', ''), 'the new thread')} ({escape(to.get('route', ''))})")
    if header.get("outcome") and header.get("status") == "resolved":
        parts.append(f"Outcome: {escape(header['outcome'])}")
    if header.get("reopens") and header.get("status") in ("open", "claimed"):
        parts.append(":arrows_counterclockwise: Reopened")
    return parts


def _button(action_id: str, text: str, value: str, style: str | None = None) -> dict[str, Any]:
    button: dict[str, Any] = {
        "type": "button",
        "action_id": action_id,
        "text": {"type": "plain_text", "text": text},
        "value": value,
    }
    if style:
        button["style"] = style
    return button


def transfer_button() -> dict[str, Any]:
    return _button(TRANSFER_ACTION, "Transfer", "transfer")


def reopen_button() -> dict[str, Any]:
    return _button(REOPEN_ACTION, "Reopen", "reopen")


# -- modals -------------------------------------------------------------------------------------------


def _plain(text: str) -> dict[str, str]:
    return {"type": "plain_text", "text": text}


def _options(names: Sequence[str]) -> list[dict[str, Any]]:
    return [{"text": _plain(name[:75]), "value": name} for name in names[:100]]


def thread_metadata(channel: str, ts: str) -> str:
    """A modal's private_metadata: which thread it acts on (Slack hands it back on submit)."""
    return orjson.dumps({"channel": channel, "ts": ts}).decode()


def resolve_modal(outcomes: Sequence[str], channel: str, ts: str) -> dict[str, Any]:
    return {
        "type": "modal",
        "callback_id": RESOLVE_CALLBACK,
        "title": _plain("Resolve handover"),
        "submit": _plain("Resolve"),
        "close": _plain("Cancel"),
        "private_metadata": thread_metadata(channel, ts),
        "blocks": [
            {
                "type": "input",
                "block_id": "outcome",
                "label": _plain("Outcome"),
                "element": {
                    "type": "static_select",
                    "action_id": "outcome",
                    "placeholder": _plain("How did it end?"),
                    "options": _options(outcomes),
                },
            },
            {
                "type": "input",
                "block_id": "note",
                "optional": True,
                "label": _plain("Note"),
                "element": {
                    "type": "plain_text_input",
                    "action_id": "note",
                    "multiline": True,
                    "max_length": NOTE_CHARS,
                },
            },
        ],
    }


def transfer_modal(routes: Sequence[str], channel: str, ts: str) -> dict[str, Any]:
    return {
        "type": "modal",
        "callback_id": TRANSFER_CALLBACK,
        "title": _plain("Transfer handover"),
        "submit": _plain("Transfer"),
        "close": _plain("Cancel"),
        "private_metadata": thread_metadata(channel, ts),
        "blocks": [
            {
                "type": "input",
                "block_id": "route",
                "label": _plain("Route"),
                "element": {
                    "type": "static_select",
                    "action_id": "route",
                    "placeholder": _plain("Which team takes it?"),
                    "options": _options(routes),
                },
            }
        ],
    }


# -- the Home tab --------------------------------------------------------------------------------------


def sla_state(entry: Any, sla: SlaSection | None, now_ms: int) -> str:
    if entry.header.get("sla_breached"):
        return ":rotating_light: target missed"
    if sla is None:
        return ""
    left = entry.opened_ms + int(sla.first_response_s * 1000) - now_ms
    if left <= 0:
        return ":warning: past first-response target"
    return f"{waited(left)} left"


def urgent_first(entries: Sequence[Any]) -> list[Any]:
    """Unclaimed first, oldest first; then claimed ones, oldest first."""
    return sorted(entries, key=lambda e: (e.state != "open", e.opened_ms, e.cid))


def home_entry(entry: Any, link: str, sla: str, now_ms: int) -> dict[str, Any]:
    """One handover in one block: facts, wait, SLA, the user's last words; Claim or Resolve beside."""
    h = entry.header
    trigger = h.get("trigger", "")
    facts = " · ".join(
        escape(str(v))
        for v in (
            h.get("route") or "default",
            h.get("lang"),
            h.get("platform"),
            _TRIGGER_LABELS.get(trigger, trigger),
        )
        if v
    )
    who = f"claimed by <@{h['agent_id']}>" if entry.state == "claimed" and h.get("agent_id") else "unclaimed"
    lines = [
        f"*{_link(link, redact(h.get('client_id') or entry.cid))}* · {facts}",
        f":hourglass: {waited(now_ms - entry.opened_ms)} · {who}" + (f" · {sla}" if sla else ""),
    ]
    if entry.said:
        lines.append(f"> {shown(' '.join(entry.said.split()), EXCERPT_CHARS)}")
    value = f"{entry.channel} {entry.ts}"  # (a Home click carries no message: the thread rides here)
    block: dict[str, Any] = {"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)}}
    if entry.ts:  # (no buttons until its thread exists)
        block["accessory"] = (
            _button(CLAIM_ACTION, "Claim", value, "primary")
            if entry.state == "open"
            else _button(RESOLVE_ACTION, "Resolve", value)
        )
    return block


def not_an_agent_view() -> dict[str, Any]:
    """The Home tab of someone slack.agents does not list: no queue to act on."""
    return {
        "type": "home",
        "blocks": [
            {"type": "header", "text": _plain("Handover queue")},
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": "Only the agents listed in the bridge's `slack.agents` see the queue.",
                },
            },
        ],
    }


def home_view(
    entries: Sequence[Any],
    links: Callable[[Any], str],
    sla_of: Callable[[Any], SlaSection | None],
    now_ms: int,
) -> dict[str, Any]:
    ordered = urgent_first(entries)
    shown = ordered[:HOME_ENTRIES]
    waiting = sum(1 for e in ordered if e.state == "open")
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": _plain("Handover queue")},
        {
            "type": "context",
            "elements": [
                {
                    "type": "mrkdwn",
                    "text": f"{len(ordered)} open · {waiting} unclaimed"
                    + (f" · showing the {len(shown)} most urgent" if len(ordered) > len(shown) else ""),
                }
            ],
        },
    ]
    if not shown:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": "Nothing waiting. :tada:"}})
    for entry in shown:
        blocks.append(home_entry(entry, links(entry), sla_state(entry, sla_of(entry), now_ms), now_ms))
    return {"type": "home", "blocks": fit_blocks(blocks)}  # (webhook fields have no length bound)
