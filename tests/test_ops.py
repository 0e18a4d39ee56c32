"""Operations: liveness and readiness, Prometheus metrics that move with what happens, JSON logs (one line
per event, conversation fields bound) where no secret ever shows, and the container files."""

from __future__ import annotations

import asyncio
import io
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import structlog
import yaml
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from bridge.app import create_app
from bridge.embedded import EmbeddedValkey
from bridge.logs import FastTimeStamper, SecretScrubber, configure_logging, info_line
from bridge.settings import Settings
from bridge.slack_format import RESOLVE_ACTION
from tests.conftest import app_config
from tests.harness import eventually, wait_until
from tests.harness.bridge_process import BridgeProcess
from tests.harness.fake_reply import DEFAULT_SECRET, FakeReply
from tests.harness.fake_slack import DEFAULT_TOKEN, FakeSlack
from tests.helpers import (
    CHANNEL,
    SIGNING_SECRET,
    BridgeClient,
    block_action,
    escalation,
    message,
    signed_headers,
    thread_reply_event,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
REQUIRED_METRICS = {
    "bridge_webhook_events": "counter",
    "bridge_handovers_opened": "counter",
    "bridge_handovers_open": "gauge",
    "bridge_slack_requests": "counter",
    "bridge_slack_delivery_seconds": "histogram",
    "bridge_outbox_pending": "gauge",
    "bridge_dead_letters": "counter",
    "bridge_agent_first_response_seconds": "histogram",
}


async def get(bridge: BridgeClient, path: str, **headers: str) -> tuple[int, Any]:
    response = await bridge.client.get(path, headers=headers)
    raw = await response.read()
    return response.status, orjson.loads(raw) if response.content_type == "application/json" else raw


class Scrape:
    """One /metrics answer, parsed; value(name, **labels) sums the samples whose labels include those."""

    def __init__(self, text: str) -> None:
        self.families = {f.name: f for f in text_string_to_metric_families(text)}

    def value(self, sample: str, **labels: str) -> float:
        return sum(
            s.value
            for family in self.families.values()
            for s in family.samples
            if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items())
        )


async def scrape(bridge: BridgeClient) -> Scrape:
    status, body = await get(bridge, "/metrics")
    assert status == 200
    return Scrape(body.decode())


# -- health -----------------------------------------------------------------------------------------


async def test_healthz_and_readyz_answer_200_when_redis_answers(bridge: BridgeClient) -> None:
    assert await get(bridge, "/healthz") == (200, {"ok": True})
    status, body = await get(bridge, "/readyz")
    assert status == 200 and body["ok"] is True and body["config_path"] == "defaults"
    assert (body["redis"], body["config"]) == ("ok", "ok")


async def test_readyz_is_503_with_a_reason_while_redis_is_down_and_200_once_back(
    fake_slack: FakeSlack, tmp_path: Path
) -> None:
    server = EmbeddedValkey(tmp_path / "valkey")  # our own server: the session one must stay up
    url = await server.start()
    client = TestClient(TestServer(create_app(app_config(url, fake_slack.url)), host="127.0.0.1"))
    try:
        await client.start_server()
        bridge = BridgeClient(client)
        assert (await get(bridge, "/readyz"))[0] == 200

        await server.stop()
        status, body = await get(bridge, "/readyz")
        assert status == 503
        assert body["ok"] is False and body["error"] == "redis unavailable"
        assert body["redis"] == "unavailable" and body["reason"].startswith("redis: ")
        assert await get(bridge, "/healthz") == (200, {"ok": True})  # alive, only not ready
        assert (await bridge.hook(message("ann", "hello")))[0] == 503  # refused, so Smartly retries

        await server.start()  # same port, same data
        await eventually(lambda: _status_is(bridge, "/readyz", 200))
        assert await bridge.hook(message("ann", "hello")) == (200, {"ok": True})
    finally:
        await client.close()
        await server.stop()


async def _status_is(bridge: BridgeClient, path: str, status: int) -> bool:
    return (await get(bridge, path))[0] == status


# -- metrics ----------------------------------------------------------------------------------------


