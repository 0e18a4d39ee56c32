"""The agent desk in Slack (issue 16): the Home tab queue, response-time targets, transfer, outcomes
on resolve, reopen. Everything in Redis, correct with several replicas.

  desk.py     the shared parts, and the handover changes every entry point goes through
  actions.py  buttons and modals           sla.py   response-time timers (desk_tick.lua)
  home.py     the Home tab publisher       text.py  what the desk shows in Slack (pure)
  store.py    its Redis access             slack.py the Slack methods only the desk calls
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from ..config import FileConfig
from ..metrics import Metrics
from ..slack_api import Identity, SlackApi
from ..store import Store
from .actions import NOT_MINE, DeskActions
from .desk import Desk
from .home import HomePublisher
from .sla import sweep_forever
from .slack import DeskSlack
from .store import DeskStore

__all__ = ["NOT_MINE", "Desk", "DeskActions", "create_desk", "start_desk"]


def create_desk(
    store: Store,
    slack: SlackApi,
    *,
    config: Callable[[], FileConfig],
    metrics: Metrics,
    wake: Callable[[str, int], None],
    replies_enabled: bool,
    identity: Callable[[], Identity | None],
    default_pool: Callable[[], tuple[str, ...]],
) -> Desk:
    desk_store = DeskStore(store)
    return Desk(
        base=store,
        store=desk_store,
        slack=DeskSlack(slack, desk_store),
        config=config,
        metrics=metrics,
        wake=wake,
        replies_enabled=replies_enabled,
        identity=identity,
        default_pool=default_pool,
    )


def start_desk(desk: Desk, worker: str, stop: asyncio.Event) -> list[asyncio.Task[None]]:
    """The desk's background loops: SLA timers (every replica), Home publisher (leased)."""
    return [
        asyncio.create_task(sweep_forever(desk, stop), name="desk-sla"),
        asyncio.create_task(HomePublisher(desk, worker).run(stop), name="desk-home"),
    ]
