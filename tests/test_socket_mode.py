"""Socket Mode: the agent handlers over slack-sdk's websocket client instead of /slack/events.

The listener is exercised directly with the SocketModeRequest objects slack-sdk builds from the wire
and a recording client (no network to Slack); one test runs the whole wiring against a local fake of
Slack's Socket Mode side (apps.connections.open + a websocket), so connect-on-start, acks over the
socket and close-on-cleanup are real too.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import parse_qs

import aiohttp
import orjson
from aiohttp import web
from redis.asyncio import Redis
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse

from bridge.config import FileConfig
from bridge.keys import conversation_id
from bridge.metrics import Metrics
from bridge.runtime import BRIDGE
from bridge.slack_events import SlackEvents
from bridge.socket_mode import SocketModeListener
from bridge.store import Store
from tests.harness import HttpFake, wait_until
from tests.harness.fake_reply import FakeReply
from tests.harness.fake_slack import BOT_ID, BOT_USER_ID, FakeSlack
from tests.helpers import CHANNEL, BridgeClient, block_action, escalation, message, thread_reply_event
from tests.test_agents import action_ids, lifecycle_types, open_handover, root_text, texts

APP_TOKEN = "xapp-1-AFAKE-0001-socketmodetoken"


class RecordingClient:
    """Stands in for SocketModeClient: records acks, and how many Slack events Redis had taken
    (their dedupe marks) at the moment of each ack."""

    def __init__(self, store: Store | None = None) -> None:
        self.store = store
        self.acks: list[dict[str, Any]] = []
        self.events_stored_at_ack: list[int] = []

    async def send_socket_mode_response(self, response: SocketModeResponse) -> None:
        if self.store is not None:
            self.events_stored_at_ack.append(len(await self.store.redis.keys("bridge:{*}:seen:*")))
        self.acks.append(response.to_dict())


def wire(kind: str, envelope_id: str, payload: dict[str, Any], retry_attempt: int = 0) -> SocketModeRequest:
    """The request slack-sdk hands to listeners, built from the JSON Slack sends over the socket."""
    frame: dict[str, Any] = {
        "envelope_id": envelope_id,
        "type": kind,
        "payload": payload,
        "accepts_response_payload": False,
    }
    if kind == "events_api":
        frame.update(retry_attempt=retry_attempt, retry_reason="timeout" if retry_attempt else "")
    request = SocketModeRequest.from_dict(json.loads(json.dumps(frame)))
    assert request is not None
    return request


def interactive_payload(root_ts: str, action_id: str, user: str = "UAGENT02") -> dict[str, Any]:
    """The same block_actions payload /slack/interactions gets form-encoded, as a dict (Socket Mode)."""
    form = block_action(CHANNEL, root_ts, action_id, user=user).decode()
    return orjson.loads(parse_qs(form)["payload"][0])


def listener_of(bridge: BridgeClient) -> SocketModeListener:
    running = bridge.app[BRIDGE]
    return SocketModeListener(running.slack_events, running.metrics)


# -- the listener, called directly ---------------------------------------------------------------------


async def test_events_api_envelope_is_relayed_once_and_acked_after_it_is_durable(
    make_bridge: Any, fake_slack: FakeSlack, fake_reply: FakeReply
) -> None:
    bridge = await make_bridge()
    root_ts = await open_handover(bridge, fake_slack, fake_reply)
    client = RecordingClient(bridge.app[BRIDGE].store)
    listen = listener_of(bridge)
    event = thread_reply_event(
        CHANNEL, root_ts, "Hello from <@UAGENT02> over Socket Mode", event_id="EvSOCK01"
    )

    await listen(client, wire("events_api", "env-1", event))
    # Slack did not see the ack in time and redelivers: acked again, relayed once.
    await listen(client, wire("events_api", "env-1", event, retry_attempt=1))
    await listen(client, wire("events_api", "env-2", thread_reply_event(CHANNEL, root_ts, "second")))

    assert client.acks == [{"envelope_id": "env-1"}, {"envelope_id": "env-1"}, {"envelope_id": "env-2"}]
    assert client.events_stored_at_ack == [1, 1, 2]  # each new event was in Redis before its ack
    await wait_until(lambda: texts(fake_reply) == ["Hello from @Bob Dupont over Socket Mode", "second"])
    assert all(r.signature_valid for r in fake_reply.received())
    assert lifecycle_types(fake_reply) == [
        "handover_opened",
        "handover_claimed",
        "agent_message",
        "agent_message",
    ]
    first = fake_reply.bodies()[2]
    assert (first["id"], first["thread_ts"], first["agent"]["name"]) == ("EvSOCK01", root_ts, "Alice")


async def test_interactive_envelopes_claim_and_resolve(
    make_bridge: Any, fake_slack: FakeSlack, fake_reply: FakeReply
) -> None:
    bridge = await make_bridge()
    root_ts = await open_handover(bridge, fake_slack, fake_reply)
    client = RecordingClient()
    listen = listener_of(bridge)

    await listen(client, wire("interactive", "env-claim", interactive_payload(root_ts, "handover_claim")))
    assert client.acks == [{"envelope_id": "env-claim"}]
    await wait_until(lambda: "Claimed by <@UAGENT02>" in root_text(fake_slack, root_ts))
    assert action_ids(fake_slack, root_ts) == ["handover_resolve", "handover_transfer"]

    await listen(client, wire("interactive", "env-resolve", interactive_payload(root_ts, "handover_resolve")))
    assert client.acks[-1] == {"envelope_id": "env-resolve"}
    await wait_until(lambda: lifecycle_types(fake_reply)[-1:] == ["handover_resolved"])
    assert lifecycle_types(fake_reply) == ["handover_opened", "handover_claimed", "handover_resolved"]
    await wait_until(lambda: action_ids(fake_slack, root_ts) == ["handover_reopen"])
    conv = await bridge.app[BRIDGE].store.conversation(conversation_id("skill1", "carol"))
    assert "state" not in conv


async def test_ignored_envelopes_are_acked_and_relay_nothing(
    make_bridge: Any, fake_slack: FakeSlack, fake_reply: FakeReply
) -> None:
    bridge = await make_bridge()
    root_ts = await open_handover(bridge, fake_slack, fake_reply)
    client = RecordingClient()
    listen = listener_of(bridge)
    ignored = [
        wire(
            "events_api", "e1", thread_reply_event(CHANNEL, root_ts, "ours", user=BOT_USER_ID, bot_id=BOT_ID)
        ),
        wire("events_api", "e2", thread_reply_event(CHANNEL, root_ts, "note: private")),
        wire("events_api", "e3", thread_reply_event(CHANNEL, root_ts, "x", subtype="message_changed")),
        wire("events_api", "e4", thread_reply_event(CHANNEL, "1600000000.000001", "unknown thread")),
        wire("slash_commands", "e5", {"command": "/handover", "text": ""}),
        wire("interactive", "e6", {"type": "view_submission", "user": {"id": "UAGENT01"}}),
        # wrong shapes (issue 13): acked, since Slack sending them again would not help
        wire("events_api", "e6a", {**thread_reply_event(CHANNEL, root_ts, "x"), "event": "message"}),
        wire("interactive", "e6b", {**interactive_payload(root_ts, "handover_claim"), "actions": "x"}),
    ]
    for request in ignored:
        await listen(client, request)
    await listen(client, wire("events_api", "e7", thread_reply_event(CHANNEL, root_ts, "sentinel")))
    assert [a["envelope_id"] for a in client.acks] == [
        *("e1", "e2", "e3", "e4", "e5", "e6", "e6a", "e6b", "e7")
    ]
    await wait_until(lambda: texts(fake_reply) == ["sentinel"])
    assert lifecycle_types(fake_reply) == ["handover_opened", "handover_claimed", "agent_message"]


async def test_no_ack_when_redis_cannot_take_the_event(redis_url: str) -> None:
    """Not acked means Slack redelivers: the Socket Mode twin of the HTTP endpoint's 503."""
    dead = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    metrics = Metrics()
    events = SlackEvents(
        store=Store(dead, partitions=4),
        identity=lambda: None,
        config=FileConfig,
        metrics=metrics,
        wake=lambda lane, partition: None,
        replies_enabled=True,
    )
    client = RecordingClient()
    try:
        listen = SocketModeListener(events, metrics)
        thread_ts = "1700000000.000100"
        await listen(client, wire("events_api", "env-x", thread_reply_event(CHANNEL, thread_ts, "hi")))
        await listen(client, wire("interactive", "env-y", interactive_payload(thread_ts, "handover_claim")))
    finally:
        await dead.aclose()
    assert client.acks == []
    assert b'bridge_redis_errors_total{where="socket_mode"} 2.0' in metrics.render()


