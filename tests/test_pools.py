"""Issue 12 item 2: channel pools. Wherever the config takes a channel it takes a list; SLACK_CHANNEL a
comma-separated one. A new handover goes to the pool's channel with the fewest open handovers and
stays there. Through the bridge's real endpoints, a real valkey-server and the fake Slack."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from bridge.config import ConfigError, parse_config
from bridge.keys import SLACK, conversation_id
from bridge.runtime import BRIDGE
from bridge.settings import AppConfig, Settings, SettingsError
from bridge.slack_format import RESOLVE_ACTION
from bridge.store import Store
from tests.conftest import TEST_DELIVERY, MakeBridge
from tests.harness import eventually, wait_until
from tests.harness.bridge_process import BridgeProcess
from tests.harness.fake_slack import DEFAULT_TOKEN, FakeSlack, SlackMessage
from tests.helpers import WEBHOOK_KEY, BridgeClient, block_action, escalation, message
from tests.test_cli import run_cli
from tests.test_faults import (
    FAST,
    LINE_NUMBER,
    LateAnswerSlack,
    every_client_sends,
    marker_of,
    open_handovers,
)

POOL = ("C0POOLA1", "C0POOLB2", "C0POOLC3")


def roots_by_client(fake_slack: FakeSlack) -> dict[str, str]:
    """client_id → channel of its (latest) root, read from what Slack holds."""
    found = {}
    for root in fake_slack.roots():
        client = root.text.rpartition("— ")[2].split(" ·")[0]
        found[client] = root.channel
    return found


def declare(fake_slack: FakeSlack, *channels: str) -> None:
    """Channels the bot is a member of (the fake answers channel_not_found for any other)."""
    for channel in channels:
        fake_slack.add_channel(channel)


async def open_handover(bridge: BridgeClient, client_id: str, text: str = "hello") -> None:
    assert await bridge.hook(message(client_id, text, "bot answer")) == (200, {"ok": True})
    assert await bridge.hook(escalation(client_id)) == (200, {"ok": True})


async def wait_roots(fake_slack: FakeSlack, count: int) -> list[SlackMessage]:
    await wait_until(lambda: len(fake_slack.roots()) >= count, 10)
    return fake_slack.roots()


def thread_of(fake_slack: FakeSlack, client_id: str) -> SlackMessage:
    return next(root for root in reversed(fake_slack.roots()) if f"— {client_id}" in root.text)


# -- config ----------------------------------------------------------------------------------------


def test_a_pool_is_taken_wherever_a_channel_is() -> None:
    config = parse_config(
        textwrap.dedent(
            """\
            slack:
              default_channel: [C0DEF0001, C0DEF0002]
            routes:
              - name: french
                match: {lang: fr-*}
                channel: [C0FR00001, C0FR00002, C0FR00003]
              - name: single
                match: {lang: en}
                channel: C0EN00001
            business_hours:
              timezone: Europe/Paris
              weekly: {mon-fri: "09:00-18:00"}
              outside_hours:
                channel:
                  - C0NIGHT001
                  - C0NIGHT002
            """
        )
    )
    assert config.slack.default_channel == ("C0DEF0001", "C0DEF0002")
    assert config.routes[0].channel == ("C0FR00001", "C0FR00002", "C0FR00003")
    assert config.routes[1].channel == ("C0EN00001",)
    assert config.business_hours is not None
    assert config.business_hours.outside_hours.channel == ("C0NIGHT001", "C0NIGHT002")


def test_a_pool_with_an_invalid_id_is_rejected_at_its_line_and_column() -> None:
    text = textwrap.dedent(
        """\
        routes:
          - name: french
            channel:
              - C0FR00001
              - general
        business_hours:
          timezone: UTC
          weekly: {mon: "09:00-10:00"}
          outside_hours:
            channel: [C0NIGHT001, "#night"]
        slack:
          default_channel: [C0DEF0001, C0DEF0001]
        """
    )
    with pytest.raises(ConfigError) as raised:
        parse_config(text, "pools.yaml")
    problems = [(p.line, p.column, p.where, p.message) for p in raised.value.details]
    assert problems[0][:3] == (5, 9, "routes[0].channel[1]")
    assert "'general' is not a Slack channel ID" in problems[0][3]
    assert problems[1][:3] == (10, 27, "business_hours.outside_hours.channel[1]")
    assert problems[2][:3] == (12, 20, "slack.default_channel")
    assert "listed twice" in problems[2][3]
    assert len(problems) == 3
    assert str(raised.value).splitlines()[1].startswith("pools.yaml:5:9: routes[0].channel[1]:")


def test_an_empty_pool_is_rejected() -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config("routes:\n  - name: x\n    channel: []\n")
    assert [(p.line, p.where) for p in raised.value.details] == [(3, "routes[0].channel")]


def test_check_config_shows_pools(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text(
        "slack:\n  default_channel: [C0DEF0001, C0DEF0002]\n"
        "routes:\n  - {name: french, match: {lang: fr-*}, channel: C0FR00001}\n"
    )
    result = run_cli("check-config", env={}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "french: lang=fr-* -> C0FR00001" in result.stdout
    assert "otherwise -> pool of 2 (C0DEF0001, C0DEF0002), least loaded" in result.stdout


# -- SLACK_CHANNEL ---------------------------------------------------------------------------------


def test_slack_channel_takes_a_comma_separated_pool() -> None:
    app = AppConfig(
        settings=Settings(slack_channel=" C0ENV0001, C0ENV0002 ,C0ENV0003"),
        file=parse_config("slack:\n  default_channel: C0FILE001\n"),
        config_path=None,
    )
    assert app.default_pool == ("C0ENV0001", "C0ENV0002", "C0ENV0003")
    assert app.default_pool_source == "SLACK_CHANNEL"
    unset = AppConfig(settings=Settings(), file=app.file, config_path=None)
    assert (unset.default_pool, unset.default_pool_source) == (("C0FILE001",), "slack.default_channel")


@pytest.mark.parametrize("value", ["general", "C0ENV0001,#support", "C0ENV0001,,C0ENV0002", "C0A,C0A"])
def test_slack_channel_with_a_bad_id_is_refused(value: str) -> None:
    with pytest.raises(SettingsError) as raised:
        _ = AppConfig(
            settings=Settings(slack_channel=value), file=parse_config(""), config_path=None
        ).env_pool
    assert str(raised.value).startswith("SLACK_CHANNEL: ")


def test_serve_refuses_slack_channel_general_in_one_line(tmp_path: Path) -> None:
    env = {"SMARTLY_WEBHOOK_KEY": "k1234", "SLACK_BOT_TOKEN": "xoxb-1", "SLACK_CHANNEL": "general"}
    result = run_cli("serve", env=env, cwd=tmp_path)
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert "SLACK_CHANNEL: 'general' is not a Slack channel ID" in lines[0]


# -- placement -------------------------------------------------------------------------------------


async def test_slack_channel_pool_spreads_handovers(make_bridge: MakeBridge, fake_slack: FakeSlack) -> None:
    declare(fake_slack, *POOL)
    bridge = await make_bridge(replies=False, slack_channel=",".join(POOL[:2]))
    for client in ("ann", "ben"):
        await open_handover(bridge, client)
    await wait_roots(fake_slack, 2)
    assert sorted(roots_by_client(fake_slack).values()) == sorted(POOL[:2])


async def test_new_handovers_go_to_the_least_loaded_channel_and_stay_there(
    make_bridge: MakeBridge, fake_slack: FakeSlack
) -> None:
    declare(fake_slack, *POOL)
    bridge = await make_bridge(
        replies=False, file={"slack": {"default_channel": list(POOL)}}, slack_channel=None
    )
    bridge_app = bridge.app[BRIDGE]
    for index, client in enumerate(("ann", "ben", "cid")):
        await open_handover(bridge, client)
        await wait_roots(fake_slack, index + 1)  # one at a time: each sees the others' counts
    placed = roots_by_client(fake_slack)
    assert sorted(placed.values()) == sorted(POOL)  # 1 open handover in each channel
    assert await bridge_app.store.open_in_channels(POOL) == dict.fromkeys(POOL, 1)

    # ben's handover is resolved: its channel is the least loaded one now.
    ben_root = thread_of(fake_slack, "ben")
    assert await bridge.interaction(block_action(ben_root.channel, ben_root.ts, RESOLVE_ACTION)) == 200
    await wait_until(lambda: fake_slack.message(ben_root.channel, ben_root.ts).edits, 10)  # type: ignore[union-attr]
    counts = await bridge_app.store.open_in_channels(POOL)
    assert counts == {**dict.fromkeys(POOL, 1), ben_root.channel: 0}
    await open_handover(bridge, "dan")
    await wait_roots(fake_slack, 4)
    assert thread_of(fake_slack, "dan").channel == ben_root.channel

    # Lines of every open handover keep going to the thread they opened in.
    for client in ("ann", "cid", "dan"):
        assert await bridge.hook(message(client, f"still there? {client}")) == (200, {"ok": True})
    for client in ("ann", "cid", "dan"):
        root = thread_of(fake_slack, client)
        await wait_until(
            lambda r=root, c=client: any(
                f"still there? {c}" in t for t in fake_slack.thread(r.channel, r.ts)
            ),
            10,
        )
    assert {c: thread_of(fake_slack, c).channel for c in ("ann", "cid")} == {
        c: placed[c] for c in ("ann", "cid")
    }


async def test_an_outside_hours_pool_and_a_route_pool_are_used(
    make_bridge: MakeBridge, fake_slack: FakeSlack
) -> None:
    night, french = ("C0NIGHT001", "C0NIGHT002"), ("C0FR00001", "C0FR00002")
    declare(fake_slack, *night, *french)
    today = datetime.now(UTC).date()
    closed = [str(today + timedelta(days=d)) for d in (-1, 0, 1)]  # closed now, whatever the hour
    hours = {"timezone": "UTC", "weekly": {"mon-sun": "00:00-24:00"}, "closed_on": closed}
    file = {
        "routes": [
            {
                "name": "night",
                "match": {"lang": "de-*"},
                "business_hours": {**hours, "outside_hours": {"channel": list(night)}},
            },
            {"name": "french", "match": {"lang": "fr-*"}, "channel": list(french)},
        ]
    }
    bridge = await make_bridge(replies=False, file=file)
    for index, (client, lang) in enumerate(
        (("nina", "de-de"), ("nils", "de-de"), ("fred", "fr-fr"), ("fanny", "fr-fr"))
    ):
        assert await bridge.hook(message(client, "hallo", "bot", lang=lang)) == (200, {"ok": True})
        assert await bridge.hook(escalation(client, lang=lang)) == (200, {"ok": True})
        await wait_roots(fake_slack, index + 1)  # one at a time: each sees the others' counts
    placed = roots_by_client(fake_slack)
    assert {placed["nina"], placed["nils"]} == set(night)
    assert {placed["fred"], placed["fanny"]} == set(french)


async def test_a_running_bridge_drops_counts_left_by_a_crash(
    make_bridge: MakeBridge, fake_slack: FakeSlack, redis_url: str
) -> None:
    """A handover whose resolve never reached the counters (the process died in between) stops
    counting once the bridge's sweep finds its conversation has no such handover open."""
    declare(fake_slack, *POOL[:2])
    client = Redis.from_url(redis_url)
    stale = Store(client, partitions=32)
    await stale.place_handover("skill1:ghost", 1, [POOL[0]], 1)  # no conversation behind it
    await client.aclose()
    bridge = await make_bridge(replies=False, slack_channel=",".join(POOL[:2]))
    store = bridge.app[BRIDGE].store

    async def reconciled() -> bool:
        return await store.open_in_channels(POOL[:2]) == dict.fromkeys(POOL[:2], 0)

    await eventually(reconciled)
    await open_handover(bridge, "ann")
    await wait_roots(fake_slack, 1)
    assert thread_of(fake_slack, "ann").channel == POOL[0]  # the pool's first channel: really empty


