"""The file lane: a new thread's transcript file (opening.py), attached with Slack's external upload.

A lane of its own, leased apart from the Slack lane: an upload takes three calls and may be retried
for minutes, and the thread's lines must never wait for it. It waits for the thread instead: until
the handover's root and opening post are in Slack, so the file lands below them.
"""

from __future__ import annotations

import structlog

from .. import opening
from ..keys import FILE, SLACK, split_conversation_id, thread_in
from ..privacy import redact
from ..results import OutboxEntry
from ..slack_api import SlackApi, SlackFailure
from .lane import DeliveryContext, Lane
from .step import Step, inflight_marker, now_ms

log = structlog.get_logger("bridge.delivery")

TRANSCRIPT_FAILED = "transcript_failed"  # the dead letters' reason
# How far back to look in the thread for a file attached just before a crash.
INFLIGHT_LOOKBACK_S = 30.0
# The root or the opening post is not in Slack yet: look again this soon.
THREAD_WAIT_MS = 1000
THREAD_SCAN = 200  # Slack-lane entries read to find where the handover's root is


class FileLane(Lane):
    name = FILE
    fetch_limit = 1

    def __init__(self, ctx: DeliveryContext, slack: SlackApi) -> None:
        super().__init__(ctx)
        self.slack = slack

    async def step(
        self,
        cid: str,
        worker: str,
        conv: dict[str, str],
        entries: list[OutboxEntry],
        turn: str | None = None,
    ) -> Step:
        head = entries[0]
        if head.kind != "transcript":
            return await self.bury(cid, [head], f"unknown_kind:{head.kind}")
        limits = self.ctx.history().line_chars_on_open, self.ctx.settings().max_message_chars
        plan = opening.plan_from_transcript(head.data, *limits)
        if not plan.needs_file:  # the opening post shows it all
            return await self.commit(cid, worker, [head.id])
        thread, pending = await self._thread(cid, head.hid)
        if pending:  # the root or the opening post is not in Slack yet
            return Step.later(now_ms() + THREAD_WAIT_MS)
        if thread is None:  # its root was dead-lettered: nowhere to attach the file
            return await self.bury(cid, [head], "no_thread")
        channel, thread_ts = thread
        try:
            if await self._attached_before(cid, conv, head, channel, thread_ts):
                return await self.commit(cid, worker, [head.id])
            if not await self.ctx.store.mark_inflight(
                FILE, cid, worker, inflight_marker(head.id, head.id), lease_ms=self.ctx.lease_ms()
            ):
                return self.lease_lost(cid, head.id)
            file_id = await self._upload(cid, channel, thread_ts, head, plan)
        except SlackFailure as e:
            return await self._failed(cid, head, channel, e)
        log.info("transcript_uploaded", cid=cid, channel=channel, thread_ts=thread_ts, file_id=file_id)
        return await self.commit(cid, worker, [head.id])

    async def _upload(
        self, cid: str, channel: str, thread_ts: str, head: OutboxEntry, plan: opening.Opening
    ) -> str:
        skill_id, client_id = _names(cid)
        content = opening.transcript_text(skill_id, client_id, list(head.data.get("all") or []))
        comment = opening.file_comment(plan)
        return await self.slack.upload_file(
            channel,
            thread_ts,
            opening.transcript_name(client_id),
            content.encode(),
            title=f"Transcript {client_id}",
            comment=comment,
        )

    async def _attached_before(
        self, cid: str, conv: dict[str, str], head: OutboxEntry, channel: str, thread_ts: str
    ) -> bool:
        """An upload of this entry was started and never committed (a crash, a lost answer): is the
        file in the thread already? Then it is committed, not attached twice."""
        first, _, started = [*conv.get("inflight:file", "").split(" "), "", "", "0"][:3]
        if first != head.id:
            return False
        name = opening.transcript_name(_names(cid)[1])
        oldest = int(started or 0) / 1000 - INFLIGHT_LOOKBACK_S
        try:
            found = await self.slack.find_file(channel, thread_ts, name, oldest_s=oldest)
        except SlackFailure as e:
            if not (e.permanent or e.auth):
                raise
            log.warning("transcript_check_failed", cid=cid, reason=e.reason)  # attach it again, then
            return False
        log.info("transcript_checked", cid=cid, found=bool(found))
        return found is not None

    async def _thread(self, cid: str, hid: str) -> tuple[tuple[str, str] | None, bool]:
        """(channel, ts) of the handover's thread if its root is posted, and whether its root or
        opening post still waits in the Slack lane, maybe behind the previous handover's last
        entries (its closing note, root update, receipts). One read of both: the root's commit
        writes the thread and drops the root atomically. An outbox longer than the read counts as
        waiting: the root may be further on."""
        conv, entries = await self.ctx.store.fetch(SLACK, cid, THREAD_SCAN)
        thread = thread_in(conv, hid)
        pending = any(e.hid == hid and e.kind in ("root", "hist") for e in entries)
        return thread, pending or (thread is None and len(entries) >= THREAD_SCAN)

    async def _failed(self, cid: str, head: OutboxEntry, channel: str, e: SlackFailure) -> Step:
        """Slack's rate limits for files are per method, not the channel's: wait without pausing it.
        A permanent error, a token without files:write, or an unknown error tried
        delivery.unknown_error_attempts times dead-letters the file (replayable); anything else is
        retried with backoff (a refused token: the Slack lane pauses and probes, this lane backs off)."""
        if e.retry_after_s is not None:
            return Step.later(now_ms() + int(e.retry_after_s * 1000))
        if not (e.permanent or e.reason == "missing_scope"):
            attempts = await self.ctx.store.bump_attempts(FILE, cid)
            if not (e.unknown and attempts >= self.ctx.settings().unknown_error_attempts):
                return await self.retry_later(cid, e.reason, attempts)
        fix = (
            e.fix()
            if e.auth
            else f"fix the cause, then: bridge outbox replay --all --reason {TRANSCRIPT_FAILED}"
        )
        log.error(TRANSCRIPT_FAILED, cid=cid, channel=channel, reason=e.reason, fix=fix)
        return await self.bury(cid, [head], TRANSCRIPT_FAILED, channel)


def _names(cid: str) -> tuple[str, str]:
    """(skill_id, client_id) as the file shows them: the client id redacted (in the file's name,
    title and first line; often a phone number)."""
    skill_id, client_id = split_conversation_id(cid)
    return skill_id, redact(client_id)
