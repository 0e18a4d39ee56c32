"""Issue 17: every message, both ways, visibly delivered. Through the bridge's real endpoints, a real
valkey-server, the fake Slack Web API and the fake reply endpoint (which verifies every signature)."""

from __future__ import annotations

import asyncio
import time
import urllib.parse
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge import transcript as t
from bridge.events import parse_event
from bridge.file_links import FileLinks
from bridge.handover import history_entry
from bridge.runtime import BRIDGE
from bridge.settings import SettingsError, load_app_config
from bridge.slack_format import history_lines, user_said
from tests.harness import wait_until
from tests.harness.fake_reply import DEFAULT_SECRET, FakeReply
from tests.harness.fake_slack import FakeSlack, SlackFile
from tests.helpers import CHANNEL, message, thread_reply_event
from tests.test_agents import (
    ALICE,
    BOB,
    action_ids,
    click,
    of_type,
    open_handover,
    reply,
    texts,
    thread_replies,
)
from tests.test_desk import button, interact

# -- non-text input from the user ------------------------------------------------------------------


def test_input_type_is_parsed_and_bounded() -> None:
    def parsed(value: Any) -> str:
        return parse_event(orjson.dumps(message("u", "x", input_type=value))).input_type

    assert [parsed(v) for v in ("text", "IMAGE", " audio ", None, "", 3, "<!channel>", "x" * 40)] == [
        "text",
        "image",
        "audio",
        "text",
        "text",
        "other",
        "other",
        "other",
    ]


def test_non_text_input_shows_its_type_and_urls() -> None:
    event = parse_event(
        orjson.dumps(
            message(
                "u",
                "see https://cdn.example/img/1.png?a=1&b=2 and http://x.example/y ftp://no",
                "Nice picture",
                input_type="image",
            )
        )
    )
    entry = history_entry(event, 0)
    assert entry is not None and entry["it"] == "image"
    assert user_said(entry) == "[image] https://cdn.example/img/1.png?a=1&b=2 http://x.example/y"
    assert "*User:* [image] https://cdn.example/img/1.png?a=1&amp;b=2 http://x.example/y" in (
        history_lines(entry)
    )
    bare = history_entry(parse_event(orjson.dumps(message("u", "", "", input_type="location"))), 0)
    assert bare is not None and user_said({**bare, "out": ""}) == "[location]"


async def test_non_text_input_is_mirrored_with_type_and_url(
    make_bridge: Any, fake_slack: FakeSlack, fake_reply: FakeReply
) -> None:
    bridge = await make_bridge()
    root_ts = await open_handover(bridge, fake_slack, fake_reply, client_id="ivy")
    body = message("ivy", "https://cdn.example/u/ivy/photo.jpg", "", input_type="image")
    body["payload"]["answer"] = ""
    assert await bridge.hook(body) == (200, {"ok": True})
    assert await bridge.hook(message("ivy", "", "", input_type="audio")) == (200, {"ok": True})
    await wait_until(lambda: any("[audio]" in line for line in thread_replies(fake_slack, root_ts)))
    lines = "\n".join(thread_replies(fake_slack, root_ts))
    assert "*User:* [image] https://cdn.example/u/ivy/photo.jpg" in lines
    assert "*User:* [audio]" in lines and "(empty message)" not in lines


# -- the transcript on resolve ---------------------------------------------------------------------


def test_fit_drops_the_oldest_lines_first() -> None:
    lines = [{"at": "x", "from": "user", "name": "u", "text": f"line {i:03d}"} for i in range(100)]
    size = len(orjson.dumps(lines))
    assert t.fit(lines, size) == (lines, False)
    kept, dropped = t.fit(lines, size - 1)
    assert dropped and kept == lines[1:]
    kept, dropped = t.fit(lines, 1024)
    assert dropped and kept == lines[-len(kept) :] and len(orjson.dumps(kept)) <= 1024
    assert len(orjson.dumps(lines[-len(kept) - 1 :])) > 1024


