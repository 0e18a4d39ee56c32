"""Issue 6: agents answer from Slack. Everything goes through the bridge's real HTTP endpoints
(/smartly/hooks, /slack/events, /slack/interactions), a real valkey-server, the fake Slack Web API and
the fake reply endpoint, which verifies every signature."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from typing import Any

import orjson
import pytest

from bridge.keys import conversation_id
from bridge.replies import verify
from bridge.runtime import BRIDGE
from tests.harness import eventually, wait_until
from tests.harness.fake_reply import DEFAULT_SECRET, SIGNATURE_HEADER, TIMESTAMP_HEADER, FakeReply
from tests.harness.fake_slack import BOT_ID, BOT_USER_ID, FakeSlack
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

ALICE, BOB = "UAGENT01", "UAGENT02"  # FakeSlack's users: display name "Alice", real name "Bob Dupont"
LIFECYCLE = ("handover_opened", "handover_claimed", "handover_resolved")


# -- helpers ---------------------------------------------------------------------------------------


async def open_handover(
    bridge: BridgeClient, fake_slack: FakeSlack, fake_reply: FakeReply | None, client_id: str = "carol"
) -> str:
    """One exchange then an escalation; returns the root ts once the thread is known to the bridge
    (the owner was told `handover_opened`, which is queued when the root's ts is committed)."""
    roots_before = len(fake_slack.roots(CHANNEL))
    first_words = "my parcel is late" if roots_before == 0 else f"still late ({roots_before})"
    assert await bridge.hook(message(client_id, first_words, "Let me check")) == (200, {"ok": True})
    assert await bridge.hook(escalation(client_id)) == (200, {"ok": True})
    await wait_until(lambda: len(fake_slack.roots(CHANNEL)) == roots_before + 1)
    root_ts = fake_slack.roots(CHANNEL)[-1].ts
    if fake_reply is not None:
        opened = lambda: [b["thread_ts"] for b in of_type(fake_reply, "handover_opened")]  # noqa: E731
        await wait_until(lambda: root_ts in opened())
    return root_ts


def of_type(fake_reply: FakeReply, *types: str) -> list[dict[str, Any]]:
    """Bodies the owner accepted (2xx), in arrival order, of the given types."""
    return [b for b in fake_reply.bodies() if b.get("type") in types]


def texts(fake_reply: FakeReply) -> list[str]:
    return [b["text"] for b in of_type(fake_reply, "agent_message")]


def lifecycle_types(fake_reply: FakeReply) -> list[str]:
    return [b["type"] for b in fake_reply.bodies()]


async def reply(bridge: BridgeClient, root_ts: str, text: str, **kwargs: Any) -> None:
    """An agent's message in the thread, as Slack's Events API delivers it; must be acked 200."""
    envelope = thread_reply_event(CHANNEL, root_ts, text, **kwargs)
    assert await bridge.slack_event(envelope) == (200, {"ok": True})


async def click(bridge: BridgeClient, root_ts: str, action_id: str, user: str = ALICE) -> None:
    assert await bridge.interaction(block_action(CHANNEL, root_ts, action_id, user=user)) == 200


def action_ids(fake_slack: FakeSlack, root_ts: str) -> list[str]:
    root = fake_slack.message(CHANNEL, root_ts)
    assert root is not None and root.blocks is not None
    return [e["action_id"] for b in root.blocks if b["type"] == "actions" for e in b["elements"]]


def root_text(fake_slack: FakeSlack, root_ts: str) -> str:
    root = fake_slack.message(CHANNEL, root_ts)
    return root.text if root is not None else ""


def thread_replies(fake_slack: FakeSlack, root_ts: str) -> list[str]:
    return [m.text for m in fake_slack.replies(CHANNEL, root_ts)]


async def post_raw(
    bridge: BridgeClient, path: str, body: bytes, headers: dict[str, str]
) -> tuple[int, bytes]:
    response = await bridge.client.post(path, data=body, headers=headers)
    return response.status, await response.read()


# -- Slack request signatures --------------------------------------------------------------------------


def _event_body(root_ts: str = "1700000000.000100") -> bytes:
    return orjson.dumps(thread_reply_event(CHANNEL, root_ts, "forged", event_id="EvFORGED"))


ENDPOINTS = {
    "/slack/events": ("application/json", _event_body),
    "/slack/interactions": (
        "application/x-www-form-urlencoded",
        lambda root_ts="1700000000.000100": block_action(CHANNEL, root_ts, "handover_claim"),
    ),
}


def _headers(
    body: bytes, content_type: str, *, timestamp: Any, signature: str | None = None
) -> dict[str, str]:
    """Slack's headers for `body`, signed with the right secret unless `signature` is given."""
    headers = {"Content-Type": content_type, "X-Slack-Request-Timestamp": str(timestamp)}
    if signature is None:
        base = f"v0:{timestamp}:".encode() + body
        signature = "v0=" + hmac.new(SIGNING_SECRET.encode(), base, hashlib.sha256).hexdigest()
    headers["X-Slack-Signature"] = signature
    return headers


def _without(headers: dict[str, str], name: str) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k != name}


