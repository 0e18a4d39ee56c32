"""App factory: routes plus one cleanup context per resource (Redis, HTTP client, bridge, upkeep)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import signal
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import structlog
from aiohttp import web
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from .admin_web import add_admin_routes
from .agents import AgentDirectory
from .cli_redis import URL_FILE
from .delivery import Deliverer, DeliveryContext, FileLane, Lane, ReplyLane, SlackLane
from .desk import create_desk, start_desk
from .embedded import EmbeddedValkey
from .handover import Handover
from .health import AUTH_RETRY_S, SlackHealth
from .http_server import serve_app
from .keys import REPLY, SLACK
from .metrics import Metrics
from .notices import Notifier
from .privacy.audit import SYSTEM, audit
from .reload import ConfigHolder
from .replies import ReplySender
from .runtime import BRIDGE, Bridge
from .settings import AppConfig
from .slack_api import SlackApi, SlackFailure
from .slack_events import SlackEvents
from .slack_upkeep import slack_upkeep
from .socket_mode import socket_mode_ctx
from .store import STORE_DEADLINE_S, STORE_ERRORS, STORE_OR_SOCKET_ERRORS, AnyRedis, Store, close_quietly
from .web import BodySignatureVerifier, add_routes
from .web_files import add_file_routes

log = structlog.get_logger("bridge.app")

REDIS = web.AppKey("redis", object)
HTTP = web.AppKey("http", aiohttp.ClientSession)
METRICS = web.AppKey("metrics", Metrics)
CONNECT_ATTEMPTS = 20


def autopipelined(app_config: AppConfig) -> bool:
    """Whether the bridge runs the autopipelining client (standalone Redis, redis.autopipeline)."""
    return app_config.file.redis.autopipeline and not app_config.redis_cluster


def redis_client(url: str, cluster: bool, autopipeline: bool = True) -> AnyRedis:
    """A client that fails fast (bounded retries, short timeouts): a webhook answers 503 rather than hang."""
    options: dict[str, Any] = {
        # Per connection pool (per node in cluster mode, where an exhausted pool fails at once).
        "max_connections": 256,
        "socket_timeout": 5.0,
        "socket_connect_timeout": 2.0,
        "retry": Retry(ExponentialBackoff(cap=0.5, base=0.05), 2),
        "health_check_interval": 15,
    }
    if cluster:
        return RedisCluster.from_url(url, **options)
    if not autopipeline:
        return Redis.from_url(url, **options)
    # Single commands from concurrent webhooks and workers share round trips (autopipeline.py). Imported
    # here: it checks redis-py's private names at import, which plain redis-py does not need.
    from .autopipeline import AutoPipelineRedis

    return AutoPipelineRedis.from_url(url, batch_timeout=STORE_DEADLINE_S, **options)


async def connect(
    url: str, cluster: bool, attempts: int = CONNECT_ATTEMPTS, *, autopipeline: bool = True
) -> AnyRedis:
    """Bounded connect-retry, confirmed with PING."""
    last: Exception | None = None
    for attempt in range(attempts):
        client = redis_client(url, cluster, autopipeline)
        try:
            await client.ping()
            return client
        except STORE_OR_SOCKET_ERRORS as e:  # e.g. a cluster still electing: not all slots covered
            last = e
            await close_quietly(client)
            log.warning("redis_connect_retry", attempt=attempt + 1, error=type(e).__name__)
            await asyncio.sleep(min(0.1 * 2**attempt, 2.0))
    raise RuntimeError(f"cannot reach Redis: {type(last).__name__}: {last}")


def create_app(app_config: AppConfig, *, handle_signals: bool = False) -> web.Application:
    # Bodies are decompressed by the endpoints (bridge/http_body.py): Slack signs them as sent.
    app = web.Application(handler_args={"auto_decompress": False})
    app[METRICS] = Metrics()
    app.cleanup_ctx.append(_redis_ctx(app_config))
    app.cleanup_ctx.append(_http_ctx)
    app.cleanup_ctx.append(_bridge_ctx(app_config))
    app.cleanup_ctx.append(_upkeep_ctx(handle_signals))
    app.cleanup_ctx.append(socket_mode_ctx(app_config))  # last in, first out: events stop before workers
    add_routes(app)
    add_admin_routes(app)
    add_file_routes(app)
    return app


def _redis_ctx(app_config: AppConfig):
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        embedded: EmbeddedValkey | None = None
        url = app_config.settings.redis_url
        if not url:
            data_dir = app_config.settings.bridge_data_dir
            embedded = EmbeddedValkey(data_dir)
            url = await embedded.start()
            (data_dir / URL_FILE).write_text(url)  # lets `bridge outbox ...` find this server
            log.info(
                "embedded_valkey_started",
                data_dir=str(data_dir.resolve()),
                url=url,
                note="no REDIS_URL set: using an embedded valkey-server with append-only persistence",
            )
        client = await connect(url, app_config.redis_cluster, autopipeline=autopipelined(app_config))
        app[REDIS] = client
        try:
            yield
        finally:
            await close_quietly(client)
            if embedded is not None:
                await embedded.stop()
                log.info("embedded_valkey_stopped")

    return ctx


async def _http_ctx(app: web.Application) -> AsyncIterator[None]:
    session = aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=30), connector=aiohttp.TCPConnector(limit=200)
    )
    app[HTTP] = session
    yield
    await session.close()


def _bridge_ctx(app_config: AppConfig):
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        holder = ConfigHolder(app_config.config_path, app_config.file)
        metrics = app[METRICS]
        store = Store(
            app[REDIS],  # type: ignore[arg-type]
            partitions=app_config.file.redis.partitions,
            client_deadline_s=STORE_DEADLINE_S if autopipelined(app_config) else None,
        )
        await store.check_partitions()
        slack = _slack_api(app_config, app[HTTP], metrics)
        delivery_settings = lambda: holder.current.delivery  # noqa: E731
        slack_health = SlackHealth()  # what delivery, /readyz and metrics know of the token, shared
        ctx = DeliveryContext(store, metrics, delivery_settings, app_config.replies_enabled, slack_health)
        ctx.history = lambda: holder.current.history
        lanes = _lanes(app_config, holder, ctx, slack, app[HTTP])
        deliverer = Deliverer(store, lanes, delivery_settings, metrics)
        bridge = Bridge(
            app_config=app_config,
            holder=holder,
            metrics=metrics,
            store=store,
            slack=slack,
            handover=Handover(
                store, lambda: holder.current, lambda: app_config.default_pool_in(holder.current)
            ),
            deliverer=deliverer,
            slack_events=None,  # type: ignore[arg-type]
            signature_verifier=_signature_verifier(app_config),
            slack_health=slack_health,
        )
        _attach_agent_side(bridge)
        app[BRIDGE] = bridge
        identity_task = asyncio.create_task(_fetch_identity(bridge))
        deliverer.start()
        log.info(
            "bridge_started",
            partitions=store.partitions,
            worker=deliverer.worker,
            replies=app_config.replies_enabled,
            lanes=[lane.name for lane in lanes],
        )
        try:
            yield
        finally:
            identity_task.cancel()
            await _stop(bridge)

    return ctx


async def _stop(bridge: Bridge) -> None:
    """Deliveries in flight finish (within the grace) and are committed; ephemerals queued go out."""
    await bridge.deliverer.stop(bridge.config().delivery.shutdown_grace_s)
    if bridge.slack_events.notifier:
        await bridge.slack_events.notifier.drain()
    log.info("bridge_stopped")


def _slack_api(app_config: AppConfig, http: aiohttp.ClientSession, metrics: Metrics) -> SlackApi:
    settings = app_config.settings
    token = settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else ""
    # A Slack call must end well within a worker's lease, or another worker could take over mid-post.
    timeout_s = min(10.0, app_config.file.delivery.lease_s / 2)
    return SlackApi.create(token, settings.slack_api_url, http, metrics, timeout_s=timeout_s)


def _lanes(
    app_config: AppConfig,
    holder: ConfigHolder,
    ctx: DeliveryContext,
    slack: SlackApi,
    http: aiohttp.ClientSession,
) -> list[Lane]:
    """Slack's lanes (posts, files) and, with a reply endpoint, the reply lane."""
    settings = app_config.settings
    lanes: list[Lane] = [SlackLane(ctx, slack), FileLane(ctx, slack)]
    if app_config.replies_enabled and settings.bridge_reply_secret:
        sender = ReplySender(
            http,
            settings.bridge_reply_url or "",
            settings.bridge_reply_secret.get_secret_value(),
            timeout_s=min(app_config.file.replies.timeout_s, app_config.file.delivery.lease_s / 2),
        )
        lanes.append(ReplyLane(ctx, sender, slack, lambda: holder.current.replies))
    return lanes


