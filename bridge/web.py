"""HTTP handlers: thin. They authenticate, bound and parse requests, call the domain, map results
and failures to status codes. Logic never sees a web.Request."""

from __future__ import annotations

import asyncio
import hmac
from typing import Any
from urllib.parse import parse_qs

import orjson
import structlog
from aiohttp import web
from aiohttp.typedefs import Handler
from slack_sdk.signature import SignatureVerifier

from .events import EventError, IgnoredEvent, parse_event
from .runtime import BRIDGE, Bridge
from .store import SLACK, STORE_ERRORS, body_digest

log = structlog.get_logger("bridge.web")

SLACK_BODY_LIMIT = 1024 * 1024
# The longest a webhook waits on Redis (plus redis.wait_timeout_ms when WAIT is on): during a failover
# it answers 503 within this bound, and the sender retries, instead of holding its connection open.
STORE_DEADLINE_S = 2.0


def json_response(body: dict[str, Any], status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


def error(status: int, message: str, **extra: Any) -> web.Response:
    return json_response({"ok": False, "error": message, **extra}, status)


async def read_limited(request: web.Request, limit: int) -> bytes | None:
    """The body, or None when it exceeds `limit` (checked before and while reading)."""
    if request.content_length is not None and request.content_length > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await request.content.read(limit + 1 - size)  # returns what has arrived, b"" at EOF
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            return None


def key_matches(given: str, keys: tuple[bytes, ...]) -> bool:
    """Constant time against every configured key (rotation: old and new both valid)."""
    given_bytes = given.encode()
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(given_bytes, key)
    return matched


async def smartly_hook(request: web.Request) -> web.Response:
    bridge: Bridge = request.app[BRIDGE]
    metrics = bridge.metrics
    if not key_matches(request.query.get("key", ""), bridge.app_config.webhook_keys):
        metrics.webhook_events.labels("unknown", "unauthorized").inc()
        log.warning("webhook_rejected", status=401, reason="bad or missing key", remote=request.remote)
        return error(401, "unauthorized")
    limit = bridge.config().webhook.max_body_bytes
    body = await read_limited(request, limit)
    if body is None:
        metrics.webhook_events.labels("unknown", "too_large").inc()
        log.warning("webhook_rejected", status=413, reason="body too large", limit=limit)
        return error(413, f"body larger than {limit} bytes")
    try:
        event = parse_event(body)
    except IgnoredEvent as ignored:
        metrics.webhook_events.labels("other", "ignored").inc()
        log.info("webhook_ignored", smartly_event=ignored.event)
        return json_response({"ok": True, "ignored": ignored.event}, 202)
    except EventError as e:
        metrics.webhook_events.labels("unknown", "invalid").inc()
        log.warning("webhook_rejected", status=e.status, reason=e.message, missing=e.missing)
        extra = {"missing": e.missing} if e.missing else {}
        return error(e.status, e.message, **extra)
    fields = {"smartly_event": event.event, "skill_id": event.skill_id, "client_id": event.client_id}
    redis_config = bridge.config().redis
    wanted = redis_config.wait_replicas
    acked = 0
    try:
        async with asyncio.timeout(STORE_DEADLINE_S + redis_config.wait_timeout_ms / 1000):
            if wanted:
                keys, args, decision = bridge.handover.prepare(event, body_digest(body))
                result, acked = await bridge.store.record_and_wait(
                    keys, args, wanted, redis_config.wait_timeout_ms
                )
            else:
                result, decision = await bridge.handover.record(event, body_digest(body))
    except (*STORE_ERRORS, TimeoutError) as e:
        metrics.webhook_events.labels(event.event, "unavailable").inc()
        metrics.redis_errors.labels("webhook").inc()
        log.error("webhook_unavailable", status=503, error=type(e).__name__, **fields)
        return error(503, "storage unavailable, retry later")
    if wanted and acked < wanted:
        # Recorded on the primary only: a failover now could lose it. The sender's retry is recorded
        # again if that happened (the dedupe key went with it), else it is answered as a duplicate.
        metrics.webhook_events.labels(event.event, "unreplicated").inc()
        log.warning("webhook_unreplicated", status=503, acked=acked, wanted=wanted, **fields)
        return error(503, "not replicated in time, retry later")
    if not result.recorded:
        metrics.webhook_events.labels(event.event, "duplicate").inc()
        log.info("webhook_duplicate", **fields)
        return json_response({"ok": True, "duplicate": True})
    if result.queued:
        bridge.deliverer.wake(SLACK, result.partition)
    if result.opened and decision is not None:
        metrics.handovers_opened.labels(decision.trigger, decision.route).inc()
        log.info(
            "handover_opened",
            trigger=decision.trigger,
            route=decision.route,
            channel=decision.channel,
            hid=result.hid,
            **fields,
        )
    metrics.webhook_events.labels(event.event, "recorded").inc()
    log.info("webhook_recorded", queued=result.queued, **fields)
    return json_response({"ok": True})


def _verified_body(request: web.Request, body: bytes, bridge: Bridge) -> bool:
    verifier: SignatureVerifier | None = bridge.signature_verifier
    if verifier is None:
        return False
    try:
        return verifier.is_valid(
            body=body,
            timestamp=request.headers.get("X-Slack-Request-Timestamp", ""),
            signature=request.headers.get("X-Slack-Signature", ""),
        )
    except (ValueError, TypeError):  # a malformed timestamp is a bad signature, not a crash
        return False


async def _slack_request(request: web.Request) -> tuple[Bridge, bytes | web.Response]:
    bridge: Bridge = request.app[BRIDGE]
    body = await read_limited(request, SLACK_BODY_LIMIT)
    if body is None:
        return bridge, error(413, "body too large")
    if not _verified_body(request, body, bridge):
        bridge.metrics.slack_events.labels("request", "unauthorized").inc()
        log.warning("slack_request_rejected", status=401, path=request.path)
        return bridge, error(401, "invalid signature")
    return bridge, body


async def slack_events(request: web.Request) -> web.Response:
    bridge, body = await _slack_request(request)
    if isinstance(body, web.Response):
        return body
    try:
        envelope = orjson.loads(body)
    except orjson.JSONDecodeError:
        return error(400, "body is not valid JSON")
    if not isinstance(envelope, dict):
        return error(400, "body must be a JSON object")
    retry = request.headers.get("X-Slack-Retry-Num")
    try:
        answer = await bridge.slack_events.on_event(envelope)
    except STORE_ERRORS as e:
        bridge.metrics.redis_errors.labels("slack_event").inc()
        log.error("slack_event_unavailable", status=503, error=type(e).__name__, retry=retry)
        return error(503, "storage unavailable, retry later")
    return json_response(answer or {"ok": True})


async def slack_interactions(request: web.Request) -> web.Response:
    bridge, body = await _slack_request(request)
    if isinstance(body, web.Response):
        return body
    raw = parse_qs(body.decode("utf-8", "replace")).get("payload", [""])[0]
    try:
        payload = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return error(400, "missing or invalid payload")
    if not isinstance(payload, dict):
        return error(400, "payload must be a JSON object")
    try:
        await bridge.slack_events.on_interaction(payload)
    except STORE_ERRORS as e:
        bridge.metrics.redis_errors.labels("interaction").inc()
        log.error("interaction_unavailable", status=503, error=type(e).__name__)
        return error(503, "storage unavailable, retry later")
    return web.Response(status=200)


async def healthz(request: web.Request) -> web.Response:
    return json_response({"ok": True})


async def readyz(request: web.Request) -> web.Response:
    bridge: Bridge = request.app[BRIDGE]
    try:
        await bridge.store.ping()
    except (*STORE_ERRORS, OSError) as e:
        return error(503, "redis unavailable", reason=type(e).__name__)
    return json_response({"ok": True, "config": bridge.app_config.config_path or "defaults"})


async def metrics(request: web.Request) -> web.Response:
    bridge: Bridge = request.app[BRIDGE]
    token = bridge.app_config.settings.bridge_metrics_token
    if token is not None:
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token.get_secret_value()}".encode()):
            return error(401, "unauthorized")
    try:
        pending = await bridge.store.pending_counts()
        for lane, count in pending.items():
            bridge.metrics.outbox_pending.labels(lane).set(count)
        bridge.metrics.handovers_open.set(await bridge.store.open_handover_count())
    except STORE_ERRORS:
        bridge.metrics.redis_errors.labels("metrics").inc()
    return web.Response(body=bridge.metrics.render(), headers={"Content-Type": "text/plain; version=0.0.4"})


@web.middleware
async def unexpected_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A bug must not leak a traceback (or anything from the request) to the caller."""
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except Exception:
        log.exception("request_failed", path=request.path, method=request.method)
        return error(500, "internal error")


def add_routes(app: web.Application) -> None:
    app.middlewares.append(unexpected_errors)
    app.router.add_post("/smartly/hooks", smartly_hook)
    app.router.add_post("/slack/events", slack_events)
    app.router.add_post("/slack/interactions", slack_interactions)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
