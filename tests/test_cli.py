"""`bridge serve` as operators run it: clear start-up errors, embedded Valkey, graceful stop."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest
from redis.asyncio import Redis

from bridge.embedded import free_port
from tests.harness import wait_until
from tests.harness.fake_slack import DEFAULT_TOKEN, FakeSlack
from tests.helpers import CHANNEL, WEBHOOK_KEY, escalation, message

REPO = Path(__file__).resolve().parent.parent
BASE_ENV = {
    k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "SLACK_", "SMARTLY_", "BRIDGE_"))
}


def run_cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bridge", *args],
        env={**BASE_ENV, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.parametrize(
    ("env", "missing"),
    [
        ({"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_CHANNEL": "C0AAA"}, "SMARTLY_WEBHOOK_KEY"),
        ({"SMARTLY_WEBHOOK_KEY": "k1234", "SLACK_CHANNEL": "C0AAA"}, "SLACK_BOT_TOKEN"),
        ({"SMARTLY_WEBHOOK_KEY": "k1234", "SLACK_BOT_TOKEN": "xoxb-1"}, "SLACK_CHANNEL"),
    ],
)
def test_missing_required_setting_is_one_clear_line(
    tmp_path: Path, env: dict[str, str], missing: str
) -> None:
    result = run_cli("serve", env=env, cwd=tmp_path)
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert missing in lines[0] and "Traceback" not in result.stderr


def test_bad_config_file_stops_the_start_with_its_errors(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("history:\n  ttl: forever\n")
    env = {"SMARTLY_WEBHOOK_KEY": "k1234", "SLACK_BOT_TOKEN": "xoxb-1", "SLACK_CHANNEL": "C0AAA"}
    result = run_cli("serve", env=env, cwd=tmp_path)
    assert result.returncode != 0
    assert "ttl" in result.stderr and ":2:" in result.stderr and "Traceback" not in result.stderr


def serve_env(slack: FakeSlack, port: int, **extra: str) -> dict[str, str]:
    """The environment of a `bridge serve` wired to the fake Slack, listening on 127.0.0.1:port."""
    return {
        **BASE_ENV,
        "SMARTLY_WEBHOOK_KEY": WEBHOOK_KEY,
        "SLACK_BOT_TOKEN": DEFAULT_TOKEN,
        "SLACK_CHANNEL": CHANNEL,
        "SLACK_API_URL": slack.url,
        "BRIDGE_PORT": str(port),
        "BRIDGE_HOST": "127.0.0.1",
        **extra,
    }


def spawn_serve(env: dict[str, str], cwd: Path) -> tuple[subprocess.Popen[bytes], Path]:
    log_path = cwd / "bridge.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bridge", "serve"],
            env=env,
            cwd=cwd,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    return proc, log_path


async def wait_ready(
    http: aiohttp.ClientSession, base: str, proc: subprocess.Popen[bytes], log_path: Path
) -> None:
    deadline = time.monotonic() + 20
    while True:
        try:
            async with http.get(f"{base}/readyz") as r:
                if r.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        assert proc.poll() is None and time.monotonic() < deadline, log_path.read_text()
        await asyncio.sleep(0.1)


async def test_serve_without_redis_url_runs_on_embedded_valkey_and_stops_cleanly(tmp_path: Path) -> None:
    slack = FakeSlack(token=DEFAULT_TOKEN)
    await slack.start()
    port = free_port()
    env = serve_env(slack, port, BRIDGE_DATA_DIR=str(tmp_path / "data"))
    proc, log_path = spawn_serve(env, tmp_path)
    try:
        base = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as http:
            await wait_ready(http, base, proc, log_path)
            for body in (message("cli", "hello from cli"), escalation("cli")):
                async with http.post(f"{base}/smartly/hooks?key={WEBHOOK_KEY}", json=body) as r:
                    assert r.status == 200
            await wait_until(lambda: any("hello from cli" in m.text for m in slack.posts(CHANNEL)), 10)
        assert (tmp_path / "data" / "appendonly.aof").exists() or (
            tmp_path / "data" / "appendonlydir"
        ).exists()
        logs = log_path.read_text()
        assert '"embedded_valkey_started"' in logs
        valkey_pid = await _valkey_pid(tmp_path / "data")
        assert valkey_pid and _alive(valkey_pid)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        assert time.monotonic() - started < 15
        await wait_until(lambda: not _alive(valkey_pid), 5)
        assert '"embedded_valkey_stopped"' in log_path.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        await slack.stop()


async def _valkey_pid(data_dir: Path) -> int:
    """The embedded server's pid, asked from the server the bridge wrote down in its data dir."""
    client = Redis.from_url((data_dir / "redis-url").read_text().strip())
    try:
        return int((await client.info("server"))["process_id"])
    finally:
        await client.aclose()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()


async def test_sighup_reloads_the_config_and_the_bridge_keeps_serving(tmp_path: Path, redis_url: str) -> None:
    slack = FakeSlack(token=DEFAULT_TOKEN)
    await slack.start()
    config = tmp_path / "config.yaml"
    config.write_text("routes: []\n")
    port = free_port()
    env = serve_env(slack, port, REDIS_URL=redis_url, BRIDGE_CONFIG=str(config))
    proc, log_path = spawn_serve(env, tmp_path)
    try:
        base = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as http:
            await wait_ready(http, base, proc, log_path)
            config.write_text("routes:\n  - name: everything\n    channel: C0RELOADED\n")
            proc.send_signal(signal.SIGHUP)  # without a handler, SIGHUP would end the process
            await wait_until(lambda: "config_reloaded" in log_path.read_text(), 5)
            async with http.post(f"{base}/smartly/hooks?key={WEBHOOK_KEY}", json=escalation("hup")) as r:
                assert r.status == 200
            await wait_until(lambda: len(slack.roots("C0RELOADED")) == 1, 10)
            assert proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        await slack.stop()


def test_outbox_command_with_redis_unreachable_is_one_line_quickly(tmp_path: Path) -> None:
    env = {"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    started = time.monotonic()
    result = run_cli("outbox", "list-dead", env=env, cwd=tmp_path)
    assert result.returncode == 1
    assert time.monotonic() - started < 10
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "cannot reach Redis" in lines[0], result.stderr