def _signature_verifier(app_config: AppConfig) -> BodySignatureVerifier | None:
    secret = app_config.settings.slack_signing_secret
    if secret and secret.get_secret_value():
        return BodySignatureVerifier(secret.get_secret_value())
    log.warning("slack_signing_secret_missing", effect="/slack/events and /slack/interactions answer 401")
    return None


def _attach_agent_side(bridge: Bridge) -> None:
    """What agents see and do: the desk (Home tab, modals) and the Slack event handlers."""
    app_config, holder, store, slack = bridge.app_config, bridge.holder, bridge.store, bridge.slack
    bridge.desk = create_desk(
        store,
        slack,
        config=lambda: holder.current,
        metrics=bridge.metrics,
        wake=bridge.deliverer.wake,
        replies_enabled=app_config.replies_enabled,
        identity=lambda: bridge.identity,
        default_pool=lambda: app_config.default_pool_in(holder.current),
    )
    bridge.slack_events = SlackEvents(
        store=store,
        identity=lambda: bridge.identity,
        config=lambda: holder.current,
        metrics=bridge.metrics,
        wake=bridge.deliverer.wake,
        replies_enabled=app_config.replies_enabled,
        agents=AgentDirectory(slack, store, lambda: holder.current),
        notifier=Notifier(slack),
        desk=bridge.desk,
        file_links=app_config.file_links,
    )
    bridge.desk.refusal = bridge.slack_events._refusal  # (the Home tab shows agents the queue only)


