"""Admin HTTP endpoints (privacy): DELETE /admin/conversations/{skill_id}/{client_id}.

Off unless BRIDGE_ADMIN_TOKEN is set: without it the routes answer 404, as if they did not exist;
with it, `Authorization: Bearer <token>` or 401. Thin: the work is in privacy/forget.py.
"""

from __future__ import annotations

import structlog
from aiohttp import web

from .keys import REPLY, SLACK
from .privacy.audit import ADMIN
from .privacy.forget import SlackCleaner, forget
from .runtime import BRIDGE, Bridge
from .slack_api import SlackFailure
from .store import STORE_ERRORS
from .web import bearer_matches, error, guarded, json_response

log = structlog.get_logger("bridge.admin")


def _authorized(request: web.Request, bridge: Bridge) -> web.Response | None:
    """None when the request may go on; else the answer (404 admin off, 401 wrong token)."""
    token = bridge.app_config.settings.bridge_admin_token
    if token is None or not token.get_secret_value():
        return error(404, "not found")
    if not bearer_matches(request, token.get_secret_value()):
        log.warning("admin_rejected", status=401, path=request.path, remote=request.remote)
        return error(401, "unauthorized")
    return None


async def forget_conversation(request: web.Request) -> web.Response:
    bridge: Bridge = request.app[BRIDGE]
    refused = _authorized(request, bridge)
    if refused is not None:
        return refused
    skill_id, client_id = request.match_info["skill_id"], request.match_info["client_id"]
    with_slack = request.query.get("slack", "").lower() in ("1", "true", "yes")

    def wake(partition: int) -> None:
        bridge.deliverer.wake(SLACK, partition)
        bridge.deliverer.wake(REPLY, partition)

    try:
        cleaner = None
        if with_slack:
            me = bridge.identity or await bridge.slack.identity()
            cleaner = SlackCleaner(bridge.slack, bridge.store, me, bridge.config().delivery)
        report = await forget(
            bridge.store,
            skill_id,
            client_id,
            replies=bridge.app_config.replies_enabled,
            privacy=bridge.config().privacy,
            actor=ADMIN,
            cleaner=cleaner,
            wake=wake,
        )
    except SlackFailure as e:
        log.error("forget_failed", status=502, reason=e.reason, skill_id=skill_id, client_id=client_id)
        message = "Slack refused a deletion; nothing was removed from Redis, run it again"
        return error(502, message, reason=e.reason, **({"fix": e.fix()} if e.auth else {}))
    except STORE_ERRORS as e:
        bridge.metrics.redis_errors.labels("admin").inc()
        log.error("forget_unavailable", status=503, error=type(e).__name__)
        return error(503, "storage unavailable, retry later")
    answer = report.as_dict()
    log.info("conversation_forgotten", skill_id=skill_id, client_id=client_id, **answer["removed"])
    return json_response({"ok": True, **answer})


def add_admin_routes(app: web.Application) -> None:
    app.router.add_delete("/admin/conversations/{skill_id}/{client_id}", guarded(forget_conversation))
