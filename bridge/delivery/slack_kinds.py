"""What the Slack lane does with each kind of outbox entry: one handler per kind, registered here.

A handler gets the Job (the leased conversation, its pending entries with the head first, and where
its thread lives) and returns a Step. It posts through `lane.slack`, takes its channel turn with
`lane.begin_post` (paced kinds), and ends with `lane.commit(...)` of the ids Slack accepted. A
SlackFailure it lets out is mapped to retry / wait / pause / dead letter by the lane, in one place.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

import structlog

from .. import opening, slack_format
from ..results import OutboxEntry
from ..slack_api import SlackFailure
from .step import Step

if TYPE_CHECKING:
    from .slack_lane import SlackLane


class Job(NamedTuple):
    """One step's work: a leased conversation's hash and pending entries (head first), and the
    channel (and thread, once its root is posted) the head entry goes to."""

    cid: str
    worker: str
    conv: dict[str, str]
    entries: list[OutboxEntry]
    channel: str
    thread_ts: str | None
    has_turn: bool = False  # another worker took this channel's turn for it (token spent)

    @property
    def head(self) -> OutboxEntry:
        return self.entries[0]


Handler = Callable[["SlackLane", Job], Awaitable[Step]]
T = TypeVar("T")
log = structlog.get_logger("bridge.delivery")


@dataclass(frozen=True, slots=True)
class Kind:
    """`handler`: delivers the head entry (and what it coalesces with). `thread`: needs its handover's
    thread (every kind but the root, which creates it); without one the entry is dead-lettered.
    `marked`: its post carries the in-flight marker as metadata, so after a crash the lane looks it
    up in Slack instead of posting it twice (False: redone, e.g. an idempotent chat.update).
    `paced`: a post into the channel, which waits for the channel's turn (lane.begin_post); False
    for calls outside chat.postMessage's per-channel limit (chat.update)."""

    handler: Handler
    thread: bool = True
    marked: bool = True
    paced: bool = True


KINDS: dict[str, Kind] = {}


def handles(
    *names: str, thread: bool = True, marked: bool = True, paced: bool = True
) -> Callable[[Handler], Handler]:
    """Register `handler` for the entry kinds `names` (see Kind)."""

    def register(handler: Handler) -> Handler:
        for name in names:
            KINDS[name] = Kind(handler, thread, marked, paced)
        return handler

    return register


# Entry kinds posted as lines of the thread, coalesced into as few posts as Slack's size allows.
THREAD_KINDS = frozenset({"hist", "line", "note"})


@handles("root", thread=False)
async def post_root(lane: SlackLane, job: Job) -> Step:
    head = job.head
    wait = await lane.begin_post(job, head.id, head.id)
    if wait is not None:
        return wait
    marker = lane.marker(job, head.id, head.id)
    ts = await _root_call(
        job, lambda text, blocks: lane.slack.post(job.channel, text, blocks=blocks, marker=marker)
    )
    return await lane.root_posted(job, ts)


@handles("update", marked=False, paced=False)
async def update_root(lane: SlackLane, job: Job) -> Step:
    """chat.update of the root (claimed, resolved): not a post, so it takes no channel token."""
    head = job.head
    thread_ts = job.thread_ts
    assert thread_ts is not None
    if not await lane.mark_inflight(job, head.id, head.id):  # updates stay in order too
        return lane.lease_lost(job.cid, head.id)
    await _root_call(job, lambda text, blocks: lane.slack.update(job.channel, thread_ts, text, blocks or []))
    return await lane.commit(job.cid, job.worker, [head.id])


# Slack's answers when it refuses a message's blocks (not its text).
BLOCKS_REJECTED = frozenset({"invalid_blocks", "invalid_blocks_format"})


async def _root_call(job: Job, call: Callable[[str, list[dict[str, Any]] | None], Awaitable[T]]) -> T:
    """Post or update the root with its blocks; if Slack still refuses them (whatever slack_limits
    missed), again as text only: the thread opens without buttons instead of never. The refused call
    posted nothing, so the second one uses the same channel turn and in-flight marker."""
    text, blocks = slack_format.root_message(job.head.data)
    try:
        return await call(text, blocks)
    except SlackFailure as e:
        if e.reason not in BLOCKS_REJECTED:
            raise
        log.error(
            "root_blocks_rejected",
            cid=job.cid,
            channel=job.channel,
            reason=e.reason,
            effect="the root goes as text only, without the Claim and Resolve buttons",
        )
        return await call(slack_format.root_text_only(job.head.data), None)


@handles(*THREAD_KINDS)
async def post_lines(lane: SlackLane, job: Job) -> Step:
    """Every pending line of this handover's thread, up to delivery.max_message_chars, in one post."""
    head = job.head
    run = []
    for entry in job.entries:
        if entry.kind not in THREAD_KINDS or entry.hid != head.hid:
            break
        run.append(entry)
    max_chars = lane.ctx.settings().max_message_chars
    chunk = slack_format.pack([(e.id, line_text(e, lane)) for e in run], max_chars)[0]
    first, last = chunk.ids[0], chunk.ids[-1]
    wait = await lane.begin_post(job, first, last)
    if wait is not None:
        return wait
    await lane.slack.post(
        job.channel, chunk.text, thread_ts=job.thread_ts, marker=lane.marker(job, first, last)
    )
    lane.observe(run[: len(chunk.ids)])
    return await lane.commit(job.cid, job.worker, chunk.ids)


def line_text(entry: OutboxEntry, lane: SlackLane) -> str:
    if entry.kind == "note":
        return slack_format.note_text(entry.data)
    if entry.kind == "hist" and "lines" in entry.data:  # the opening history, as one post
        limits = lane.ctx.history().line_chars_on_open, lane.ctx.settings().max_message_chars
        return opening.plan_from_entry(entry.data, *limits).text
    return slack_format.history_lines(entry.data, after_claim=entry.after_claim)
