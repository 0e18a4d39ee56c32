"""Issue 15 item 1 and 5: a new owner's first run, through real `bridge` processes. With only the
README's settings and the shipped config.yaml, the vendor's two example payloads land in SLACK_CHANNEL;
a channel name in SLACK_CHANNEL stops the start; a CLI next to a stopped bridge answers without noise."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from bridge.embedded import free_port
from tests.harness import wait_until
from tests.harness.bridge_process import BridgeProcess
from tests.harness.fake_slack import DEFAULT_TOKEN, FakeSlack
from tests.helpers import CHANNEL, GUIDE_ESCALATION, GUIDE_MESSAGE_RECEIVED, WEBHOOK_KEY

REPO = Path(__file__).resolve().parent.parent


def readme_bridge(tmp_path: Path, fake_slack: FakeSlack, redis_url: str | None) -> BridgeProcess:
    """The README's settings and the repository's own config.yaml, nothing else."""
    return BridgeProcess(
        tmp_path,
        redis_url=redis_url,
        slack_url=fake_slack.url,
        webhook_key=WEBHOOK_KEY,
        slack_token=DEFAULT_TOKEN,
        channel=CHANNEL,
        config=(REPO / "config.yaml").read_text(),
    )


async def test_first_run_with_the_readme_settings_lands_in_slack_channel(
    tmp_path: Path, redis_url: str, fake_slack: FakeSlack
) -> None:
    bridge = readme_bridge(tmp_path, fake_slack, redis_url)
    try:
        await bridge.started()
        assert await bridge.hook(GUIDE_MESSAGE_RECEIVED) == (200, {"ok": True})  # need_help: true
        assert await bridge.hook(GUIDE_ESCALATION) == (200, {"ok": True})
        await wait_until(lambda: len(fake_slack.roots(CHANNEL)) == 2, 10)
        assert set(fake_slack.channels) == {CHANNEL}  # nothing went anywhere else
        assert fake_slack.calls_to("chat.postMessage")
        assert all(call.response.get("ok") for call in fake_slack.calls_to("chat.postMessage"))
        assert bridge.log_events("dead_letter") == []
    finally:
        await bridge.close()


async def test_a_channel_name_in_slack_channel_stops_the_start_with_one_line(
    tmp_path: Path, redis_url: str, fake_slack: FakeSlack
) -> None:
    bridge = readme_bridge(tmp_path, fake_slack, redis_url)
    bridge.env["SLACK_CHANNEL"] = "general"
    try:
        bridge.start()
        assert await bridge.wait_exit(20) == 2
        lines = [line for line in bridge.stderr_text().splitlines() if line.strip()]
        assert len(lines) == 1, lines
        assert "SLACK_CHANNEL: 'general' is not a Slack channel ID" in lines[0]
    finally:
        await bridge.close()


def test_cli_next_to_a_stopped_bridge_answers_without_retry_noise(tmp_path: Path) -> None:
    """A stale $BRIDGE_DATA_DIR/redis-url (the bridge is stopped): the CLI opens the data itself, quietly."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "redis-url").write_text(f"redis://127.0.0.1:{free_port()}/0")
    env = {
        "PATH": "/usr/bin:/bin",
        "BRIDGE_DATA_DIR": str(data_dir),
        "BRIDGE_CONFIG": str(REPO / "config.yaml"),
    }
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "bridge", "outbox", "list-dead"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    assert done.stderr.strip() == "0 dead letter(s)"
    assert time.monotonic() - started < 15


def test_make_run_listens_on_localhost_unless_bridge_host_says_otherwise() -> None:
    """The recipe `make run` would execute, with `env` in place of the bridge: what the bridge would get."""
    dry = subprocess.run(["make", "-n", "run"], cwd=REPO, capture_output=True, text=True, timeout=30)
    serve = next(line for line in dry.stdout.splitlines() if "bridge serve" in line)
    recipe = serve.replace("bridge serve", "env").replace(".venv/bin/", "")

    def host_given(environment: dict[str, str]) -> list[str]:
        env = {"PATH": "/usr/bin:/bin", **environment}
        done = subprocess.run(["sh", "-c", recipe], capture_output=True, text=True, timeout=30, env=env)
        return [line for line in done.stdout.splitlines() if line.startswith("BRIDGE_HOST=")]

    assert host_given({}) == ["BRIDGE_HOST=127.0.0.1"]
    assert host_given({"BRIDGE_HOST": "0.0.0.0"}) == ["BRIDGE_HOST=0.0.0.0"]