# -- the whole wiring, against a local fake of Slack's Socket Mode side --------------------------------


class FakeSocketModeSlack(HttpFake):
    """apps.connections.open hands out a ws:// URL on this server; the websocket sends `hello` then what
    the test pushes, and records acks. Every other Web API method is passed through to `web_api`, so
    the bridge keeps one SLACK_API_URL exactly as in production."""

    def __init__(self, web_api: FakeSlack, app_token: str) -> None:
        super().__init__()
        self.web_api = web_api
        self.app_token = app_token
        self.opens: list[str] = []  # tokens apps.connections.open was called with
        self.sockets: list[web.WebSocketResponse] = []
        self.acks: list[dict[str, Any]] = []
        self.closed_sockets = 0

    @property
    def url(self) -> str:
        return f"{self.base_url}/api/"

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/api/apps.connections.open", self._open)
        app.router.add_get("/link", self._socket)
        app.router.add_route("*", "/api/{method}", self._pass_through)
        return app

    async def _open(self, request: web.Request) -> web.Response:
        form = await request.post()
        token = request.headers.get("Authorization", "").removeprefix("Bearer ") or str(form.get("token", ""))
        self.opens.append(token)
        if token != self.app_token:
            return web.json_response({"ok": False, "error": "invalid_auth"})
        return web.json_response({"ok": True, "url": f"ws://127.0.0.1:{self.port}/link"})

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        self.sockets.append(socket)
        await socket.send_json(
            {
                "type": "hello",
                "num_connections": 1,
                "debug_info": {"host": "fake", "approximate_connection_time": 18060},
                "connection_info": {"app_id": "ABRIDGE"},
            }
        )
        async for frame in socket:
            if frame.type == aiohttp.WSMsgType.TEXT:
                self.acks.append(json.loads(frame.data))
        self.closed_sockets += 1
        return socket

    async def _pass_through(self, request: web.Request) -> web.Response:
        headers = {k: v for k, v in request.headers.items() if k.lower() in ("authorization", "content-type")}
        target = f"{self.web_api.url}{request.match_info['method']}"
        async with (
            aiohttp.ClientSession() as session,
            session.request(
                request.method, target, params=request.query, data=await request.read(), headers=headers
            ) as answer,
        ):
            body = await answer.read()
            passed = {k: v for k, v in answer.headers.items() if k.lower() == "retry-after"}
            return web.Response(
                body=body, status=answer.status, headers=passed, content_type=answer.content_type
            )

    async def push(self, frame: dict[str, Any]) -> None:
        await self.sockets[-1].send_json(frame)


