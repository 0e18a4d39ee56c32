"""`bridge doctor`: the whole setup checked against the real services, one line per check, and for
each that fails the fix. Read-only: it never posts to Slack nor writes to Redis; the only message it
sends is a signed `ping` to the reply endpoint, which the reply contract says to answer with a 2xx.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import aiohttp
import orjson

from .channel_check import ARCHIVED, NOT_FOUND, NOT_MEMBER, channel_problem, fix_for
from .cli_redis import RedisUnreachable, connect_once, recorded_url, where
from .config import ConfigError, FileConfig
from .config.check import describe_pool
from .metrics import Metrics
from .replies import ReplyError, ReplySender
from .settings import AppConfig, Settings, SettingsError, default_config_path, load_app_config
from .slack_api import AUTH_ERRORS, SlackApi, SlackFailure
from .store import STORE_UNREACHABLE_ERRORS, AnyRedis, close_quietly

HTTP_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Check:
    check: str
    ok: bool
    detail: str
    fix: str = ""


# --- config --------------------------------------------------------------------------------------


def check_config(config_path: str | None) -> tuple[Check, AppConfig]:
    """The settings and the file as `bridge serve` reads them; on a problem, what can still be checked."""
    path = default_config_path(config_path)
    try:
        app_config = load_app_config(config_path, require=True)
    except ConfigError as e:
        fallback = AppConfig(settings=Settings(), file=FileConfig(), config_path=path)
        return Check("config", False, str(e).replace("\n", "; "), "fix the lines named above"), fallback
    except SettingsError as e:
        fallback = load_app_config(config_path, require=False)
        return Check("config", False, str(e), "set it in the environment (see the README)"), fallback
    channel = describe_pool(app_config.default_pool)
    source = "environment" if app_config.default_pool_source == "SLACK_CHANNEL" else "file"
    detail = f"{path or 'built-in defaults'} valid; default channel {channel} (from the {source})"
    return Check("config", True, detail), app_config


def configured_channels(app_config: AppConfig) -> list[str]:
    """Every channel a handover can land in, as the running bridge checks them (settings.py)."""
    try:
        return app_config.channels_in(app_config.file)
    except SettingsError:  # a bad SLACK_CHANNEL (the config check says so): the file's channels
        return list(dict.fromkeys(app_config.file.channel_ids()))


def needed_scopes(app_config: AppConfig, channels: Iterable[str]) -> list[str]:
    """The bot scopes the configured features use (README: Slack app setup)."""
    private = any(c.startswith("G") for c in channels)
    public = any(not c.startswith("G") for c in channels)
    scopes = ["chat:write", "users:read"]  # posts and root updates; agents' names
    if public:
        scopes += ["channels:history", "channels:read"]  # thread replies, crash lookups; channel check
    if private:
        scopes += ["groups:history", "groups:read"]
    if any(agent.startswith("S") for agent in app_config.file.slack.agents or ()):
        scopes.append("usergroups:read")  # slack.agents names user groups
    if app_config.replies_enabled:
        scopes.append("reactions:write")  # receipts on agents' replies
    if app_config.file_links is not None:
        scopes.append("files:read")  # files agents share, relayed as links
    if app_config.file.history.shown_on_open > 0:
        scopes.append("files:write")  # a long history's transcript file, attached to its thread
    return scopes


# --- Redis ---------------------------------------------------------------------------------------


async def redis_checks(app_config: AppConfig) -> list[Check]:
    url = app_config.settings.redis_url or recorded_url(app_config)
    if not url:
        data = Path(app_config.settings.bridge_data_dir) / "redis-url"
        return [
            Check(
                "redis",
                False,
                f"no REDIS_URL, and no embedded server written down in {data}",
                "start the bridge (make run) so its embedded Valkey runs, or set REDIS_URL",
            )
        ]
    try:
        client = await connect_once(url, app_config.redis_cluster)
    except RedisUnreachable as e:
        return [Check("redis", False, str(e), "start Redis, or fix REDIS_URL (and REDIS_CLUSTER)")]
    try:
        return await _redis_details(client, url)
    except STORE_UNREACHABLE_ERRORS as e:
        return [Check("redis", False, f"{where(url)}: {type(e).__name__}", "check the Redis server's logs")]
    finally:
        await close_quietly(client)


def _one_node(info: Any) -> dict[str, Any]:
    """A cluster client answers INFO per node: any node tells the version and settings."""
    first = next(iter(info.values()), None) if info else None
    return first if isinstance(first, dict) and "redis_version" not in info else info


async def _redis_details(client: AnyRedis, url: str) -> list[Check]:
    server = _one_node(await client.info("server"))
    version = server.get("valkey_version") or server.get("redis_version") or "?"
    name = "Valkey" if server.get("valkey_version") or server.get("server_name") == "valkey" else "Redis"
    checks = [Check("redis", True, f"{where(url)} answers: {name} {version}")]
    persistence = _one_node(await client.info("persistence"))
    aof = str(persistence.get("aof_enabled", "0")) == "1"
    try:
        save = _one_node(await client.config_get("save")).get("save", "")
    except STORE_UNREACHABLE_ERRORS:  # managed services may refuse CONFIG
        save = ""
    if aof or save:
        detail = ", ".join(["AOF on"] * aof + [f"RDB on (save {save})"] * bool(save))
        checks.append(Check("redis persistence", True, detail))
    else:
        checks.append(
            Check(
                "redis persistence",
                True,
                "warning: neither AOF nor RDB is on, a Redis restart loses every queued post",
                "turn on appendonly yes (AOF) or RDB snapshots (save) in the Redis config",
            )
        )
    return checks


# --- Slack ---------------------------------------------------------------------------------------


class Slack:
    """Raw Web API calls: doctor needs Slack's response headers (x-oauth-scopes), not just the body."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str) -> None:
        self.session = session
        self.base_url = base_url

    async def call(self, method: str, token: str, **params: str) -> tuple[dict[str, Any], str]:
        """(body, granted scopes); the body is {"ok": false, "error": ...} when it could not be had."""
        try:
            async with self.session.post(
                urljoin(self.base_url, method), data=params, headers={"Authorization": f"Bearer {token}"}
            ) as response:
                raw = await response.read()
                scopes = response.headers.get("x-oauth-scopes", "")
                status = response.status
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            return {"ok": False, "error": f"unreachable: {type(e).__name__}"}, ""
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            data = None
        if not isinstance(data, dict):
            return {"ok": False, "error": f"http_{status}"}, scopes
        return data, scopes


