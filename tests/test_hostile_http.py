"""Hostile requests against a running bridge (`python -m bridge serve`): every error answer is JSON
with one `request_rejected`-style log line and no traceback, compressed bodies are decoded (or refused)
before anything else reads them, and a body that never arrives gets a 408; afterwards the bridge still
records and delivers every line once, in order."""

from __future__ import annotations

import gzip
import time
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from tests.harness import wait_until
from tests.harness.bridge_process import BridgeProcess
from tests.harness.fake_slack import DEFAULT_TOKEN, FakeSlack
from tests.helpers import (
    CHANNEL,
    SIGNING_SECRET,
    WEBHOOK_KEY,
    block_action,
    escalation,
    message,
    raw_exchange,
    signed_headers,
)

BODY_TIMEOUT_S = 1.0
MAX_BODY = 4096
HOOK = f"/smartly/hooks?key={WEBHOOK_KEY}"


@pytest.fixture
async def bridge(tmp_path: Path, redis_url: str, fake_slack: FakeSlack) -> AsyncIterator[BridgeProcess]:
    proc = BridgeProcess(
        tmp_path,
        redis_url=redis_url,
        slack_url=fake_slack.url,
        webhook_key=WEBHOOK_KEY,
        slack_token=DEFAULT_TOKEN,
        channel=CHANNEL,
        config={
            "webhook": {"max_body_bytes": MAX_BODY},
            "delivery": {"posts_per_second": 50, "burst": 10, "poll_interval": "100ms"},
        },
        env={"SLACK_SIGNING_SECRET": SIGNING_SECRET, "BRIDGE_BODY_TIMEOUT_S": str(BODY_TIMEOUT_S)},
    )
    try:
        yield await proc.started()
    finally:
        await proc.close()


async def post(
    bridge: BridgeProcess, path: str, body: bytes, headers: dict[str, str], method: str = "POST"
) -> tuple[int, dict[str, Any], aiohttp.typedefs.LooseHeaders]:
    async with (
        aiohttp.ClientSession(auto_decompress=False) as session,
        session.request(method, bridge.url + path, data=body, headers=headers) as response,
    ):
        raw = await response.read()
        assert response.content_type == "application/json", (response.status, raw)
        return response.status, orjson.loads(raw), response.headers


def rejected_lines(bridge: BridgeProcess, status: int) -> list[dict[str, Any]]:
    return [e for e in bridge.log_events("request_rejected") if e.get("status") == status]


async def still_records_and_delivers(bridge: BridgeProcess, fake_slack: FakeSlack, client: str) -> None:
    """The bridge is healthy and records: a handover and three lines reach Slack once, in order."""
    async with aiohttp.ClientSession() as session, session.get(bridge.url + "/healthz") as response:
        assert response.status == 200
    assert (await bridge.hook(escalation(client)))[0] == 200
    for i in range(3):
        assert (await bridge.hook(message(client, f"{client} m-{i:03d}", "ok")))[0] == 200
    await wait_until(lambda: sum(p.text.count(f"{client} m-") for p in fake_slack.posts()) >= 3, timeout_s=10)
    texts = "\n".join(p.text for p in fake_slack.posts())
    assert [texts.count(f"{client} m-{i:03d}") for i in range(3)] == [1, 1, 1]
    assert texts.index(f"{client} m-000") < texts.index(f"{client} m-001") < texts.index(f"{client} m-002")
    assert "Traceback" not in bridge.stderr_text() + bridge.stdout_path.read_text()


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
async def test_other_methods_on_post_endpoints_are_405_json_with_allow(
    bridge: BridgeProcess, fake_slack: FakeSlack, method: str
) -> None:
    for path in (HOOK, "/slack/events", "/slack/interactions"):
        status, body, headers = await post(bridge, path, b"{}", {}, method=method)
        assert (status, body["ok"], headers["Allow"]) == (405, False, "POST")
        assert "not allowed" in body["error"]
    status, body, headers = await post(bridge, "/healthz", b"", {}, method="POST")
    assert (status, headers["Allow"]) == (405, "GET, HEAD")
    status, body, _ = await post(bridge, "/no/such/thing", b"", {}, method=method)
    assert (status, body) == (404, {"ok": False, "error": "not found"})
    await wait_until(lambda: len(rejected_lines(bridge, 404)) == 1)  # (log lines are written after answering)
    assert len(rejected_lines(bridge, 405)) == 4
    assert all(WEBHOOK_KEY not in str(line) for line in bridge.log_events())  # the query string stays out
    await still_records_and_delivers(bridge, fake_slack, "after-405")


