"""Payload builders, Slack request signing and a thin client for the bridge under test."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hashlib
import hmac
import time
import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
from aiohttp.test_utils import TestClient

from tests.harness.bridge_process import BridgeFleet, BridgeProcess
from tests.harness.fake_reply import DEFAULT_SECRET
from tests.harness.fake_slack import DEFAULT_TOKEN

WEBHOOK_KEY = "test-webhook-key-0001"
SIGNING_SECRET = "test-signing-secret-0001"
CHANNEL = "C0DEFAULT1"

# The two payloads of the vendor's guide, exactly as written there.
GUIDE_MESSAGE_RECEIVED: dict[str, Any] = {
    "event": "message_received",
    "payload": {
        "input": "aide",
        "corrected_input": "aide",
        "intent": "HelpIntent",
        "intent_slug": "sysHelpIntentfrfr",
        "intent_id": "123abc",
        "confidence": 1,
        "confidence_threshold": 0.2,
        "custom_entities": {},
        "system_entities": {},
        "alternatives": [],
        "understood": True,
        "understood_nlu": True,
        "never_trained": False,
        "state_id": "123abc",
        "state_name": "un conseiller va vous contacter",
        "answer": "Nous allons vérifier si un agent est disponible",
        "reprompt": None,
        "end_session": False,
        "user_id": "123abc",
        "platform": "webchat",
        "muted": True,
        "need_help": True,
        "handover_category_name": "",
        "payload": {},
        "no_reply_prompt": "",
        "probabilistic_nlu_processing_time": 0.093,
        "rule_based_nlu_processing_time": 0,
        "dialog_management_processing_time": 0.005,
        "rich_text": [],
        "show_answer_survey": False,
        "show_conversation_survey": False,
        "webchat_input_place_holder": "",
        "webchat_hidden_input": None,
        "has_webhook_integration": True,
        "lang": "fr-fr",
        "skill_id": "123abc",
        "input_type": "text",
        "client_id": "123abc",
        "master_bot": False,
        "client_session_id": "62bb0fd93d3bc322becc39e6",
        "first_client_session_id": None,
        "nlu_model": {"name": "SNP 1.06", "version": "1.06 RC3"},
        "number_of_nounderstood": 0,
        "is_smartly_integration": True,
        "is_simulator": False,
        "event_name": "NEW_INPUT",
        "total_processing_time": 0.269,
    },
}
GUIDE_ESCALATION: dict[str, Any] = {
    "event": "escalation_requested",
    "payload": {"skill_id": "123", "lang": "fr-fr", "plateform": "webchat", "client_id": "123abc"},
}


def message(
    client_id: str,
    text: str,
    answer: str = "",
    *,
    skill_id: str = "skill1",
    need_help: bool = False,
    seq: int | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A message_received event shaped like the guide's, for one user."""
    body = copy.deepcopy(GUIDE_MESSAGE_RECEIVED)
    p = body["payload"]
    p.update(
        input=text,
        corrected_input=text,
        answer=answer or f"bot: {text}",
        client_id=client_id,
        skill_id=skill_id,
        user_id=f"user-{client_id}",
        need_help=need_help,
        muted=False,
        intent="SmallTalk",
        intent_slug="smalltalk",
    )
    if seq is not None:
        p["client_session_id"] = f"session-{seq}"
    p.update(extra)
    return body


def escalation(client_id: str, *, skill_id: str = "skill1", lang: str = "fr-fr") -> dict[str, Any]:
    return {
        "event": "escalation_requested",
        "payload": {"skill_id": skill_id, "lang": lang, "plateform": "webchat", "client_id": client_id},
    }


def slack_signature(body: bytes, timestamp: int | str, secret: str = SIGNING_SECRET) -> str:
    base = f"v0:{timestamp}:".encode() + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def signed_headers(
    body: bytes,
    *,
    secret: str = SIGNING_SECRET,
    timestamp: int | None = None,
    content_type: str = "application/json",
) -> dict[str, str]:
    ts = int(time.time()) if timestamp is None else timestamp
    return {
        "X-Slack-Request-Timestamp": str(ts),
        "X-Slack-Signature": slack_signature(body, ts, secret),
        "Content-Type": content_type,
    }