BAD_SIGNATURES = {
    "missing both headers": lambda body, ct: {"Content-Type": ct},
    "missing signature": lambda body, ct: _without(
        _headers(body, ct, timestamp=int(time.time())), "X-Slack-Signature"
    ),
    "missing timestamp": lambda body, ct: _without(
        _headers(body, ct, timestamp=int(time.time())), "X-Slack-Request-Timestamp"
    ),
    "wrong secret": lambda body, ct: signed_headers(body, secret="not-the-secret", content_type=ct),
    "signature of another body": lambda body, ct: {
        **signed_headers(body + b" ", content_type=ct),
        "Content-Type": ct,
    },
    "garbage signature": lambda body, ct: _headers(body, ct, timestamp=int(time.time()), signature="v0=zz"),
    "non-ascii signature": lambda body, ct: _headers(body, ct, timestamp=int(time.time()), signature="v0=é"),
    "stale by 6 minutes": lambda body, ct: _headers(body, ct, timestamp=int(time.time()) - 360),
    "6 minutes in the future": lambda body, ct: _headers(body, ct, timestamp=int(time.time()) + 360),
    "malformed timestamp": lambda body, ct: _headers(body, ct, timestamp="yesterday"),
    "float timestamp": lambda body, ct: _headers(body, ct, timestamp=f"{time.time():.3f}"),
    "empty timestamp": lambda body, ct: _headers(body, ct, timestamp=""),
}


@pytest.mark.parametrize("path", list(ENDPOINTS))
@pytest.mark.parametrize("case", list(BAD_SIGNATURES))
async def test_unsigned_or_badly_signed_requests_get_401_and_change_nothing(
    make_bridge: Any, fake_slack: FakeSlack, fake_reply: FakeReply, path: str, case: str
) -> None:
    bridge = await make_bridge()
    root_ts = await open_handover(bridge, fake_slack, fake_reply)
    content_type, build = ENDPOINTS[path]
    body = build(root_ts)
    status, answer = await post_raw(bridge, path, body, BAD_SIGNATURES[case](body, content_type))
    assert status == 401, answer
    assert orjson.loads(answer) == {"ok": False, "error": "invalid signature"}
    # A correctly signed request afterwards still works, and the rejected one left no trace: the forged
    # event ("forged") was not relayed, the forged click (by Alice) claimed nothing.
    await reply(bridge, root_ts, "signed and sound", user=BOB)
    await wait_until(lambda: texts(fake_reply) == ["signed and sound"])
    assert lifecycle_types(fake_reply) == ["handover_opened", "handover_claimed", "agent_message"]
    assert of_type(fake_reply, "handover_claimed")[0]["agent"]["slack_user_id"] == BOB


@pytest.mark.parametrize("path", list(ENDPOINTS))
async def test_signature_window_edges(make_bridge: Any, path: str) -> None:
    """Slack's 5-minute window: 4m50s old passes, 5m10s old fails."""
    bridge = await make_bridge()
    content_type, build = ENDPOINTS[path]
    body = build()
    now = int(time.time())
    status, _ = await post_raw(bridge, path, body, _headers(body, content_type, timestamp=now - 290))
    assert status == 200
    status, _ = await post_raw(bridge, path, body, _headers(body, content_type, timestamp=now - 310))
    assert status == 401


