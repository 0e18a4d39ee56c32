"""The slack lane's notices to agents (receipts.py): a reaction on their message, an ephemeral
message to them in the thread. Paced like posts (the channel's token); one Slack cannot show any
more (the message was deleted, the agent left the channel), or cannot be sent for want of a scope
(reactions:write), is dropped with a log line rather than dead-lettered or waited for: nothing the
user should have received is lost with it, and the thread's next posts are not held up."""

from __future__ import annotations

import structlog

from .. import receipts
from ..slack_api import SlackFailure
from .slack_kinds import Job, handles
from .slack_lane import SlackLane
from .step import Step, now_ms

log = structlog.get_logger("bridge.delivery")


@handles(*receipts.NOTICE_KINDS, marked=False)
async def post_notice(lane: SlackLane, job: Job) -> Step:
    head = job.head
    wait = await lane.begin_post(job, head.id, head.id)
    if wait is not None:
        return wait
    try:
        await receipts.send(lane.slack, head.kind, head.data)
    except SlackFailure as e:
        if e.retry_after_s is not None:
            # reactions.add's own rate limit (a method tier), not the channel's: only this thread's
            # next posts wait for it; the other threads of the channel go on.
            log.warning("notice_ratelimited", cid=job.cid, kind=head.kind, retry_after_s=e.retry_after_s)
            return Step.later(now_ms() + int(e.retry_after_s * 1000))
        # A scope only receipts need (reactions:write) must not hold the thread up behind it.
        if not (e.permanent or e.reason == "missing_scope"):
            raise
        log.warning(
            "notice_dropped",
            cid=job.cid,
            kind=head.kind,
            channel=job.channel,
            reason=e.reason,
            needed=e.needed,
            fix=e.fix() if e.auth else None,
        )
    return await lane.commit(job.cid, job.worker, [head.id])
