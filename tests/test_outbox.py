"""Issue 3: the outbox scripts against the real valkey-server — lease, release, commit, bury, replay,
token bucket, channel pause, webhook dedupe.

Entries are written the way the webhook path writes them (Handover.prepare → Store.record), so these tests
exercise the same keys and scripts the running bridge uses; only the caller is a test instead of a worker.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
from redis.asyncio import Redis

from bridge.config import DeliverySection, FileConfig
from bridge.delivery import Deliverer, DeliveryContext, SlackLane, Step
from bridge.events import parse_event
from bridge.handover import Handover
from bridge.keys import SLACK, conversation_id, thread_in
from bridge.metrics import Metrics
from bridge.slack_api import SlackApi
from bridge.store import Store, body_digest
from tests.harness.fake_slack import DEFAULT_TOKEN, FakeSlack
from tests.helpers import CHANNEL, escalation, message

PARTITIONS = 4
HANDED_BACK = Step.drained(released=True)  # drained, and the last commit released the lease
LEASE_MS = 5_000


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[Store]:
    client = Redis.from_url(redis_url)
    try:
        yield Store(client, partitions=PARTITIONS)
    finally:
        await client.aclose()


def handover_for(store: Store, **config: object) -> Handover:
    return Handover(store, lambda: FileConfig.model_validate(config), lambda: (CHANNEL,))


async def record(handover: Handover, body: dict) -> bool:
    """Record one webhook body exactly as the endpoint does; True unless it was a duplicate."""
    raw = orjson.dumps(body)
    result = (await handover.record(parse_event(raw), body_digest(raw))).result
    return result.recorded


async def open_thread(store: Store, client: str, lines: int) -> str:
    """A conversation with an open handover: root entry, then `lines` live lines m-000.. in order."""
    handover = handover_for(store)
    assert await record(handover, escalation(client))
    for i in range(lines):
        assert await record(handover, message(client, f"m-{i:03d}", "ok"))
    return conversation_id("skill1", client)


def now_ms() -> int:
    return int(time.time() * 1000)


async def claim(store: Store, cid: str, worker: str, lease_ms: int = LEASE_MS) -> bool:
    taken = await store.claim_due(SLACK, store.partition_of(cid), worker, now_ms(), lease_ms, 100)
    return cid in taken


async def pending_ids(store: Store, cid: str) -> list[str]:
    _, entries = await store.fetch(SLACK, cid, 1000)
    return [e.id for e in entries]


# --- recording ---------------------------------------------------------------------------------------


async def test_record_appends_root_then_lines_in_received_order(store: Store) -> None:
    cid = await open_thread(store, "alice", 5)
    _, entries = await store.fetch(SLACK, cid, 100)
    assert [e.kind for e in entries] == ["root"] + ["line"] * 5
    assert [e.data.get("in") for e in entries[1:]] == [f"m-{i:03d}" for i in range(5)]
    assert (await store.pending_counts())[SLACK] == 6


async def test_identical_body_within_dedupe_window_is_recorded_once(store: Store) -> None:
    await open_thread(store, "bob", 0)
    handover = handover_for(store)
    body = message("bob", "only once", "ok")
    assert await record(handover, body) is True
    assert await record(handover, body) is False
    assert await record(handover, message("bob", "only once", "ok", seq=2)) is True  # another body
    _, entries = await store.fetch(SLACK, conversation_id("skill1", "bob"), 100)
    assert [e.data.get("in") for e in entries if e.kind == "line"] == ["only once", "only once"]


async def test_dedupe_window_expires(store: Store) -> None:
    await open_thread(store, "carol", 0)
    handover = handover_for(store, webhook={"dedupe_window": "200ms"})
    body = message("carol", "again later", "ok")
    assert await record(handover, body) is True
    assert await record(handover, body) is False
    time.sleep(0.25)
    assert await record(handover, body) is True


# --- lease, commit, release ------------------------------------------------------------------------


async def test_one_lease_per_conversation_across_workers(store: Store) -> None:
    cid = await open_thread(store, "dave", 3)
    assert await claim(store, cid, "w1")
    assert not await claim(store, cid, "w2")  # due, but leased: not handed out twice
    # the lease pushed the conversation's due time out, so w2's next look does not even see it yet
    score = await store.redis.zscore(store.keys(cid).ready(SLACK), cid)
    assert score is not None and score > now_ms() + LEASE_MS / 2


async def test_expired_lease_makes_the_conversation_due_again(store: Store) -> None:
    cid = await open_thread(store, "erin", 1)
    assert await claim(store, cid, "w1", lease_ms=100)
    time.sleep(0.15)
    assert await claim(store, cid, "w2")


async def test_commit_drops_only_delivered_entries_and_tells_whether_the_lease_is_held(store: Store) -> None:
    cid = await open_thread(store, "frank", 3)
    ids = await pending_ids(store, cid)
    assert await claim(store, cid, "w1")
    first = await store.commit(SLACK, cid, "w1", ids[:2], lease_ms=LEASE_MS, now_ms=now_ms())
    assert first.held and first.pending == len(ids) - 2  # the worker learns what is left
    assert await pending_ids(store, cid) == ids[2:]
    assert (await store.pending_counts())[SLACK] == 2
    # a worker whose lease is gone learns it from commit (and the delivered ids still go)
    other = await store.commit(SLACK, cid, "w-other", ids[2:3], lease_ms=LEASE_MS, now_ms=now_ms())
    assert not other.held and other.pending == len(ids) - 3
    assert await pending_ids(store, cid) == ids[3:]


async def test_commit_of_a_root_records_the_thread(store: Store) -> None:
    cid = await open_thread(store, "gina", 1)
    _, entries = await store.fetch(SLACK, cid, 10)
    root = entries[0]
    assert await claim(store, cid, "w1")
    await store.commit(
        SLACK,
        cid,
        "w1",
        [root.id],
        lease_ms=LEASE_MS,
        now_ms=now_ms(),
        root=(root.hid, CHANNEL, "1700000000.000100"),
    )
    conv, _ = await store.fetch(SLACK, cid, 1)
    assert thread_in(conv, root.hid) == (CHANNEL, "1700000000.000100")
    conv = await store.conversation(cid)
    assert conv["thread_ts"] == "1700000000.000100" and conv["thread_channel"] == CHANNEL


async def test_release_keeps_a_conversation_due_only_while_entries_remain(store: Store) -> None:
    cid = await open_thread(store, "hank", 1)
    ready = store.keys(cid).ready(SLACK)
    assert await claim(store, cid, "w1")
    due = now_ms() + 3000
    assert await store.release(SLACK, cid, "w1", due) is True
    assert await store.redis.zscore(ready, cid) == due
    assert await store.redis.get(store.keys(cid).lease(SLACK)) is None

    assert await claim(store, cid, "w2", lease_ms=LEASE_MS) is False  # not due yet
    await store.redis.zadd(ready, {cid: now_ms()})
    assert await claim(store, cid, "w2")
    await store.commit(SLACK, cid, "w2", await pending_ids(store, cid), lease_ms=LEASE_MS, now_ms=now_ms())
    assert await store.release(SLACK, cid, "w2", now_ms()) is False
    assert await store.redis.zscore(ready, cid) is None


async def test_release_by_a_worker_that_lost_its_lease_leaves_the_new_holder_alone(store: Store) -> None:
    cid = await open_thread(store, "ivan", 1)
    assert await claim(store, cid, "w1", lease_ms=100)
    time.sleep(0.15)
    assert await claim(store, cid, "w2")
    await store.release(SLACK, cid, "w1", now_ms())
    assert await store.redis.get(store.keys(cid).lease(SLACK)) == b"w2"


async def test_inflight_marker_is_written_only_by_the_lease_holder(store: Store) -> None:
    """A worker that lost its lease (stalled longer than delivery.lease) must not post: another
    worker may be delivering the same entries. mark_inflight is the last step before every post."""
    cid = await open_thread(store, "judy", 1)
    assert await claim(store, cid, "w1", lease_ms=300)
    assert await store.mark_inflight(SLACK, cid, "w1", "1-0 1-0 0", lease_ms=LEASE_MS)
    # ...and it renewed the lease for a whole post
    assert await store.redis.pttl(store.keys(cid).lease(SLACK)) > LEASE_MS - 1000
    assert (await store.conversation(cid))["inflight:slack"] == "1-0 1-0 0"
    assert not await store.mark_inflight(SLACK, cid, "w2", "2-0 2-0 0", lease_ms=LEASE_MS)
    assert (await store.conversation(cid))["inflight:slack"] == "1-0 1-0 0"


async def begin_turn_gives_the_token_to_the_oldest_waiting_conversation(
    store: Store, client: str, channel: str
) -> None:
    """Store.begin_turn, on standalone Redis (one script) and in a cluster (two calls): the channel's
    token goes with the conversation waiting longest; the in-flight marker is written only for a
    worker's own turn; a turn that cannot be used goes back; a worker that lost its lease gets
    nothing and spends no token."""
    old = await open_thread(store, f"{client}-old", 1)
    new = await open_thread(store, f"{client}-new", 1)
    for cid in (old, new):
        assert await store.take_lease(SLACK, cid, "w1", lease_ms=LEASE_MS, now_ms=now_ms(), fetch_limit=1)
    begin = {"channel": channel, "per_second": 1.0, "burst": 1, "lease_ms": LEASE_MS}
    t = now_ms()
    assert await store.take_token(channel, t, 1.0, 1) == 0  # the only token: the next is 1 s away

    turn = await store.begin_turn(SLACK, old, "w1", "1-0 1-0 0", score=1000, now_ms=t, **begin)
    assert (turn.held, turn.chosen, turn.rank) == (True, "", 0) and 900 <= turn.wait_ms <= 1000
    turn = await store.begin_turn(SLACK, new, "w1", "2-0 2-0 0", score=2000, now_ms=t, **begin)
    assert (turn.chosen, turn.rank) == ("", 1)  # one conversation waits before it
    # a token later, `new`'s worker gets the turn, and it is old's: out of the queue, for old
    turn = await store.begin_turn(SLACK, new, "w1", "2-0 2-0 0", score=2000, now_ms=t + 1000, **begin)
    assert (turn.held, turn.chosen, turn.score, turn.wait_ms) == (True, old, 1000, 0)
    for cid in (old, new):
        assert "inflight:slack" not in await store.conversation(cid)
    assert await store.take_lease(SLACK, old, "w2", lease_ms=LEASE_MS, now_ms=t, fetch_limit=5) is None

    await store.give_back(channel, old, 1000, token=True, burst=1)  # old's holder will use it
    turn = await store.begin_turn(SLACK, old, "w1", "3-0 3-0 0", score=1000, now_ms=t + 1000, **begin)
    assert (turn.chosen, turn.wait_ms) == (old, 0)
    assert (await store.conversation(old))["inflight:slack"] == "3-0 3-0 0"
    assert await store.redis.pttl(store.keys(old).lease(SLACK)) > LEASE_MS - 1000  # renewed for a post

    later = t + 2000
    turn = await store.begin_turn(SLACK, new, "w2", "4-0 4-0 0", score=2000, now_ms=later, **begin)
    assert not turn.held and turn.chosen == ""
    assert "inflight:slack" not in await store.conversation(new)
    assert await store.take_token(channel, later, 1.0, 1) == 0  # w2 spent no token


async def test_begin_turn_gives_the_token_to_the_oldest_waiting_conversation(store: Store) -> None:
    await begin_turn_gives_the_token_to_the_oldest_waiting_conversation(store, "jack", "CBEGIN")


async def test_take_lease_reads_a_conversation_whose_turn_was_taken_for_it(store: Store) -> None:
    cid = await open_thread(store, "tess", 2)
    fetched = await store.take_lease(SLACK, cid, "w1", lease_ms=LEASE_MS, now_ms=now_ms(), fetch_limit=10)
    assert fetched == await store.fetch(SLACK, cid, 10)
    assert not await claim(store, cid, "w2")  # leased: nobody else delivers it meanwhile
    assert (
        await store.take_lease(SLACK, cid, "w2", lease_ms=LEASE_MS, now_ms=now_ms(), fetch_limit=10) is None
    )


async def test_a_commit_that_leaves_entries_reads_them_for_the_next_post(store: Store) -> None:
    cid = await open_thread(store, "lena", 3)
    _, entries = await store.fetch(SLACK, cid, 100)
    assert await claim(store, cid, "w1")
    commit = await store.commit(
        SLACK, cid, "w1", [entries[0].id], lease_ms=LEASE_MS, now_ms=now_ms(), release=True, fetch_limit=2
    )
    assert (commit.held, commit.pending, commit.released) == (True, 3, False)
    assert commit.fetched is not None
    conv, left = commit.fetched
    assert [e.id for e in left] == [e.id for e in entries[1:3]]  # the oldest, up to fetch_limit
    assert conv == await store.conversation(cid)
    last = await store.commit(
        SLACK, cid, "w1", [e.id for e in entries[1:]], lease_ms=LEASE_MS, now_ms=now_ms(), release=True,
        fetch_limit=2,
    )  # fmt: skip
    assert (last.held, last.pending, last.released, last.fetched) == (True, 0, True, None)


async def test_a_reloaded_history_limit_applies_from_the_next_webhook(store: Store) -> None:
    """Handover reads its limits once per config object: a reload must still take effect."""
    configs = [FileConfig.model_validate({"history": {"max_entries": 5}})]
    handover = Handover(store, lambda: configs[-1], lambda: (CHANNEL,))
    for i in range(6):
        assert await record(handover, message("nina", f"m{i}", "ok"))
    cid = conversation_id("skill1", "nina")
    assert len(await store.history(cid)) == 5
    configs.append(FileConfig.model_validate({"history": {"max_entries": 3}}))
    assert await record(handover, message("nina", "after the reload", "ok"))
    assert [e["in"] for e in await store.history(cid)] == ["m4", "m5", "after the reload"]


# --- dead letters ----------------------------------------------------------------------------------


async def test_bury_moves_entries_with_every_field_and_clears_the_inflight_marker(store: Store) -> None:
    cid = await open_thread(store, "kim", 2)
    _, entries = await store.fetch(SLACK, cid, 10)
    assert await claim(store, cid, "w1")
    await store.mark_inflight(SLACK, cid, "w1", f"{entries[0].id} {entries[0].id} 0", lease_ms=LEASE_MS)
    assert await store.bury(SLACK, cid, [entries[0].id, "0-1"], "channel_not_found", now_ms()) == 1
    assert await pending_ids(store, cid) == [e.id for e in entries[1:]]
    assert "inflight:slack" not in await store.conversation(cid)
    (letter,) = await store.dead_letters()
    assert (letter.lane, letter.cid, letter.reason, letter.kind) == (SLACK, cid, "channel_not_found", "root")
    assert letter.data == entries[0].data
    assert (await store.pending_counts())[SLACK] == 2


async def test_replay_puts_dead_letters_back_in_burial_order(store: Store) -> None:
    """Twelve entries buried by one script call share one millisecond: their dead-letter ids differ
    only in the sequence part (…-9, …-10, …-11), which must sort as numbers, not as text."""
    cid = await open_thread(store, "leo", 11)
    original = await pending_ids(store, cid)
    assert len(original) == 12
    assert await store.bury(SLACK, cid, original, "channel_not_found", now_ms()) == 12
    assert await pending_ids(store, cid) == []

    letters = await store.dead_letters()
    assert [letter.kind for letter in letters] == ["root"] + ["line"] * 11
    assert [letter.data.get("in") for letter in letters[1:]] == [f"m-{i:03d}" for i in range(11)]
    for letter in letters:
        assert await store.replay(letter, now_ms())
    assert await store.dead_letters() == []

    _, entries = await store.fetch(SLACK, cid, 100)
    assert [e.kind for e in entries] == ["root"] + ["line"] * 11
    assert [e.data.get("in") for e in entries[1:]] == [f"m-{i:03d}" for i in range(11)]
    assert (await store.pending_counts())[SLACK] == 12
    score = await store.redis.zscore(store.keys(cid).ready(SLACK), cid)
    assert score is not None and score <= now_ms()  # due now
    assert not await store.replay(letters[0], now_ms())  # a dead letter is replayed at most once


# --- pacing ----------------------------------------------------------------------------------------


async def test_token_bucket_allows_the_burst_then_paces(store: Store) -> None:
    t = now_ms()
    assert [await store.take_token("CPACE", t, 1.0, 3) for _ in range(3)] == [0, 0, 0]
    assert await store.take_token("CPACE", t, 1.0, 3) == 1000
    assert await store.take_token("CPACE", t + 500, 1.0, 3) == 500
    assert await store.take_token("CPACE", t + 1000, 1.0, 3) == 0
    assert await store.take_token("CPACE", t + 1000, 1.0, 3) == 1000
    # tokens refill up to the burst, never beyond
    assert [await store.take_token("CPACE", t + 60_000, 1.0, 3) for _ in range(4)] == [0, 0, 0, 1000]


async def test_token_bucket_is_per_channel(store: Store) -> None:
    t = now_ms()
    assert await store.take_token("CONE", t, 1.0, 1) == 0
    assert await store.take_token("CONE", t, 1.0, 1) == 1000
    assert await store.take_token("CTWO", t, 1.0, 1) == 0


async def test_pause_channel_holds_every_post_until_retry_after(store: Store) -> None:
    t = now_ms()
    await store.pause_channel("CRATE", t + 2000, t)
    assert await store.take_token("CRATE", t, 100.0, 10) == 2000
    assert await store.take_token("CRATE", t + 1500, 100.0, 10) == 500
    await store.pause_channel("CRATE", t + 1000, t)  # an older, shorter pause never shortens it
    assert await store.take_token("CRATE", t + 1500, 100.0, 10) == 500
    assert await store.take_token("CRATE", t + 2000, 100.0, 10) == 0


async def test_paused_until_reads_the_pause_without_taking_a_token(store: Store) -> None:
    t = now_ms()
    assert await store.paused_until("CPEEK") == 0
    await store.pause_channel("CPEEK", t + 1000, t)
    assert await store.paused_until("CPEEK") == t + 1000
    assert await store.take_token("CPEEK", t + 1000, 1.0, 1) == 0  # the peek left the bucket full


# --- one SlackLane, driven directly (what a worker does with a claimed conversation) ----------------


@pytest.fixture
async def lane(store: Store, fake_slack: FakeSlack) -> AsyncIterator[SlackLane]:
    async with aiohttp.ClientSession() as session:
        metrics = Metrics()
        ctx = DeliveryContext(store, metrics, lambda: DeliverySection(posts_per_second=100, burst=100), False)
        yield SlackLane(ctx, SlackApi.create(DEFAULT_TOKEN, fake_slack.url, session, metrics))


async def thread_opened(store: Store, client: str, lines: int, ts: str = "1700000000.000100") -> str:
    """A conversation whose root is already in Slack (thread ts recorded) and `lines` lines pending."""
    cid = await open_thread(store, client, lines)
    _, entries = await store.fetch(SLACK, cid, 1)
    assert await claim(store, cid, "setup")
    await store.commit(
        SLACK,
        cid,
        "setup",
        [entries[0].id],
        lease_ms=LEASE_MS,
        now_ms=now_ms(),
        root=(entries[0].hid, CHANNEL, ts),
    )
    await store.release(SLACK, cid, "setup", now_ms())
    return cid


async def test_a_thread_posted_in_several_posts_is_read_from_redis_once(
    store: Store, lane: SlackLane, fake_slack: FakeSlack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each commit that leaves entries returns them: the claim's read serves the first post, and
    every later post starts from its predecessor's commit, with no fetch in between."""
    cid = await thread_opened(store, "omar", 0)
    for i in range(3):  # ~400 characters each: one per post at the smallest max_message_chars
        assert await record(handover_for(store), message("omar", f"{i}-" + "x" * 400, "ok"))
    lane.ctx.settings = lambda: DeliverySection(posts_per_second=100, burst=100, max_message_chars=500)
    fetches: list[str] = []
    fetch = store.fetch

    async def counted(lane_name: str, cid_: str, limit: int) -> Any:
        fetches.append(cid_)
        return await fetch(lane_name, cid_, limit)

    monkeypatch.setattr(store, "fetch", counted)
    claimed = await store.claim_due(
        SLACK, store.partition_of(cid), "w1", now_ms(), LEASE_MS, 10, fetch_limit=200
    )
    assert await lane.deliver(cid, "w1", claimed[cid]) == HANDED_BACK
    posts = [c.params["text"] for c in fake_slack.calls_to("chat.postMessage")]
    assert len(posts) == 3 and [p.split("-")[0][-1] for p in posts] == ["0", "1", "2"]
    assert fetches == []
    assert await pending_ids(store, cid) == []