async def test_url_verification_answers_the_challenge_only_when_signed(make_bridge: Any) -> None:
    bridge = await make_bridge()
    envelope = {
        "token": "legacy",
        "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P",
        "type": "url_verification",
    }
    assert await bridge.slack_event(envelope) == (200, {"challenge": envelope["challenge"]})
    body = orjson.dumps(envelope)
    status, _ = await post_raw(bridge, "/slack/events", body, {"Content-Type": "application/json"})
    assert status == 401


async def test_without_signing_secret_every_slack_request_is_refused(make_bridge: Any) -> None:
    bridge = await make_bridge(slack_signing_secret=None)
    assert await bridge.slack_event({"type": "url_verification", "challenge": "x"}) == (
        401,
        {"ok": False, "error": "invalid signature"},
    )


async def test_signed_but_malformed_bodies_are_400_not_500(make_bridge: Any) -> None:
    bridge = await make_bridge()
    for path, body, content_type in (
        ("/slack/events", b"{not json", "application/json"),
        ("/slack/events", b"[1, 2]", "application/json"),
        ("/slack/interactions", b"payload=%7Bnot+json", "application/x-www-form-urlencoded"),
        ("/slack/interactions", b"nothing=here", "application/x-www-form-urlencoded"),
    ):
        status, _ = await post_raw(bridge, path, body, signed_headers(body, content_type=content_type))
        assert status == 400, (path, body)


# -- replies to the owner ----------------------------------------------------------------------------


async def test_thread_reply_reaches_the_reply_endpoint_signed(
    make_bridge: Any, fake_slack: FakeSlack, fake_reply: FakeReply
) -> None:
    bridge = await make_bridge()
    root_ts = await open_handover(bridge, fake_slack, fake_reply, client_id="dave")
    event = thread_reply_event(
        CHANNEL,
        root_ts,
        "Bonjour, je regarde ça &lt;tout de suite&gt;",
        user=ALICE,
        event_id="Ev0REPLY01",
        ts="1795600000.000200",
    )
    assert await bridge.slack_event(event) == (200, {"ok": True})
    await wait_until(lambda: len(of_type(fake_reply, "agent_message")) == 1)

    record = next(r for r in fake_reply.received() if r.json["type"] == "agent_message")
    assert record.path == "/reply" and record.headers["Content-Type"] == "application/json"
    assert record.signature_valid is True  # checked by the fake with its own HMAC code
    timestamp = record.headers[TIMESTAMP_HEADER]
    assert abs(int(timestamp) - time.time()) < 10
    expected = (
        "v1="
        + hmac.new(
            DEFAULT_SECRET.encode(), f"{timestamp}.".encode() + record.body, hashlib.sha256
        ).hexdigest()
    )
    assert record.headers[SIGNATURE_HEADER] == expected
    assert verify(DEFAULT_SECRET, timestamp, record.body, record.headers[SIGNATURE_HEADER])
    assert not verify("another-secret", timestamp, record.body, record.headers[SIGNATURE_HEADER])
    assert record.json == {
        "type": "agent_message",
        "id": "Ev0REPLY01",
        "skill_id": "skill1",
        "client_id": "dave",
        "user_id": "user-dave",
        "platform": "webchat",
        "lang": "fr-fr",
        "text": "Bonjour, je regarde ça <tout de suite>",
        "files": [],
        "agent": {"slack_user_id": ALICE, "name": "Alice"},
        "thread_ts": root_ts,
        "sent_at": "2026-11-25T09:46:40.000Z",
    }


async def test_mentions_and_links_become_plain_text_with_names_from_users_info(
    make_bridge: Any, fake_slack: FakeSlack, fake_reply: FakeReply
) -> None:
    bridge = await make_bridge()
    root_ts = await open_handover(bridge, fake_slack, fake_reply)
    await reply(
        bridge,
        root_ts,
        "<@UAGENT02> will call you, see <https://help.example/x|the guide> &amp; "
        "<http://example.com|example.com> or <mailto:help@example.com|help@example.com>",
    )
    await reply(bridge, root_ts, "<@UAGENT02> again, and <@UNOBODY> · cc <!here> <#C0SALES|sales>")
    await wait_until(lambda: len(texts(fake_reply)) == 2)
    assert texts(fake_reply) == [
        "@Bob Dupont will call you, see the guide (https://help.example/x) & example.com or help@example.com",
        "@Bob Dupont again, and @UNOBODY · cc @here #sales",
    ]
    # users.info once per user, then the name comes from Redis
    looked_up = [c.params["user"] for c in fake_slack.calls_to("users.info")]
    assert sorted(looked_up) == sorted([ALICE, BOB, "UNOBODY"])
    store = bridge.app[BRIDGE].store
    assert await store.cached_user_name(BOB) == "Bob Dupont"
    assert await store.cached_user_name("UNOBODY") is None  # user_not_found is not cached


