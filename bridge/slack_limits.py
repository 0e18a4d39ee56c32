"""Slack's published size limits, and cutting a message to fit them. Pure.

A message over a limit is refused whole (`invalid_blocks`, `msg_too_long`): a long intent name or first
message would keep a handover from ever appearing. So everything the bridge builds is cut to fit here,
ending in "…", never cut inside an escaped entity (`&amp;`) or a mention (`<@U…>`).
"""

from __future__ import annotations

import re
from typing import Any

SECTION_TEXT_MAX = 3000  # section block text
SECTION_FIELD_MAX = 2000  # each of a section's fields
SECTION_FIELDS_MAX = 10  # fields per section
HEADER_TEXT_MAX = 150  # header block (plain_text)
CONTEXT_ELEMENTS_MAX = 10  # elements per context block
CONTEXT_TEXT_MAX = 3000  # a context element's text object
MESSAGE_TEXT_MAX = 4000  # top-level `text` of chat.update (and what Slack shows in full on a post)
ELLIPSIS = "…"

# An unfinished entity or <…> token left at the end of a cut.
_PARTIAL_TAIL = re.compile(r"(&[a-z]{0,5}|<[^>]*)$")


def cut(text: str, limit: int) -> str:
    """`text` if it fits `limit` characters, else its start ending in "…"."""
    if len(text) <= limit:
        return text
    head = _PARTIAL_TAIL.sub("", text[: limit - len(ELLIPSIS)])
    return head + ELLIPSIS


def _fit_text(obj: Any, limit: int) -> Any:
    if isinstance(obj, dict) and isinstance(obj.get("text"), str) and len(obj["text"]) > limit:
        return {**obj, "text": cut(obj["text"], limit)}
    return obj


def _fit_block(block: dict[str, Any]) -> dict[str, Any]:
    kind = block.get("type")
    if kind == "section":
        block = {**block}
        if "text" in block:
            block["text"] = _fit_text(block["text"], SECTION_TEXT_MAX)
        if isinstance(block.get("fields"), list):
            fields = block["fields"][:SECTION_FIELDS_MAX]
            block["fields"] = [_fit_text(f, SECTION_FIELD_MAX) for f in fields]
        return block
    if kind == "header":
        return {**block, "text": _fit_text(block.get("text"), HEADER_TEXT_MAX)}
    if kind == "context" and isinstance(block.get("elements"), list):
        elements = block["elements"][:CONTEXT_ELEMENTS_MAX]
        return {**block, "elements": [_fit_text(e, CONTEXT_TEXT_MAX) for e in elements]}
    return block


def fit_blocks(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The same blocks, each cut to Block Kit's limits (sections, fields, headers, contexts)."""
    return [_fit_block(block) for block in blocks]
