"""Issue 12 item 3: a new thread opens in at most 2 posts however long the history, and the full
history goes into the thread as a transcript file (files.getUploadURLExternal, the upload,
files.completeUploadExternal) that never holds the thread's lines back. Through the bridge's real
endpoints, a real valkey-server and the fake Slack, which keeps the uploaded bytes."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bridge.keys import FILE
from bridge.opening import file_comment, plan, transcript_name
from bridge.runtime import BRIDGE
from bridge.slack_format import RESOLVE_ACTION
from tests.conftest import TEST_DELIVERY, MakeBridge, app_config, serve_bridge
from tests.harness import eventually, wait_until
from tests.harness.fake_slack import DEFAULT_TOKEN, FakeSlack, SlackMessage
from tests.helpers import CHANNEL, BridgeClient, block_action, escalation, message

LONG = "x" * 280 + " the end of a long question that goes on " + "y" * 400


def said(n: int) -> str:
    return f"user line {n:02d}" + (f" {LONG}" if n % 7 == 3 else "")


async def chat(bridge: BridgeClient, client_id: str, exchanges: int) -> None:
    for n in range(exchanges):
        body = message(client_id, said(n), f"bot answer {n:02d}")
        assert await bridge.hook(body) == (200, {"ok": True})


async def drained(bridge: BridgeClient) -> bool:
    return not any((await bridge.app[BRIDGE].store.pending_counts()).values())


def posts_to(fake_slack: FakeSlack) -> list[dict]:
    return [c.params for c in fake_slack.calls_to("chat.postMessage") if c.response.get("ok")]


def thread_posts(fake_slack: FakeSlack, root: SlackMessage) -> list[SlackMessage]:
    return fake_slack.replies(root.channel, root.ts)


async def test_a_long_history_opens_in_two_posts_and_the_full_one_is_attached(
    bridge: BridgeClient, fake_slack: FakeSlack
) -> None:
    await chat(bridge, "long", 30)
    assert await bridge.hook(escalation("long")) == (200, {"ok": True})
    await wait_until(lambda: len(fake_slack.uploaded(CHANNEL)) == 1, 10)
    await eventually(lambda: drained(bridge))

    [root] = fake_slack.roots(CHANNEL)
    assert len(posts_to(fake_slack)) == 2  # the root, then the whole opening history
    opening, shared = thread_posts(fake_slack, root)
    assert opening.text.startswith("_Conversation so far: the last ")
    assert "of 30 exchanges, in full in the attached transcript_" in opening.text
    assert "user line 29" in opening.text and "bot answer 29" in opening.text  # the latest, at once
    assert "user line 00" not in opening.text  # beyond history.shown_on_open (20)
    assert "user line 24 " + "x" * 250 in opening.text and LONG not in opening.text  # cut at 300
    assert len(opening.text) <= 3900  # delivery.max_message_chars

    [upload] = fake_slack.uploaded(CHANNEL, root.ts)
    assert upload.filename == "transcript-long.txt" == transcript_name("long")
    assert (upload.channel, upload.thread_ts, upload.title) == (CHANNEL, root.ts, "Transcript long")
    text = upload.text
    for n in range(30):  # every exchange Redis holds, uncut, in order
        assert f"User: {said(n)}\n" in text
        assert f"Bot (SmallTalk): bot answer {n:02d}\n" in text
    assert text.index("user line 00") < text.index("user line 29")
    assert "30 exchange(s)" in text.splitlines()[0]
    [asked] = [c.params for c in fake_slack.calls_to("files.getUploadURLExternal")]
    assert (asked["filename"], int(asked["length"])) == ("transcript-long.txt", len(text.encode()))
    # The file is shared below the opening post, in the thread.
    assert shared.params["files"] == [
        {"id": upload.file_id, "title": "Transcript long", "name": upload.filename}
    ]
    assert "Full history before this handover: 30 exchange(s)" in shared.text


async def test_a_new_handover_gets_its_file_even_behind_the_last_ones_closing_posts(
    bridge: BridgeClient, fake_slack: FakeSlack
) -> None:
    """The file waits for its own root, which may queue behind the previous handover's closing note
    and root update in a slow channel: it is not taken for a root that was never posted."""
    assert await bridge.hook(escalation("twice")) == (200, {"ok": True})
    await wait_until(lambda: len(fake_slack.roots(CHANNEL)) == 1)
    await eventually(lambda: drained(bridge))
    [first] = fake_slack.roots(CHANNEL)
    fake_slack.delay(1.0, methods=["chat.postMessage", "chat.update"])
    assert await bridge.interaction(block_action(CHANNEL, first.ts, RESOLVE_ACTION)) == 200
    await chat(bridge, "twice", 30)
    assert await bridge.hook(escalation("twice")) == (200, {"ok": True})
    await wait_until(lambda: len(fake_slack.roots(CHANNEL)) == 2, 15)
    second = fake_slack.roots(CHANNEL)[1]
    await wait_until(lambda: len(fake_slack.uploaded(CHANNEL, second.ts)) == 1, 15)
    assert await bridge.app[BRIDGE].store.dead_letters() == []


async def test_a_short_history_opens_in_two_posts_without_a_file(
    bridge: BridgeClient, fake_slack: FakeSlack
) -> None:
    for n in range(3):
        assert await bridge.hook(message("short", f"hello {n}", f"answer {n}")) == (200, {"ok": True})
    assert await bridge.hook(escalation("short")) == (200, {"ok": True})
    await wait_until(lambda: len(posts_to(fake_slack)) == 2, 10)
    await eventually(lambda: drained(bridge))
    [root] = fake_slack.roots(CHANNEL)
    [opening] = thread_posts(fake_slack, root)
    assert opening.text.startswith("_Conversation so far: 3 exchange(s)_\n")
    assert all(f"hello {n}" in opening.text for n in range(3))
    assert fake_slack.calls_to("files.getUploadURLExternal") == []


async def test_the_transcript_never_holds_the_lines_back_and_a_permanent_failure_is_a_dead_letter(
    bridge: BridgeClient, fake_slack: FakeSlack
) -> None:
    # Slow (the attempt takes 2 s), then refused for good: the team disabled file uploads.
    fake_slack.delay(2.0, methods=["files.getUploadURLExternal"])
    fake_slack.fail_with_status(200, error="file_uploads_disabled", methods=["files.getUploadURLExternal"])
    await chat(bridge, "blocked", 25)
    assert await bridge.hook(escalation("blocked")) == (200, {"ok": True})
    await wait_until(lambda: len(posts_to(fake_slack)) == 2, 10)  # root and opening post
    [root] = fake_slack.roots(CHANNEL)
    await asyncio.sleep(0.5)  # the file lane (polling every 100 ms) is inside its 2 s upload call now
    for n in range(3):
        assert await bridge.hook(message("blocked", f"live {n}", f"live answer {n}")) == (200, {"ok": True})
    texts = lambda: " ".join(m.text for m in thread_posts(fake_slack, root))  # noqa: E731
    await wait_until(lambda: all(f"live {n}" in texts() for n in range(3)), 10)
    assert fake_slack.calls_to("files.getUploadURLExternal") == []  # still waiting for its answer

    store = bridge.app[BRIDGE].store

    async def buried() -> bool:
        return [d.reason for d in await store.dead_letters() if d.lane == FILE] == ["transcript_failed"]

    await eventually(buried)
    [letter] = [d for d in await store.dead_letters() if d.lane == FILE]
    assert (letter.kind, letter.cid) == ("transcript", "skill1:blocked")
    assert fake_slack.uploaded() == [] and fake_slack.calls_to("files.completeUploadExternal") == []
    assert len(fake_slack.calls_to("files.getUploadURLExternal")) == 1  # permanent: not retried
    await eventually(lambda: drained(bridge))


async def test_a_failed_upload_step_is_retried(make_bridge: MakeBridge, fake_slack: FakeSlack) -> None:
    bridge = await make_bridge(replies=False)
    fake_slack.fail_with_status(503, methods=["upload"], times=2)  # the upload URL, twice
    await chat(bridge, "retry", 22)
    assert await bridge.hook(escalation("retry")) == (200, {"ok": True})
    await wait_until(lambda: len(fake_slack.uploaded(CHANNEL)) == 1, 15)
    uploads = [c for c in fake_slack.calls if c.method == "upload"]
    assert [c.status for c in uploads] == [503, 503, 200]
    assert "user line 00" in fake_slack.uploaded(CHANNEL)[0].text


async def test_without_files_write_the_thread_opens_and_the_file_is_a_dead_letter(
    bridge: BridgeClient, fake_slack: FakeSlack
) -> None:
    fake_slack.scopes.discard("files:write")
    await chat(bridge, "noscope", 21)
    assert await bridge.hook(escalation("noscope")) == (200, {"ok": True})
    store = bridge.app[BRIDGE].store

    async def buried() -> bool:
        return [(d.lane, d.reason) for d in await store.dead_letters()] == [(FILE, "transcript_failed")]

    await eventually(buried)
    assert len(posts_to(fake_slack)) == 2  # the root and the opening post went out all the same
    [answer] = [c.response for c in fake_slack.calls_to("files.getUploadURLExternal")]
    assert (answer["error"], answer["needed"]) == ("missing_scope", "files:write")


def test_the_file_message_says_what_the_thread_shows() -> None:
    short = [{"t": 1, "in": "hi", "out": "hello"}]
    assert file_comment(plan(short, 4, 300, 3900)) == (
        "Full history before this handover: 5 exchange(s), the last 1 shown above."
    )
    long = [{"t": 1, "in": LONG, "out": "hello"}]
    said = file_comment(plan(long, 0, 300, 3900))
    assert said.endswith("1 exchange(s), shown above, with long lines cut there.")
    assert file_comment(plan([], 3, 300, 3900)) == (
        "Full history before this handover: 3 exchange(s), none shown in the thread."
    )


@pytest.mark.parametrize(("max_chars", "line_chars"), [(500, 300), (3900, 20), (39000, 1500)])
def test_the_opening_post_always_fits_one_message(max_chars: int, line_chars: int) -> None:
    lines = [{"t": 1, "in": LONG * 3, "out": LONG, "intent": "I"} for _ in range(40)]
    shown = plan(lines, 10, line_chars, max_chars)
    assert 1 <= shown.shown <= 40 and len(shown.text) <= max_chars and shown.needs_file
    assert shown.held == 50


# -- the fake's upload is as strict as Slack's -----------------------------------------------------


async def test_fake_slack_upload_steps_refuse_what_slack_refuses(fake_slack: FakeSlack) -> None:
    client = AsyncWebClient(token=DEFAULT_TOKEN, base_url=fake_slack.url, retry_handlers=[])

    async def refused(call: Any) -> str:
        with pytest.raises(SlackApiError) as err:
            await call
        return str(err.value.response.data["error"])

    assert await refused(client.files_getUploadURLExternal(filename="t.txt", length=0)) == "missing_argument"
    assert await refused(client.api_call("files.getUploadURLExternal", params={"length": 3})) == (
        "invalid_arguments"
    )
    got = await client.files_getUploadURLExternal(filename="t.txt", length=5)
    done = client.files_completeUploadExternal(files=[{"id": got["file_id"]}], channel_id=CHANNEL)
    assert await refused(done) == "file_not_found"  # nothing uploaded yet
    async with aiohttp.ClientSession() as http:
        async with http.post(got["upload_url"], data=b"too long") as answer:
            assert answer.status == 400  # not the announced length
        async with http.post(got["upload_url"], data=b"hello") as answer:
            assert (answer.status, await answer.text()) == (200, "OK - 5")
    unknown = client.files_completeUploadExternal(files=[{"id": got["file_id"]}], channel_id="C0NOWHERE")
    assert await refused(unknown) == "channel_not_found"
    ok = await client.files_completeUploadExternal(
        files=[{"id": got["file_id"], "title": "T"}], channel_id=CHANNEL, initial_comment="here"
    )
    assert ok["files"] == [{"id": got["file_id"], "title": "T"}]
    assert [u.text for u in fake_slack.uploaded(CHANNEL)] == ["hello"]
    again = client.files_completeUploadExternal(files=[{"id": got["file_id"]}], channel_id=CHANNEL)
    assert await refused(again) == "file_not_found"

    fake_slack.scopes.discard("files:write")
    assert await refused(client.files_getUploadURLExternal(filename="t.txt", length=5)) == "missing_scope"


class LateCompleteSlack(FakeSlack):
    """Shares the file at once but answers files.completeUploadExternal `hold_s` later: the bridge's
    call times out with the file already in the thread (the window a crash could also fall in)."""

    def __init__(self) -> None:
        super().__init__(token=DEFAULT_TOKEN)
        self.hold_s = 0.0

    async def _handle(self, request: web.Request) -> web.Response:
        response = await super()._handle(request)
        if self.hold_s and request.match_info["method"] == "files.completeUploadExternal":
            await asyncio.sleep(self.hold_s)
        return response


async def test_a_file_attached_whose_answer_was_lost_is_not_attached_twice(redis_url: str) -> None:
    slack = LateCompleteSlack()
    slack.hold_s = 3.0  # past the bridge's Slack timeout (lease 2 s: calls end within 1 s)
    await slack.start()
    clients: list[TestClient] = []
    try:
        config = app_config(redis_url, slack.url, file={"delivery": {**TEST_DELIVERY, "lease": "2s"}})
        bridge = await serve_bridge(config, clients)
        await chat(bridge, "lost", 24)
        assert await bridge.hook(escalation("lost")) == (200, {"ok": True})
        await eventually(lambda: drained(bridge), 20)
    finally:
        for client in clients:
            await client.close()
        await slack.stop()
    assert len(slack.uploaded(CHANNEL)) == 1  # in the thread once
    assert len(slack.calls_to("files.getUploadURLExternal")) == 1  # no second upload was started
    [root] = slack.roots(CHANNEL)
    looked = [c.params for c in slack.calls_to("conversations.replies") if c.params.get("ts") == root.ts]
    assert looked  # the retry looked for the file in the thread, and found it