def thread_reply_event(
    channel: str,
    thread_ts: str,
    text: str,
    *,
    user: str = "UAGENT01",
    event_id: str | None = None,
    ts: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    ts = ts or f"{time.time():.6f}"
    event = {
        "type": "message",
        "channel": channel,
        "user": user,
        "text": text,
        "ts": ts,
        "thread_ts": thread_ts,
        "channel_type": "channel",
        **extra,
    }
    return {
        "type": "event_callback",
        "team_id": "TFAKE0001",
        "api_app_id": "ABRIDGE",
        "event": event,
        "event_id": event_id or f"Ev{hashlib.sha1(ts.encode()).hexdigest()[:10]}",
        "event_time": int(time.time()),
    }


def block_action(
    channel: str, root_ts: str, action_id: str, *, user: str = "UAGENT01", name: str = "alice"
) -> bytes:
    payload = {
        "type": "block_actions",
        "user": {"id": user, "username": name, "name": name, "team_id": "TFAKE0001"},
        "channel": {"id": channel, "name": "support"},
        "container": {"type": "message", "message_ts": root_ts, "channel_id": channel},
        "message": {"ts": root_ts, "type": "message"},
        "actions": [
            {
                "action_id": action_id,
                "block_id": "b",
                "type": "button",
                "value": action_id,
                "action_ts": f"{time.time():.6f}",
            }
        ],
    }
    return urllib.parse.urlencode({"payload": orjson.dumps(payload).decode()}).encode()


class BridgeClient:
    """The bridge under test, reached only through its real HTTP endpoints."""

    def __init__(self, client: TestClient, key: str = WEBHOOK_KEY) -> None:
        self.client = client
        self.key = key

    @property
    def app(self):
        return self.client.app

    async def hook(
        self, body: dict[str, Any] | bytes, *, key: str | None = None
    ) -> tuple[int, dict[str, Any]]:
        data = body if isinstance(body, bytes) else orjson.dumps(body)
        response = await self.client.post(
            f"/smartly/hooks?key={key if key is not None else self.key}",
            data=data,
            headers={"Content-Type": "application/json"},
        )
        text = await response.read()
        try:
            parsed = orjson.loads(text) if text else {}
        except orjson.JSONDecodeError:
            parsed = {"raw": text.decode(errors="replace")}
        return response.status, parsed

    async def slack_event(self, envelope: dict[str, Any], **headers: str) -> tuple[int, dict[str, Any]]:
        body = orjson.dumps(envelope)
        response = await self.client.post(
            "/slack/events", data=body, headers={**signed_headers(body), **headers}
        )
        text = await response.read()
        return response.status, (orjson.loads(text) if text else {})

    async def interaction(self, body: bytes) -> int:
        response = await self.client.post(
            "/slack/interactions",
            data=body,
            headers=signed_headers(body, content_type="application/x-www-form-urlencoded"),
        )
        await response.read()
        return response.status


def suite_fleet(work_dir: Path, redis_url: str, slack_url: str) -> BridgeFleet:
    """`bridge serve` processes configured with the suite's webhook key, bot token and channel."""
    return BridgeFleet(
        work_dir,
        redis_url=redis_url,
        slack_url=slack_url,
        webhook_key=WEBHOOK_KEY,
        slack_token=DEFAULT_TOKEN,
        channel=CHANNEL,
    )


# Delivery as fast as the fake Slack lets it: tests of what is delivered, not of pacing.
QUICK_DELIVERY = {"posts_per_second": 100, "burst": 100, "poll_interval": "100ms", "backoff_base": "100ms"}


@contextlib.asynccontextmanager
async def relaying_bridge(
    work_dir: Path,
    redis_url: str,
    slack_url: str,
    reply_url: str,
    *,
    config: dict[str, Any],
    env: dict[str, str] | None = None,
) -> AsyncIterator[BridgeProcess]:
    """A started `bridge serve` with the suite's secrets that takes signed Slack events and relays
    agents' replies to `reply_url`; closed on exit."""
    proc = BridgeProcess(
        work_dir,
        redis_url=redis_url,
        slack_url=slack_url,
        webhook_key=WEBHOOK_KEY,
        slack_token=DEFAULT_TOKEN,
        channel=CHANNEL,
        config=config,
        env={
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "BRIDGE_REPLY_URL": reply_url,
            "BRIDGE_REPLY_SECRET": DEFAULT_SECRET,
            **(env or {}),
        },
    )
    try:
        yield await proc.started()
    finally:
        await proc.close()


async def raw_exchange(
    bridge: BridgeProcess, request: bytes, *, wait_s: float = 5.0
) -> tuple[int, bytes, bool]:
    """Send bytes as they are; (status, JSON body, whether the bridge closed the connection)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", bridge.port)
    try:
        writer.write(request)
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), wait_s)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {
            k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)
        }
        assert headers["content-type"].startswith("application/json"), head
        body = await reader.readexactly(int(headers["content-length"]))
        closed = await asyncio.wait_for(reader.read(1), wait_s) == b""
        return status, body, closed
    finally:
        writer.close()