async def test_ignored_messages_are_never_relayed(
    make_bridge: Any, fake_slack: FakeSlack, fake_reply: FakeReply
) -> None:
    bridge = await make_bridge()
    root_ts = await open_handover(bridge, fake_slack, fake_reply)
    other_root = fake_slack.add_message(CHANNEL, "someone else's thread").ts
    ignored: list[dict[str, Any]] = [
        thread_reply_event(CHANNEL, root_ts, "our own post", user=BOT_USER_ID),  # self by user id
        thread_reply_event(CHANNEL, root_ts, "our own post", user=BOT_USER_ID, bot_id=BOT_ID),
        thread_reply_event(CHANNEL, root_ts, "another app", user="UOTHERBOT", bot_id="BOTHER"),
        thread_reply_event(CHANNEL, root_ts, "a bot profile", bot_profile={"id": "BOTHER"}),
        thread_reply_event(CHANNEL, root_ts, "no user at all", user=""),
        thread_reply_event(CHANNEL, root_ts, "note: customer seems upset"),
        thread_reply_event(CHANNEL, root_ts, "NOTE: shouting private note"),
        thread_reply_event(CHANNEL, root_ts, "  // check the CRM first"),
        thread_reply_event(
            CHANNEL, root_ts, "an edit", subtype="message_changed", message={"text": "edited", "user": ALICE}
        ),
        thread_reply_event(CHANNEL, root_ts, "", subtype="message_deleted"),
        thread_reply_event(CHANNEL, root_ts, "<@UAGENT02> has joined", subtype="channel_join"),
        thread_reply_event(CHANNEL, root_ts, "", subtype="file_share", files=[{"id": "F1"}]),
        thread_reply_event(CHANNEL, root_ts, "  \n "),
        thread_reply_event(CHANNEL, other_root, "in a thread the bridge does not know"),
        thread_reply_event("C0OTHER", root_ts, "same ts, other channel"),
    ]
    top_level = thread_reply_event(CHANNEL, root_ts, "top-level chatter")
    del top_level["event"]["thread_ts"]
    ignored.append(top_level)
    root_itself = thread_reply_event(CHANNEL, root_ts, "the root itself", ts=root_ts)
    ignored.append(root_itself)
    ignored.append(
        {
            "type": "event_callback",
            "event_id": "EvREACT",
            "event": {"type": "reaction_added", "user": ALICE, "item": {"channel": CHANNEL, "ts": root_ts}},
        }
    )
    for envelope in ignored:
        assert await bridge.slack_event(envelope) == (200, {"ok": True})
    relayed = [
        thread_reply_event(CHANNEL, root_ts, "a note: not at the start, so it is a reply"),
        thread_reply_event(CHANNEL, root_ts, "also sent to the channel", subtype="thread_broadcast"),
        thread_reply_event(
            CHANNEL, root_ts, "the comment of a shared file", subtype="file_share", files=[{"id": "F2"}]
        ),
        thread_reply_event(CHANNEL, root_ts, "last one"),
    ]
    for envelope in relayed:
        assert await bridge.slack_event(envelope) == (200, {"ok": True})
    # Entries of one conversation are delivered in order: once "last one" is in, anything wrongly
    # queued before it would be in too.
    await wait_until(lambda: "last one" in texts(fake_reply))
    assert texts(fake_reply) == [e["event"]["text"] for e in relayed]
    assert [b["agent"]["slack_user_id"] for b in of_type(fake_reply, "handover_claimed")] == [ALICE]


async def test_private_prefixes_are_configurable(
    make_bridge: Any, fake_slack: FakeSlack, fake_reply: FakeReply
) -> None:
    bridge = await make_bridge(file={"replies": {"private_prefixes": ["(internal)", "#priv"]}})
    root_ts = await open_handover(bridge, fake_slack, fake_reply)
    for text in ("(internal) refund approved?", "#PRIV call them back", "note: this one goes out", "done"):
        await reply(bridge, root_ts, text)
    await wait_until(lambda: "done" in texts(fake_reply))
    assert texts(fake_reply) == ["note: this one goes out", "done"]


