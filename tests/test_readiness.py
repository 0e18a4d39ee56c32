"""Issue 15 item 3: /readyz tells the truth, on a real `bridge serve` process. A token Slack refuses
makes it 503 with `"reason": "slack_auth: invalid_auth"` and an error line naming SLACK_BOT_TOKEN; a
rejected config file on disk shows as `"config": "file_invalid"` while the last good one runs."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from tests.harness import wait_until
from tests.harness.bridge_process import BridgeProcess
from tests.harness.fake_slack import DEFAULT_TOKEN, FakeSlack
from tests.helpers import CHANNEL, WEBHOOK_KEY, escalation


async def readyz(bridge: BridgeProcess) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as http, http.get(f"{bridge.url}/readyz") as response:
        return response.status, orjson.loads(await response.read())


@pytest.fixture
async def make_process(tmp_path: Path, redis_url: str, fake_slack: FakeSlack) -> AsyncIterator[Any]:
    made: list[BridgeProcess] = []

    def make(token: str = DEFAULT_TOKEN, config: str | None = None) -> BridgeProcess:
        proc = BridgeProcess(
            tmp_path,
            redis_url=redis_url,
            slack_url=fake_slack.url,
            webhook_key=WEBHOOK_KEY,
            slack_token=token,
            channel=CHANNEL,
            config=config,
            name=f"bridge{len(made)}",
        )
        made.append(proc)
        return proc

    yield make
    for proc in made:
        await proc.close()


async def test_readyz_reports_redis_slack_and_config_when_all_is_well(make_process: Any) -> None:
    bridge = await make_process().started()
    await wait_until(lambda: bridge.log_events("slack_identity"), 10)
    status, body = await readyz(bridge)
    assert status == 200
    assert (body["ok"], body["redis"], body["slack"], body["config"]) == (True, "ok", "ok", "ok")


async def test_readyz_is_503_while_slack_refuses_the_token_and_the_log_names_the_setting(
    make_process: Any, fake_slack: FakeSlack
) -> None:
    bridge = make_process(token="xoxb-wrong-token-0000")
    bridge.start()
    deadline = time.monotonic() + 20
    status, body = 0, {}
    while time.monotonic() < deadline:
        try:
            status, body = await readyz(bridge)
        except aiohttp.ClientError:
            status = 0
        if status == 503:
            break
        await bridge.wait_exit(0.1)
    assert status == 503, bridge.log_tail()
    assert body["reason"] == "slack_auth: invalid_auth"
    assert (body["ok"], body["redis"], body["slack"], body["config"]) == (False, "ok", "auth_failed", "ok")
    [line] = bridge.log_events("slack_auth_failed")
    assert line["level"] == "error" and line["code"] == "invalid_auth"
    assert "SLACK_BOT_TOKEN" in line["fix"]
    assert "xoxb-wrong-token-0000" not in bridge.stdout_path.read_text()
    # webhooks are still recorded: nothing is lost while the owner fixes the token
    assert await bridge.hook(escalation("ann")) == (200, {"ok": True})


async def test_readyz_says_file_invalid_while_a_rejected_config_is_on_disk(make_process: Any) -> None:
    bridge = await make_process(config="history:\n  ttl: 1h\n").started()
    bridge.config_path.write_text("history:\n  ttl: soon\n")
    await wait_until(lambda: bridge.log_events("config_rejected"), 10)
    status, body = await readyz(bridge)
    assert (status, body["config"]) == (200, "file_invalid")  # the last good config still runs
    [rejected] = bridge.log_events("config_rejected")
    assert rejected["level"] == "error" and ":2:8: history.ttl" in rejected["problems"][0]

    bridge.config_path.write_text("history:\n  ttl: 1h\n")  # fixed back to the rules that run
    await wait_until(lambda: bridge.log_events("config_reloaded"), 10)
    [reloaded] = bridge.log_events("config_reloaded")
    assert (reloaded["triggers"], reloaded["routes"]) == (2, 0)
    status, body = await readyz(bridge)
    assert (status, body["config"]) == (200, "ok")
