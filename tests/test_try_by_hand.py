"""Issue 15 item 6: the README's "Try it by hand", as separate processes: examples/reply_backend.py and
`python -m bench.fake_slack_server` on their own, a `bridge serve` against them, the vendor's two
example payloads, an agent's signed reply; each helper prints what it received."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import orjson
import pytest

from bench.process import spawn, stop
from bridge.embedded import free_port
from bridge.replies import sign
from tests.harness import wait_until
from tests.harness.bridge_process import BridgeProcess
from tests.harness.fake_slack import DEFAULT_TOKEN
from tests.helpers import (
    GUIDE_ESCALATION,
    GUIDE_MESSAGE_RECEIVED,
    SIGNING_SECRET,
    WEBHOOK_KEY,
    signed_headers,
    thread_reply_event,
)

REPO = Path(__file__).resolve().parent.parent
CHANNEL = "C0123456789"  # the README's example channel; the standalone fake Slack always has it
REPLY_SECRET = "another-long-random-secret"


def output(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


@pytest.fixture
async def helpers(tmp_path: Path) -> AsyncIterator[tuple[str, Path, str, Path]]:
    """(fake Slack API URL, its stdout, reply URL, its stdout), both running as their own processes."""
    slack_port, reply_port = free_port(), free_port()
    slack = spawn(
        [sys.executable, "-m", "bench.fake_slack_server", "--port", str(slack_port)],
        env={},
        log_dir=tmp_path,
        name="slack",
    )
    reply = spawn(
        [sys.executable, str(REPO / "examples" / "reply_backend.py"), "--port", str(reply_port)],
        env={"BRIDGE_REPLY_SECRET": REPLY_SECRET},
        log_dir=tmp_path,
        name="reply",
    )
    slack_out, reply_out = tmp_path / "slack.stdout", tmp_path / "reply.stdout"
    try:
        await wait_until(lambda: f"ready {slack_port}" in output(slack_out), 20)
        await wait_until(lambda: "reply endpoint on" in output(reply_out), 20)
        yield (
            f"http://127.0.0.1:{slack_port}/api/",
            slack_out,
            f"http://127.0.0.1:{reply_port}/bridge",
            reply_out,
        )
    finally:
        await stop(slack)
        await stop(reply)


async def test_try_it_by_hand(tmp_path: Path, helpers: tuple[str, Path, str, Path]) -> None:
    slack_url, slack_out, reply_url, reply_out = helpers
    bridge = BridgeProcess(
        tmp_path,
        redis_url=None,  # as `make run`: the embedded Valkey
        slack_url=slack_url,
        webhook_key=WEBHOOK_KEY,
        slack_token=DEFAULT_TOKEN,
        channel=CHANNEL,
        config=(REPO / "config.yaml").read_text(),
        env={
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "BRIDGE_REPLY_URL": reply_url,
            "BRIDGE_REPLY_SECRET": REPLY_SECRET,
        },
    )
    try:
        await bridge.started(40)
        assert await bridge.hook(GUIDE_MESSAGE_RECEIVED) == (200, {"ok": True})
        assert await bridge.hook(GUIDE_ESCALATION) == (200, {"ok": True})
        await wait_until(lambda: output(slack_out).count(f"[{CHANNEL}] new thread ") == 2, 20)
        await wait_until(lambda: "*User:* aide" in output(slack_out), 20)  # the guide message, in history
        await wait_until(lambda: output(reply_out).count("handover_opened") >= 2, 20)
        assert "-> mute the bot for this user" in output(reply_out)

        root_ts = output(slack_out).split(f"[{CHANNEL}] new thread ")[1].split()[0]
        event = orjson.dumps(thread_reply_event(CHANNEL, root_ts, "Bonjour, je regarde votre colis"))
        async with aiohttp.ClientSession() as http:
            async with http.post(
                f"{bridge.url}/slack/events", data=event, headers=signed_headers(event)
            ) as r:
                assert r.status == 200
            await wait_until(lambda: "says 'Bonjour, je regarde votre colis'" in output(reply_out), 20)

            # the receiver refuses what is not signed with its secret
            body = b'{"type": "ping", "id": "x", "at": "2026-01-01T00:00:00Z"}'
            headers = {"X-Bridge-Timestamp": "1", "X-Bridge-Signature": sign("wrong", 1, body)}
            async with http.post(reply_url, data=body, headers=headers) as r:
                assert r.status == 401
        await wait_until(lambda: "401: bad or missing signature" in output(reply_out), 5)

        doctor = await bridge.cli("doctor", "--json")
        checks = {c["check"]: c for c in orjson.loads(doctor.stdout)}
        assert doctor.returncode == 0, checks
        assert checks["reply endpoint"]["ok"] and "ping from `bridge doctor`" in output(reply_out)
    finally:
        await bridge.close()
