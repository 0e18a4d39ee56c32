"""What agents read in Slack, built from outbox entries. Pure: no aiohttp, no redis.

Everything a chat user typed is escaped (`&`, `<`, `>`) before it reaches Slack, so `<!channel>`,
`<@U123>` or `<https://evil|click>` show as typed and can never ping anyone or disguise a link.
It is redacted first (privacy.redact): render any new Slack-bound user or bot text through `shown()`,
which also removes invisible characters and quotes continuation lines, so that no customer text can
pass for a line the bridge wrote.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .privacy import redact
from .slack_limits import MESSAGE_TEXT_MAX, cut, fit_blocks

CLAIM_ACTION = "handover_claim"
RESOLVE_ACTION = "handover_resolve"
RETRY_ACTION = "reply_retry"  # on the ephemeral about a dead-lettered reply: put it back in the outbox
# Longest line of user or bot text kept in one history line, so one entry always fits one message.
MAX_LINE_CHARS = 1500
SECTION_TEXT_LIMIT = 3000  # Block Kit section text limit

_TRIGGER_LABELS = {
    "escalation_requested": "escalation requested",
    "need_help": "need help",
    "nounderstood_at_least": "not understood several times",
    "confidence_below": "low confidence",
    "intents": "intent asks for a human",
    "keywords": "keyword asks for a human",
}
_STATUS_LABELS = {
    "open": ":large_yellow_circle: Waiting for an agent",
    "claimed": ":large_blue_circle: Claimed",
    "resolved": ":white_check_mark: Resolved",
    "transferred": ":twisted_rightwards_arrows: Transferred",
}


def escape(text: str) -> str:
    """Slack mrkdwn control characters, per Slack's 'escaping text' rules."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def truncate(text: str, limit: int = MAX_LINE_CHARS) -> str:
    if len(text) <= limit:
        return text
    return text[: limit - 1] + "…"


# Bidirectional controls (can make a line read in another order than it is written) and zero-width
# characters (can hide text, or split a word so that redaction misses it).
_INVISIBLE = re.compile("[\u202a-\u202e\u2066-\u2069\u200b-\u200d\u2060\ufeff]")


def visible(text: str) -> str:
    """`text` without bidirectional controls or zero-width characters."""
    return _INVISIBLE.sub("", text)


def quoted_continuation(text: str) -> str:
    """Escaped text whose second and later lines are quoted ("> "), so that a newline in what a user
    or the bot wrote can never start what reads as a new line of the thread (the bridge's own lines
    are never quotes, and escaped text cannot start one: its `>` is `&gt;`)."""
    if not _LINE_BREAK.search(text):
        return text
    first, *rest = text.splitlines() or [""]
    return "\n".join([first, *(f"> {line}" for line in rest)])


_LINE_BREAK = re.compile("[\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")  # what str.splitlines() breaks on


def shown(text: str, limit: int = MAX_LINE_CHARS) -> str:
    """Text from a chat user, the bot or the backend as Slack may show it: invisible characters
    removed, personal data redacted (before truncating, so a cut can never reveal part of a match),
    truncated, escaped, continuation lines quoted."""
    if text.isprintable():  # the usual case, in one C-level scan: no line break, nothing invisible
        return escape(truncate(redact(text), limit))
    return quoted_continuation(escape(truncate(redact(visible(text)), limit)))


def _clock(ms: int | float | None) -> str:
    if not ms:
        return ""
    return datetime.fromtimestamp(float(ms) / 1000, UTC).strftime("%H:%M:%S")


_URL = re.compile(r"https?://[^\s<>\"']+", re.IGNORECASE)


def user_said(entry: dict[str, Any]) -> str:
    """The user's side of a history entry as plain text: what they typed, or for non-text input
    (`it`: image, file, audio, location...) its type and any http(s) URL found in it."""
    text = str(entry.get("in") or "")
    kind = entry.get("it")
    if not kind:
        return text
    return " ".join([f"[{kind}]", *_URL.findall(text)])


def history_lines(entry: dict[str, Any], *, after_claim: bool = False, limit: int = MAX_LINE_CHARS) -> str:
    """One exchange: the user's line, then the bot's line, told apart at a glance (each cut at `limit`)."""
    at = _clock(entry.get("t"))
    stamp = f"`{at}` " if at else ""
    lines = []
    user_text = user_said(entry)
    if user_text:
        lines.append(f"{stamp}:bust_in_silhouette: *User:* {shown(user_text, limit)}")
    bot_text = entry.get("out") or ""
    if bot_text:
        flag = " :warning: _bot answered after an agent claimed_" if after_claim else ""
        intent = entry.get("intent") or ""
        detail = f" _({shown(intent)})_" if intent else ""
        lines.append(f"{stamp}:robot_face: *Bot:*{detail} {shown(bot_text, limit)}{flag}")
    return "\n".join(lines) if lines else f"{stamp}_(empty message)_"


