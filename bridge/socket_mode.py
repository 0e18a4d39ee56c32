"""Slack Socket Mode: the agent handlers of slack_events.py over a websocket the bridge opens itself,
so a bridge behind a firewall works without a public /slack/events URL.

Used when SLACK_APP_TOKEN (an xapp- token with connections:write) is set. slack-sdk's client keeps the
connection (reconnects, pings); this module only turns envelopes into SlackEvents calls and acks them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

import structlog
from aiohttp import web
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web.async_client import AsyncWebClient

from .metrics import Metrics
from .runtime import BRIDGE
from .settings import AppConfig
from .slack_events import SlackEvents
from .slack_payloads import PayloadError
from .store import STORE_ERRORS

log = structlog.get_logger("bridge.socket_mode")

EVENTS_API = "events_api"
INTERACTIVE = "interactive"


class Acknowledger(Protocol):
    """What the listener needs of slack-sdk's client (a test passes a recorder)."""

    async def send_socket_mode_response(self, response: SocketModeResponse) -> None: ...


class SocketModeListener:
    """Runs one envelope through SlackEvents, then acks it.

    The ack follows the handler's few-millisecond Redis write instead of preceding it: an envelope is
    acknowledged only once it is durable, exactly like the HTTP endpoints answer 200 only then. When the
    write fails there is no ack, so Slack redelivers (events_api: retry_attempt; interactive: the
    agent sees the click fail) — the Socket Mode twin of the HTTP path's 503. The owner's reply
    endpoint is never waited for: that POST happens in the background reply lane.
    """

    def __init__(self, events: SlackEvents, metrics: Metrics) -> None:
        self.events = events
        self.metrics = metrics

    async def __call__(self, client: Acknowledger, request: SocketModeRequest) -> None:
        fields = {"type": request.type, "envelope_id": request.envelope_id, "retry": request.retry_attempt}
        # On failure no ack: Slack delivers the envelope again, and the event_id dedupe absorbs a repeat.
        answer: dict[str, Any] | None = None
        try:
            answer = await self._dispatch(request.type, request.payload)
        except PayloadError as e:  # acked: Slack sending the same wrong shape again would not help
            self.metrics.slack_events.labels("socket_mode", "invalid_payload").inc()
            log.warning("socket_mode_envelope_rejected", reason=e.problem, **fields)
        except STORE_ERRORS as e:
            self.metrics.redis_errors.labels("socket_mode").inc()
            log.error("socket_mode_envelope_unavailable", error=type(e).__name__, **fields)
            return
        except Exception:
            self.metrics.slack_events.labels("socket_mode", "failed").inc()
            log.exception("socket_mode_envelope_failed", **fields)
            return
        await client.send_socket_mode_response(
            SocketModeResponse(envelope_id=request.envelope_id, payload=answer)  # (a modal's errors)
        )
        log.debug("socket_mode_envelope_acked", **fields)

    async def _dispatch(self, kind: str, payload: dict[str, Any]) -> dict[str, Any] | None:
        if kind == EVENTS_API:
            await self.events.on_event(payload)
        elif kind == INTERACTIVE:
            return await self.events.on_interaction(payload)
        else:  # slash_commands and the like: acked so Slack stops sending, otherwise unused
            self.metrics.slack_events.labels("socket_mode", "ignored_type").inc()
            log.info("socket_mode_envelope_ignored", type=kind)
        return None


def socket_mode_ctx(app_config: AppConfig) -> Callable[[web.Application], AsyncIterator[None]]:
    """Cleanup context: connect on start (in the background: a slow Slack never blocks startup or the
    webhook endpoint), close on cleanup. Does nothing without SLACK_APP_TOKEN."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        settings = app_config.settings
        token = settings.slack_app_token.get_secret_value() if settings.slack_app_token else ""
        if not token:
            yield
            return
        bridge = app[BRIDGE]
        client = SocketModeClient(
            app_token=token,
            web_client=AsyncWebClient(base_url=settings.slack_api_url),  # apps.connections.open
            logger=logging.getLogger("bridge.socket_mode.client"),
        )
        listener = SocketModeListener(bridge.slack_events, bridge.metrics)
        client.socket_mode_request_listeners.append(listener)
        connecting = asyncio.create_task(client.connect(), name="socket-mode-connect")
        log.info("socket_mode_starting")
        try:
            yield
        finally:
            connecting.cancel()
            await asyncio.gather(connecting, return_exceptions=True)
            await client.close()
            log.info("socket_mode_closed")

    return ctx