def _token_fix(code: str, needed: str | None = None) -> str:
    if code in AUTH_ERRORS:
        return SlackFailure(code, auth=True, needed=needed).fix()
    if code.startswith(("unreachable", "http_")):
        return "check the network path to Slack (SLACK_API_URL, proxy, firewall)"
    return "check SLACK_BOT_TOKEN (the app's Bot User OAuth Token, xoxb-...)"


async def slack_checks(slack: Slack, app_config: AppConfig) -> list[Check]:
    token = app_config.settings.slack_bot_token
    if token is None or not token.get_secret_value():
        return [Check("slack token", False, "SLACK_BOT_TOKEN is not set", _token_fix("not_authed"))]
    bot_token = token.get_secret_value()
    auth, granted = await slack.call("auth.test", bot_token)
    if not auth.get("ok"):
        code = str(auth.get("error", "?"))
        return [Check("slack token", False, f"auth.test: {code}", _token_fix(code, auth.get("needed")))]
    bot = str(auth.get("user") or auth.get("user_id") or "your app")
    workspace = f"{auth.get('team', '?')} ({auth.get('team_id', '?')})"
    checks = [Check("slack token", True, f"workspace {workspace}, bot @{bot} ({auth.get('user_id', '?')})")]
    channels = configured_channels(app_config)
    checks.append(scope_check(needed_scopes(app_config, channels), granted))
    api = SlackApi.create(bot_token, slack.base_url, slack.session, Metrics(), timeout_s=HTTP_TIMEOUT_S)
    for channel in channels:
        checks.append(await channel_check(api, channel, bot))
    return checks


def scope_check(needed: list[str], granted_header: str) -> Check:
    granted = {s.strip() for s in granted_header.split(",") if s.strip()}
    missing = [scope for scope in needed if scope not in granted]
    if missing:
        return Check(
            "slack scopes",
            False,
            f"missing {', '.join(missing)} (granted: {', '.join(sorted(granted)) or 'none'})",
            f"add {', '.join(missing)} under OAuth & Permissions → Bot Token Scopes, reinstall the app, "
            "update SLACK_BOT_TOKEN",
        )
    return Check("slack scopes", True, f"{', '.join(needed)} granted")