async def test_a_hot_reloaded_pool_applies_to_new_handovers_only(
    make_bridge: MakeBridge, fake_slack: FakeSlack, tmp_path: Path
) -> None:
    def write(pool: list[str]) -> dict[str, Any]:
        content = {"routes": [{"name": "all", "channel": pool}], "delivery": TEST_DELIVERY}
        path.write_bytes(orjson.dumps(content))
        return content

    path = tmp_path / "config.yaml"
    declare(fake_slack, "C0OLD0001", "C0NEW0001", "C0NEW0002")
    bridge = await make_bridge(replies=False, file=write(["C0OLD0001"]), config_path=path)
    await open_handover(bridge, "ann")
    await wait_roots(fake_slack, 1)
    assert thread_of(fake_slack, "ann").channel == "C0OLD0001"

    write(["C0NEW0001", "C0NEW0002"])
    assert bridge.app[BRIDGE].holder.reload() is True
    await open_handover(bridge, "ben")
    await open_handover(bridge, "cid")
    await wait_roots(fake_slack, 3)
    assert {thread_of(fake_slack, c).channel for c in ("ben", "cid")} == {"C0NEW0001", "C0NEW0002"}
    # ann's handover stays where it opened.
    assert await bridge.hook(message("ann", "after the reload")) == (200, {"ok": True})
    await wait_until(lambda: any("after the reload" in m.text for m in fake_slack.posts()), 10)
    line = next(m for m in fake_slack.posts() if "after the reload" in m.text)
    assert (line.channel, line.thread_ts) == ("C0OLD0001", thread_of(fake_slack, "ann").ts)