async def test_slack_retries_and_repeated_event_ids_are_relayed_once(
    make_bridge: Any, fake_slack: FakeSlack, fake_reply: FakeReply
) -> None:
    bridge = await make_bridge()
    root_ts = await open_handover(bridge, fake_slack, fake_reply)
    event = thread_reply_event(CHANNEL, root_ts, "only once please", event_id="Ev0RETRY01")
    assert await bridge.slack_event(event) == (200, {"ok": True})
    for retry in ("1", "2", "3"):
        retried = {"X-Slack-Retry-Num": retry, "X-Slack-Retry-Reason": "http_timeout"}
        assert await bridge.slack_event(event, **retried) == (200, {"ok": True})
    concurrent = thread_reply_event(CHANNEL, root_ts, "raced", event_id="Ev0RACE01")
    results = await asyncio.gather(*(bridge.slack_event(concurrent) for _ in range(20)))
    assert all(r == (200, {"ok": True}) for r in results)
    await reply(bridge, root_ts, "after")
    await wait_until(lambda: "after" in texts(fake_reply))
    assert texts(fake_reply) == ["only once please", "raced", "after"]
    ids = [b["id"] for b in of_type(fake_reply, "agent_message")]
    assert len(set(ids)) == 3 and ids[:2] == ["Ev0RETRY01", "Ev0RACE01"]


async def test_events_are_acked_fast_while_the_owner_is_slow(
    make_bridge: Any, fake_slack: FakeSlack, fake_reply: FakeReply
) -> None:
    # The POST to the owner may take up to half the delivery lease: 8 s here, for a 2.5 s owner.
    bridge = await make_bridge(file={"delivery": {"lease": "16s"}})
    root_ts = await open_handover(bridge, fake_slack, fake_reply)
    fake_reply.delay(2.5)
    started = time.monotonic()
    for i in range(3):
        await reply(bridge, root_ts, f"slow owner {i}")
    assert time.monotonic() - started < 1.0  # Slack wants an answer within 3 s; the POST is background
    await wait_until(lambda: len(texts(fake_reply)) == 3, timeout_s=15)
    assert texts(fake_reply) == [f"slow owner {i}" for i in range(3)]


async def test_reply_endpoint_down_then_up_loses_nothing_and_keeps_order(
    make_bridge: Any, fake_slack: FakeSlack, fake_reply: FakeReply
) -> None:
    bridge = await make_bridge()
    root_ts = await open_handover(bridge, fake_slack, fake_reply)
    await fake_reply.go_down()
    for i in range(5):
        await reply(bridge, root_ts, f"while down {i}")
    await asyncio.sleep(1.0)  # several failed attempts (backoff 100ms..1s) happen meanwhile
    await fake_reply.come_back()
    fake_reply.fail_with_status(503, times=3)  # and it stumbles a bit on the way up
    await reply(bridge, root_ts, "after recovery")
    await wait_until(lambda: len(texts(fake_reply)) == 6, timeout_s=15)
    assert texts(fake_reply) == [f"while down {i}" for i in range(5)] + ["after recovery"]
    assert lifecycle_types(fake_reply) == ["handover_opened", "handover_claimed"] + ["agent_message"] * 6
    assert [r.status for r in fake_reply.received()].count(503) == 3
    assert all(r.signature_valid for r in fake_reply.received())
    assert await bridge.app[BRIDGE].store.dead_letters() == []


async def test_permanent_rejection_goes_to_dead_letters_and_the_rest_flows(
    make_bridge: Any, fake_slack: FakeSlack, fake_reply: FakeReply
) -> None:
    bridge = await make_bridge()
    root_ts = await open_handover(bridge, fake_slack, fake_reply)
    await reply(bridge, root_ts, "first")  # auto-claims: handover_claimed, then this message
    await wait_until(lambda: texts(fake_reply) == ["first"])
    fake_reply.fail_with_status(422, times=1)
    await reply(bridge, root_ts, "rejected by the owner")
    await reply(bridge, root_ts, "next")
    await wait_until(lambda: "next" in texts(fake_reply))
    assert texts(fake_reply) == ["first", "next"]
    dead = await bridge.app[BRIDGE].store.dead_letters()
    assert [(d.lane, d.reason, d.kind, d.data["slack_text"]) for d in dead] == [
        ("reply", "http_422", "agent_message", "rejected by the owner")
    ]


