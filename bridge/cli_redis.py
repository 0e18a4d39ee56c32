"""How a command at the operator's prompt reaches the bridge's Redis: at once or not at all.

A running bridge retries its connection (a Redis restarting is normal there). An operator wants an
answer in a second: one PING per candidate, no retry lines, and "cannot reach Redis" in one line.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

from .settings import AppConfig
from .store import STORE_UNREACHABLE_ERRORS, AnyRedis, Store, close_quietly

URL_FILE = "redis-url"  # written by `bridge serve` on embedded Valkey, next to its data
CONNECT_TIMEOUT_S = 3.0


class RedisUnreachable(RuntimeError):
    """Redis did not answer one PING: the message is the one line the operator reads."""


def where(url: str) -> str:
    """host:port of a Redis URL, never its password."""
    parts = urlsplit(url)
    return f"{parts.hostname or '?'}:{parts.port or 6379}"


async def connect_once(url: str, cluster: bool) -> AnyRedis:
    """One PING, bounded in time; RedisUnreachable when it gets no answer."""
    from .app import redis_client  # the running bridge's client options, not a copy of them

    client = redis_client(url, cluster, autopipeline=False)  # a few commands: plain redis-py
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            await client.ping()
    except STORE_UNREACHABLE_ERRORS as e:
        await close_quietly(client)
        raise RedisUnreachable(f"cannot reach Redis at {where(url)}: {type(e).__name__}") from e
    return client


def recorded_url(app_config: AppConfig) -> str:
    """The embedded server's URL a running bridge wrote down ("" when there is none)."""
    url_file = Path(app_config.settings.bridge_data_dir) / URL_FILE
    return url_file.read_text().strip() if url_file.exists() else ""


@contextlib.asynccontextmanager
async def cli_redis(app_config: AppConfig) -> AsyncIterator[tuple[AnyRedis, str]]:
    """The bridge's Redis and where it is: REDIS_URL, else the embedded server a running bridge wrote
    down, else (bridge stopped) a temporary embedded server on the same data dir."""
    from .embedded import EmbeddedValkey

    url = app_config.settings.redis_url or ""
    client: AnyRedis | None = None
    embedded = None
    if not url:
        url = recorded_url(app_config)
        if url:
            with contextlib.suppress(RedisUnreachable):  # a stale file: the bridge is stopped
                client = await connect_once(url, False)
        if client is None:
            embedded = EmbeddedValkey(Path(app_config.settings.bridge_data_dir))
            url = await embedded.start()
    try:
        if client is None:
            client = await connect_once(url, app_config.redis_cluster)
        yield client, url
    finally:
        if client is not None:
            await close_quietly(client)
        if embedded is not None:
            await embedded.stop()


@contextlib.asynccontextmanager
async def cli_store(app_config: AppConfig) -> AsyncIterator[Store]:
    async with cli_redis(app_config) as (client, _):
        yield Store(client, partitions=app_config.file.redis.partitions)