async def test_worker_that_lost_its_lease_posts_nothing(
    store: Store, lane: SlackLane, fake_slack: FakeSlack
) -> None:
    cid = await thread_opened(store, "mia", 2)
    assert await claim(store, cid, "w1", lease_ms=100)
    time.sleep(0.15)
    assert await claim(store, cid, "w2")
    assert (await lane.deliver(cid, "w1")).action == "later"
    assert fake_slack.calls_to("chat.postMessage") == []
    assert len(await pending_ids(store, cid)) == 2


async def test_inflight_lookup_waits_out_a_channel_pause(
    store: Store, lane: SlackLane, fake_slack: FakeSlack
) -> None:
    """After a 429 the post's marker stays; the lookup that settles it is a call on the channel too,
    so it waits for Retry-After like a post would."""
    cid = await thread_opened(store, "noah", 2)
    first = (await pending_ids(store, cid))[0]
    assert await claim(store, cid, "w1")
    await store.mark_inflight(SLACK, cid, "w1", f"{first} {first} {now_ms()}", lease_ms=LEASE_MS)
    until = now_ms() + 5000
    await store.pause_channel(CHANNEL, until, now_ms())
    assert await lane.deliver(cid, "w1") == Step.later(until)
    assert fake_slack.calls == []


async def test_a_lookup_that_can_never_answer_does_not_dead_letter_the_entry(
    store: Store, lane: SlackLane, fake_slack: FakeSlack
) -> None:
    """Crash recovery needs conversations.replies; without that scope Slack answers missing_scope.
    The entry is then posted (at least once), never buried for an error that was not its own."""
    cid = await thread_opened(store, "olga", 2)
    first = (await pending_ids(store, cid))[0]
    assert await claim(store, cid, "w1")
    await store.mark_inflight(SLACK, cid, "w1", f"{first} {first} {now_ms()}", lease_ms=LEASE_MS)
    fake_slack.fail_with_status(200, methods=["conversations.replies"], error="missing_scope")
    assert await lane.deliver(cid, "w1") == HANDED_BACK  # posted, drained, lease released by the commit
    keys = store.keys(cid)
    assert await store.redis.exists(keys.lease(SLACK)) == 0
    assert await store.redis.zscore(keys.ready(SLACK), cid) is None
    assert await store.dead_letters() == []
    (post,) = fake_slack.posts(CHANNEL)
    assert "m-000" in post.text and "m-001" in post.text