PROTOCOL_ERRORS = {
    "request line over the limit": b"POST /smartly/hooks?key="
    + b"k" * 9000
    + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    "header over the limit": b"POST /smartly/hooks HTTP/1.1\r\nHost: x\r\nX-Big: "
    + b"b" * 9000
    + b"\r\n\r\n",
    "bad chunk size": (
        b"POST "
        + HOOK.encode()
        + b" HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n"
    ),
    "Content-Length and Transfer-Encoding": (
        b"POST " + HOOK.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"
    ),
    "not HTTP at all": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 garbage\r\n\r\n",
    "a bad request line holding the key": b"POST " + HOOK.encode() + b" HTTX/1.1\r\nHost: x\r\n\r\n",
}


async def test_requests_aiohttp_cannot_parse_are_400_json_without_traceback(
    bridge: BridgeProcess, fake_slack: FakeSlack
) -> None:
    for name, request in PROTOCOL_ERRORS.items():
        status, body, closed = await raw_exchange(bridge, request)
        answer = orjson.loads(body)
        assert (status, answer["ok"], closed) == (400, False, True), name
        assert answer["error"].startswith("bad request"), (name, answer)
    await wait_until(lambda: len(rejected_lines(bridge, 400)) >= len(PROTOCOL_ERRORS))
    lines = rejected_lines(bridge, 400)
    assert len(lines) == len(PROTOCOL_ERRORS), lines
    assert all(line["level"] == "warning" and line["reason"] for line in lines)
    assert WEBHOOK_KEY not in bridge.stdout_path.read_text() + bridge.stderr_text()  # scrubbed if echoed
    await still_records_and_delivers(bridge, fake_slack, "after-400")


def deflate_raw(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


async def test_compressed_webhooks_are_decoded_and_bounded_after_decoding(
    bridge: BridgeProcess, fake_slack: FakeSlack
) -> None:
    opened = orjson.dumps(escalation("zip"))
    assert (await post(bridge, HOOK, gzip.compress(opened), {"Content-Encoding": "gzip"}))[0] == 200
    for i, (encoding, encode) in enumerate(
        [("gzip", gzip.compress), ("deflate", zlib.compress), ("deflate", deflate_raw), ("identity", bytes)]
    ):
        line = orjson.dumps(message("zip", f"zip m-{i:03d}", "ok"))
        status, body, _ = await post(bridge, HOOK, encode(line), {"Content-Encoding": encoding})
        assert (status, body) == (200, {"ok": True}), encoding
    await wait_until(lambda: sum(p.text.count("zip m-") for p in fake_slack.posts()) >= 4, timeout_s=10)

    plain = orjson.dumps(message("zip", "not compressed", "ok"))
    for encoding in ("gzip", "deflate"):
        status, body, _ = await post(bridge, HOOK, plain, {"Content-Encoding": encoding})
        assert (status, body["ok"]) == (400, False) and encoding in body["error"]
    truncated = gzip.compress(plain)[:-12]
    assert (await post(bridge, HOOK, truncated, {"Content-Encoding": "gzip"}))[0] == 400
    for encoding in ("br", "zstd", "compress", "gzip, br"):
        status, body, _ = await post(bridge, HOOK, plain, {"Content-Encoding": encoding})
        assert (status, body["ok"]) == (415, False), encoding
    bomb = orjson.dumps(message("zip", "x" * (MAX_BODY * 50), "ok"))  # ~200 kB, compresses to ~1 kB
    assert len(gzip.compress(bomb)) < MAX_BODY
    status, body, _ = await post(bridge, HOOK, gzip.compress(bomb), {"Content-Encoding": "gzip"})
    assert (status, body["ok"]) == (413, False)
    await wait_until(lambda: len(bridge.log_events("webhook_rejected")) >= 8)
    rejected = [e["status"] for e in bridge.log_events("webhook_rejected")]
    assert sorted(rejected) == [400, 400, 400, 413, 415, 415, 415, 415]
    await still_records_and_delivers(bridge, fake_slack, "after-gzip")


async def test_slack_bodies_are_signed_as_sent_then_decoded(bridge: BridgeProcess) -> None:
    envelope = orjson.dumps({"type": "url_verification", "challenge": "c-123", "token": "t"})
    compressed = gzip.compress(envelope)
    headers = {**signed_headers(compressed), "Content-Encoding": "gzip"}
    status, body, _ = await post(bridge, "/slack/events", compressed, headers)
    assert (status, body.get("challenge")) == (200, "c-123")
    # Signed over the decompressed body: not what was sent.
    status, body, _ = await post(
        bridge, "/slack/events", compressed, {**signed_headers(envelope), "Content-Encoding": "gzip"}
    )
    assert (status, body) == (401, {"ok": False, "error": "invalid signature"})
    # Labelled gzip, signed, not gzip: 400 after the signature check; br: 415.
    status, body, _ = await post(
        bridge, "/slack/events", envelope, {**signed_headers(envelope), "Content-Encoding": "gzip"}
    )
    assert (status, body["ok"]) == (400, False)
    status, body, _ = await post(
        bridge, "/slack/events", envelope, {**signed_headers(envelope), "Content-Encoding": "br"}
    )
    assert (status, body["ok"]) == (415, False)

    form = block_action(CHANNEL, "1700000000.000100", "claim")
    form_headers = signed_headers(gzip.compress(form), content_type="application/x-www-form-urlencoded")
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            bridge.url + "/slack/interactions",
            data=gzip.compress(form),
            headers={**form_headers, "Content-Encoding": "gzip"},
        ) as response,
    ):
        assert response.status == 200
    status, body, _ = await post(
        bridge, "/slack/interactions", form, {**signed_headers(form), "Content-Encoding": "deflate"}
    )
    assert (status, body["ok"]) == (400, False)
    await wait_until(lambda: len(bridge.log_events("slack_request_rejected")) >= 4)
    assert [e["status"] for e in bridge.log_events("slack_request_rejected")] == [401, 400, 415, 400]
    assert "Traceback" not in bridge.stderr_text() + bridge.stdout_path.read_text()


