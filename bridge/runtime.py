"""The running bridge's parts, built once at start and shared by handlers and background tasks."""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import web
from slack_sdk.signature import SignatureVerifier

from .config import FileConfig
from .delivery import Deliverer
from .desk import Desk
from .handover import Handover
from .health import SlackHealth
from .metrics import Metrics
from .reload import ConfigHolder
from .settings import AppConfig
from .slack_api import Identity, SlackApi
from .slack_events import SlackEvents
from .store import Store


@dataclass
class Bridge:
    app_config: AppConfig
    holder: ConfigHolder
    metrics: Metrics
    store: Store
    slack: SlackApi
    handover: Handover
    deliverer: Deliverer
    slack_events: SlackEvents
    signature_verifier: SignatureVerifier | None
    identity: Identity | None = None
    slack_health: SlackHealth = field(default_factory=SlackHealth)
    desk: Desk | None = None

    def config(self) -> FileConfig:
        return self.holder.current


BRIDGE = web.AppKey("bridge", Bridge)