async def test_a_claim_can_bring_each_conversation_as_fetch_reads_it(store: Store) -> None:
    cid = await thread_opened(store, "pia", 3)
    other = await open_thread(store, "quinn", 1)
    expected = {c: await store.fetch(SLACK, c, 2) for c in (cid, other)}
    partitions = {store.partition_of(c) for c in (cid, other)}
    claimed = {}
    for partition in partitions:
        claimed |= await store.claim_due(SLACK, partition, "w1", now_ms(), LEASE_MS, 10, fetch_limit=2)
    assert claimed == expected  # the hash and the two oldest entries, parsed the same way
    assert len(claimed[cid][1]) == 2 and claimed[cid][0]["t:1"].startswith(CHANNEL)


async def test_a_post_that_must_wait_for_its_token_leaves_no_inflight_marker(
    store: Store, lane: SlackLane, fake_slack: FakeSlack
) -> None:
    """The token and the in-flight marker are taken in one round trip; when the token is refused,
    the marker goes again, or the next attempt would ask Slack (a rate-limited lookup) for nothing."""
    cid = await thread_opened(store, "otto", 2)
    assert await claim(store, cid, "w1")
    assert await store.take_token(CHANNEL, now_ms(), 0.1, 1) == 0  # the only token: the next is 10 s away
    drained = DeliveryContext(store, Metrics(), lambda: DeliverySection(posts_per_second=0.1, burst=1), False)
    step = await SlackLane(drained, lane.slack).deliver(cid, "w1")
    assert step.action == "later"  # the next token is ~10 s away: the conversation is handed back
    conv = await store.redis.hgetall(store.keys(cid).conv)
    assert b"inflight:slack" not in conv
    assert fake_slack.calls_to("chat.postMessage") == []
    assert len(await pending_ids(store, cid)) == 2