# -- the counters themselves ---------------------------------------------------------------------


@pytest.fixture
async def store(redis_url: str) -> Any:
    client = Redis.from_url(redis_url)
    yield Store(client, partitions=4)
    await client.aclose()


async def mark_open(store: Store, cid: str, hid: int) -> None:
    header = orjson.dumps({"hid": hid, "status": "open"})
    await store.redis.hset(store.keys(cid).conv, mapping={"state": "open", "hid": hid, "header": header})


async def test_placement_is_idempotent_and_ties_go_to_the_fewest_waiting_lines(store: Store) -> None:
    pool = ["C0T0001", "C0T0002", "C0T0003"]
    assert await store.place_handover("a", 1, pool, 1, waiting=[5, 2, 9]) == "C0T0002"
    # The same handover asks again (a retried root post): same channel, counted once.
    assert await store.place_handover("a", 1, list(reversed(pool)), 2) == "C0T0002"
    assert await store.open_in_channels(pool) == {"C0T0001": 0, "C0T0002": 1, "C0T0003": 0}
    assert await store.place_handover("b", 1, pool, 3, waiting=[4, 0, 3]) == "C0T0003"
    assert await store.place_handover("c", 1, pool, 4) == "C0T0001"
    assert await store.handover_left_channel("b", 2) is None  # another handover of b: not this one
    assert await store.handover_left_channel("b", 1) == "C0T0003"
    assert await store.handover_left_channel("b", 1) is None
    assert await store.open_in_channels(pool) == dict.fromkeys(pool, 1) | {"C0T0003": 0}