async def test_transcript_on_resolve_matches_what_was_said(
    make_bridge: Any, fake_slack: FakeSlack, fake_reply: FakeReply
) -> None:
    bridge = await make_bridge(file={"history": {"shown_on_open": 2}})
    for i in range(3):  # only the last two exchanges before the escalation are shown at open
        assert await bridge.hook(message("jack", f"before {i}", f"bot before {i}")) == (200, {"ok": True})
    root_ts = await open_handover(bridge, fake_slack, fake_reply, client_id="jack")
    await reply(bridge, root_ts, "Hi <@UAGENT02>, I am on it &amp; back soon")
    await reply(bridge, root_ts, "note: private, never in the transcript")
    await bridge.hook(message("jack", "thanks", "You are welcome"))
    await reply(bridge, root_ts, "Anything else?", user=BOB)
    await wait_until(lambda: len(of_type(fake_reply, "agent_message")) == 2)
    await click(bridge, root_ts, "handover_resolve")
    await wait_until(lambda: len(of_type(fake_reply, "handover_resolved")) == 1)
    resolved = of_type(fake_reply, "handover_resolved")[0]
    said = [(line["from"], line["name"], line["text"]) for line in resolved["transcript"]]
    assert said == [
        ("user", "user-jack", "before 2"),
        ("bot", "bot", "bot before 2"),
        ("user", "user-jack", "my parcel is late"),
        ("bot", "bot", "Let me check"),
        ("agent", "Alice", "Hi @Bob Dupont, I am on it & back soon"),
        ("user", "user-jack", "thanks"),
        ("bot", "bot", "You are welcome"),
        ("agent", "Bob Dupont", "Anything else?"),
    ]
    assert resolved["transcript_truncated"] is False
    stamps = [line["at"] for line in resolved["transcript"]]
    assert stamps == sorted(stamps) and all(s.endswith("Z") for s in stamps)
    assert "lines" not in resolved and "lines_cut" not in resolved

    # The next handover's transcript starts afresh, from the history shown when it opened.
    new_ts = await open_handover(bridge, fake_slack, fake_reply, client_id="jack")
    await click(bridge, new_ts, "handover_resolve", user=ALICE)
    await wait_until(lambda: len(of_type(fake_reply, "handover_resolved")) == 2)
    again = of_type(fake_reply, "handover_resolved")[1]["transcript"]
    assert [(line["from"], line["text"]) for line in again] == [
        ("user", "thanks"),
        ("bot", "You are welcome"),
        ("user", "still late (1)"),
        ("bot", "Let me check"),
    ]


async def test_transcript_over_the_cap_drops_the_oldest_lines(
    make_bridge: Any, fake_slack: FakeSlack, fake_reply: FakeReply
) -> None:
    bridge = await make_bridge(file={"replies": {"transcript_max_bytes": 2048}})
    root_ts = await open_handover(bridge, fake_slack, fake_reply, client_id="kim")
    for i in range(30):
        await bridge.hook(message("kim", f"message number {i:02d} " + "x" * 40, f"answer {i:02d}"))
    await click(bridge, root_ts, "handover_resolve")
    await wait_until(lambda: len(of_type(fake_reply, "handover_resolved")) == 1, timeout_s=10)
    resolved = of_type(fake_reply, "handover_resolved")[0]
    assert resolved["transcript_truncated"] is True
    lines = resolved["transcript"]
    assert len(orjson.dumps(lines)) <= 2048
    assert lines[-1]["text"] == "answer 29" and lines[-2]["text"].startswith("message number 29 ")
    assert not any("my parcel is late" in line["text"] for line in lines)  # the oldest went first


# -- receipts ----------------------------------------------------------------------------------------


def said(
    fake_slack: FakeSlack, root_ts: str, text: str, *, user: str = ALICE, **extra: Any
) -> dict[str, Any]:
    """An agent's thread message as Slack holds it (so reactions can land on it) and delivers it."""
    msg = fake_slack.add_message(CHANNEL, text, user=user, thread_ts=root_ts)
    return thread_reply_event(CHANNEL, root_ts, text, user=user, ts=msg.ts, **extra)