async def test_metrics_are_prometheus_text_with_every_name_prefixed_bridge(bridge: BridgeClient) -> None:
    response = await bridge.client.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    families = Scrape(await response.text()).families
    assert families and all(name.startswith("bridge_") for name in families), sorted(families)
    assert {name: families[name].type for name in REQUIRED_METRICS if name in families} == REQUIRED_METRICS


async def test_webhook_counter_counts_each_outcome_exactly(
    make_bridge: Callable[..., Awaitable[BridgeClient]],
) -> None:
    bridge = await make_bridge(file={"webhook": {"max_body_bytes": 2048}})
    body = message("bea", "hello", "hi")
    assert (await bridge.hook(body))[0] == 200
    assert (await bridge.hook(body))[1] == {"ok": True, "duplicate": True}
    assert (await bridge.hook(message("bea", "again"), key="wrong-key"))[0] == 401
    assert (await bridge.hook(b"{not json"))[0] == 400
    assert (await bridge.hook({"event": "message_sent", "payload": {}}))[0] == 202
    assert (await bridge.hook(message("bea", "x" * 4096)))[0] == 413
    metrics = await scrape(bridge)
    counted = {
        (event, outcome): metrics.value("bridge_webhook_events_total", event=event, outcome=outcome)
        for event, outcome in [
            ("message_received", "recorded"),
            ("message_received", "duplicate"),
            ("unknown", "unauthorized"),
            ("unknown", "invalid"),
            ("other", "ignored"),
            ("unknown", "too_large"),
        ]
    }
    assert counted == dict.fromkeys(counted, 1.0)
    assert metrics.value("bridge_webhook_events_total") == 6


async def test_handover_metrics_follow_one_handover_from_open_to_resolved(
    bridge: BridgeClient, fake_slack: FakeSlack, fake_reply: FakeReply
) -> None:
    before = await scrape(bridge)
    assert before.value("bridge_handovers_open") == 0
    for i in range(2):
        await bridge.hook(message("cleo", f"question {i}", f"answer {i}"))
    await bridge.hook(escalation("cleo"))
    await wait_until(
        lambda: fake_slack.roots(CHANNEL) and fake_slack.replies(CHANNEL, fake_slack.roots(CHANNEL)[0].ts)
    )
    root = fake_slack.roots(CHANNEL)[0]
    await bridge.hook(message("cleo", "live question", "live answer"))
    await wait_until(lambda: "live answer" in "".join(m.text for m in fake_slack.replies(CHANNEL, root.ts)))

    async def settled() -> bool:
        return (await scrape(bridge)).value("bridge_outbox_pending") == 0

    await eventually(settled)
    metrics = await scrape(bridge)
    assert (
        metrics.value("bridge_handovers_opened_total", trigger="escalation_requested", route="default") == 1
    )
    assert metrics.value("bridge_handovers_open") == 1
    posted_ok = [c for c in fake_slack.calls_to("chat.postMessage") if c.response.get("ok")]
    assert metrics.value("bridge_slack_requests_total", method="chat.postMessage", outcome="ok") == len(
        posted_ok
    )
    # One observation per root and per live line (history lines were not "live"): the root, "live question".
    assert metrics.value("bridge_slack_delivery_seconds_count") == 2
    assert metrics.value("bridge_agent_first_response_seconds_count") == 0

    for text in ("first reply", "second reply"):
        status, _ = await bridge.slack_event(thread_reply_event(CHANNEL, root.ts, text))
        assert status == 200
    await wait_until(lambda: len([b for b in fake_reply.bodies() if b.get("type") == "agent_message"]) == 2)
    metrics = await scrape(bridge)
    assert metrics.value("bridge_agent_first_response_seconds_count") == 1  # the first reply only

    assert await bridge.interaction(block_action(CHANNEL, root.ts, RESOLVE_ACTION)) == 200
    await eventually(lambda: _value_is(bridge, "bridge_handovers_open", 0))
    await eventually(settled)


async def _value_is(bridge: BridgeClient, name: str, expected: float, **labels: str) -> bool:
    return (await scrape(bridge)).value(name, **labels) == expected


