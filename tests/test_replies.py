"""The reply endpoint contract, piece by piece: the signature a receiver checks, how each answer of the
owner's endpoint is classified (retry, wait, dead letter), and Slack markup turned back into plain text."""

from __future__ import annotations

import hashlib
import hmac
import time

import aiohttp
import pytest

from bridge.replies import ReplyError, ReplySender, sign, verify
from bridge.slack_format import slack_to_plain
from tests.harness.fake_reply import DEFAULT_SECRET, SIGNATURE_HEADER, TIMESTAMP_HEADER, FakeReply

BODY = b'{"type":"agent_message","text":"Bonjour"}'


def test_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    expected = hmac.new(b"s3cret", b"1700000000." + BODY, hashlib.sha256).hexdigest()
    assert sign("s3cret", 1700000000, BODY) == f"v1={expected}"


def test_verify_accepts_only_the_exact_signed_bytes_within_five_minutes() -> None:
    now = 1_700_000_000.0
    good = sign("s3cret", int(now), BODY)
    assert verify("s3cret", str(int(now)), BODY, good, now=now)
    assert verify("s3cret", str(int(now) - 299), BODY, sign("s3cret", int(now) - 299, BODY), now=now)
    assert not verify("s3cret", str(int(now) - 301), BODY, sign("s3cret", int(now) - 301, BODY), now=now)
    assert not verify("s3cret", str(int(now) + 301), BODY, sign("s3cret", int(now) + 301, BODY), now=now)
    assert not verify("other", str(int(now)), BODY, good, now=now)
    assert not verify("s3cret", str(int(now)), BODY + b" ", good, now=now)
    assert not verify("s3cret", str(int(now) + 1), BODY, good, now=now)  # timestamp is signed too
    assert not verify("s3cret", "not-a-number", BODY, good, now=now)
    assert not verify("s3cret", "", BODY, good, now=now)
    assert not verify("s3cret", str(int(now)), BODY, good.removeprefix("v1="), now=now)


async def _send(
    fake_reply: FakeReply, body: bytes = BODY, *, url: str | None = None, timeout_s: float = 5.0
) -> None:
    async with aiohttp.ClientSession() as session:
        await ReplySender(session, url or fake_reply.url, DEFAULT_SECRET, timeout_s=timeout_s).send(body)


async def test_sender_signs_what_it_sends(fake_reply: FakeReply) -> None:
    await _send(fake_reply)
    [record] = fake_reply.received()
    assert record.body == BODY and record.signature_valid is True
    assert abs(int(record.headers[TIMESTAMP_HEADER]) - time.time()) < 5
    assert verify(DEFAULT_SECRET, record.headers[TIMESTAMP_HEADER], BODY, record.headers[SIGNATURE_HEADER])


@pytest.mark.parametrize(
    ("status", "permanent"),
    [
        (500, False),
        (502, False),
        (503, False),
        (408, False),
        (425, False),
        (429, False),
        (400, True),
        (401, True),
        (404, True),
        (410, True),
        (422, True),
    ],
)
async def test_sender_sorts_failures_into_retry_or_dead_letter(
    fake_reply: FakeReply, status: int, permanent: bool
) -> None:
    fake_reply.fail_with_status(status, times=1)
    with pytest.raises(ReplyError) as failure:
        await _send(fake_reply)
    assert failure.value.reason == f"http_{status}"
    assert failure.value.permanent is permanent
    await _send(fake_reply)  # the next attempt goes through


async def test_sender_unreachable_or_slow_endpoint_is_retried_later(fake_reply: FakeReply) -> None:
    fake_reply.delay(1.0)
    with pytest.raises(ReplyError) as slow:
        await _send(fake_reply, timeout_s=0.2)
    assert slow.value.permanent is False and slow.value.reason.startswith("unreachable")
    fake_reply.delay(0)
    await fake_reply.go_down()
    with pytest.raises(ReplyError) as down:
        await _send(fake_reply)
    assert down.value.permanent is False and down.value.reason.startswith("unreachable")


@pytest.mark.parametrize(
    ("slack", "plain"),
    [
        ("&lt;b&gt; &amp;amp; &amp;lt;", "<b> &amp; &lt;"),
        ("hi <@UAGENT02>, <@UGONE>", "hi @Bob Dupont, @UGONE"),
        ("<@UAGENT02|legacy-label>", "@legacy-label"),
        ("<!here> <!channel> <!everyone>", "@here @channel @everyone"),
        ("<!subteam^S0TEAM|@support> will help", "@support will help"),
        ("on <!date^1392734382^{date_short}|Feb 18, 2014>", "on Feb 18, 2014"),
        ("<#C0SALES|sales> <#C0BARE>", "#sales #C0BARE"),
        ("<https://x.io/a|the doc>", "the doc (https://x.io/a)"),
        ("<https://x.io/a>", "https://x.io/a"),
        ("<http://example.com|example.com>", "example.com"),  # typed bare, auto-linked by Slack
        ("<https://example.com/x|https://example.com/x>", "https://example.com/x"),
        ("<mailto:a@b.c|a@b.c> <mailto:a@b.c>", "a@b.c a@b.c"),
        ("no markup at all: 3 > 2", "no markup at all: 3 > 2"),
    ],
)
def test_slack_markup_back_to_plain_text(slack: str, plain: str) -> None:
    names = {"UAGENT02": "Bob Dupont"}.get
    assert slack_to_plain(slack, names) == plain


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_sender_never_follows_a_redirect(fake_reply: FakeReply, status: int) -> None:
    """The body and its signature go to the configured URL only: a 3xx is a permanent failure."""
    fake_reply.fail_with_status(status, times=1, headers={"Location": fake_reply.base_url + "/elsewhere"})
    with pytest.raises(ReplyError) as failure:
        await _send(fake_reply)
    assert (failure.value.reason, failure.value.permanent) == ("redirect", True)
    assert [(r.method, r.path) for r in fake_reply.records] == [("POST", "/reply")]
