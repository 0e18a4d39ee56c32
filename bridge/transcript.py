"""handover_resolved's transcript: every line of the handover, as the owner can archive it.

The lines come from Redis (resolve_handover.lua hands them over): the history entries shown when the
thread opened and those recorded while it was open ({"t", "in", "out", "it", ...}), and agents'
relayed replies ({"t", "agent", "m", "f"}: Slack markup, turned into plain text here as in
agent_message, and the names of the files relayed with it, shown as "[file] <name>").
Private notes never were relayed, so they are not there. Pure but for the name lookups.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import orjson

from .slack_format import mentioned_users, slack_to_plain, user_said

BOT_NAME = "bot"
Line = dict[str, str]


def agents_named(lines: Iterable[Any]) -> set[str]:
    """Slack user ids whose names the transcript needs: the agents, and users they mention."""
    ids: set[str] = set()
    for line in lines:
        if isinstance(line, dict) and line.get("agent"):
            ids.add(str(line["agent"]))
            ids.update(mentioned_users(str(line.get("m") or "")))
    return ids


def transcript_lines(
    lines: Iterable[Any], *, user_name: str, names: Mapping[str, str | None], at: Callable[[int], str]
) -> list[Line]:
    """{"at", "from" (user | bot | agent), "name", "text"} per line, in order."""
    out: list[Line] = []
    for line in lines:
        if not isinstance(line, dict):
            continue
        when = at(int(line.get("t") or 0))
        if line.get("agent"):
            uid = str(line["agent"])
            text = slack_to_plain(str(line.get("m") or ""), names.get)
            files = [f"[file] {name}" for name in line.get("f") or [] if isinstance(name, str)]
            text = "\n".join([text, *files] if text else files)
            out.append({"at": when, "from": "agent", "name": names.get(uid) or uid, "text": text})
            continue
        said = user_said(line)
        if said:
            out.append({"at": when, "from": "user", "name": user_name, "text": said})
        if line.get("out"):
            out.append({"at": when, "from": "bot", "name": BOT_NAME, "text": str(line["out"])})
    return out


def fit(lines: list[Line], max_bytes: int) -> tuple[list[Line], bool]:
    """The newest lines whose JSON array fits `max_bytes`; True when older ones were dropped."""
    total = 2  # "[]"
    kept = 0
    for line in reversed(lines):
        size = len(orjson.dumps(line)) + (1 if kept else 0)
        if total + size > max_bytes:
            break
        total += size
        kept += 1
    return lines[len(lines) - kept :], kept < len(lines)


async def transcript(
    raw: Any,
    *,
    cut: bool,
    user_name: str,
    name_of: Callable[[str], Awaitable[str | None]],
    at: Callable[[int], str],
    max_bytes: int,
) -> dict[str, Any]:
    """The fields handover_resolved gains: `transcript` and `transcript_truncated` (the oldest lines
    were dropped, here for max_bytes or in Redis for its line cap)."""
    lines = raw if isinstance(raw, list) else []  # (Lua's cjson writes an empty list as {})
    names = {uid: await name_of(uid) for uid in agents_named(lines)}
    kept, dropped = fit(transcript_lines(lines, user_name=user_name, names=names, at=at), max_bytes)
    return {"transcript": kept, "transcript_truncated": bool(cut) or dropped}