async def _fetch_identity(bridge: Bridge) -> None:
    """auth.test once at start (retried until Slack answers): who "we" are, to ignore our own messages.
    Its answer is the first word on the token: a refusal makes /readyz 503 and names the setting."""
    delay = 1.0
    while bridge.identity is None:
        try:
            bridge.identity = await bridge.slack.identity()
        except SlackFailure as e:
            if e.auth:
                bridge.slack_health.auth_failed(e.reason, e.needed)
                log.error("slack_auth_failed", code=e.reason, needed=e.needed, fix=e.fix(), call="auth.test")
                await asyncio.sleep(AUTH_RETRY_S)  # until the owner fixes the token: no faster, no slower
                continue
            bridge.slack_health.unreachable()
            log.warning("slack_identity_failed", reason=e.reason, retry_in_s=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 60.0)
            continue
        bridge.slack_health.ok()
        log.info("slack_identity", user_id=bridge.identity.user_id, bot_id=bridge.identity.bot_id)


def _upkeep_ctx(handle_signals: bool):
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        bridge = app[BRIDGE]
        stop = asyncio.Event()
        tasks = [
            asyncio.create_task(_resolve_idle_forever(bridge, stop)),
            asyncio.create_task(bridge.holder.watch()),
        ]
        if bridge.slack_events.agents:
            tasks.append(asyncio.create_task(slack_upkeep(bridge, bridge.slack_events.agents, stop)))
        if bridge.desk is not None:
            tasks += start_desk(bridge.desk, bridge.deliverer.worker, stop)
        loop = asyncio.get_running_loop()
        if handle_signals:
            loop.add_signal_handler(signal.SIGHUP, bridge.holder.reload)
        try:
            yield
        finally:
            if handle_signals:
                loop.remove_signal_handler(signal.SIGHUP)
            stop.set()
            # redis-py may turn a cancellation in flight into a ConnectionError, so loops stop on
            # `stop` rather than relying on cancel() alone.
            await asyncio.wait(tasks, timeout=2.0)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    return ctx


# How often the idle sweep checks the channel pools' counts against the conversations (a handover
# whose "left its channel" call was lost in a crash stops counting then).
RECONCILE_EVERY_S = 60.0


async def _resolve_idle_forever(bridge: Bridge, stop: asyncio.Event) -> None:
    """Auto-resolve handovers with no activity for handover.idle_timeout (any replica may do it:
    the resolve script re-checks the last activity atomically)."""
    next_reconcile = 0.0
    while not stop.is_set():
        idle_s = bridge.config().handover.idle_timeout_s
        try:
            await resolve_idle(bridge, idle_s)
            if time.monotonic() >= next_reconcile:  # channel pools' counts, checked once a minute
                next_reconcile = time.monotonic() + RECONCILE_EVERY_S
                if dropped := await bridge.store.reconcile_placements():
                    log.info("channel_placements_reconciled", dropped=dropped)
        except STORE_ERRORS as e:
            bridge.metrics.redis_errors.labels("idle_sweep").inc()
            log.warning("idle_sweep_failed", error=type(e).__name__)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=min(max(idle_s / 5, 0.2), 15.0))


async def resolve_idle(bridge: Bridge, idle_s: float) -> int:
    now_ms = int(time.time() * 1000)
    before = now_ms - int(idle_s * 1000)
    resolved = 0
    for partition in range(bridge.store.partitions):
        for cid in await bridge.store.idle_handovers(partition, before):
            if bridge.desk is not None:  # (its reopen window, numbers and Home tab)
                resolve = functools.partial(bridge.desk.resolve, cid)
            else:
                resolve = functools.partial(
                    bridge.store.resolve_handover,
                    cid,
                    now_ms=now_ms,
                    replies=bridge.app_config.replies_enabled,
                )
            status = await resolve(
                thread_ts="", agent_id="", agent_name="", reason="idle", idle_before_ms=before
            )
            if status > 0:
                resolved += 1
                log.info("handover_resolved_idle", cid=cid, idle_s=idle_s)
                await audit(
                    bridge.store, bridge.config().privacy, "resolved", actor=SYSTEM, cid=cid, detail="idle"
                )
                bridge.deliverer.wake(SLACK, partition)
                bridge.deliverer.wake(REPLY, partition)
    return resolved


def serve(app_config: AppConfig) -> None:
    """Run until SIGTERM/SIGINT: stop accepting, finish or hand back deliveries, exit."""
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    settings = app_config.settings
    app = create_app(app_config, handle_signals=True)
    app.on_startup.append(_freeze_heap)
    log.info("listening", host=settings.bridge_host, port=settings.bridge_port)
    serve_app(
        app,
        host=settings.bridge_host,
        port=settings.bridge_port,
        backlog=1024,
        shutdown_timeout=app_config.file.delivery.shutdown_grace_s,
    )


async def _freeze_heap(app: web.Application) -> None:
    """Everything alive once started (modules, config, clients) lives as long as the process: take
    it out of the garbage collector's sight, which otherwise walks it again and again under load."""
    gc.collect()
    gc.freeze()