async def test_outbox_pending_rises_while_slack_is_away_and_dead_letters_are_counted(
    bridge: BridgeClient, fake_slack: FakeSlack
) -> None:
    await fake_slack.go_down()
    await bridge.hook(escalation("dora"))
    await eventually(lambda: _value_is(bridge, "bridge_outbox_pending", 1, lane="slack"))
    await eventually(
        lambda: _above(
            bridge, "bridge_slack_requests_total", method="chat.postMessage", outcome="unreachable"
        )
    )
    await fake_slack.come_back()
    await eventually(lambda: _value_is(bridge, "bridge_outbox_pending", 0, lane="slack"))
    assert len(fake_slack.roots(CHANNEL)) == 1

    fake_slack.fail_channel(CHANNEL, "channel_not_found")
    await bridge.hook(escalation("eric"))
    await eventually(
        lambda: _value_is(bridge, "bridge_dead_letters_total", 1, lane="slack", reason="channel_not_found")
    )
    metrics = await scrape(bridge)
    assert metrics.value("bridge_dead_letters_total") == 1
    assert metrics.value("bridge_slack_requests_total", method="chat.postMessage", outcome="error") == 1
    assert metrics.value("bridge_outbox_pending", lane="slack") == 0  # buried, not pending


async def _above(bridge: BridgeClient, name: str, floor: float = 0, **labels: str) -> bool:
    return (await scrape(bridge)).value(name, **labels) > floor


async def test_metrics_token_is_required_when_configured(
    make_bridge: Callable[..., Awaitable[BridgeClient]],
) -> None:
    bridge = await make_bridge(bridge_metrics_token="metrics-token-0001")
    assert (await get(bridge, "/metrics"))[0] == 401
    assert await get(bridge, "/metrics", Authorization="Bearer wrong") == (
        401,
        {"ok": False, "error": "unauthorized"},
    )
    status, body = await get(bridge, "/metrics", Authorization="Bearer metrics-token-0001")
    assert status == 200 and b"bridge_webhook_events_total" in body


async def test_a_conversation_woken_while_every_worker_is_busy_is_delivered_without_waiting_for_the_sweep(
    make_bridge: Callable[..., Awaitable[BridgeClient]], fake_slack: FakeSlack
) -> None:
    # One worker, and a sweep so rare it never comes during the test: only wake-ups can bring bob's root.
    bridge = await make_bridge(file={"delivery": {"workers": 1, "poll_interval": "60s"}})
    fake_slack.delay(0.3, methods=["chat.postMessage"])  # the worker stays busy with amy for a while
    await bridge.hook(message("amy", "hello", "hi"))
    await bridge.hook(escalation("amy"))  # root, then a history post: ~0.6 s of work
    await bridge.hook(escalation("bob"))  # woken while the only worker is busy
    await wait_until(lambda: len(fake_slack.roots(CHANNEL)) == 2, 5)  # seconds, not the next sweep


# -- logs and secrets, on the real process ----------------------------------------------------------

SECRETS = {
    "webhook key": "whk-Secret-Value-0451",
    "bot token": DEFAULT_TOKEN,
    "signing secret": SIGNING_SECRET,
    "reply secret": DEFAULT_SECRET,
    "metrics token": "mtk-Secret-Value-0452",
}


class Recorder:
    """Sends requests to the bridge process and keeps every response body, to scan them later."""

    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self.session = session
        self.url = url
        self.bodies: list[bytes] = []

    async def send(self, method: str, path: str, body: bytes = b"", **headers: str) -> int:
        async with self.session.request(method, f"{self.url}{path}", data=body, headers=headers) as response:
            self.bodies.append(await response.read())
            return response.status

    async def hook(self, payload: dict[str, Any] | bytes, key: str | None = SECRETS["webhook key"]) -> int:
        body = payload if isinstance(payload, bytes) else orjson.dumps(payload)
        path = "/smartly/hooks" if key is None else f"/smartly/hooks?key={key}"
        return await self.send("POST", path, body, **{"Content-Type": "application/json"})

    async def slack(self, path: str, body: bytes, headers: dict[str, str]) -> int:
        return await self.send("POST", path, body, **headers)