async def test_replies_disabled_relays_nothing_and_queues_nothing(
    make_bridge: Any, fake_slack: FakeSlack, fake_reply: FakeReply
) -> None:
    bridge = await make_bridge(replies=False)
    root_ts = await open_handover(bridge, fake_slack, None)
    store = bridge.app[BRIDGE].store

    async def thread_recorded() -> bool:  # the root's commit maps the thread to the conversation
        return await store.thread_conversation(CHANNEL, root_ts) == conversation_id("skill1", "carol")

    await eventually(thread_recorded)
    await reply(bridge, root_ts, "nobody to send this to")
    await click(bridge, root_ts, "handover_claim", user=BOB)
    await wait_until(lambda: action_ids(fake_slack, root_ts) == ["handover_resolve", "handover_transfer"])
    assert (await store.pending_counts())["reply"] == 0
    assert fake_reply.received() == []


# -- buttons, lifecycle, idle ------------------------------------------------------------------------


async def test_root_has_claim_and_resolve_buttons_and_shows_muted(
    make_bridge: Any, fake_slack: FakeSlack, fake_reply: FakeReply
) -> None:
    bridge = await make_bridge()
    await bridge.hook(message("erin", "are you a robot?", "I am", muted=True))
    await bridge.hook(escalation("erin"))
    await wait_until(lambda: len(fake_slack.roots(CHANNEL)) == 1)
    root = fake_slack.roots(CHANNEL)[0]
    assert action_ids(fake_slack, root.ts) == ["handover_claim", "handover_resolve", "handover_transfer"]
    fields = [f["text"] for b in root.blocks or [] if b["type"] == "section" for f in b.get("fields", [])]
    assert "*Bot muted*\nyes" in fields


async def test_claim_and_resolve_buttons_then_a_new_thread(
    make_bridge: Any, fake_slack: FakeSlack, fake_reply: FakeReply
) -> None:
    bridge = await make_bridge()
    root_ts = await open_handover(bridge, fake_slack, fake_reply, client_id="frank")
    await bridge.hook(message("frank", "before the claim", "bot answer before"))

    await click(bridge, root_ts, "handover_claim", user=BOB)
    await wait_until(lambda: len(of_type(fake_reply, "handover_claimed")) == 1)
    await wait_until(lambda: action_ids(fake_slack, root_ts) == ["handover_resolve", "handover_transfer"])
    root = fake_slack.message(CHANNEL, root_ts)
    assert root is not None and "Claimed by <@UAGENT02>" in root.text
    assert [e["ts"] for e in root.edits] == [root_ts]  # chat.update of the root, in place
    await click(bridge, root_ts, "handover_claim", user=BOB)  # a second click by the same agent: no-op

    await bridge.hook(message("frank", "after the claim", "bot answer after"))
    await reply(bridge, root_ts, "Hi Frank, Bob here", user=BOB)
    await wait_until(lambda: texts(fake_reply) == ["Hi Frank, Bob here"])
    await wait_until(lambda: any("after the claim" in t for t in thread_replies(fake_slack, root_ts)))
    lines = thread_replies(fake_slack, root_ts)
    before = next(t for t in lines if "bot answer before" in t)
    after = next(t for t in lines if "bot answer after" in t)
    assert "answered after an agent claimed" not in before
    assert "answered after an agent claimed" in after
    assert any(t.startswith(":raising_hand: <@UAGENT02> is handling") for t in lines)

    await click(bridge, root_ts, "handover_resolve", user=BOB)
    await wait_until(lambda: len(of_type(fake_reply, "handover_resolved")) == 1)
    await wait_until(lambda: action_ids(fake_slack, root_ts) == ["handover_reopen"])
    root = fake_slack.message(CHANNEL, root_ts)
    assert root is not None and "Resolved — by <@UAGENT02>" in root.text
    await wait_until(lambda: any("Resolved by <@UAGENT02>" in t for t in thread_replies(fake_slack, root_ts)))
    assert lifecycle_types(fake_reply) == [
        "handover_opened",
        "handover_claimed",
        "agent_message",
        "handover_resolved",
    ]
    bodies = fake_reply.bodies()
    assert bodies[3].pop("reason") == "agent"  # handover_resolved says why: agent, idle or an operator's text
    for body in (bodies[0], bodies[1], bodies[3]):
        transcript = {"transcript", "transcript_truncated"} if body is bodies[3] else set()
        assert set(body) - transcript == {
            "type",
            "id",
            "skill_id",
            "client_id",
            "user_id",
            "platform",
            "lang",
            "agent",
            "thread_ts",
            "at",
        }
        assert (body["client_id"], body["thread_ts"], body["user_id"]) == ("frank", root_ts, "user-frank")
    assert bodies[0]["agent"] is None
    assert bodies[1]["agent"] == bodies[3]["agent"] == {"slack_user_id": BOB, "name": "Bob Dupont"}
    assert len({b["id"] for b in bodies}) == 4

    # Redis: no handover any more, history kept
    store = bridge.app[BRIDGE].store
    cid = conversation_id("skill1", "frank")
    conv = await store.conversation(cid)
    assert "state" not in conv and "thread_ts" not in conv
    history = [h["in"] for h in await store.history(cid)]
    assert history == ["my parcel is late", "before the claim", "after the claim"]

    # Replies in the closed thread go nowhere; a resolve click on it changes nothing.
    await reply(bridge, root_ts, "too late")
    await click(bridge, root_ts, "handover_resolve", user=BOB)

    # The next escalation opens a NEW thread, with its own lifecycle.
    new_ts = await open_handover(bridge, fake_slack, fake_reply, client_id="frank")
    assert new_ts != root_ts and len(fake_slack.roots(CHANNEL)) == 2
    assert action_ids(fake_slack, new_ts) == ["handover_claim", "handover_resolve", "handover_transfer"]
    await reply(bridge, new_ts, "new thread, new reply", user=ALICE)
    await wait_until(lambda: "new thread, new reply" in texts(fake_reply))
    assert texts(fake_reply) == ["Hi Frank, Bob here", "new thread, new reply"]
    assert [(b["type"], b["thread_ts"]) for b in fake_reply.bodies()][4:] == [
        ("handover_opened", new_ts),
        ("handover_claimed", new_ts),
        ("agent_message", new_ts),
    ]


