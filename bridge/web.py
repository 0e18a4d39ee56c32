"""HTTP handlers: thin. They authenticate, bound and parse requests, call the domain, map results
and failures to status codes. Logic never sees a web.Request."""

from __future__ import annotations

import functools
import hashlib
import hmac
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

import orjson
import structlog
from aiohttp import web
from slack_sdk.signature import SignatureVerifier

from .events import EventError, IgnoredEvent, parse_event
from .handover import Recorded
from .http_body import BodyRejected, decoded, encoding_of, raw_body
from .keys import SLACK
from .logs import info_line
from .privacy.audit import SYSTEM, audit_soon
from .runtime import BRIDGE, Bridge
from .slack_payloads import PayloadError
from .store import STORE_ERRORS, STORE_OR_SOCKET_ERRORS, STORE_OR_TIMEOUT_ERRORS, body_digest, never_sent

log = structlog.get_logger("bridge.web")

SLACK_BODY_LIMIT = 1024 * 1024
OK_BODY = b'{"ok":true}'


def json_response(body: dict[str, Any], status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


def ok() -> web.Response:
    return web.Response(body=OK_BODY, content_type="application/json")


def error(status: int, message: str, **extra: Any) -> web.Response:
    return json_response({"ok": False, "error": message, **extra}, status)


async def rejected(request: web.Request, e: BodyRejected) -> web.Response:
    """The answer to a body the endpoint does not take. After a 408 the connection is closed at once:
    what is left of a body that never came cannot be told from a next request, and aiohttp would
    otherwise linger up to 10 s reading it."""
    response = error(e.status, e.message)
    if e.status == 408:
        response.force_close()
        await response.prepare(request)
        await response.write_eof()
        request.protocol.force_close()  # (the transport sends what it holds, then closes)
    return response


def bearer_matches(request: web.Request, token: str) -> bool:
    """`Authorization: Bearer <token>`, compared in constant time."""
    return key_matches(request.headers.get("Authorization", ""), (f"Bearer {token}".encode(),))


def key_matches(given: str, keys: tuple[bytes, ...]) -> bool:
    """Constant time against every configured key (rotation: old and new both valid). `given` as
    aiohttp read it: bytes that are not UTF-8 arrive as surrogates, and simply do not match."""
    given_bytes = given.encode("utf-8", "surrogateescape")
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(given_bytes, key)
    return matched


async def smartly_hook(request: web.Request) -> web.Response:
    bridge: Bridge = request.app[BRIDGE]
    metrics = bridge.metrics
    if not key_matches(request.query.get("key", ""), bridge.app_config.webhook_keys):
        metrics.webhook_event("unknown", "unauthorized")
        log.warning("webhook_rejected", status=401, reason="bad or missing key", remote=request.remote)
        return error(401, "unauthorized")
    limit = bridge.config().webhook.max_body_bytes
    try:
        encoding = encoding_of(request)
        raw = await raw_body(request, limit, bridge.app_config.settings.bridge_body_timeout_s)
        body = decoded(raw, encoding, limit)
    except BodyRejected as e:
        metrics.webhook_event("unknown", e.reason)
        log.warning("webhook_rejected", status=e.status, reason=e.message, limit=limit)
        return await rejected(request, e)
    try:
        event = parse_event(body)
    except IgnoredEvent as ignored:
        metrics.webhook_event("other", "ignored")
        log.info("webhook_ignored", smartly_event=ignored.event)
        return json_response({"ok": True, "ignored": ignored.event}, 202)
    except EventError as e:
        metrics.webhook_event("unknown", "invalid")
        log.warning("webhook_rejected", status=e.status, reason=e.message, missing=e.missing)
        extra = {"missing": e.missing} if e.missing else {}
        return error(e.status, e.message, **extra)
    fields = {"smartly_event": event.event, "skill_id": event.skill_id, "client_id": event.client_id}
    try:
        recorded = await bridge.handover.record(event, body_digest(body))
    except STORE_OR_TIMEOUT_ERRORS as e:
        return _unavailable(bridge, e, fields)
    return _recorded_answer(bridge, recorded, fields)


def _unavailable(bridge: Bridge, e: BaseException, fields: dict[str, str]) -> web.Response:
    """503: "unknown" when Redis may still run what the bridge stopped waiting for. Either way the
    sender may retry the identical body: the dedupe window answers it as a duplicate if recorded."""
    recorded = "no" if never_sent(e) else "unknown"
    bridge.metrics.webhook_event(fields["smartly_event"], "unavailable")
    bridge.metrics.redis_errors.labels("webhook").inc()
    log.error("webhook_unavailable", status=503, error=type(e).__name__, recorded=recorded, **fields)
    return error(503, "storage unavailable, retry later", recorded=recorded)


def _recorded_answer(bridge: Bridge, recorded: Recorded, fields: dict[str, str]) -> web.Response:
    result, decision, unreplicated = recorded
    metrics = bridge.metrics
    event = fields["smartly_event"]
    if unreplicated:
        # Recorded on the primary only: a failover now could lose it. The sender's retry is recorded
        # again if that happened (the dedupe key went with it), else it is answered as a duplicate.
        metrics.webhook_event(event, "unreplicated")
        log.warning("webhook_unreplicated", status=503, **unreplicated, **fields)
        return error(503, "not replicated in time, retry later")
    if not result.recorded:
        metrics.webhook_event(event, "duplicate")
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
            channel=",".join(decision.pool),
            hid=result.hid,
            **fields,
        )
        detail = f"hid={result.hid} trigger={decision.trigger} route={decision.route}"
        audit_soon(
            bridge.store, bridge.config().privacy, "opened", actor=SYSTEM, cid=result.cid, detail=detail
        )
    metrics.webhook_event(event, "recorded")
    info_line("webhook_recorded", {"queued": result.queued, **fields})
    return ok()


