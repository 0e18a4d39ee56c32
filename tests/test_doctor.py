"""Issue 15 item 2: `bridge doctor` as an operator runs it (a real subprocess), against a real Redis,
the fake Slack over HTTP (scopes, channel states and tokens as Slack answers them) and the fake reply
endpoint. Every broken piece gives its ✗ line with the fix and exit 1; a good setup is all ✓, exit 0."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from bridge.embedded import EmbeddedValkey, free_port
from bridge.replies import verify
from tests.harness.fake_reply import DEFAULT_SECRET, FakeReply
from tests.harness.fake_slack import APP_TOKEN, DEFAULT_TOKEN, FakeSlack
from tests.helpers import CHANNEL, SIGNING_SECRET, WEBHOOK_KEY

ROUTES = """
routes:
  - name: french
    match: {lang: "fr-*"}
    channel: C0123FRENCH
business_hours:
  timezone: Europe/Paris
  weekly: {mon-fri: "09:00-18:00"}
  outside_hours: {channel: G0DESK2407}
"""
KEYS = {"check", "ok", "detail", "fix"}


def doctor_env(
    tmp_path: Path, redis_url: str, fake_slack: FakeSlack, fake_reply: FakeReply, **extra: str
) -> dict[str, str]:
    config = tmp_path / "config.yaml"
    config.write_text(ROUTES)
    env = {
        "PATH": "/usr/bin:/bin",
        "REDIS_URL": redis_url,
        "SLACK_API_URL": fake_slack.url,
        "SLACK_BOT_TOKEN": DEFAULT_TOKEN,
        "SLACK_CHANNEL": CHANNEL,
        "SMARTLY_WEBHOOK_KEY": WEBHOOK_KEY,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "BRIDGE_REPLY_URL": fake_reply.url,
        "BRIDGE_REPLY_SECRET": DEFAULT_SECRET,
        "BRIDGE_CONFIG": str(config),
        "BRIDGE_DATA_DIR": str(tmp_path / "data"),
        **extra,
    }
    return {k: v for k, v in env.items() if v}


async def doctor(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "bridge", "doctor", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def checks_of(env: dict[str, str]) -> tuple[int, dict[str, dict[str, Any]]]:
    done = await doctor(env, "--json")
    checks = orjson.loads(done.stdout)
    assert all(set(check) == KEYS for check in checks)
    return done.returncode, {check["check"]: check for check in checks}


async def test_a_good_setup_is_all_ticks_and_exit_0(
    tmp_path: Path, redis_url: str, fake_slack: FakeSlack, fake_reply: FakeReply
) -> None:
    env = doctor_env(tmp_path, redis_url, fake_slack, fake_reply)
    code, checks = await checks_of(env)
    assert code == 0, checks
    assert list(checks) == [
        "config",
        "redis",
        "redis persistence",
        "slack token",
        "slack scopes",
        f"slack channel {CHANNEL}",
        "slack channel C0123FRENCH",
        "slack channel G0DESK2407",
        "slack signing secret",
        "reply endpoint",
    ]
    assert all(check["ok"] and not check["fix"] for check in checks.values())
    assert f"default channel {CHANNEL} (from the environment)" in checks["config"]["detail"]
    assert "Valkey" in checks["redis"]["detail"] or "Redis" in checks["redis"]["detail"]
    assert "AOF on" in checks["redis persistence"]["detail"]
    assert checks["slack token"]["detail"] == "workspace Fake Workspace (TFAKE0001), bot @bridge (UBRIDGE)"
    assert "groups:read" in checks["slack scopes"]["detail"]  # a private channel is configured

    [ping] = fake_reply.received()
    assert set(ping.json) == {"type", "id", "at"} and ping.json["type"] == "ping"
    assert verify(
        DEFAULT_SECRET, ping.headers["X-Bridge-Timestamp"], ping.body, ping.headers["X-Bridge-Signature"]
    )
    assert fake_slack.calls_to("chat.postMessage") == []  # doctor never posts

    text = await doctor(env)
    assert text.returncode == 0
    lines = text.stdout.splitlines()
    assert lines[0].startswith("✓ config: ") and lines[-1] == "all checks passed"
    assert not any(line.startswith("✗") for line in lines)
    assert DEFAULT_TOKEN not in text.stdout + text.stderr


async def test_too_few_scopes(
    tmp_path: Path, redis_url: str, fake_slack: FakeSlack, fake_reply: FakeReply
) -> None:
    fake_slack.scopes = {"chat:write", "users:read", "channels:read", "groups:read"}
    code, checks = await checks_of(doctor_env(tmp_path, redis_url, fake_slack, fake_reply))
    assert code == 1
    scopes = checks["slack scopes"]
    assert not scopes["ok"] and scopes["detail"].startswith("missing channels:history, groups:history")
    assert "add channels:history, groups:history" in scopes["fix"] and "reinstall" in scopes["fix"]
    assert checks[f"slack channel {CHANNEL}"]["ok"]  # the rest is still checked


async def test_user_groups_in_slack_agents_need_usergroups_read(
    tmp_path: Path, redis_url: str, fake_slack: FakeSlack, fake_reply: FakeReply
) -> None:
    env = doctor_env(tmp_path, redis_url, fake_slack, fake_reply)
    Path(env["BRIDGE_CONFIG"]).write_text("slack:\n  agents: [UAGENT01, S0AGENTS1]\n")
    fake_slack.scopes.discard("usergroups:read")
    code, checks = await checks_of(env)
    assert code == 1
    assert checks["slack scopes"]["detail"].startswith("missing usergroups:read")


@pytest.mark.parametrize(
    ("state", "detail", "fix"),
    [
        ({"member": False}, "the bot is not a member", "invite the app with /invite @bridge"),
        ({"archived": True}, "the channel is archived", "unarchive the channel"),
        (None, "channel_not_found", "check the channel ID"),
    ],
)
async def test_a_channel_the_bot_cannot_use(
    tmp_path: Path,
    redis_url: str,
    fake_slack: FakeSlack,
    fake_reply: FakeReply,
    state: dict[str, bool] | None,
    detail: str,
    fix: str,
) -> None:
    if state is None:
        fake_slack.remove_channel("C0123FRENCH")
    else:
        fake_slack.add_channel("C0123FRENCH", **state)
    env = doctor_env(tmp_path, redis_url, fake_slack, fake_reply)
    code, checks = await checks_of(env)
    assert code == 1
    check = checks["slack channel C0123FRENCH"]
    assert not check["ok"] and detail in check["detail"] and fix in check["fix"]
    assert [name for name, c in checks.items() if not c["ok"]] == ["slack channel C0123FRENCH"]

    text = await doctor(env)
    assert text.returncode == 1
    lines = text.stdout.splitlines()
    failed = lines.index(next(line for line in lines if line.startswith("✗ slack channel C0123FRENCH: ")))
    assert lines[failed + 1].startswith("    fix: ") and fix in lines[failed + 1]
    assert lines[-1] == f"{len(checks) - 1} of {len(checks)} checks passed"


@pytest.mark.parametrize(
    ("env_extra", "status", "fix"),
    [
        ({"BRIDGE_REPLY_SECRET": "not-the-backends-secret"}, None, "same BRIDGE_REPLY_SECRET"),
        ({}, 400, 'answer {"type": "ping"} with a 2xx'),
        ({"BRIDGE_REPLY_URL": f"http://127.0.0.1:{free_port()}/bridge"}, None, "BRIDGE_REPLY_URL"),
    ],
)
async def test_a_reply_endpoint_that_refuses_the_ping(
    tmp_path: Path,
    redis_url: str,
    fake_slack: FakeSlack,
    fake_reply: FakeReply,
    env_extra: dict[str, str],
    status: int | None,
    fix: str,
) -> None:
    fake_reply.set_reject_invalid(True)
    if status is not None:
        fake_reply.fail_with_status(status)
    code, checks = await checks_of(doctor_env(tmp_path, redis_url, fake_slack, fake_reply, **env_extra))
    assert code == 1
    reply = checks["reply endpoint"]
    assert not reply["ok"] and reply["detail"].startswith("signed ping: ") and fix in reply["fix"]


async def test_a_token_slack_refuses(
    tmp_path: Path, redis_url: str, fake_slack: FakeSlack, fake_reply: FakeReply
) -> None:
    env = doctor_env(tmp_path, redis_url, fake_slack, fake_reply, SLACK_BOT_TOKEN="xoxb-revoked-0000")
    code, checks = await checks_of(env)
    assert code == 1
    token = checks["slack token"]
    assert (
        not token["ok"] and token["detail"] == "auth.test: invalid_auth" and "SLACK_BOT_TOKEN" in token["fix"]
    )


async def test_socket_mode_token_and_signing_secret(
    tmp_path: Path, redis_url: str, fake_slack: FakeSlack, fake_reply: FakeReply
) -> None:
    env = doctor_env(
        tmp_path, redis_url, fake_slack, fake_reply, SLACK_APP_TOKEN=APP_TOKEN, SLACK_SIGNING_SECRET=""
    )
    code, checks = await checks_of(env)
    assert code == 0, checks
    assert (
        checks["slack socket mode"]["ok"]
        and checks["slack signing secret"]["detail"] == "not needed with Socket Mode"
    )

    env["SLACK_APP_TOKEN"] = DEFAULT_TOKEN  # a bot token where the app-level token belongs
    code, checks = await checks_of(env)
    assert code == 1
    socket = checks["slack socket mode"]
    assert (
        socket["detail"] == "apps.connections.open: not_allowed_token_type"
        and "SLACK_APP_TOKEN" in socket["fix"]
    )

    del env["SLACK_APP_TOKEN"]  # HTTP request URLs, and no signing secret
    code, checks = await checks_of(env)
    assert code == 1
    assert "Signing Secret" in checks["slack signing secret"]["fix"]


async def test_redis_unreachable_or_not_found(
    tmp_path: Path, redis_url: str, fake_slack: FakeSlack, fake_reply: FakeReply
) -> None:
    env = doctor_env(
        tmp_path, redis_url, fake_slack, fake_reply, REDIS_URL=f"redis://127.0.0.1:{free_port()}/0"
    )
    code, checks = await checks_of(env)
    assert code == 1
    assert (
        checks["redis"]["detail"].startswith("cannot reach Redis at 127.0.0.1:")
        and "REDIS_URL" in checks["redis"]["fix"]
    )
    assert checks["slack token"]["ok"]  # Slack and the rest are still checked

    del env["REDIS_URL"]  # no running embedded server either
    code, checks = await checks_of(env)
    assert code == 1 and "make run" in checks["redis"]["fix"]

    data = Path(env["BRIDGE_DATA_DIR"])
    data.mkdir()
    (data / "redis-url").write_text(redis_url)  # what a running `bridge serve` writes down
    code, checks = await checks_of(env)
    assert code == 0, checks


async def test_config_problems_are_a_cross_with_the_rest_still_checked(
    tmp_path: Path, redis_url: str, fake_slack: FakeSlack, fake_reply: FakeReply
) -> None:
    env = doctor_env(tmp_path, redis_url, fake_slack, fake_reply, SLACK_CHANNEL="general")
    code, checks = await checks_of(env)
    assert code == 1
    assert (
        not checks["config"]["ok"]
        and "SLACK_CHANNEL: 'general' is not a Slack channel ID" in checks["config"]["detail"]
    )
    assert checks["redis"]["ok"] and checks["slack token"]["ok"]


@pytest.mark.parametrize(
    ("appendonly", "save", "detail"),
    [
        (False, "", "warning: neither AOF nor RDB is on"),
        (False, "3600 1", "RDB on (save 3600 1)"),
    ],
)
async def test_redis_persistence_off_is_a_warning_with_its_fix(
    tmp_path: Path,
    fake_slack: FakeSlack,
    fake_reply: FakeReply,
    appendonly: bool,
    save: str,
    detail: str,
) -> None:
    server = EmbeddedValkey(tmp_path / "valkey", appendonly=appendonly, extra_args=["--save", save])
    url = await server.start()
    try:
        code, checks = await checks_of(doctor_env(tmp_path, url, fake_slack, fake_reply))
    finally:
        await server.stop()
    persistence = checks["redis persistence"]
    assert persistence["ok"] and persistence["detail"].startswith(detail)
    assert ("appendonly yes" in persistence["fix"]) == (not save)
    assert code == 0  # a warning, not a failed check