def retry_click(channel: str, value: str, *, user: str = ALICE) -> bytes:
    """The reply_retry button of an ephemeral message, as Slack posts its block_actions payload."""
    payload = {
        "type": "block_actions",
        "user": {"id": user, "username": "alice", "name": "alice", "team_id": "TFAKE0001"},
        "channel": {"id": channel, "name": "support"},
        "container": {
            "type": "message",
            "message_ts": "1700000000.000900",
            "channel_id": channel,
            "is_ephemeral": True,
        },
        "actions": [
            {
                "action_id": "reply_retry",
                "block_id": "r",
                "type": "button",
                "value": value,
                "action_ts": f"{time.time():.6f}",
            }
        ],
    }
    return urllib.parse.urlencode({"payload": orjson.dumps(payload).decode()}).encode()


async def test_accepted_reply_gets_a_check_mark(
    make_bridge: Any, fake_slack: FakeSlack, fake_reply: FakeReply
) -> None:
    bridge = await make_bridge()
    root_ts = await open_handover(bridge, fake_slack, fake_reply)
    event = said(fake_slack, root_ts, "on it")
    assert await bridge.slack_event(event) == (200, {"ok": True})
    ts = event["event"]["ts"]
    await wait_until(lambda: fake_slack.reactions(CHANNEL, ts) == ["white_check_mark"])
    assert texts(fake_reply) == ["on it"]
    [call] = fake_slack.calls_to("reactions.add")
    assert call.params == {"channel": CHANNEL, "timestamp": ts, "name": "white_check_mark"}
    body = of_type(fake_reply, "agent_message")[0]
    assert "slack_ts" not in body and "slack_channel" not in body