async def test_first_reply_auto_claims_and_the_owner_hears_the_claim_first(
    make_bridge: Any, fake_slack: FakeSlack, fake_reply: FakeReply
) -> None:
    bridge = await make_bridge()
    root_ts = await open_handover(bridge, fake_slack, fake_reply)
    await reply(bridge, root_ts, "Hello, Alice here")
    await reply(bridge, root_ts, "Bob joining", user=BOB)  # already claimed: no second claim
    await wait_until(lambda: len(texts(fake_reply)) == 2)
    await click(bridge, root_ts, "handover_resolve")
    await wait_until(lambda: len(of_type(fake_reply, "handover_resolved")) == 1)
    assert lifecycle_types(fake_reply) == [
        "handover_opened",
        "handover_claimed",
        "agent_message",
        "agent_message",
        "handover_resolved",
    ]
    claimed = of_type(fake_reply, "handover_claimed")[0]
    assert claimed["agent"] == {"slack_user_id": ALICE, "name": "Alice"}
    await wait_until(lambda: action_ids(fake_slack, root_ts) == ["handover_reopen"])
    root = fake_slack.message(CHANNEL, root_ts)
    assert root is not None and len(root.edits) == 2  # claimed, then resolved
    assert "Claimed by <@UAGENT01>" in root.edits[0]["text"] and "Resolved — by <@UAGENT01>" in root.text


async def test_claim_by_another_agent_does_not_take_over_silently(
    make_bridge: Any, fake_slack: FakeSlack, fake_reply: FakeReply
) -> None:
    """Issue 14 item 5: the second agent is offered a take-over instead (tests/test_slack_agents.py)."""
    bridge = await make_bridge()
    root_ts = await open_handover(bridge, fake_slack, fake_reply)
    await click(bridge, root_ts, "handover_claim", user=ALICE)
    await click(bridge, root_ts, "handover_claim", user=BOB)
    await wait_until(lambda: any(e["user"] == BOB for e in fake_slack.ephemerals))
    await wait_until(lambda: len(of_type(fake_reply, "handover_claimed")) == 1)
    assert [b["agent"]["name"] for b in of_type(fake_reply, "handover_claimed")] == ["Alice"]
    await wait_until(lambda: "Claimed by <@UAGENT01>" in root_text(fake_slack, root_ts))