async def channel_check(api: SlackApi, channel: str, bot: str) -> Check:
    """As the running bridge checks it at start (channel_check.py), with the same fixes."""
    name = f"slack channel {channel}"
    try:
        reason = await channel_problem(api, channel)
    except SlackFailure as e:
        return Check(name, False, f"conversations.info: {e.reason}", _token_fix(e.reason, e.needed))
    if reason is None:
        return Check(name, True, "exists, not archived, the bot is a member")
    detail = {
        NOT_FOUND: "channel_not_found: no such channel, or a private one the bot is not in",
        ARCHIVED: "the channel is archived",
        NOT_MEMBER: "the bot is not a member",
    }.get(reason, reason)
    return Check(name, False, detail, fix_for(reason, bot))


async def socket_mode_checks(slack: Slack, app_config: AppConfig) -> list[Check]:
    settings = app_config.settings
    app_token = settings.slack_app_token.get_secret_value() if settings.slack_app_token else ""
    signing = settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret else ""
    if not app_token:
        if signing:
            return [Check("slack signing secret", True, "SLACK_SIGNING_SECRET set (HTTP request URLs)")]
        return [
            Check(
                "slack signing secret",
                False,
                "SLACK_SIGNING_SECRET is not set: /slack/events and /slack/interactions answer 401",
                "copy Basic Information → Signing Secret into SLACK_SIGNING_SECRET (or use Socket Mode)",
            )
        ]
    data, _ = await slack.call("apps.connections.open", app_token)
    if not data.get("ok"):
        return [
            Check(
                "slack socket mode",
                False,
                f"apps.connections.open: {data.get('error', '?')}",
                "check SLACK_APP_TOKEN: an app-level token (xapp-...) with connections:write, "
                "Socket Mode enabled under Settings → Socket Mode",
            )
        ]
    return [
        Check("slack socket mode", True, "apps.connections.open issued a connection URL"),
        Check("slack signing secret", True, "not needed with Socket Mode"),
    ]


# --- the reply endpoint ----------------------------------------------------------------------------


async def reply_check(session: aiohttp.ClientSession, app_config: AppConfig) -> Check:
    settings = app_config.settings
    if not settings.bridge_reply_url:
        return Check("reply endpoint", True, "BRIDGE_REPLY_URL not set: agents' replies are not relayed")
    secret = settings.bridge_reply_secret.get_secret_value() if settings.bridge_reply_secret else ""
    ping = {
        "type": "ping",
        "id": f"ping:{uuid.uuid4().hex}",
        "at": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    }
    sender = ReplySender(session, settings.bridge_reply_url, secret, timeout_s=HTTP_TIMEOUT_S)
    started = time.monotonic()
    try:
        await sender.send(orjson.dumps(ping))
    except ReplyError as e:
        if e.reason in ("http_401", "http_403"):
            fix = "the endpoint refused the signature: set the same BRIDGE_REPLY_SECRET on both sides"
        elif e.reason.startswith("unreachable"):
            fix = "check BRIDGE_REPLY_URL and that your backend is running"
        else:
            fix = 'answer {"type": "ping"} with a 2xx (README: Reply endpoint)'
        return Check("reply endpoint", False, f"signed ping: {e.reason}", fix)
    took_ms = (time.monotonic() - started) * 1000
    return Check("reply endpoint", True, f"answered the signed ping with a 2xx in {took_ms:.0f} ms")


# --- the command -----------------------------------------------------------------------------------


async def run_checks(config_path: str | None) -> list[Check]:
    config, app_config = check_config(config_path)
    checks = [config, *await redis_checks(app_config)]
    timeout = aiohttp.ClientTimeout(total=HTTP_TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        slack = Slack(session, app_config.settings.slack_api_url)
        checks += await slack_checks(slack, app_config)
        checks += await socket_mode_checks(slack, app_config)
        checks.append(await reply_check(session, app_config))
    return checks


def render(checks: list[Check]) -> str:
    lines = []
    for check in checks:
        lines.append(f"{'✓' if check.ok else '✗'} {check.check}: {check.detail}")
        if check.fix:
            lines.append(f"    fix: {check.fix}")
    failed = sum(not check.ok for check in checks)
    lines.append(f"{len(checks) - failed} of {len(checks)} checks passed" if failed else "all checks passed")
    return "\n".join(lines)


def doctor_main(config_path: str | None, as_json: bool) -> int:
    """0 when every check passes, 1 otherwise."""
    checks = asyncio.run(run_checks(config_path))
    if as_json:
        print(orjson.dumps([asdict(check) for check in checks]).decode())
    else:
        print(render(checks))
    sys.stdout.flush()
    return 0 if all(check.ok for check in checks) else 1
