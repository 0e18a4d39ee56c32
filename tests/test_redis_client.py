"""Which Redis client the bridge runs: the autopipelining one by default, fenced to the redis-py and
hiredis versions it was checked against, or plain redis-py with `redis.autopipeline: false`."""

from __future__ import annotations

import subprocess
import sys

import pytest
from redis.asyncio import Redis

from bridge.app import REDIS
from bridge.runtime import BRIDGE
from tests.harness import wait_until
from tests.harness.fake_slack import FakeSlack
from tests.helpers import CHANNEL, escalation, message


def import_fenced_module(patch: str) -> subprocess.CompletedProcess[str]:
    """Import bridge.autopipeline in a fresh interpreter after `patch` (Python) ran."""
    code = f"{patch}\nimport bridge.autopipeline\n"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)


def test_the_fenced_module_imports_with_the_pinned_versions() -> None:
    assert import_fenced_module("").returncode == 0


@pytest.mark.parametrize(
    ("patch", "says"),
    [
        ("import redis; redis.__version__ = '8.2.0'", "against redis 8.1.x, redis 8.2.0 is installed"),
        ("import hiredis; hiredis.__version__ = '4.0.1'", "hiredis 4.0.1 is installed"),
        (
            "import redis._parsers.hiredis as h; del h._AsyncHiredisParser.read_from_socket",
            "lacks ['read_from_socket']",
        ),
    ],
)
def test_another_redis_py_fails_at_import_with_a_clear_message(patch: str, says: str) -> None:
    result = import_fenced_module(patch)
    assert result.returncode != 0
    assert "RedisInternalsChanged" in result.stderr and says in result.stderr
    assert "redis.autopipeline: false" in result.stderr  # the way out is in the message


async def test_autopipeline_false_runs_plain_redis_py(make_bridge, fake_slack: FakeSlack) -> None:
    bridge = await make_bridge(file={"redis": {"autopipeline": False}})
    client = bridge.app[REDIS]
    assert type(client) is Redis  # plain redis-py, with its retry and health check
    assert not bridge.app[BRIDGE].store.bounded  # so each webhook carries its own deadline
    assert (await bridge.hook(escalation("ann")))[0] == 200
    assert (await bridge.hook(message("ann", "still there?", "yes")))[0] == 200
    await wait_until(lambda: len(fake_slack.posts()) >= 2)
    posts = fake_slack.posts()
    assert [p.channel for p in posts] == [CHANNEL, CHANNEL]
    assert "still there?" in posts[1].text


async def test_the_default_client_is_the_autopipelining_one(bridge) -> None:
    from bridge.autopipeline import AutoPipelineRedis

    assert isinstance(bridge.app[REDIS], AutoPipelineRedis)
    assert bridge.app[BRIDGE].store.bounded  # its batch deadline bounds every webhook: no timer each