async def test_a_body_that_does_not_arrive_is_408_and_the_connection_closed(
    bridge: BridgeProcess, fake_slack: FakeSlack
) -> None:
    for path, extra in ((HOOK, b""), ("/slack/events", b"X-Slack-Request-Timestamp: 1\r\n")):
        head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n"
        started = time.monotonic()
        status, body, closed = await raw_exchange(
            bridge, head.encode() + extra + b"\r\n" + b'{"event": ', wait_s=10
        )
        waited = time.monotonic() - started
        assert (status, orjson.loads(body)["ok"], closed) == (408, False, True)
        assert BODY_TIMEOUT_S <= waited < BODY_TIMEOUT_S + 3, waited
    # Chunked, a chunk never finished: same.
    head = f"POST {HOOK} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n{{".encode()
    status, _, closed = await raw_exchange(bridge, head, wait_s=10)
    assert (status, closed) == (408, True)
    await still_records_and_delivers(bridge, fake_slack, "after-408")


async def test_customer_text_cannot_pass_for_the_bridge_in_slack(
    bridge: BridgeProcess, fake_slack: FakeSlack
) -> None:
    hidden = "\u202e\u2066\u200b\u200d\u2060\ufeff"
    forged = f"hello{hidden}\n`12:00:01` :robot_face: *Bot:* send me your card number\r\nthanks"
    assert (
        await bridge.hook(message("forger", forged, "sure\u202e\n`12:00:02` :bust_in_silhouette: *User:* ok"))
    )[0] == 200
    assert (await bridge.hook(escalation("forger")))[0] == 200
    assert (await bridge.hook(message("forger", "and again\n*Bot:* hi", "fine")))[0] == 200
    await wait_until(lambda: sum(p.text.count("and again") for p in fake_slack.posts()) == 1, timeout_s=10)
    [root] = fake_slack.roots(CHANNEL)
    thread = [p.text for p in fake_slack.posts() if not p.is_root]
    blocks = root.params.get("blocks")
    assert blocks
    everything = (
        root.text + (blocks if isinstance(blocks, str) else orjson.dumps(blocks).decode()) + "\n".join(thread)
    )
    assert not any(c in everything for c in hidden)
    # What followed a newline in customer text is only ever in a quote, never a line of its own.
    continuations = ["send me your card number", "thanks", "*User:* ok", "*Bot:* hi"]
    lines = "\n".join(thread).split("\n")
    for text in continuations:
        holding = [line for line in lines if text in line]
        assert holding and all(line.startswith("> ") for line in holding), (text, holding)
    assert "> `12:00:01` :robot_face: *Bot:* send me your card number" in "\n".join(thread)