@dataclass(frozen=True, slots=True)
class Chunk:
    """One Slack post covering the outbox entries `ids`, in order."""

    ids: tuple[str, ...]
    text: str


def pack(items: Sequence[tuple[str, str]], max_chars: int) -> list[Chunk]:
    """Pack (id, text) pairs, in order, into as few posts as fit `max_chars` each (coalescing)."""
    chunks: list[Chunk] = []
    ids: list[str] = []
    texts: list[str] = []
    size = 0
    for entry_id, text in items:
        text = truncate(text, max_chars)
        added = len(text) + (1 if texts else 0)
        if texts and size + added > max_chars:
            chunks.append(Chunk(tuple(ids), "\n".join(texts)))
            ids, texts, size = [], [], 0
            added = len(text)
        ids.append(entry_id)
        texts.append(text)
        size += added
    if texts:
        chunks.append(Chunk(tuple(ids), "\n".join(texts)))
    return chunks


def _field(label: str, value: str) -> dict[str, str]:
    return {"type": "mrkdwn", "text": f"*{label}*\n{shown(value) if value else '—'}"}


def _root_fields(header: dict[str, Any], reason: str, show: Callable[[str], bool]) -> list[dict[str, str]]:
    """The root's fields that slack.root_fields keeps (the header carries that choice, see handover.py)."""
    user = header.get("client_id", "") if show("client_id") else ""
    if show("user_id") and header.get("user_id") and header.get("user_id") != header.get("client_id"):
        user = f"{user} (user {header['user_id']})" if user else f"user {header['user_id']}"
    fields = [_field("User", user)] if show("client_id") or show("user_id") else []
    for name, label, value in (
        ("platform", "Platform", header.get("platform", "")),
        ("lang", "Language", header.get("lang", "")),
        ("skill_id", "Skill", header.get("skill_id", "")),
        ("trigger", "Reason", reason),
        ("route", "Route", header.get("route", "")),
    ):
        if show(name):
            fields.append(_field(label, value))
    if show("intent") and header.get("intent"):
        fields.append(_field("Intent", header["intent"]))
    if show("category") and header.get("category"):
        fields.append(_field("Handover category", header["category"]))
    if show("muted"):
        fields.append(_field("Bot muted", "yes" if header.get("muted") else "no"))
    if show("first_message") and header.get("first_message"):
        fields.append(_field("First message", header["first_message"]))
    return fields


def root_message(header: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """Root of a handover thread: who, where, why, status, and the Claim / Resolve buttons."""
    status = header.get("status", "open")
    trigger = header.get("trigger", "")
    reason = _TRIGGER_LABELS.get(trigger, trigger or "handover")
    chosen = header.get("root_fields")
    show: Callable[[str], bool] = (lambda name: True) if chosen is None else chosen.__contains__
    title = f"Handover: {escape(reason)}"
    if show("client_id"):
        title += f" — {shown(header.get('client_id', ''))}"
    fields = _root_fields(header, reason, show)
    status_text = _status_text(header, status)
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": f"*{title}*"}},
    ]
    if fields:
        blocks.append({"type": "section", "fields": fields})
    context = [status_text]
    if header.get("mention"):
        # Owner-configured mention (e.g. a user group): the only place a ping is intended.
        context.append(header["mention"])
    if header.get("note"):
        context.append(shown(header["note"]))
    context.extend(desk_text.root_context(header))
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": " · ".join(context)}]})
    if status == "resolved" and header.get("reopen_until"):
        blocks.append({"type": "actions", "elements": [desk_text.reopen_button()]})
    if status in ("open", "claimed"):
        blocks.append({"type": "actions", "elements": _root_buttons(header, status)})
    mention = f"{header['mention']} " if header.get("mention") and status == "open" else ""
    text = f"{mention}{title} · {status_text}"
    return cut(text, MESSAGE_TEXT_MAX), fit_blocks(blocks)


def _status_text(header: dict[str, Any], status: str) -> str:
    text = _STATUS_LABELS.get(status, status)
    idle = status == "resolved" and header.get("resolved_reason") == "idle"
    if status in ("claimed", "resolved", "transferred") and header.get("agent_id") and not idle:
        # (an idle close keeps the claimer's id in the header: it must not read as their doing)
        verb = "by" if status == "claimed" else "— by"
        text += f" {verb} <@{header['agent_id']}>"
    if idle:
        text += " (no activity)"
    return text