async def test_logs_are_json_lines_with_conversation_fields_and_no_secret_anywhere(
    tmp_path: Path, redis_url: str, fake_slack: FakeSlack, fake_reply: FakeReply
) -> None:
    process = BridgeProcess(
        tmp_path,
        redis_url=redis_url,
        slack_url=fake_slack.url,
        webhook_key=SECRETS["webhook key"],
        slack_token=SECRETS["bot token"],
        channel=CHANNEL,
        config={
            "delivery": {
                "posts_per_second": 50,
                "burst": 10,
                "poll_interval": "100ms",
                "backoff_base": "100ms",
            }
        },
        env={
            "SLACK_SIGNING_SECRET": SECRETS["signing secret"],
            "BRIDGE_REPLY_URL": fake_reply.url,
            "BRIDGE_REPLY_SECRET": SECRETS["reply secret"],
            "BRIDGE_METRICS_TOKEN": SECRETS["metrics token"],
            "BRIDGE_LOG_LEVEL": "info",
        },
    )
    try:
        await process.started()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            bridge = Recorder(session, process.url)
            # The good path: history, escalation, thread, an agent's reply relayed to the owner.
            assert await bridge.hook(message("fay", "bonjour", "salut")) == 200
            assert await bridge.hook(escalation("fay")) == 200
            await wait_until(lambda: len(fake_slack.roots(CHANNEL)) == 1, 10)
            root = fake_slack.roots(CHANNEL)[0]
            event = orjson.dumps(thread_reply_event(CHANNEL, root.ts, "hello from an agent"))
            assert await bridge.slack("/slack/events", event, signed_headers(event)) == 200
            await wait_until(lambda: any(b.get("type") == "agent_message" for b in fake_reply.bodies()), 10)

            # Bad requests of every kind.
            key = SECRETS["webhook key"]
            for wrong in ("nope", key[:-1], key + "x", key.upper()):
                assert await bridge.hook(message("fay", "x"), key=wrong) == 401
            assert await bridge.hook(message("fay", "x"), key=None) == 401
            assert await bridge.hook(b"{not json") == 400
            assert await bridge.hook({"event": "message_received", "payload": {"skill_id": "s"}}) == 422
            for path in ("/slack/events", "/slack/interactions"):
                assert await bridge.slack(path, event, signed_headers(event, secret="not-the-secret")) == 401
                stale = signed_headers(event, timestamp=int(time.time()) - 3600)
                assert await bridge.slack(path, event, stale) == 401
                assert await bridge.slack(path, event, {"X-Slack-Signature": "v0=" + SIGNING_SECRET}) == 401
            assert await bridge.send("GET", "/metrics") == 401
            assert (
                await bridge.send("GET", "/metrics", Authorization=f"Bearer {SECRETS['metrics token'][:-1]}")
                == 401
            )

            # Slack and the owner's endpoint answering with errors that echo credentials back.
            fake_slack.fail_channel(CHANNEL, f"invalid_auth token={DEFAULT_TOKEN}")
            assert await bridge.hook(escalation("gus")) == 200

            async def refused() -> bool:  # the root could not be posted (an unknown code: retried)
                await bridge.send("GET", "/metrics", Authorization=f"Bearer {SECRETS['metrics token']}")
                return (
                    b'bridge_slack_requests_total{method="chat.postMessage",outcome="error"}'
                    in (bridge.bodies[-1])
                )

            await eventually(refused)
            fake_slack.fail_channel(CHANNEL, None)
            fake_reply.fail_with_status(500, times=1)
            event2 = orjson.dumps(
                thread_reply_event(CHANNEL, root.ts, f"a reply that quotes {SIGNING_SECRET}")
            )
            assert await bridge.slack("/slack/events", event2, signed_headers(event2)) == 200
            await wait_until(
                lambda: len([b for b in fake_reply.bodies() if b.get("type") == "agent_message"]) == 2, 10
            )

            assert (
                await bridge.send("GET", "/metrics", Authorization=f"Bearer {SECRETS['metrics token']}")
                == 200
            )
            assert await bridge.send("GET", "/readyz") == 200
        assert await process.terminate() == 0
    finally:
        await process.close()

    stdout = process.stdout_path.read_text()
    stderr = process.stderr_text()
    for name, secret in SECRETS.items():
        assert secret not in stdout, f"{name} in stdout"
        assert secret not in stderr, f"{name} in stderr"
        for body in bridge.bodies:
            assert secret.encode() not in body, f"{name} in a response body: {body[:200]!r}"
    # ... except where it legitimately is: the agent's own words went to the owner, not to a log.
    assert any(SIGNING_SECRET in (b.get("text") or "") for b in fake_reply.bodies())

    lines = [line for line in stdout.splitlines() if line.strip()]
    events = [orjson.loads(line) for line in lines]  # every stdout line is one JSON object
    assert all(isinstance(e, dict) and {"event", "level", "timestamp"} <= e.keys() for e in events)
    recorded = [e for e in events if e["event"] == "webhook_recorded"]
    assert len(recorded) == 3  # one line per recorded webhook: fay's message, fay's and gus's escalations
    assert all(e["skill_id"] == "skill1" and e["client_id"] in ("fay", "gus") for e in recorded)
    about_a_conversation = [e for e in events if "cid" in e]
    assert about_a_conversation
    assert all(e["client_id"] in ("fay", "gus") and e["skill_id"] == "skill1" for e in about_a_conversation)
    in_thread = [e for e in events if e["event"] in ("handover_thread_opened", "agent_reply_queued")]
    assert {e["event"] for e in in_thread} == {"handover_thread_opened", "agent_reply_queued"}
    assert all(e["thread_ts"] == root.ts for e in in_thread if e["client_id"] == "fay")
    # gus's root met an error code Slack does not document: retried, and posted once the fault cleared
    assert [e["client_id"] for e in in_thread if e["thread_ts"] != root.ts] in ([], ["gus"])
    assert sum(1 for e in events if e["event"] == "webhook_rejected") == 7
    assert sum(1 for e in events if e["event"] == "slack_request_rejected") == 6


