"""Who may act on a handover from Slack: `slack.agents` (users and user groups) and the bridge's own
workspace.

User groups are expanded with usergroups.users.list. The members are cached in Redis for 10 minutes
(shared by replicas, so one call per group per 10 minutes, not one per replica) and held in memory, so
deciding on an event or a click costs no round trip. A group Slack cannot list right now keeps its last
known members; one never listed yet has none (its users are refused until it is).
"""

from __future__ import annotations

from collections.abc import Callable

import structlog

from .config import FileConfig
from .slack_api import SlackApi, SlackFailure
from .store import STORE_ERRORS, Store

log = structlog.get_logger("bridge.agents")

GROUP_REFRESH_S = 600  # how old a group's member list may get (Redis TTL of the cache)

# Why a Slack user may not act or be relayed (see notices.py for what they are told).
OTHER_WORKSPACE = "other_workspace"
NOT_AN_AGENT = "not_an_agent"


def is_group(agent: str) -> bool:
    return agent.startswith("S")


class AgentDirectory:
    def __init__(self, slack: SlackApi, store: Store, config: Callable[[], FileConfig]) -> None:
        self.slack = slack
        self.store = store
        self.config = config
        self._members: dict[str, frozenset[str]] = {}

    def refusal(self, user_id: str, user_team: str, bridge_team: str) -> str | None:
        """Why `user_id` (of workspace `user_team`) may not Claim, Resolve or be relayed; None: may.
        A user of another workspace (Slack Connect) never may, whatever slack.agents says."""
        if user_team and bridge_team and user_team != bridge_team:
            return OTHER_WORKSPACE
        agents = self.config().slack.agents
        if agents is None or user_id in agents:
            return None
        if any(user_id in self._members.get(agent, ()) for agent in agents if is_group(agent)):
            return None
        return NOT_AN_AGENT

    def members(self, group: str) -> frozenset[str]:
        """The last known members of a configured user group."""
        return self._members.get(group, frozenset())

    async def refresh(self) -> bool:
        """Expand every configured user group (cache first); False when one could not be listed."""
        groups = [a for a in self.config().slack.agents or () if is_group(a)]
        complete = True
        for group in groups:
            try:
                self._members[group] = frozenset(await self._members_of(group))
            except SlackFailure as e:
                complete = False
                fix = e.fix() if e.auth else None
                if e.reason == "no_such_subteam":
                    fix = f"check the user group ID {group} in slack.agents"
                self._refresh_failed(group, e.reason, fix)
            except STORE_ERRORS as e:
                complete = False
                self._refresh_failed(group, type(e).__name__, None)
        for gone in set(self._members) - set(groups):
            del self._members[gone]
        return complete

    def _refresh_failed(self, group: str, reason: str, fix: str | None) -> None:
        kept = len(self._members.get(group, ()))
        log.warning(
            "slack_agents_refresh_failed",
            group=group,
            reason=reason,
            kept=kept,
            **({"fix": fix} if fix else {}),
        )

    async def _members_of(self, group: str) -> list[str]:
        cached = await self.store.cached_usergroup(group)
        if cached is not None:
            return cached
        members = await self.slack.usergroup_members(group)
        await self.store.cache_usergroup(group, members, GROUP_REFRESH_S)
        log.info("slack_agents_group_listed", group=group, members=len(members))
        return members