async def test_idle_handover_resolves_itself_and_the_next_escalation_opens_a_new_thread(
    make_bridge: Any, fake_slack: FakeSlack, fake_reply: FakeReply
) -> None:
    bridge = await make_bridge(file={"handover": {"idle_timeout": "1s"}})
    escalated = time.monotonic()
    root_ts = await open_handover(bridge, fake_slack, fake_reply, client_id="gina")
    await wait_until(lambda: len(of_type(fake_reply, "handover_resolved")) == 1, timeout_s=5)
    resolved = next(r for r in fake_reply.received(ok_only=True) if r.json["type"] == "handover_resolved")
    assert resolved.at - escalated >= 1.0
    assert resolved.json["agent"] is None and resolved.json["thread_ts"] == root_ts
    await wait_until(lambda: action_ids(fake_slack, root_ts) == ["handover_reopen"])
    root = fake_slack.message(CHANNEL, root_ts)
    assert root is not None and "Resolved (no activity)" in root.text
    await wait_until(lambda: any("Resolved automatically" in t for t in thread_replies(fake_slack, root_ts)))

    new_ts = await open_handover(bridge, fake_slack, fake_reply, client_id="gina")
    assert new_ts != root_ts
    assert [(b["type"], b["thread_ts"]) for b in fake_reply.bodies()][:3] == [
        ("handover_opened", root_ts),
        ("handover_resolved", root_ts),
        ("handover_opened", new_ts),
    ]


async def test_activity_keeps_a_handover_open_and_a_claimed_one_still_idles_out(
    make_bridge: Any, fake_slack: FakeSlack, fake_reply: FakeReply
) -> None:
    bridge = await make_bridge(file={"handover": {"idle_timeout": "1500ms"}})
    root_ts = await open_handover(bridge, fake_slack, fake_reply, client_id="hank")
    deadline = time.monotonic() + 3.0
    i = 0
    while time.monotonic() < deadline:  # user messages and agent replies, each well within the timeout
        if i % 2:
            await reply(bridge, root_ts, f"agent {i}")
        else:
            await bridge.hook(message("hank", f"user {i}"))
        i += 1
        await asyncio.sleep(0.4)
    assert of_type(fake_reply, "handover_resolved") == []
    quiet_from = time.monotonic()
    await wait_until(lambda: len(of_type(fake_reply, "handover_resolved")) == 1, timeout_s=5)
    resolved = next(r for r in fake_reply.received(ok_only=True) if r.json["type"] == "handover_resolved")
    assert resolved.at - quiet_from >= 1.0
    assert lifecycle_types(fake_reply)[:2] == ["handover_opened", "handover_claimed"]
    assert lifecycle_types(fake_reply)[-1] == "handover_resolved"
    # Claimed by the first reply, closed by silence: the root must not credit the agent with the close.
    await wait_until(lambda: "Resolved (no activity)" in root_text(fake_slack, root_ts))
    assert "by <@" not in root_text(fake_slack, root_ts)


async def test_interactions_on_unknown_threads_or_other_actions_are_harmless(
    make_bridge: Any, fake_slack: FakeSlack, fake_reply: FakeReply
) -> None:
    bridge = await make_bridge()
    root_ts = await open_handover(bridge, fake_slack, fake_reply)
    await click(bridge, "1600000000.000001", "handover_claim")
    await click(bridge, root_ts, "some_other_button")
    body = b"payload=" + orjson.dumps({"type": "view_submission", "user": {"id": ALICE}})
    status, _ = await post_raw(
        bridge,
        "/slack/interactions",
        body,
        signed_headers(body, content_type="application/x-www-form-urlencoded"),
    )
    assert status == 200
    await reply(bridge, root_ts, "sentinel")
    await wait_until(lambda: texts(fake_reply) == ["sentinel"])
    assert lifecycle_types(fake_reply) == ["handover_opened", "handover_claimed", "agent_message"]
    await wait_until(lambda: action_ids(fake_slack, root_ts) == ["handover_resolve", "handover_transfer"])