async def test_refused_reply_gets_a_warning_and_a_retry_button_then_its_check_mark(
    make_bridge: Any, fake_slack: FakeSlack, fake_reply: FakeReply
) -> None:
    bridge = await make_bridge()
    root_ts = await open_handover(bridge, fake_slack, fake_reply)
    await click(bridge, root_ts, "handover_claim")
    await wait_until(lambda: len(of_type(fake_reply, "handover_claimed")) == 1)
    fake_reply.fail_with_status(400, times=1)
    event = said(fake_slack, root_ts, "this one bounces")
    ts = event["event"]["ts"]
    assert await bridge.slack_event(event) == (200, {"ok": True})
    await wait_until(lambda: fake_slack.reactions(CHANNEL, ts) == ["warning"])
    await wait_until(lambda: len(fake_slack.ephemerals) == 1)
    ephemeral = fake_slack.ephemerals[0]
    assert (ephemeral["channel"], ephemeral["user"], ephemeral["thread_ts"]) == (CHANNEL, ALICE, root_ts)
    assert "http_400" in ephemeral["text"]
    [button] = [e for b in ephemeral["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert button["action_id"] == "reply_retry"
    store = bridge.app[BRIDGE].store
    [dead] = await store.dead_letters()
    assert (dead.lane, dead.reason, dead.data["slack_text"]) == ("reply", "http_400", "this one bounces")
    assert button["value"] == f"{dead.cid} {dead.id}"
    assert texts(fake_reply) == []

    assert await bridge.interaction(retry_click(CHANNEL, button["value"])) == 200
    await wait_until(lambda: texts(fake_reply) == ["this one bounces"])
    await wait_until(lambda: fake_slack.reactions(CHANNEL, ts) == ["warning", "white_check_mark"])
    assert await store.dead_letters() == []
    # A second click (the ephemeral stays on screen) finds nothing to retry: nothing sent twice.
    assert await bridge.interaction(retry_click(CHANNEL, button["value"])) == 200
    assert await bridge.interaction(retry_click(CHANNEL, "skill1:carol 0-1")) == 200
    await reply(bridge, root_ts, "sentinel")
    await wait_until(lambda: "sentinel" in texts(fake_reply))
    assert texts(fake_reply) == ["this one bounces", "sentinel"]


async def test_reactions_are_paced_and_never_hold_up_replies(
    make_bridge: Any, fake_slack: FakeSlack, fake_reply: FakeReply
) -> None:
    bridge = await make_bridge()
    root_ts = await open_handover(bridge, fake_slack, fake_reply)
    fake_slack.rate_limit_for(4.0, retry_after=4, methods=["reactions.add"])
    events = [said(fake_slack, root_ts, f"reply {i}") for i in range(3)]
    started = time.monotonic()
    for event in events:
        assert await bridge.slack_event(event) == (200, {"ok": True})
    await wait_until(lambda: len(texts(fake_reply)) == 3)
    assert time.monotonic() - started < 3.0  # the replies did not wait for Slack's reactions
    assert all(fake_slack.reactions(CHANNEL, e["event"]["ts"]) == [] for e in events)
    await wait_until(
        lambda: all(fake_slack.reactions(CHANNEL, e["event"]["ts"]) for e in events), timeout_s=12
    )
    refused = [c for c in fake_slack.calls_to("reactions.add") if c.status == 429]
    assert len(refused) == 1  # the channel paused on Retry-After, not hammered


# -- files from agents -------------------------------------------------------------------------------

PUBLIC_URL = "https://bridge.example/support"


def file_share(
    fake_slack: FakeSlack, root_ts: str, text: str, *shared: SlackFile, user: str = ALICE
) -> dict[str, Any]:
    return said(
        fake_slack, root_ts, text, user=user, subtype="file_share", files=[f.to_api() for f in shared]
    )


async def fetch(bridge: Any, url: str) -> tuple[int, bytes, Any]:
    assert url.startswith(f"{PUBLIC_URL}/files/")
    response = await bridge.client.get(url.removeprefix(PUBLIC_URL))
    return response.status, await response.read(), response.headers


async def test_a_file_is_relayed_and_downloaded_through_its_signed_link(
    make_bridge: Any, fake_slack: FakeSlack, fake_reply: FakeReply
) -> None:
    bridge = await make_bridge(bridge_public_url=PUBLIC_URL + "/")
    root_ts = await open_handover(bridge, fake_slack, fake_reply)
    content = bytes(range(256)) * 4000  # 1 MB, every byte value
    invoice = fake_slack.add_file("invoice 2026.pdf", content, mimetype="application/pdf")
    photo = fake_slack.add_file("photo.png", b"\x89PNG fake", mimetype="image/png")
    assert await bridge.slack_event(file_share(fake_slack, root_ts, "", invoice, photo)) == (
        200,
        {"ok": True},
    )
    await wait_until(lambda: len(of_type(fake_reply, "agent_message")) == 1)
    body = of_type(fake_reply, "agent_message")[0]
    assert body["text"] == ""
    assert [{k: v for k, v in f.items() if k != "url"} for f in body["files"]] == [
        {"id": invoice.id, "name": "invoice 2026.pdf", "mimetype": "application/pdf", "size": len(content)},
        {"id": photo.id, "name": "photo.png", "mimetype": "image/png", "size": 9},
    ]
    await click(bridge, root_ts, "handover_resolve")
    await wait_until(lambda: len(of_type(fake_reply, "handover_resolved")) == 1)
    [line] = [x for x in of_type(fake_reply, "handover_resolved")[0]["transcript"] if x["from"] == "agent"]
    assert line["text"] == "[file] invoice 2026.pdf\n[file] photo.png"
    status, data, headers = await fetch(bridge, body["files"][0]["url"])
    assert status == 200 and data == content
    assert headers["Content-Type"] == "application/pdf"
    assert headers["Content-Disposition"] == "attachment; filename*=UTF-8''invoice%202026.pdf"
    assert (await fetch(bridge, body["files"][1]["url"]))[1] == b"\x89PNG fake"
    downloads = fake_slack.calls_to("files.download")
    assert [c.params["file"] for c in downloads] == [invoice.id, photo.id]
    assert fake_slack.ephemerals == []


async def test_forged_expired_or_gone_links_get_a_json_404_never_the_file(
    make_bridge: Any, fake_slack: FakeSlack, fake_reply: FakeReply
) -> None:
    bridge = await make_bridge(bridge_public_url=PUBLIC_URL)
    secret = fake_slack.add_file("secret.txt", b"top secret", mimetype="text/plain")
    gone = fake_slack.add_file("gone.txt", b"deleted since", mimetype="text/plain")
    links = FileLinks.create(DEFAULT_SECRET, PUBLIC_URL)
    later = int(time.time()) + 3600
    good = links.url(secret.id, later)
    assert (await fetch(bridge, good))[:2] == (200, b"top secret")
    token = good.rpartition("/")[2]
    file_id, expires, signature = token.split(".")
    forged = [
        links.url(secret.id, int(time.time()) - 1),  # expired (correctly signed)
        FileLinks.create("another secret", PUBLIC_URL).url(secret.id, later),
        f"{PUBLIC_URL}/files/{file_id}.{int(expires) + 1}.{signature}",  # expiry pushed back
        f"{PUBLIC_URL}/files/{gone.id}.{expires}.{signature}",  # another file, same signature
        f"{PUBLIC_URL}/files/{file_id}.{expires}.{signature[:-2]}",
        f"{PUBLIC_URL}/files/{file_id}.{expires}",
        f"{PUBLIC_URL}/files/{file_id}",
        f"{PUBLIC_URL}/files/..%2F..%2Fetc%2Fpasswd",
        f"{PUBLIC_URL}/files/{file_id}.%C2%B2{expires[1:]}.{signature}",  # "²": a digit to str.isdigit()
        f"{PUBLIC_URL}/files/{file_id}.{expires}.%FF{signature}",  # not UTF-8
        links.url("F99999999", later),  # signed, but Slack has no such file
    ]
    gone.deleted = True
    forged.append(links.url(gone.id, later))  # signed, deleted in Slack since
    downloads = len(fake_slack.calls_to("files.download"))
    for url in forged:
        status, data, headers = await fetch(bridge, url)
        assert (status, orjson.loads(data)) == (404, {"ok": False, "error": "not found"}), url
        assert headers["Content-Type"].startswith("application/json")
    assert len(fake_slack.calls_to("files.download")) == downloads  # no byte was fetched for them


async def test_files_not_relayed_are_explained_and_the_text_still_goes(
    make_bridge: Any, fake_slack: FakeSlack, fake_reply: FakeReply
) -> None:
    bridge = await make_bridge(bridge_public_url=PUBLIC_URL, file={"replies": {"max_file_bytes": 1024}})
    root_ts = await open_handover(bridge, fake_slack, fake_reply)
    big = fake_slack.add_file("scan.tiff", b"x" * 2048, mimetype="image/tiff")
    small = fake_slack.add_file("note.txt", b"fits", mimetype="text/plain")
    event = file_share(fake_slack, root_ts, "here you go", big, small)
    assert await bridge.slack_event(event) == (200, {"ok": True})
    assert await bridge.slack_event(event, **{"X-Slack-Retry-Num": "1"}) == (200, {"ok": True})
    await wait_until(lambda: len(of_type(fake_reply, "agent_message")) == 1)
    body = of_type(fake_reply, "agent_message")[0]
    assert body["text"] == "here you go" and [f["name"] for f in body["files"]] == ["note.txt"]
    await wait_until(lambda: len(fake_slack.ephemerals) == 1)
    told = fake_slack.ephemerals[0]
    assert (told["channel"], told["user"], told["thread_ts"]) == (CHANNEL, ALICE, root_ts)
    assert "scan.tiff" in told["text"] and "limit" in told["text"] and "note.txt" not in told["text"]
    assert "The text of your message was sent" in told["text"]
    await reply(bridge, root_ts, "sentinel")
    await wait_until(lambda: "sentinel" in texts(fake_reply))
    assert len(fake_slack.ephemerals) == 1  # Slack's retry of the event: relayed once, told once
    status, _, _ = await fetch(bridge, FileLinks.create(DEFAULT_SECRET, PUBLIC_URL).url(big.id, 2**33))
    assert status == 404  # not served even through a valid link: over the cap


async def test_without_a_public_url_files_are_not_relayed_and_the_agent_is_told(
    make_bridge: Any, fake_slack: FakeSlack, fake_reply: FakeReply
) -> None:
    bridge = await make_bridge()
    root_ts = await open_handover(bridge, fake_slack, fake_reply)
    shared = fake_slack.add_file("doc.pdf", b"%PDF", mimetype="application/pdf")
    assert await bridge.slack_event(file_share(fake_slack, root_ts, "", shared)) == (200, {"ok": True})
    assert await bridge.slack_event(file_share(fake_slack, root_ts, "and a word", shared)) == (
        200,
        {"ok": True},
    )
    await wait_until(lambda: len(fake_slack.ephemerals) == 2)
    assert all("BRIDGE_PUBLIC_URL" in e["text"] for e in fake_slack.ephemerals)
    await wait_until(lambda: texts(fake_reply) == ["and a word"])
    assert of_type(fake_reply, "agent_message")[0]["files"] == []
    status, data, _ = await fetch(bridge, FileLinks.create(DEFAULT_SECRET, PUBLIC_URL).url(shared.id, 2**33))
    assert status == 404 and orjson.loads(data) == {"ok": False, "error": "not found"}


# -- edits and deletions -----------------------------------------------------------------------------


def changed(event: dict[str, Any], new_text: str, previous_text: str | None = None) -> dict[str, Any]:
    """Slack's message_changed event for an edit of the thread message `event` carried."""
    original = event["event"]
    before = {k: original[k] for k in ("type", "user", "ts", "thread_ts", "text")}
    stamp = f"{time.time():.6f}"
    return {
        **event,
        "event_id": f"Ev{abs(hash((original['ts'], new_text, stamp))) % 10**10}",
        "event": {
            "type": "message",
            "subtype": "message_changed",
            "hidden": True,
            "channel": original["channel"],
            "ts": stamp,
            "event_ts": stamp,
            "message": {
                **{k: original[k] for k in ("type", "user", "ts", "thread_ts")},
                "text": new_text,
                "edited": {"user": original["user"], "ts": stamp},
            },
            "previous_message": {**before, "text": previous_text or original["text"]},
        },
    }


def deleted(event: dict[str, Any]) -> dict[str, Any]:
    original = event["event"]
    stamp = f"{time.time():.6f}"
    return {
        **event,
        "event_id": f"EvDEL{abs(hash(original['ts'])) % 10**8}",
        "event": {
            "type": "message",
            "subtype": "message_deleted",
            "hidden": True,
            "channel": original["channel"],
            "ts": stamp,
            "deleted_ts": original["ts"],
            "previous_message": {k: original[k] for k in ("type", "user", "ts", "thread_ts", "text")},
        },
    }


async def test_an_edit_and_a_deletion_follow_the_reply_in_order(
    make_bridge: Any, fake_slack: FakeSlack, fake_reply: FakeReply
) -> None:
    bridge = await make_bridge()
    root_ts = await open_handover(bridge, fake_slack, fake_reply)
    first = said(fake_slack, root_ts, "Your parcel left on Mondy")
    second = said(fake_slack, root_ts, "wrong thread, sorry")
    fixed = "Your parcel left on <@UAGENT02>'s Monday"
    for envelope in (first, changed(first, fixed), second, deleted(second)):
        assert await bridge.slack_event(envelope) == (200, {"ok": True})
    # An unfurl (same text) and an edit of a message never relayed are not relayed either.
    note = said(fake_slack, root_ts, "note: private")
    for envelope in (changed(first, fixed, previous_text=fixed), note, changed(note, "x")):
        assert await bridge.slack_event(envelope) == (200, {"ok": True})
    await reply(bridge, root_ts, "sentinel")
    await wait_until(lambda: "sentinel" in texts(fake_reply))
    bodies = [b for b in fake_reply.bodies() if b["type"].startswith("agent_message")]
    assert [(b["type"], b.get("text")) for b in bodies] == [
        ("agent_message", "Your parcel left on Mondy"),
        ("agent_message_edited", "Your parcel left on @Bob Dupont's Monday"),
        ("agent_message", "wrong thread, sorry"),
        ("agent_message_deleted", None),
        ("agent_message", "sentinel"),
    ]
    assert bodies[1]["id"] == bodies[0]["id"] and bodies[3]["id"] == bodies[2]["id"]
    assert bodies[0]["id"] != bodies[2]["id"]
    assert bodies[1]["agent"] == bodies[3]["agent"] == {"slack_user_id": ALICE, "name": "Alice"}
    assert {b["thread_ts"] for b in bodies} == {root_ts}
    assert all(b["at"].endswith("Z") for b in bodies[1:4:2])
    assert fake_slack.ephemerals == []
    # The transcript keeps the reply's last words, and no deleted reply.
    await click(bridge, root_ts, "handover_resolve")
    await wait_until(lambda: len(of_type(fake_reply, "handover_resolved")) == 1)
    agents = [
        line["text"]
        for line in of_type(fake_reply, "handover_resolved")[0]["transcript"]
        if line["from"] == "agent"
    ]
    assert agents == ["Your parcel left on @Bob Dupont's Monday", "sentinel"]


async def test_an_edit_after_the_window_is_not_relayed_and_its_author_is_told(
    make_bridge: Any, fake_slack: FakeSlack, fake_reply: FakeReply
) -> None:
    bridge = await make_bridge(file={"replies": {"edit_window": "1s"}})
    root_ts = await open_handover(bridge, fake_slack, fake_reply)
    original = said(fake_slack, root_ts, "see you tomorow")
    assert await bridge.slack_event(original) == (200, {"ok": True})
    await wait_until(lambda: texts(fake_reply) == ["see you tomorow"])
    await asyncio.sleep(1.2)
    late = changed(original, "see you tomorrow")
    assert await bridge.slack_event(late) == (200, {"ok": True})
    assert await bridge.slack_event(late, **{"X-Slack-Retry-Num": "1"}) == (200, {"ok": True})
    await wait_until(lambda: len(fake_slack.ephemerals) == 1)
    told = fake_slack.ephemerals[0]
    assert (told["user"], told["thread_ts"]) == (ALICE, root_ts)
    assert "edit was not sent" in told["text"] and "1s" in told["text"]
    await reply(bridge, root_ts, "sentinel")
    await wait_until(lambda: "sentinel" in texts(fake_reply))
    assert [b["type"] for b in fake_reply.bodies() if b["type"].startswith("agent")] == ["agent_message"] * 2
    assert len(fake_slack.ephemerals) == 1  # Slack's retry of the event told nobody twice


@given(st.text(max_size=120))
def test_no_token_but_the_bridge_own_opens_a_file(token: str) -> None:
    links = FileLinks.create("s3cret", PUBLIC_URL)
    assert links.file_of(token, 0) is None
    good = links.url("F0123ABCD", 2000).rpartition("/")[2]
    assert links.file_of(good, 1999) == "F0123ABCD"
    assert links.file_of(good, 2000) is None  # expired at its second


def test_public_url_must_be_a_url_and_links_need_a_reply_endpoint(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    for name, value in (
        ("SMARTLY_WEBHOOK_KEY", "k1234"),
        ("SLACK_BOT_TOKEN", "xoxb-1"),
        ("SLACK_CHANNEL", CHANNEL),
        ("BRIDGE_PUBLIC_URL", "bridge.example.com"),
    ):
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match="BRIDGE_PUBLIC_URL must be"):
        load_app_config()
    monkeypatch.setenv("BRIDGE_PUBLIC_URL", PUBLIC_URL)
    assert load_app_config().file_links is None  # no reply endpoint: nobody to relay files to
    monkeypatch.setenv("BRIDGE_REPLY_URL", "https://backend.example/bridge")
    monkeypatch.setenv("BRIDGE_REPLY_SECRET", "s3cret-s3cret")
    links = load_app_config().file_links
    assert links is not None and links.url("F0123", 9).startswith(f"{PUBLIC_URL}/files/F0123.9.")


async def test_without_reactions_write_replies_and_the_thread_still_flow(
    make_bridge: Any, fake_slack: FakeSlack, fake_reply: FakeReply
) -> None:
    fake_slack.scopes.discard("reactions:write")
    bridge = await make_bridge()
    root_ts = await open_handover(bridge, fake_slack, fake_reply, client_id="lea")
    assert await bridge.slack_event(said(fake_slack, root_ts, "hello Lea")) == (200, {"ok": True})
    await wait_until(lambda: texts(fake_reply) == ["hello Lea"])
    await wait_until(lambda: any(c.status == 200 for c in fake_slack.calls_to("reactions.add")))
    assert fake_slack.calls_to("reactions.add")[0].response["error"] == "missing_scope"
    await bridge.hook(message("lea", "after the receipt", "noted"))  # the thread is not held up
    await wait_until(lambda: any("after the receipt" in t for t in thread_replies(fake_slack, root_ts)))
    assert bridge.app[BRIDGE].slack_health.state != "auth_failed"


async def test_a_reopened_handover_transcript_carries_on_from_the_first_lines(
    make_bridge: Any, fake_slack: FakeSlack, fake_reply: FakeReply
) -> None:
    bridge = await make_bridge(file={"handover": {"reopen_window": "1m"}})
    root_ts = await open_handover(bridge, fake_slack, fake_reply, client_id="max")
    await reply(bridge, root_ts, "first answer")
    await interact(bridge, button(fake_slack, root_ts, "handover_resolve"))
    await wait_until(lambda: action_ids(fake_slack, root_ts) == ["handover_reopen"])
    assert await interact(bridge, button(fake_slack, root_ts, "handover_reopen")) == (200, {})
    await wait_until(lambda: len(of_type(fake_reply, "handover_opened")) == 2)
    await bridge.hook(message("max", "still there?", "bot: still there?"))
    await reply(bridge, root_ts, "back on it")
    await wait_until(lambda: texts(fake_reply) == ["first answer", "back on it"])
    await interact(bridge, button(fake_slack, root_ts, "handover_resolve"))
    await wait_until(lambda: len(of_type(fake_reply, "handover_resolved")) == 2)
    first, second = (r["transcript"] for r in of_type(fake_reply, "handover_resolved"))
    said_first = [line["text"] for line in first]
    assert said_first == ["my parcel is late", "Let me check", "first answer"]
    after = ["still there?", "bot: still there?", "back on it"]
    assert [line["text"] for line in second] == [*said_first, *after]


async def test_a_link_never_serves_slack_sign_in_page_nor_more_than_the_cap(
    make_bridge: Any, fake_slack: FakeSlack, fake_reply: FakeReply
) -> None:
    bridge = await make_bridge(bridge_public_url=PUBLIC_URL, file={"replies": {"max_file_bytes": 4096}})
    links = FileLinks.create(DEFAULT_SECRET, PUBLIC_URL)
    hidden = fake_slack.add_file("hidden.pdf", b"%PDF secret", mimetype="application/pdf")
    hidden.restricted = True  # Slack answers its sign-in page (200, HTML), not the file
    status, data, headers = await fetch(bridge, links.url(hidden.id, 2**33))
    assert status == 502 and orjson.loads(data)["ok"] is False
    assert headers["Content-Type"].startswith("application/json") and b"Sign in" not in data
    # files.info says 100 bytes, Slack sends 10,000: not a byte over the cap goes out.
    liar = fake_slack.add_file("big.bin", b"z" * 10_000)
    liar.reported_size = 100
    status, data, _ = await fetch(bridge, links.url(liar.id, 2**33))
    assert (status, orjson.loads(data)) == (404, {"ok": False, "error": "not found"})
