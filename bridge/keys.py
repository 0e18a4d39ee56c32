"""Every Redis key of the bridge, in one place.

Key layout (all prefixed `bridge:`). A conversation (skill_id, client_id) lives in one of N partitions,
and every key of a partition carries the same hash tag `{N}`: the conversation's state, its outboxes,
and the partition's work queues sit in ONE Redis Cluster slot, so each script is atomic and touches one
slot, and the webhook path is one EVALSHA. A channel's bucket and queue share the hash tag {<channel>}
(begin_turn.lua touches a conversation's keys and its channel's: standalone Redis only, see
Store.begin_turn).

  bridge:{p}:conv:<cid>         hash    user fields, handover state, header, thread ts, delivery markers
  bridge:{p}:hist:<cid>         list    history entries (JSON), capped and expiring with the conversation
  bridge:{p}:lines:<cid>        list    the last handover's lines (history shown at open, exchanges,
                                        agents' replies) for handover_resolved's transcript; capped
  bridge:{p}:sent:<cid>         hash    Slack ts of a relayed agent reply -> "<reply id> <relayed ms>"
  bridge:{p}:out:<lane>:<cid>   stream  what must still be delivered, in order (lane: slack | reply |
                                        file, the transcript file: apart, so it never holds lines back)
  bridge:{p}:ready:<lane>       zset    conversations with pending entries, scored by when they are due
  bridge:{p}:lease:<lane>:<cid> string  the worker delivering this conversation right now (PX lease)
  bridge:{p}:open               zset    open handovers, scored by last activity (idle auto-resolve)
  bridge:{p}:dedupe:<sha256>    string  identical webhook bodies seen within the dedupe window
  bridge:{p}:seen:<event_id>    string  Slack event ids already relayed
  bridge:{p}:dead               stream  dead letters (permanent errors), replayable
  bridge:{p}:stats              hash    pending entry counts per lane (for metrics)
  bridge:{p}:timers             zset    desk timers (SLA reminders, reopen window), by next due time
  bridge:thread:<channel>:<ts>  string  Slack thread → cid, for agent replies and buttons
  bridge:rate:{<channel>}       hash    token bucket pacing posts to one channel, shared by replicas
  bridge:wait:{<channel>}       zset    conversations waiting to post in that channel, scored by their
                                        oldest waiting entry (opening entries OPENING_FIRST_MS lower):
                                        the token goes with the oldest (fair pacing); rebuilt by workers
  bridge:saturated:{<channel>}  string  set for a minute when slack_channel_saturated was logged
  bridge:user:<slack user id>   string  cached users.info display name
  bridge:usergroup:<S…>         string  members of a slack.agents user group (JSON), 10 min
  bridge:meta                   hash    partition count, checked at start so it never changes silently
  bridge:audit                  stream  the audit trail (privacy.audit): who did what to which handover
  bridge:{chan}:placed          hash    cid → "<channel> <hid>": the channel each open handover's thread is in
  bridge:{chan}:open:<channel>  zset    cids of the handovers open in that channel, scored by placement ms
                                        (both under one hash tag: one script picks a pool's least loaded
                                        channel; recomputable from the conversations, see Store.reconcile)
  bridge:home:viewers           zset    Slack users who opened the app's Home tab, by last open (ms)
  bridge:home:pending           zset    users whose Home view must be published, by when
  bridge:home:dirty             string  set when a handover changed: every recent viewer gets a new view
  bridge:home:lease             string  the replica publishing Home views right now (PX lease)
  bridge:permalink:<ch>:<ts>    string  cached chat.getPermalink answer

A new per-conversation key must also be deleted by forget.lua (bridge forget): tests/test_privacy_forget.py
SCANs for any key left after forgetting a conversation.
"""

from __future__ import annotations

import functools
import zlib
from dataclasses import dataclass, field
from urllib.parse import quote, unquote

SLACK = "slack"
REPLY = "reply"
FILE = "file"
LANES = (SLACK, REPLY, FILE)
PREFIX = "bridge:"


@functools.lru_cache(maxsize=16384)  # a conversation sends many events: quote() is slow Python
def conversation_id(skill_id: str, client_id: str) -> str:
    """Unambiguous, readable id: each part percent-encoded, so a ':' inside an id cannot collide."""
    return f"{quote(skill_id, safe='')}:{quote(client_id, safe='')}"


def split_conversation_id(cid: str) -> tuple[str, str]:
    skill, _, client = cid.partition(":")
    return unquote(skill), unquote(client)