async def test_socket_mode_end_to_end_connects_relays_claims_and_closes(
    make_bridge: Any, fake_slack: FakeSlack, fake_reply: FakeReply
) -> None:
    fake = FakeSocketModeSlack(fake_slack, APP_TOKEN)
    await fake.start()
    try:
        bridge = await make_bridge(slack_api_url=fake.url, slack_app_token=APP_TOKEN)
        await wait_until(lambda: len(fake.sockets) == 1)
        assert fake.opens == [APP_TOKEN]
        root_ts = await open_handover(bridge, fake_slack, fake_reply)  # bot calls went through to FakeSlack

        await fake.push(
            {
                "envelope_id": "ws-1",
                "type": "events_api",
                "accepts_response_payload": False,
                "retry_attempt": 0,
                "retry_reason": "",
                "payload": thread_reply_event(
                    CHANNEL, root_ts, "typed behind a firewall", user="UAGENT02", event_id="EvWS01"
                ),
            }
        )
        await wait_until(lambda: {"envelope_id": "ws-1"} in fake.acks)
        await wait_until(lambda: texts(fake_reply) == ["typed behind a firewall"])
        assert of_type_agent(fake_reply) == {"slack_user_id": "UAGENT02", "name": "Bob Dupont"}

        await fake.push(
            {
                "envelope_id": "ws-2",
                "type": "interactive",
                "accepts_response_payload": False,
                "payload": interactive_payload(root_ts, "handover_resolve"),
            }
        )
        await wait_until(lambda: {"envelope_id": "ws-2"} in fake.acks)
        await wait_until(lambda: lifecycle_types(fake_reply)[-1:] == ["handover_resolved"])
        assert lifecycle_types(fake_reply) == [
            "handover_opened",
            "handover_claimed",
            "agent_message",
            "handover_resolved",
        ]
        assert fake.acks == [{"envelope_id": "ws-1"}, {"envelope_id": "ws-2"}]

        # The HTTP Events API keeps working beside Socket Mode, and the same user can escalate again.
        assert await bridge.hook(message("carol", "one more thing")) == (200, {"ok": True})
        assert await bridge.hook(escalation("carol")) == (200, {"ok": True})
        await wait_until(lambda: len(fake_slack.roots(CHANNEL)) == 2)

        await bridge.client.close()  # cleanup closes the websocket
        await wait_until(lambda: fake.closed_sockets == 1)
    finally:
        await fake.stop()


def of_type_agent(fake_reply: FakeReply) -> dict[str, Any]:
    return next(b["agent"] for b in fake_reply.bodies() if b["type"] == "agent_message")


async def test_without_app_token_no_socket_is_opened(
    make_bridge: Any, fake_slack: FakeSlack, fake_reply: FakeReply
) -> None:
    fake = FakeSocketModeSlack(fake_slack, APP_TOKEN)
    await fake.start()
    try:
        bridge = await make_bridge(slack_api_url=fake.url)
        await open_handover(bridge, fake_slack, fake_reply)
        await asyncio.sleep(0.2)
        assert fake.opens == [] and fake.sockets == []
    finally:
        await fake.stop()