class BodySignatureVerifier(SignatureVerifier):
    """Slack's signature over the body's bytes as sent: slack_sdk decodes the body as UTF-8 first,
    which a compressed body is not (it would fail every gzip request)."""

    def generate_signature(self, *, timestamp: str, body: str | bytes) -> str | None:
        if timestamp is None:
            return None
        raw = body if isinstance(body, bytes) else body.encode()
        base = b"v0:" + timestamp.encode() + b":" + raw
        return "v0=" + hmac.new(self.signing_secret.encode(), base, hashlib.sha256).hexdigest()


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
    """The body, decoded, once its signature (over the body as sent) is valid; else the answer."""
    bridge: Bridge = request.app[BRIDGE]
    try:
        encoding = encoding_of(request)
        raw = await raw_body(request, SLACK_BODY_LIMIT, bridge.app_config.settings.bridge_body_timeout_s)
        if not _verified_body(request, raw, bridge):
            bridge.metrics.slack_events.labels("request", "unauthorized").inc()
            log.warning("slack_request_rejected", status=401, path=request.path)
            return bridge, error(401, "invalid signature")
        return bridge, decoded(raw, encoding, SLACK_BODY_LIMIT)
    except BodyRejected as e:
        log.warning("slack_request_rejected", status=e.status, path=request.path, reason=e.message)
        return bridge, await rejected(request, e)


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
        answer = await bridge.slack_events.on_interaction(payload)
    except PayloadError as e:
        bridge.metrics.slack_events.labels("interaction", "invalid_payload").inc()
        log.warning("slack_request_rejected", status=400, path=request.path, reason=e.problem)
        return error(400, f"invalid interaction payload: {e.problem}")
    except STORE_ERRORS as e:
        bridge.metrics.redis_errors.labels("interaction").inc()
        log.error("interaction_unavailable", status=503, error=type(e).__name__)
        return error(503, "storage unavailable, retry later")
    return json_response(answer) if answer else web.Response(status=200)  # (a modal's errors)