@dataclass(frozen=True, slots=True)
class Keys:
    """The keys of one conversation inside its partition."""

    partition: int
    cid: str
    tag: str = field(init=False, repr=False, compare=False)  # the partition's prefix, built once

    def __post_init__(self) -> None:
        object.__setattr__(self, "tag", f"{PREFIX}{{{self.partition}}}:")

    @property
    def conv(self) -> str:
        return f"{self.conv_prefix}{self.cid}"

    @property
    def hist(self) -> str:
        return f"{self.tag}hist:{self.cid}"

    @property
    def lines(self) -> str:
        return f"{self.tag}lines:{self.cid}"

    @property
    def sent(self) -> str:
        return f"{self.tag}sent:{self.cid}"

    def out(self, lane: str) -> str:
        return f"{self.out_prefix(lane)}{self.cid}"

    def ready(self, lane: str) -> str:
        return f"{self.tag}ready:{lane}"

    def lease(self, lane: str) -> str:
        return f"{self.lease_prefix(lane)}{self.cid}"

    @property
    def conv_prefix(self) -> str:
        return f"{self.tag}conv:"

    def out_prefix(self, lane: str) -> str:
        return f"{self.tag}out:{lane}:"

    def lease_prefix(self, lane: str) -> str:
        return f"{self.tag}lease:{lane}:"

    @property
    def open(self) -> str:
        return f"{self.tag}open"

    @property
    def dead(self) -> str:
        return f"{self.tag}dead"

    @property
    def stats(self) -> str:
        return f"{self.tag}stats"

    @property
    def timers(self) -> str:
        return f"{self.tag}timers"

    def dedupe(self, digest: str) -> str:
        return f"{self.tag}dedupe:{digest}"

    def seen(self, event_id: str) -> str:
        return f"{self.tag}seen:{event_id}"

    def commit_keys(self, lane: str) -> list[str]:
        """KEYS layout of commit.lua."""
        return [
            self.conv,
            self.out(lane),
            self.lease(lane),
            self.stats,
            self.out(REPLY),
            self.ready(REPLY),
            self.ready(lane),
            self.out(SLACK),
            self.ready(SLACK),
        ]

    def handover_keys(self) -> list[str]:
        """KEYS layout shared by the handover scripts (claim, resolve, agent message)."""
        return [
            self.conv,
            self.out(SLACK),
            self.ready(SLACK),
            self.out(REPLY),
            self.ready(REPLY),
            self.stats,
            self.open,
            self.lines,
        ]


def thread_key(channel: str, ts: str) -> str:
    return f"{PREFIX}thread:{channel}:{ts}"


def rate_key(channel: str) -> str:
    return f"{PREFIX}rate:{{{channel}}}"


def wait_key(channel: str) -> str:
    return f"{PREFIX}wait:{{{channel}}}"


def saturation_key(channel: str) -> str:
    return f"{PREFIX}saturated:{{{channel}}}"


def user_key(user_id: str) -> str:
    return f"{PREFIX}user:{user_id}"


def usergroup_key(group: str) -> str:
    return f"{PREFIX}usergroup:{group}"


META_KEY = f"{PREFIX}meta"
AUDIT_KEY = f"{PREFIX}audit"
PLACED_KEY = f"{PREFIX}{{chan}}:placed"
CHANNEL_OPEN_PREFIX = f"{PREFIX}{{chan}}:open:"


def channel_open_key(channel: str) -> str:
    return f"{CHANNEL_OPEN_PREFIX}{channel}"


HOME_VIEWERS_KEY = f"{PREFIX}home:viewers"
HOME_PENDING_KEY = f"{PREFIX}home:pending"
HOME_DIRTY_KEY = f"{PREFIX}home:dirty"
HOME_LEASE_KEY = f"{PREFIX}home:lease"


def permalink_key(channel: str, ts: str) -> str:
    return f"{PREFIX}permalink:{channel}:{ts}"


@functools.lru_cache(maxsize=16384)  # every webhook and delivery step asks again for the same few
def conversation_keys(partitions: int, cid: str) -> Keys:
    return Keys(zlib.crc32(cid.encode()) % partitions, cid)


@functools.lru_cache(maxsize=16384)
def record_keys(partitions: int, cid: str) -> tuple[str, ...]:
    """record.lua's keys but the dedupe one, built once per conversation instead of per webhook."""
    k = conversation_keys(partitions, cid)
    return k.conv, k.hist, k.out(SLACK), k.ready(SLACK), k.open, k.stats, k.lines, k.out(FILE), k.ready(FILE)


def thread_in(conv: dict[str, str], hid: str) -> tuple[str, str] | None:
    """(channel, ts) of the root posted for handover `hid`, read from a fetched conversation hash."""
    channel, _, ts = conv.get(f"t:{hid}", "").partition(" ")  # commit.lua writes "<channel> <ts>"
    return (channel, ts) if ts else None
