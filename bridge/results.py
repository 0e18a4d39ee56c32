"""What the Store's scripts answer, parsed: values built per webhook, outbox entry and post."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson

Fetched = tuple[dict[str, str], list["OutboxEntry"]]  # a conversation hash and its oldest pending entries


def parse_fetched(conv_flat: list[Any], raw_entries: list[Any]) -> Fetched:
    """fetch.lua's reply (claim_due.lua's and commit.lua's too): a flat HGETALL and an XRANGE, parsed."""
    entries = []
    for entry_id, fields in raw_entries:
        f = pairs(fields)
        entries.append(
            OutboxEntry(
                id=as_text(entry_id),
                kind=f.get("k", ""),
                hid=f.get("h", "0"),
                data=orjson.loads(f["e"]) if f.get("e") else {},
                received_ms=int(f.get("t") or 0),
                after_claim=f.get("c") == "1",
            )
        )
    return pairs(conv_flat), entries


def flag(value: bool) -> str:
    return "1" if value else "0"


def pairs(flat: list[Any]) -> dict[str, str]:
    """A flat [field, value, ...] reply (HGETALL or a stream entry, through Lua) as a dict."""
    it = iter(flat)
    return {as_text(f): as_text(v) for f, v in zip(it, it, strict=True)}


def as_text(value: Any) -> str:
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else str(value)


# Values built per webhook, per outbox entry and per post: NamedTuples, immutable like the frozen
# dataclasses around them at a third of their cost to build.


class RecordResult(NamedTuple):
    recorded: bool
    queued: bool
    opened: bool
    hid: int
    partition: int
    cid: str


class OutboxEntry(NamedTuple):
    """One stream entry: `kind` root|hist|line|note|update (slack), agent_message|lifecycle (reply)."""

    id: str
    kind: str
    hid: str
    data: dict[str, Any]
    received_ms: int
    after_claim: bool = False


class Forgotten(NamedTuple):
    """What Store.forget removed for one conversation."""

    keys: int  # conversation hash, history, lines, outboxes, leases
    history_entries: int
    slack_entries: int  # not yet posted
    reply_entries: int  # not yet relayed
    file_entries: int  # transcript files not yet uploaded
    dead_letters: int
    thread_mappings: int


class Resolution(NamedTuple):
    """resolve_handover.lua's answer: `status` 1 resolved, -1 nothing to resolve; when resolved, when
    the handover had opened (ms) and its route."""

    status: int
    opened_ms: int = 0
    route: str = ""


class Commit(NamedTuple):
    """`held`: the lease was still ours (False: stop, another worker has the conversation).
    `pending`: entries left in the lane. `released`: none were, and the conversation was handed back.
    `fetched`: what is left, when asked for (fetch_limit)."""

    held: bool
    pending: int
    released: bool = False
    fetched: Fetched | None = None


class Turn(NamedTuple):
    """A worker's try for its channel's turn. `held`: its lease was still its own. `chosen`: the
    conversation whose turn it is ('' when none: wait `wait_ms`), taken out of the channel's queue
    with its `score`. `rank`: without a turn, how many conversations wait before the worker's own."""

    held: bool
    wait_ms: int
    chosen: str
    score: int
    rank: int


def parse_turn(held: bool, raw: list[Any]) -> Turn:
    wait, chosen, score, rank = raw
    return Turn(held, int(wait), as_text(chosen), int(float(as_text(score) or 0)), int(rank))


@dataclass(frozen=True, slots=True)
class DeadLetter:
    id: str
    partition: int
    lane: str
    cid: str
    reason: str
    kind: str
    at_ms: int
    data: dict[str, Any]
    channel: str = ""  # where a Slack entry was going ('' for the reply lane, or unknown)


def stream_id_key(entry_id: str) -> tuple[int, int]:
    """A stream id ("<ms>-<seq>") as numbers, so ids sort in the order Redis assigned them."""
    ms, _, seq = entry_id.partition("-")
    return int(ms or 0), int(seq or 0)