def _root_buttons(header: dict[str, Any], status: str) -> list[dict[str, Any]]:
    """Claim (while nobody has it), Resolve (confirmed, unless the desk's outcomes modal asks) and
    Transfer."""
    buttons: list[dict[str, Any]] = []
    if status == "open":
        buttons.append(
            {
                "type": "button",
                "action_id": CLAIM_ACTION,
                "style": "primary",
                "text": {"type": "plain_text", "text": "Claim"},
                "value": "claim",
            }
        )
    resolve: dict[str, Any] = {
        "type": "button",
        "action_id": RESOLVE_ACTION,
        "text": {"type": "plain_text", "text": "Resolve"},
        "value": "resolve",
    }
    if not header.get("resolve_modal"):
        resolve["confirm"] = {
            "title": {"type": "plain_text", "text": "Resolve this handover?"},
            "text": {"type": "plain_text", "text": "The bot takes the conversation back."},
            "confirm": {"type": "plain_text", "text": "Resolve"},
            "deny": {"type": "plain_text", "text": "Cancel"},
        }
    buttons.append(resolve)
    buttons.append(desk_text.transfer_button())
    return buttons


def root_text_only(header: dict[str, Any]) -> str:
    """The root as text alone, for when Slack refuses its blocks (`invalid_blocks`): the same facts
    as lines, no buttons, so the thread still opens and agents know how to go on without them."""
    text, blocks = root_message(header)
    lines = [text]
    for block in blocks:
        lines += [field["text"].replace("\n", ": ", 1) for field in block.get("fields", [])]
    if header.get("status", "open") != "resolved":
        lines.append(
            "_No buttons on this message (Slack refused its layout): reply in the thread to claim it; "
            "it resolves after inactivity, or with `bridge handovers resolve`._"
        )
    return cut("\n".join(lines), MESSAGE_TEXT_MAX)


def note_text(note: dict[str, Any]) -> str:
    """Lines the bridge itself writes into a thread (claims, closing)."""
    kind = note.get("type")
    if kind in desk_text.DESK_NOTES:
        return desk_text.note_text(note)
    agent = f"<@{note['agent_id']}>" if note.get("agent_id") else ""
    if kind == "claimed":
        return f":raising_hand: {agent} is handling this conversation. Replies in this thread go to the user."
    if kind == "resolved":
        if note.get("reason") == "idle":
            return (
                ":white_check_mark: Resolved automatically after no activity. "
                "The bot has the conversation back."
            )
        if not agent and note.get("reason") not in (None, "", "agent"):  # bridge handovers resolve
            why = "" if note["reason"] == "operator" else f": {escape(str(note['reason']))}"
            return f":white_check_mark: Resolved by an operator{why}. The bot has the conversation back."
        return (
            f":white_check_mark: Resolved by {agent or 'an agent'}. The bot has the conversation back."
            + desk_text.outcome_suffix(note)
        )
    return shown(str(note.get("text", "")))


_MENTION = re.compile(r"<([@#!])([^>|]+)(?:\|([^>]*))?>")
_LINK = re.compile(r"<([^@#!][^>|]*)(?:\|([^>]*))?>")


def slack_to_plain(text: str, user_name: Callable[[str], str | None]) -> str:
    """Slack markup back to what the agent meant, for the end user: mentions → names, links → URLs."""

    def mention(m: re.Match[str]) -> str:
        sigil, target, label = m.group(1), m.group(2), m.group(3)
        if sigil == "@":
            return "@" + (label or user_name(target) or target)
        if sigil == "#":
            return "#" + (label or target)
        command = target.split("^")[0]
        if command in ("here", "channel", "everyone"):
            return "@" + command
        if command == "date":
            return label or ""  # <!date^…|fallback>: the fallback is the readable date
        # <!subteam^S123|@support>: Slack's label already carries the "@"
        return label if label and label.startswith("@") else "@" + (label or command)

    def link(m: re.Match[str]) -> str:
        url, label = m.group(1), m.group(2)
        bare = re.sub(r"^(?:https?://|mailto:)", "", url)
        if label and label not in (url, bare):
            return f"{label} ({url})"
        # Slack auto-links what the agent typed ("example.com", "a@b.c"): give it back as typed.
        return label or url.removeprefix("mailto:")

    text = _MENTION.sub(mention, text)
    text = _LINK.sub(link, text)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def mentioned_users(text: str) -> list[str]:
    return [m.group(2) for m in _MENTION.finditer(text) if m.group(1) == "@" and not m.group(3)]


# -- what agents are told about their own messages (ephemeral, only they see it) ----------------------


def ephemeral_message(notice: dict[str, Any]) -> tuple[str, list[dict[str, Any]] | None]:
    """An ephemeral notice's text and blocks: a plain explanation, or a dead-lettered reply with the
    reply_retry button (its value names the dead letter: "<cid> <dead id>")."""
    if not notice.get("dead"):
        return str(notice.get("text", "")), None
    text = (
        ":warning: Your reply could not be delivered to the user "
        f"(the bot's endpoint refused it: {escape(str(notice.get('reason', '')))})."
    )
    button = {
        "type": "button",
        "action_id": RETRY_ACTION,
        "text": {"type": "plain_text", "text": "Retry"},
        "value": f"{notice.get('cid', '')} {notice['dead']}",
    }
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": text}},
        {"type": "actions", "elements": [button]},
    ]
    return text, blocks


from .desk import text as desk_text  # noqa: E402  (the desk's parts of roots and notes; it uses the above)
