"""The Store's handover side: what agents do (replies, edits, claims, resolves), the state of a
conversation, and the caches of Slack names and user groups."""

from __future__ import annotations

from typing import Any

import orjson

from .keys import (
    REPLY,
    SLACK,
    user_key,
    usergroup_key,
)
from .results import (
    Resolution,
    as_text,
    flag,
)
from .store_base import DEAD_MAXLEN, USER_CACHE_S
from .store_pools import PoolCounters


class HandoverStore(PoolCounters):
    # -- agents ----------------------------------------------------------------------------------------

    async def agent_message(
        self,
        cid: str,
        *,
        thread_ts: str,
        agent_id: str,
        message: dict[str, Any],
        event_id: str,
        now_ms: int,
        dedupe_ms: int,
        claim_on_reply: bool,
        slack_ts: str = "",
    ) -> tuple[int, int]:
        """Queue an agent reply; returns (1 queued | 2 queued and claimed by this reply | 0 duplicate |
        -1 not open, first response ms). `slack_ts`: the reply's own message, mapped to the reply's id
        for its edits (agent_edit)."""
        k = self.keys(cid)
        status, first_after = await self._eval(
            "agent_message",
            [*k.handover_keys(), k.seen(event_id), k.sent],
            [
                now_ms,
                cid,
                thread_ts,
                agent_id,
                orjson.dumps(message),
                dedupe_ms,
                flag(claim_on_reply),
                slack_ts,
            ],
        )
        return int(status), int(first_after)

    async def agent_edit(
        self,
        cid: str,
        *,
        thread_ts: str,
        agent_id: str,
        slack_ts: str,
        deleted: bool,
        slack_text: str,
        window_ms: int,
        event_id: str,
        now_ms: int,
        dedupe_ms: int,
    ) -> tuple[int, str]:
        """Queue agent_message_edited / _deleted for the relayed reply at `slack_ts`: (status, reply id),
        status 1 queued, 0 duplicate, -1 not open, -2 not a relayed reply, -3 edit past `window_ms`."""
        k = self.keys(cid)
        status, reply_id = await self._eval(
            "agent_edit",
            [*k.handover_keys(), k.seen(event_id), k.sent],
            [
                now_ms,
                cid,
                thread_ts,
                agent_id,
                slack_ts,
                "deleted" if deleted else "edited",
                slack_text,
                window_ms,
                dedupe_ms,
            ],
        )
        return int(status), as_text(reply_id)

    async def bury_reply(
        self,
        cid: str,
        entry_id: str,
        reason: str,
        now_ms: int,
        *,
        reaction: dict[str, Any] | None,
        ephemeral: dict[str, Any] | None,
        hid: str,
    ) -> str:
        """Dead-letter one reply-lane entry and queue its notices (bury_reply.lua); the dead id."""
        k = self.keys(cid)
        dead_id = await self._eval(
            "bury_reply",
            [k.out(REPLY), k.dead, k.stats, k.conv, k.out(SLACK), k.ready(SLACK)],
            [
                cid,
                reason,
                now_ms,
                DEAD_MAXLEN,
                entry_id,
                orjson.dumps(reaction) if reaction else "",
                orjson.dumps(ephemeral) if ephemeral else "",
                hid,
            ],
        )
        return as_text(dead_id)

    async def claim_handover(
        self,
        cid: str,
        *,
        thread_ts: str,
        agent_id: str,
        agent_name: str,
        now_ms: int,
        replies: bool,
        take_over: bool = False,
    ) -> int:
        """1 claimed, 0 already this agent's, -1 not open, -2 another agent's (see claim_handover.lua)."""
        k = self.keys(cid)
        return int(
            await self._eval(
                "claim_handover",
                k.handover_keys(),
                [now_ms, cid, thread_ts, agent_id, agent_name, flag(replies), flag(take_over)],
            )
        )

    async def resolve_handover(
        self,
        cid: str,
        *,
        thread_ts: str,
        agent_id: str,
        agent_name: str,
        now_ms: int,
        replies: bool,
        reason: str = "agent",  # or "idle" (with idle_before_ms), from the idle auto-resolve
        idle_before_ms: int = 0,
    ) -> int:
        """1 resolved, -1 nothing to resolve (resolution() says more)."""
        resolved = await self.resolution(
            cid,
            thread_ts=thread_ts,
            agent_id=agent_id,
            agent_name=agent_name,
            now_ms=now_ms,
            replies=replies,
            reason=reason,
            idle_before_ms=idle_before_ms,
        )
        return resolved.status

    async def resolution(
        self,
        cid: str,
        *,
        thread_ts: str,
        agent_id: str,
        agent_name: str,
        now_ms: int,
        replies: bool,
        reason: str = "agent",
        idle_before_ms: int = 0,
        outcome: str = "",
        note: str = "",
        reopen_window_ms: int = 0,
    ) -> Resolution:
        """Resolve, and say when the handover had opened and on which route (for the desk's numbers)."""
        k = self.keys(cid)
        hid, opened_ms, route = await self._eval(
            "resolve_handover",
            [*k.handover_keys(), k.timers],
            [
                now_ms,
                cid,
                thread_ts,
                agent_id,
                agent_name,
                flag(replies),
                reason,
                idle_before_ms,
                outcome,
                note,
                reopen_window_ms,
            ],
        )
        if int(hid) < 0:
            return Resolution(-1)
        # A second call (the pool counters live in a slot of their own); were it lost, reconcile()
        # finds the placement stale later.
        await self.handover_left_channel(cid, int(hid))
        return Resolution(1, int(opened_ms), as_text(route))

    async def idle_handovers(self, partition: int, before_ms: int, limit: int = 100) -> list[str]:
        members = await self.redis.zrangebyscore(
            self.partition_keys(partition).open, "-inf", before_ms, start=0, num=limit
        )
        return [as_text(m) for m in members]

    async def conversation(self, cid: str) -> dict[str, str]:
        raw = await self.redis.hgetall(self.keys(cid).conv)
        return {as_text(f): as_text(v) for f, v in raw.items()}

    async def history(self, cid: str) -> list[dict[str, Any]]:
        return [orjson.loads(e) for e in await self.redis.lrange(self.keys(cid).hist, 0, -1)]

    async def cached_usergroup(self, group: str) -> list[str] | None:
        """Members of a user group as last fetched by any replica (None: not cached or expired)."""
        value = await self.redis.get(usergroup_key(group))
        return [str(u) for u in orjson.loads(value)] if value is not None else None

    async def cache_usergroup(self, group: str, members: list[str], ttl_s: int) -> None:
        await self.redis.set(usergroup_key(group), orjson.dumps(members), ex=ttl_s)

    async def cached_user_name(self, user_id: str) -> str | None:
        value = await self.redis.get(user_key(user_id))
        return as_text(value) if value is not None else None

    async def cache_user_name(self, user_id: str, name: str) -> None:
        await self.redis.set(user_key(user_id), name, ex=USER_CACHE_S)