# -- container files --------------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the final stage, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n\s*", " ", (REPO_ROOT / "Dockerfile").read_text())
    instructions = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            instructions.append((word.upper(), rest.strip()))
    last_from = max(i for i, (word, _) in enumerate(instructions) if word == "FROM")
    return instructions[last_from:]


def test_scrubbed_lines_stay_json_and_lose_every_form_of_a_secret() -> None:
    """Secrets with JSON-escaped characters are found in keys, nested values and text, in the bytes
    (structlog) and text (stdlib logging) renderings; a short numeric one (an odd but valid key)
    does not break the line's JSON."""
    secrets = ['s3cr"et', "back\\slash", "tok/en", "clé-ü", "2024"]
    scrub = SecretScrubber(secrets)
    event = {"url": "https://x/?key=tok/en", "nested": {'s3cr"et': ["a clé-ü b back\\slash"]}, "n": 2024}
    for rendered in (orjson.dumps(event), orjson.dumps(event).decode()):
        out = scrub(None, "info", rendered)
        assert type(out) is type(rendered)
        line = orjson.loads(out)
        assert line == {
            "url": "https://x/?key=[redacted]",
            "nested": {"[redacted]": ["a [redacted] b [redacted]"]},
            "n": "[redacted]",
        }
    clean = orjson.dumps({"hid": 7, "text": "nothing here"})
    assert scrub(None, "info", clean) is clean  # the common case: untouched, not re-encoded