async def test_a_post_found_after_a_crash_is_committed_and_the_conversation_handed_back(
    store: Store, lane: SlackLane, fake_slack: FakeSlack
) -> None:
    """Slack accepted the post, the worker died before its commit: the next worker finds it, commits
    it, and when that empties the outbox it stops there, lease released, instead of carrying on."""
    root_ts = await lane.slack.post(CHANNEL, "the root, as Slack has it")
    cid = await thread_opened(store, "rita", 1, ts=root_ts)
    (entry,) = (await store.fetch(SLACK, cid, 10))[1]
    assert await claim(store, cid, "w1")
    await store.mark_inflight(SLACK, cid, "w1", f"{entry.id} {entry.id} {now_ms()}", lease_ms=LEASE_MS)
    marker = {"conversation": cid, "hid": entry.hid, "first": entry.id, "last": entry.id}
    await lane.slack.post(CHANNEL, "the crashed worker's post", thread_ts=root_ts, marker=marker)
    assert await lane.deliver(cid, "w1") == HANDED_BACK
    assert len(fake_slack.calls_to("chat.postMessage")) == 2  # root and that post: found, not posted again
    assert await pending_ids(store, cid) == []
    assert await store.redis.exists(store.keys(cid).lease(SLACK)) == 0


async def test_a_root_recovered_after_a_crash_is_never_another_conversations_with_the_same_ids(
    store: Store, lane: SlackLane, fake_slack: FakeSlack
) -> None:
    """Stream ids are unique only within a conversation: two roots written in the same millisecond
    carry the same id. Recovery must match the conversation and handover too, or agents' replies in
    the other thread would reach this conversation's customer."""
    cid = await open_thread(store, "sam", 0)
    (root,) = (await store.fetch(SLACK, cid, 10))[1]
    other = conversation_id("skill1", "sue")
    same_ids = {"hid": root.hid, "first": root.id, "last": root.id}
    other_ts = await lane.slack.post(CHANNEL, "sue's root", marker={"conversation": other, **same_ids})
    assert await claim(store, cid, "w1")
    await store.mark_inflight(SLACK, cid, "w1", f"{root.id} {root.id} {now_ms()}", lease_ms=LEASE_MS)

    assert await lane.deliver(cid, "w1") == HANDED_BACK
    thread = thread_in(await store.conversation(cid), root.hid)
    assert thread is not None and thread[1] != other_ts  # not sue's thread: sam's root posted anew
    assert await store.thread_conversation(CHANNEL, other_ts) is None
    ours = [p for p in fake_slack.roots(CHANNEL) if p.ts == thread[1]]
    assert ours and ours[0].metadata["event_payload"] == {"conversation": cid, **same_ids}