async def test_waiting_lines_are_counted_per_channel(store: Store) -> None:
    """The tie-break reads what waits in the Slack outboxes of each channel's open handovers."""
    for cid, channel, waiting in (("a", "C0W0001", 3), ("b", "C0W0002", 1), ("c", "C0W0002", 1)):
        await store.place_handover(cid, 1, [channel], 1)
        for n in range(waiting):
            await store.redis.xadd(store.keys(cid).out(SLACK), {"k": "line", "n": n})
    pool = ["C0W0001", "C0W0002", "C0W0003"]
    assert await store.waiting_in_channels(pool) == [3, 2, 0]
    await store.place_handover("z", 1, ["C0W0003"], 1)  # every channel has one open handover now
    await store.handover_left_channel("c")
    assert await store.place_handover("d", 1, pool, 2, await store.waiting_in_channels(pool)) == "C0W0003"
    assert await store.place_handover("e", 1, pool, 3, await store.waiting_in_channels(pool)) == "C0W0002"


async def test_counts_survive_a_lost_left_call(store: Store) -> None:
    """A crash between a resolve and its "left" call, or a conversation that vanished: the counts are
    recomputed from the conversations, and a new handover of the same conversation replaces the old."""
    pool = ["C0R0001", "C0R0002"]
    for cid in ("gone", "resolved", "open", "renewed"):
        await mark_open(store, cid, 1)
    for index, cid in enumerate(("gone", "resolved", "open", "renewed")):
        await store.place_handover(cid, 1, pool, index)
    await store.redis.delete(store.keys("gone").conv)
    await store.redis.hdel(store.keys("resolved").conv, "state")
    # renewed's first handover ended without a word, and its second one opens: placed afresh.
    await mark_open(store, "renewed", 2)
    assert await store.place_handover("renewed", 2, ["C0R0002"], 9) == "C0R0002"
    assert sum((await store.open_in_channels(pool)).values()) == 4
    assert await store.reconcile_placements() == 2
    assert await store.placements() == {"open": ("C0R0001", "1"), "renewed": ("C0R0002", "2")}
    assert await store.open_in_channels(pool) == {"C0R0001": 1, "C0R0002": 1}