async def test_info_line_writes_what_the_structlog_chain_writes_scrubbed_and_levelled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The webhook path's shortcut past structlog's chain renders the same bytes in the same key
    order (conversation fields and a value JSON cannot encode included), cleans secrets as the chain
    does, and is silent when info is below the configured level."""
    secret = "xoxb-secret-in-a-value"
    monkeypatch.setattr(time, "time", lambda: 1764000000.123)  # one clock for both lines

    class Binary(io.StringIO):  # a text stream with a binary buffer, as sys.stdout
        def __init__(self) -> None:
            super().__init__()
            self.buffer = io.BytesIO()

    try:
        stream = Binary()
        configure_logging("info", [secret], stream=stream)
        fields = {"queued": True, "cid": "s1:c1", "note": secret, "odd": {1, 2}.__class__}
        structlog.get_logger("t").info("webhook_recorded", **fields)
        info_line("webhook_recorded", fields)
        await asyncio.sleep(0)  # lines are written once per loop turn
        chain, shortcut = stream.buffer.getvalue().splitlines()
        assert shortcut == chain  # byte for byte
        line = orjson.loads(shortcut)
        assert line["note"] == "[redacted]" and secret.encode() not in stream.buffer.getvalue()
        assert (line["skill_id"], line["client_id"], line["timestamp"]) == (
            "s1",
            "c1",
            "2025-11-24T16:00:00.123Z",
        )

        quiet = Binary()
        configure_logging("warning", [secret], stream=quiet)
        info_line("webhook_recorded", fields)
        await asyncio.sleep(0)
        assert quiet.buffer.getvalue() == b""
    finally:
        configure_logging("info")


def test_log_timestamps_follow_the_clock_across_milliseconds_and_seconds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The stamp is cached per millisecond and its date part per second: neither may go stale."""
    stamper = FastTimeStamper()
    clock = iter([1764000000.1231, 1764000000.1234, 1764000000.124, 1764000000.9999, 1764000001.0])
    monkeypatch.setattr(time, "time", lambda: next(clock))
    stamps = [stamper(None, "info", {})["timestamp"] for _ in range(5)]
    assert stamps == [
        "2025-11-24T16:00:00.123Z",
        "2025-11-24T16:00:00.123Z",
        "2025-11-24T16:00:00.124Z",
        "2025-11-24T16:00:00.999Z",
        "2025-11-24T16:00:01.000Z",
    ]


def test_dockerfile_slim_non_root_healthcheck_config_and_port() -> None:
    stage = dockerfile_instructions()
    words = [word for word, _ in stage]
    assert re.fullmatch(r"python:3\.1[1-9]-slim(-\w+)?", stage[0][1]), stage[0]
    users = [args for word, args in stage if word == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), users
    assert words.index("USER") < words.index("CMD")  # the server itself runs as that user
    healthcheck = " ".join(args for word, args in stage if word == "HEALTHCHECK")
    assert "/healthz" in healthcheck and "urllib" in healthcheck and "curl" not in healthcheck
    assert ("EXPOSE", "8080") in stage
    env = " ".join(args for word, args in stage if word == "ENV")
    assert "BRIDGE_CONFIG=/etc/bridge/config.yaml" in env and "BRIDGE_PORT=8080" in env
    assert orjson.loads(dict(stage)["CMD"]) == ["bridge", "serve"]
    secrets = {
        "SMARTLY_WEBHOOK_KEY",
        "SLACK_BOT_TOKEN",
        "SLACK_SIGNING_SECRET",
        "SLACK_APP_TOKEN",
        "BRIDGE_REPLY_SECRET",
        "BRIDGE_METRICS_TOKEN",
    }
    assert not [s for s in secrets if s in env or any(s in args for w, args in stage if w == "ARG")]


def test_compose_runs_the_bridge_on_a_persistent_redis() -> None:
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    bridge = services["bridge"]
    redis_name = next(name for name in services if name in ("redis", "valkey"))
    redis = services[redis_name]
    command = redis["command"] if isinstance(redis["command"], list) else redis["command"].split()
    assert command[command.index("--appendonly") + 1] == "yes"
    volume, _, target = redis["volumes"][0].partition(":")
    assert target == "/data" and volume in compose["volumes"]  # a named volume: survives `down`
    assert bridge["environment"]["REDIS_URL"].startswith(f"redis://{redis_name}:6379")
    assert bridge["environment"]["BRIDGE_CONFIG"] == "/etc/bridge/config.yaml"
    assert any(v.split(":")[1] == "/etc/bridge/config.yaml" for v in bridge["volumes"])
    assert bridge["env_file"] and "8080:8080" in bridge["ports"]
    assert bridge["depends_on"][redis_name]["condition"] == "service_healthy"
    assert "build" in bridge


def test_env_example_names_real_settings_and_no_secret_reaches_the_image() -> None:
    example = (REPO_ROOT / "bridge.env.example").read_text()
    names = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", example, re.MULTILINE))
    known = {name.upper() for name in Settings.model_fields}
    assert names and names <= known, names - known
    assert re.findall(r"^([A-Z][A-Z0-9_]+)=\s*$", example, re.MULTILINE)  # required ones left empty
    ignored = (REPO_ROOT / ".dockerignore").read_text().split()
    for pattern in (".git", ".venv", "bridge.env", "*.env", "tests"):
        assert pattern in ignored