async def test_a_turn_taken_for_an_older_conversation_is_handed_to_it(
    store: Store, fake_slack: FakeSlack
) -> None:
    """B's worker finds the channel's one token, but A has waited longer: A gets the post (the
    scheduler leases A and delivers it with that turn), and B waits for the next token."""
    settings = DeliverySection.model_validate({"posts_per_second": 0.2, "burst": 1, "poll_interval": "50ms"})
    older = await thread_opened(store, "ada", 1)
    newer = await thread_opened(store, "bea", 1)
    (a_line,) = (await store.fetch(SLACK, older, 10))[1]
    await store.give_back(CHANNEL, older, a_line.received_ms, token=False, burst=1)  # A waits there
    await store.release(SLACK, older, "setup", now_ms())  # (the claim that set up B took A too)
    await store.redis.zadd(store.keys(older).ready(SLACK), {older: now_ms() + 60_000})  # nobody claims A
    async with aiohttp.ClientSession() as session:
        metrics = Metrics()
        ctx = DeliveryContext(store, metrics, lambda: settings, False)
        lane = SlackLane(ctx, SlackApi.create(DEFAULT_TOKEN, fake_slack.url, session, metrics))
        deliverer = Deliverer(store, [lane], lambda: settings, metrics)
        deliverer.start()
        try:
            (post,) = await fake_slack.wait_for_posts(1, channel=CHANNEL, timeout_s=5)
            await asyncio.sleep(0.3)  # B's worker has had its try for the next token by now
        finally:
            await deliverer.stop(1.0)
    assert "m-000" in post.text and (post.metadata or {})["event_payload"]["conversation"] == older
    assert len(fake_slack.posts(CHANNEL)) == 1  # B's line waits for the next token, 5 s away
    assert await pending_ids(store, older) == [] and len(await pending_ids(store, newer)) == 1
    assert await store.redis.exists(store.keys(older).lease(SLACK)) == 0
