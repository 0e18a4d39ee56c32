"""Background delivery: outbox entries to Slack (slack lane) and to the owner's reply endpoint
(reply lane).

The unit of work is a conversation: a worker leases it, delivers its pending entries oldest first,
and hands it back. One lease at a time per conversation keeps every thread in order across workers
and replicas; a dead worker's lease expires and the conversation becomes due again by itself.

  scheduler.py    Deliverer: claims due conversations, runs the lanes, releases every lease (one place)
  lane.py         the lane protocol (step → Step) and what lanes share: commit, retry, dead letter
  step.py         Step, the one result of a delivery step (go on / drained / due again later)
  slack_lane.py   the Slack lane: where an entry goes, crash recovery, Slack failures → Step
  slack_kinds.py  one handler per Slack entry kind (root, update, thread lines), registered by kind
  notices.py      the Slack lane's notices to agents (reactions, ephemeral messages)
  pacing.py       fair pacing per channel (the oldest waiting thread gets each token), saturation gauges
  auth_pause.py   a refused token pauses Slack delivery; one probe every 30 s resumes it
  reply_lane.py   the reply lane: one signed POST per entry to BRIDGE_REPLY_URL
  file_lane.py    the file lane: a new thread's transcript file, apart so it never holds lines back

Adding a Slack entry kind (say "delete"): queue entries with `k` = "delete" from a Lua script
(lib.lua `enqueue`), then write one handler in slack_kinds.py (or a module imported below, as
notices.py is)::

    @handles("delete", marked=False, paced=False)
    async def delete_post(lane: SlackLane, job: Job) -> Step:
        ...  # a post into the channel first waits for its turn: `if (w := await lane.begin_post(job,
             # first, last)) is not None: return w`; then lane.slack.<call>(...)
        return await lane.commit(job.cid, job.worker, [job.head.id])

`thread` (needs the handover's thread), `marked` (its post carries the in-flight marker and is looked
up after a crash) and `paced` (waits for the channel's turn) describe the kind (slack_kinds.Kind).
Slack failures it lets out are already mapped (429 pause, auth pause, retry, dead letter with the
channel).
"""

from . import notices  # noqa: F401  (registers the slack lane's "reaction" and "ephemeral" kinds)
from .file_lane import FileLane
from .lane import DeliveryContext, Lane
from .reply_lane import ReplyLane
from .scheduler import Deliverer
from .slack_kinds import KINDS, Job, handles
from .slack_lane import SlackLane
from .step import Step, iso, now_ms

__all__ = [
    "KINDS",
    "Deliverer",
    "DeliveryContext",
    "FileLane",
    "Job",
    "Lane",
    "ReplyLane",
    "SlackLane",
    "Step",
    "handles",
    "iso",
    "now_ms",
]