async def healthz(request: web.Request) -> web.Response:
    return ok()


async def readyz(request: web.Request) -> web.Response:
    """503 when this replica cannot do its job: Redis does not answer, or Slack refuses the token.
    The body always says how Redis, Slack and the config file stand, so an operator reads the cause."""
    bridge: Bridge = request.app[BRIDGE]
    health = bridge.slack_health
    body: dict[str, Any] = {
        "ok": True,
        "redis": "ok",
        "slack": health.state,
        "config": "ok" if bridge.holder.file_ok else "file_invalid",
        "config_path": bridge.app_config.config_path or "defaults",
    }
    try:
        await bridge.store.ping()
    except STORE_OR_SOCKET_ERRORS as e:
        body.update(
            ok=False, redis="unavailable", error="redis unavailable", reason=f"redis: {type(e).__name__}"
        )
        return json_response(body, 503)
    if health.ready_reason:
        body.update(ok=False, error="slack token refused", reason=health.ready_reason)
        if health.needed:
            body["needed"] = health.needed
        return json_response(body, 503)
    return json_response(body)


async def metrics(request: web.Request) -> web.Response:
    bridge: Bridge = request.app[BRIDGE]
    token = bridge.app_config.settings.bridge_metrics_token
    if token is not None and not bearer_matches(request, token.get_secret_value()):
        return error(401, "unauthorized")
    bridge.metrics.slack_auth_ok.set(0 if bridge.slack_health.paused else 1)
    try:
        pending = await bridge.store.pending_counts()
        for lane, count in pending.items():
            bridge.metrics.outbox_pending.labels(lane).set(count)
        bridge.metrics.handovers_open.set(await bridge.store.open_handover_count())
        if bridge.desk is not None:
            await bridge.desk.refresh_gauges()
    except STORE_ERRORS:
        bridge.metrics.redis_errors.labels("metrics").inc()
    return web.Response(body=bridge.metrics.render(), headers={"Content-Type": "text/plain; version=0.0.4"})


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def guarded(handler: Handler) -> Handler:
    """A bug must not leak a traceback (or anything from the request) to the caller. A wrapper per
    route rather than a middleware: aiohttp's middleware chain costs more than this whole check."""

    @functools.wraps(handler)
    async def guard(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException:
            raise
        except Exception:
            log.exception("request_failed", path=request.path, method=request.method)
            return error(500, "internal error")

    return guard


def not_allowed(allowed: str) -> Handler:
    """405 for any other method on a route, JSON with the `Allow` header (aiohttp's own is text)."""

    async def answer(request: web.Request) -> web.StreamResponse:
        log.warning(
            "request_rejected",
            status=405,
            reason=f"method {request.method[:16]} not allowed",
            path=request.path[:200],
        )
        response = error(405, f"method not allowed (allowed: {allowed})")
        response.headers["Allow"] = allowed
        return response

    return answer


async def not_found(request: web.Request) -> web.StreamResponse:
    log.warning("request_rejected", status=404, reason="no such endpoint", path=request.path[:200])
    return error(404, "not found")


def add_routes(app: web.Application) -> None:
    """Every endpoint; any other method or path gets a JSON 405 or 404 (aiohttp's are plain text)."""
    for path, handler in (
        ("/smartly/hooks", smartly_hook),
        ("/slack/events", slack_events),
        ("/slack/interactions", slack_interactions),
    ):
        app.router.add_post(path, guarded(handler))
        app.router.add_route("*", path, not_allowed("POST"))
    for path, handler in (("/healthz", healthz), ("/readyz", readyz), ("/metrics", metrics)):
        app.router.add_get(path, guarded(handler))
        app.router.add_route("*", path, not_allowed("GET, HEAD"))
    app.router.add_route("*", "/{tail:.*}", not_found)  # (matched last: the most specific path wins)
