"""A new thread's opening history, and the transcript file that completes it. Pure: no I/O.

The agent must read the latest exchanges at once, so the root and the opening history take at most
two posts however long the history: one post of the newest exchanges that fit
`delivery.max_message_chars`, each line cut at `history.line_chars_on_open`. When that post leaves
anything out (a line cut, older exchanges), the full history (every exchange Redis held when the
handover opened, uncut) goes into the thread as a text file, `transcript-<client_id>.txt`.

The Slack lane renders the post from its outbox entry ({"older": n, "lines": [...]}), the file lane
decides about the file from its own ({"shown": n, "all": [...]}): both through `plan()`, so they agree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .privacy import redact
from .slack_format import history_lines, truncate, user_said


@dataclass(frozen=True, slots=True)
class Opening:
    """The opening post (`text`, '' when nothing is shown) and what it leaves out."""

    text: str
    shown: int  # exchanges in the post
    held: int  # exchanges Redis held when the handover opened
    cut: bool  # a line was cut at history.line_chars_on_open

    @property
    def needs_file(self) -> bool:
        return self.cut or self.shown < self.held


def _was_cut(entry: dict[str, Any], line_chars: int) -> bool:
    texts = (user_said(entry), str(entry.get("out") or ""), str(entry.get("intent") or ""))
    return any(len(redact(text)) > line_chars for text in texts if text)


def _title(shown: int, held: int, file: bool) -> str:
    what = f"the last {shown} of {held} exchanges" if shown < held else f"{held} exchange(s)"
    return f"_Conversation so far: {what}" + (", in full in the attached transcript_" if file else "_")


def plan(lines: list[dict[str, Any]], older: int, line_chars: int, max_chars: int) -> Opening:
    """The opening post of `lines` (the exchanges chosen for it, oldest first; `older` more exist):
    the newest that fit `max_chars` with the title, each line cut at `line_chars`."""
    held = len(lines) + older
    if not lines:
        return Opening("", 0, held, False)
    rendered = [history_lines(entry, limit=line_chars) for entry in lines]
    budget = max_chars - len(_title(held, held + 1, True)) - 1  # room left by the longest title
    kept: list[str] = []  # newest first
    size = 0
    for text in reversed(rendered):
        if size + len(text) > budget:
            break
        kept.append(text)
        size += len(text) + 1
    cut = not kept
    if cut:  # the newest exchange alone is longer than a post: cut it to fit
        kept = [truncate(rendered[-1], budget)]
    shown = len(kept)
    cut = cut or any(_was_cut(entry, line_chars) for entry in lines[len(lines) - shown :])
    text = "\n".join([_title(shown, held, cut or shown < held), *reversed(kept)])
    return Opening(text, shown, held, cut)


def plan_from_entry(data: dict[str, Any], line_chars: int, max_chars: int) -> Opening:
    """The opening post of a Slack-lane `hist` entry ({"older": n, "lines": [...]})."""
    return plan(list(data.get("lines") or []), int(data.get("older") or 0), line_chars, max_chars)


def plan_from_transcript(data: dict[str, Any], line_chars: int, max_chars: int) -> Opening:
    """The same plan, from a file-lane `transcript` entry ({"shown": n, "all": [...]})."""
    every = list(data.get("all") or [])
    shown = min(int(data.get("shown") or 0), len(every))
    return plan(every[len(every) - shown :] if shown else [], len(every) - shown, line_chars, max_chars)


def file_comment(plan: Opening) -> str:
    """What the transcript file's message says, beside the opening post."""
    if plan.shown == 0:
        shown = "none shown in the thread"
    elif plan.shown < plan.held:
        shown = f"the last {plan.shown} shown above"
    else:
        shown = "shown above"
    cut = ", with long lines cut there" if plan.cut and plan.shown else ""
    return f"Full history before this handover: {plan.held} exchange(s), {shown}{cut}."


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def transcript_name(client_id: str) -> str:
    """transcript-<client_id>.txt, with what a file name cannot hold replaced by '_'."""
    return f"transcript-{_UNSAFE.sub('_', client_id)[:100] or 'conversation'}.txt"


def _stamp(ms: Any) -> str:
    if not ms:
        return "                   "
    return datetime.fromtimestamp(float(ms) / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def transcript_text(skill_id: str, client_id: str, entries: list[dict[str, Any]]) -> str:
    """Every exchange, uncut, oldest first, as plain text (redacted like everything sent to Slack;
    not escaped: Slack shows a file's text as it is)."""
    lines = [
        f"Conversation {client_id} (skill {skill_id}): {len(entries)} exchange(s) before the handover, "
        "oldest first, times in UTC.",
        "",
    ]
    for entry in entries:
        stamp = _stamp(entry.get("t"))
        user = user_said(entry)
        if user:
            lines.append(f"[{stamp}] User: {redact(user)}")
        bot = str(entry.get("out") or "")
        if bot:
            intent = f" ({redact(str(entry['intent']))})" if entry.get("intent") else ""
            lines.append(f"[{stamp}] Bot{intent}: {redact(bot)}")
    return "\n".join(lines) + "\n"