async def test_resolve_frees_the_channel(store: Store) -> None:
    cid = conversation_id("skill1", "ann")
    await mark_open(store, cid, 3)
    await store.place_handover(cid, 3, ["C0X0001"], 1)
    assert (
        await store.resolve_handover(
            cid, thread_ts="", agent_id="U1", agent_name="a", now_ms=2, replies=False
        )
        == 1
    )
    assert await store.open_in_channels(["C0X0001"]) == {"C0X0001": 0}


# -- a crash on a pool -----------------------------------------------------------------------------


@pytest.mark.slow
async def test_sigkill_on_a_pool_loses_nothing_doubles_nothing_and_every_thread_stays(
    tmp_path: Path, redis_url: str
) -> None:
    """The outbox's SIGKILL fault on a 3-channel pool (SLACK_CHANNEL=a,b,c): killed while lines wait
    and a post is in Slack's hands, restarted: every line arrives once, in order, in the thread of its
    handover's channel, and each channel holds the same number of handovers."""
    slack = LateAnswerSlack()
    declare(slack, *POOL)
    await slack.start()
    delivery = {**FAST, "posts_per_second": 4, "burst": 1, "lease": "2s"}
    bridge = BridgeProcess(
        tmp_path,
        redis_url=redis_url,
        slack_url=slack.url,
        webhook_key=WEBHOOK_KEY,
        slack_token=DEFAULT_TOKEN,
        channel=",".join(POOL),
        config={"delivery": delivery},
    )
    try:
        await bridge.started()
        clients = [f"pool-{n}" for n in range(6)]
        sent = await open_handovers(bridge, clients)
        await wait_until(lambda: len(slack.roots()) == 6, 15)
        slack.answer_delay_s = 1.0
        for i in range(10):
            await every_client_sends(bridge, clients, i, sent)
        await wait_until(lambda: slack.unanswered > 0, 10)
        assert await bridge.killed() == -9
        slack.answer_delay_s = 0.0
        bridge.start()
        await bridge.wait_ready()
        await wait_until(lambda: sum(len(LINE_NUMBER.findall(m.text)) for m in slack.posts()) >= 60, 30)
        await eventually(lambda: pending_none(redis_url), 30)
    finally:
        await bridge.close()
        await slack.stop()

    channels = []
    for cid, numbers in sent.items():
        [root] = [m for m in slack.roots() if marker_of(m).get("conversation") == cid]
        channels.append(root.channel)
        seen = [int(n) for r in slack.replies(root.channel, root.ts) for n in LINE_NUMBER.findall(r.text)]
        assert seen == numbers, (cid, root.channel, seen)  # once each, in order, in its own thread
    assert sorted(channels) == sorted(POOL * 2)
    assert sum(len(LINE_NUMBER.findall(m.text)) for m in slack.posts()) == 60  # nowhere else


async def pending_none(redis_url: str) -> bool:
    client = Redis.from_url(redis_url, socket_timeout=2)
    try:
        return not any((await Store(client, partitions=32).pending_counts()).values())
    finally:
        await client.aclose()
