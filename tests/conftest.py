"""Shared fixtures: one real valkey-server per session (flushed per test), the fake Slack Web API,
the fake reply endpoint, and (only for tests that ask) a real 3×2 Valkey cluster.

Servers are plain child processes (see bridge/embedded.py), so session/module fixtures start and stop
them with asyncio.run() from sync fixtures: they work the same whatever event loop a test runs in.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest

from bridge.embedded import EmbeddedValkey
from tests.harness.fake_reply import DEFAULT_SECRET, FakeReply
from tests.harness.fake_slack import DEFAULT_TOKEN, FakeSlack
from tests.harness.valkey import ValkeyCluster, flushall, start_valkey


@pytest.fixture(scope="session")
def valkey_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedValkey]:
    """The session's single-node valkey-server (AOF on, data under pytest's tmp dir)."""
    server = asyncio.run(start_valkey(tmp_path_factory.mktemp("valkey")))
    try:
        yield server
    finally:
        asyncio.run(server.stop())


@pytest.fixture
async def redis_url(valkey_server: EmbeddedValkey) -> AsyncIterator[str]:
    """redis://127.0.0.1:PORT/0 of the session server, FLUSHALLed before the test."""
    yield await fresh_redis_url(valkey_server)


async def fresh_redis_url(server: EmbeddedValkey) -> str:
    """The session server's URL, emptied: no test sees what another left behind."""
    await flushall(server.url)
    return server.url


@pytest.fixture
async def fake_slack() -> AsyncIterator[FakeSlack]:
    """A started FakeSlack (token DEFAULT_TOKEN); use fake_slack.url as slack-sdk's base_url."""
    fake = FakeSlack(token=DEFAULT_TOKEN)
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


@pytest.fixture
async def fake_reply() -> AsyncIterator[FakeReply]:
    """A started FakeReply verifying signatures with DEFAULT_SECRET; POST to fake_reply.url."""
    fake = FakeReply(secret=DEFAULT_SECRET)
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ValkeyCluster]:
    """A healthy 3 primaries + 3 replicas cluster for this module (not flushed between tests)."""
    nodes = ValkeyCluster(tmp_path_factory.mktemp("cluster"))
    try:
        asyncio.run(nodes.start(timeout_s=30))
        yield nodes
    finally:
        asyncio.run(nodes.stop())


# --- bridge fixtures ---

from collections.abc import Awaitable, Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from aiohttp.test_utils import TestClient, TestServer  # noqa: E402

from bridge.app import create_app  # noqa: E402
from bridge.config import FileConfig  # noqa: E402
from bridge.settings import AppConfig, Settings  # noqa: E402
from tests.helpers import CHANNEL, SIGNING_SECRET, WEBHOOK_KEY, BridgeClient  # noqa: E402

# Fast, unthrottled delivery for functional tests; fault tests pass their own `delivery`.
TEST_DELIVERY = {
    "posts_per_second": 1000,
    "burst": 1000,
    "poll_interval": "100ms",
    "backoff_base": "100ms",
    "backoff_max": "1s",
    "lease": "5s",
    "shutdown_grace": "2s",
}


def app_config(
    redis_url: str,
    slack_url: str,
    *,
    reply_url: str | None = None,
    file: dict[str, Any] | None = None,
    config_path: str | None = None,
    **env: Any,
) -> AppConfig:
    """An AppConfig as the environment + config.yaml would give it, without touching os.environ."""
    values: dict[str, Any] = {
        "redis_url": redis_url,
        "smartly_webhook_key": WEBHOOK_KEY,
        "slack_bot_token": DEFAULT_TOKEN,
        "slack_api_url": slack_url,
        "slack_channel": CHANNEL,
        "slack_signing_secret": SIGNING_SECRET,
        "bridge_reply_url": reply_url,
        "bridge_reply_secret": DEFAULT_SECRET if reply_url else None,
    }
    values.update(env)
    raw = {"delivery": dict(TEST_DELIVERY)}
    for section, content in (file or {}).items():
        raw[section] = {**raw.get(section, {}), **content} if isinstance(content, dict) else content
    return AppConfig(
        settings=Settings(**values), file=FileConfig.model_validate(raw), config_path=config_path
    )


MakeBridge = Callable[..., Awaitable[BridgeClient]]


async def serve_bridge(config: AppConfig, clients: list[TestClient]) -> BridgeClient:
    """An in-process bridge on real HTTP (127.0.0.1); the caller closes `clients` at teardown."""
    client = TestClient(TestServer(create_app(config), host="127.0.0.1"))
    await client.start_server()
    clients.append(client)
    return BridgeClient(client)


@pytest.fixture
async def make_bridge(
    redis_url: str, fake_slack: FakeSlack, fake_reply: FakeReply
) -> AsyncIterator[MakeBridge]:
    """Start bridges (in-process, real HTTP on 127.0.0.1) sharing the test's Redis and fakes."""
    clients: list[TestClient] = []

    async def make(
        *,
        replies: bool = True,
        file: dict[str, Any] | None = None,
        config_path: str | Path | None = None,
        **env: Any,
    ) -> BridgeClient:
        config = app_config(
            redis_url,
            fake_slack.url,
            reply_url=fake_reply.url if replies else None,
            file=file,
            config_path=str(config_path) if config_path else None,
            **env,
        )
        return await serve_bridge(config, clients)

    yield make
    for client in reversed(clients):
        await client.close()


@pytest.fixture
async def bridge(make_bridge: MakeBridge) -> BridgeClient:
    return await make_bridge()


@pytest.fixture(autouse=True)
def _no_redaction_left_behind() -> Iterator[None]:
    """privacy.redact is process-wide (the running config's detectors, see bridge/privacy/redact.py):
    a test's in-process bridge must not leave its detectors active for the next test."""
    yield
    from bridge import privacy

    privacy.activate(privacy.Redactor())
