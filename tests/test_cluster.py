"""Issue 7: many bridge replicas on a real 3 primaries + 3 replicas Valkey cluster, through real HTTP.

The cluster fixture is shared by the module and never flushed, so every test uses its own skill and
client ids and only looks at the Slack roots of its own client. The failover test runs last: it kills
a primary and gives the module its cluster back whole (original roles) before it ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import re
import signal
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aredis
from aiohttp.test_utils import TestClient
from redis.asyncio.cluster import ClusterNode, RedisCluster

from bridge.embedded import EmbeddedValkey, free_port
from bridge.keys import LANES, PLACED_KEY, SLACK, Keys, channel_open_key, conversation_id
from bridge.privacy.store import audit_entries
from bridge.runtime import BRIDGE
from bridge.store import Store
from tests.conftest import app_config, serve_bridge
from tests.harness import wait_until
from tests.harness.fake_slack import FakeSlack, SlackMessage
from tests.harness.valkey import HOST, ValkeyCluster
from tests.helpers import CHANNEL, BridgeClient, escalation, message
from tests.test_outbox import begin_turn_gives_the_token_to_the_oldest_waiting_conversation

BridgeOn = Callable[..., Awaitable[BridgeClient]]
ClusterBridge = Callable[..., Awaitable[BridgeClient]]


@pytest.fixture
async def bridge_on(fake_slack: FakeSlack) -> AsyncIterator[BridgeOn]:
    """In-process bridges (real HTTP, built like make_bridge's) on a Redis of the test's choosing."""
    clients: list[TestClient] = []

    async def make(
        redis_url: str, *, cluster: bool = False, file: dict[str, Any] | None = None
    ) -> BridgeClient:
        config = app_config(redis_url, fake_slack.url, file=file, redis_cluster=cluster)
        return await serve_bridge(config, clients)

    yield make
    for client in reversed(clients):
        await client.close()


@pytest.fixture
def cluster_bridge(cluster: ValkeyCluster, bridge_on: BridgeOn) -> ClusterBridge:
    """A bridge on the cluster: REDIS_URL = a seed node, REDIS_CLUSTER=1."""
    return lambda file=None: bridge_on(cluster.seed_url, cluster=True, file=file)


@pytest.fixture
async def cluster_redis(cluster: ValkeyCluster) -> AsyncIterator[RedisCluster]:
    """The test's own view of the cluster, to look at keys the way the bridge wrote them (seeded with
    every live node: it must still find the cluster after the failover test killed one)."""
    seeds = [ClusterNode(host, port) for host, port in cluster.startup_nodes]
    client = RedisCluster(startup_nodes=seeds, socket_timeout=2)
    yield client
    await client.aclose()


@dataclass
class User:
    """A conversation of its own (the cluster is not flushed between tests)."""

    skill: str = field(default_factory=lambda: f"cl-{uuid.uuid4().hex[:8]}")
    client: str = field(default_factory=lambda: f"u-{uuid.uuid4().hex[:8]}")

    @property
    def cid(self) -> str:
        return conversation_id(self.skill, self.client)

    def message(self, text: str, answer: str = "", **extra: Any) -> dict[str, Any]:
        return message(self.client, text, answer, skill_id=self.skill, **extra)

    def escalation(self, **extra: Any) -> dict[str, Any]:
        body = escalation(self.client, skill_id=self.skill)
        body["payload"].update(extra)
        return body

    def roots(self, fake: FakeSlack) -> list[SlackMessage]:
        return [m for m in fake.roots(CHANNEL) if self.client in m.text]

    def thread_text(self, fake: FakeSlack) -> str:
        roots = self.roots(fake)
        return "\n".join(m.text for root in roots for m in fake.replies(CHANNEL, root.ts))


def store_of(bridge: BridgeClient) -> Store:
    return bridge.app[BRIDGE].store


def numbered(text: str, tag: str) -> list[int]:
    """The numbers of `tag-NNN` tokens in the order they appear (user lines only, not bot answers)."""
    return [int(n) for n in re.findall(rf"\*User:\* {tag}-(\d+)", text)]


async def test_every_key_of_a_conversation_and_its_partition_is_in_one_slot(
    cluster_bridge: ClusterBridge, cluster_redis: RedisCluster
) -> None:
    """Each script declares (or, for what claim_due reads, builds from a prefix) keys of one partition."""
    store = store_of(await cluster_bridge())
    cid = User().cid
    k = store.keys(cid)
    p = store.partition_keys(k.partition)
    names = [k.conv, k.hist, k.open, k.dead, k.stats, k.dedupe("d" * 32), k.seen("Ev1")]
    for lane in LANES:
        names += [
            k.out(lane),
            k.ready(lane),
            k.lease(lane),
            p.lease_prefix(lane) + cid,
            p.out_prefix(lane) + cid,
        ]
    slots = {await cluster_redis.execute_command("CLUSTER KEYSLOT", name) for name in names}
    assert len(slots) == 1
    # what claim_due.lua builds are the keys the other scripts declare
    assert p.lease_prefix(SLACK) + cid == k.lease(SLACK)
    assert (p.conv_prefix + cid, p.out_prefix(SLACK) + cid) == (k.conv, k.out(SLACK))
    other = Keys((k.partition + 1) % store.partitions, cid)
    assert await cluster_redis.execute_command("CLUSTER KEYSLOT", other.conv) not in slots


async def test_channel_pool_counters_work_in_a_cluster(cluster_redis: RedisCluster) -> None:
    """The pools' placement hash and per-channel sets share one hash tag (one slot), so placing,
    leaving and reconciling are one script or one pipeline on a cluster too."""
    pool = [f"C0CL{uuid.uuid4().hex[:6].upper()}", f"C0CL{uuid.uuid4().hex[:6].upper()}"]
    names = [PLACED_KEY, *(channel_open_key(channel) for channel in pool)]
    assert len({await cluster_redis.execute_command("CLUSTER KEYSLOT", name) for name in names}) == 1
    store = Store(cluster_redis, partitions=32)
    open_one, gone = User().cid, User().cid
    await cluster_redis.hset(store.keys(open_one).conv, mapping={"state": "open", "hid": 1})
    assert await store.place_handover(open_one, 1, pool, 1, await store.waiting_in_channels(pool)) == pool[0]
    assert await store.place_handover(gone, 1, pool, 2, await store.waiting_in_channels(pool)) == pool[1]
    assert await store.reconcile_placements() >= 1  # `gone` has no conversation behind it
    assert await store.open_in_channels(pool) == {pool[0]: 1, pool[1]: 0}
    assert await store.handover_left_channel(open_one, 1) == pool[0]
    assert await store.open_in_channels(pool) == dict.fromkeys(pool, 0)


async def test_begin_turn_in_a_cluster_takes_two_calls_with_the_same_outcome(
    cluster_redis: RedisCluster,
) -> None:
    """The channel's bucket lives in another slot than the conversation: no one script for both.
    (A store of the test's own: a running bridge's workers would claim the conversation first.)"""
    store = Store(cluster_redis, partitions=32)
    user = uuid.uuid4().hex[:12]
    await begin_turn_gives_the_token_to_the_oldest_waiting_conversation(store, user, f"C{user.upper()}")


async def test_history_escalation_and_live_follow_across_two_replicas(
    cluster_bridge: ClusterBridge, fake_slack: FakeSlack
) -> None:
    a, b = await cluster_bridge(), await cluster_bridge()
    user = User()
    for i in range(5):
        assert await (a, b)[i % 2].hook(user.message(f"hist-{i:03d}")) == (200, {"ok": True})
    assert await b.hook(user.escalation()) == (200, {"ok": True})
    await wait_until(lambda: numbered(user.thread_text(fake_slack), "hist") == list(range(5)), 10)
    for i in range(6):
        assert await (a, b)[i % 2].hook(user.message(f"live-{i:03d}")) == (200, {"ok": True})
    await wait_until(lambda: numbered(user.thread_text(fake_slack), "live") == list(range(6)), 10)
    assert len(user.roots(fake_slack)) == 1
    assert numbered(user.thread_text(fake_slack), "hist") == list(range(5))


async def test_two_replicas_racing_30_escalations_for_one_user_open_one_thread(
    cluster_bridge: ClusterBridge, fake_slack: FakeSlack
) -> None:
    a, b = await cluster_bridge(), await cluster_bridge()
    user = User()
    # Distinct bodies (no dedupe shortcut): escalations and need_help messages, all at once.
    bodies = [
        user.escalation(attempt=i) if i % 2 else user.message(f"help-{i:03d}", need_help=True)
        for i in range(30)
    ]
    results = await asyncio.gather(*((a, b)[i % 2].hook(body) for i, body in enumerate(bodies)))
    assert results == [(200, {"ok": True})] * 30
    helped = sorted(range(0, 30, 2))
    await wait_until(lambda: sorted(numbered(user.thread_text(fake_slack), "help")) == helped, 10)
    assert len(user.roots(fake_slack)) == 1
    conv = await store_of(a).conversation(user.cid)
    assert conv["hid"] == "1" and conv["state"] == "open"


async def test_100_messages_alternating_between_replicas_are_delivered_once_in_order(
    cluster_bridge: ClusterBridge, fake_slack: FakeSlack
) -> None:
    a, b = await cluster_bridge(), await cluster_bridge()
    user = User()
    assert (await a.hook(user.escalation()))[0] == 200
    await wait_until(lambda: len(user.roots(fake_slack)) == 1, 10)
    for i in range(100):
        assert await (a, b)[i % 2].hook(user.message(f"seq-{i:03d}")) == (200, {"ok": True})
    await wait_until(lambda: 99 in numbered(user.thread_text(fake_slack), "seq"), 15)
    assert numbered(user.thread_text(fake_slack), "seq") == list(range(100))
    assert len(user.roots(fake_slack)) == 1


async def _replica_of(primary_port: int) -> int:
    client = aredis.Redis(host=HOST, port=primary_port, socket_timeout=2)
    try:
        return int((await client.info("replication"))["slave0"]["port"])
    finally:
        await client.aclose()


@contextlib.contextmanager
def stopped(server: EmbeddedValkey) -> Iterator[None]:
    """SIGSTOP a replica for the block: it stops acknowledging the primary's writes."""
    assert server.pid is not None
    os.kill(server.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(server.pid, signal.SIGCONT)


async def assert_wait_covers_the_write(bridge: BridgeClient, user: User, replica: EmbeddedValkey) -> None:
    """A 200 means a replica has the event. Concurrent webhooks first give the client several
    connections whose writes are replicated: a WAIT sent on one of those instead of the one that wrote
    would answer at once, whatever the replica is doing (a cluster node's pool hands out its least
    recently used connection, so the cluster case catches that; the standalone pool reuses the last one,
    so there this checks the pipelined path itself: NOSCRIPT on a fresh server, WAIT running out)."""
    warm = await asyncio.gather(*(bridge.hook(user.message(f"warm-{i:03d}")) for i in range(16)))
    assert warm == [(200, {"ok": True})] * 16
    body = user.message("wait-000")
    with stopped(replica):
        started = time.monotonic()
        status, answer = await bridge.hook(body)
        elapsed = time.monotonic() - started
    assert (status, answer.get("error")) == (503, "not replicated in time, retry later")
    assert 0.3 <= elapsed < 2.0
    # The sender's retry: the event is on the primary, so it is answered as a duplicate.
    assert await bridge.hook(body) == (200, {"ok": True, "duplicate": True})
    assert await bridge.hook(user.message("wait-001")) == (200, {"ok": True})
    assert [e["in"] for e in await store_of(bridge).history(user.cid)][-2:] == ["wait-000", "wait-001"]


WAIT_ONE = {"redis": {"wait_replicas": 1, "wait_timeout_ms": 300}}


async def test_wait_replicas_runs_on_the_connection_and_node_that_wrote(
    cluster: ValkeyCluster, cluster_bridge: ClusterBridge, cluster_redis: RedisCluster
) -> None:
    bridge = await cluster_bridge(file=WAIT_ONE)
    user = User()
    owner = cluster.primary_for_key(store_of(bridge).keys(user.cid).conv)
    await cluster_redis.execute_command("SCRIPT FLUSH", target_nodes=RedisCluster.PRIMARIES)  # NOSCRIPT too
    await assert_wait_covers_the_write(bridge, user, cluster.nodes[await _replica_of(owner)])


@pytest.fixture
async def primary_and_replica(tmp_path: Path) -> AsyncIterator[tuple[EmbeddedValkey, EmbeddedValkey]]:
    """A standalone primary with one replica (the session server has none), in sync."""
    # (the first full sync would otherwise wait repl-diskless-sync-delay, 5 s by default)
    primary = EmbeddedValkey(
        tmp_path / "primary", appendonly=False, extra_args=["--repl-diskless-sync-delay", "0"]
    )
    replica: EmbeddedValkey | None = None
    try:
        await primary.start()
        replica_args = ["--replicaof", HOST, str(primary.port)]
        replica = EmbeddedValkey(tmp_path / "replica", appendonly=False, extra_args=replica_args)
        await replica.start()
        client = aredis.Redis.from_url(replica.url)
        try:
            await _until(10, lambda: _linked_to(client, primary.port))
        finally:
            await client.aclose()
        yield primary, replica
    finally:
        if replica is not None:
            await replica.stop()
        await primary.stop()


async def test_wait_replicas_on_a_single_node_with_one_replica(
    primary_and_replica: tuple[EmbeddedValkey, EmbeddedValkey], bridge_on: BridgeOn
) -> None:
    primary, replica = primary_and_replica
    bridge = await bridge_on(primary.url, file=WAIT_ONE)
    await assert_wait_covers_the_write(bridge, User(), replica)


@pytest.fixture
async def one_node_cluster(tmp_path: Path) -> AsyncIterator[EmbeddedValkey]:
    """A cluster of one primary holding every slot: killing it leaves the client no node to ask."""
    port = free_port(HOST, cluster_bus=True)
    args = [
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        "nodes.conf",
        "--cluster-node-timeout",
        "1000",
        # The test SIGKILLs the node right after a handover opened: with everysec, that last second of
        # state can be lost (a documented Redis durability limit, not what this test is about).
        "--appendfsync",
        "always",
    ]
    node = EmbeddedValkey(tmp_path / "solo", port=port, extra_args=args)  # AOF: state survives the kill
    try:
        await node.start()
        client = aredis.Redis.from_url(node.url, decode_responses=True)
        try:
            await client.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
            await _until(10, lambda: _cluster_ok(client))
        finally:
            await client.aclose()
        yield node
    finally:
        await node.stop()


async def _cluster_ok(client: aredis.Redis) -> bool:
    return "cluster_state:ok" in await client.execute_command("CLUSTER", "INFO")


async def _claims_failed(bridge: BridgeClient) -> bool:
    """The delivery dispatcher's failed claims, as /metrics counts them."""
    response = await bridge.client.get("/metrics")
    found = re.search(r'^bridge_redis_errors_total\{where="claim"\} (\S+)$', await response.text(), re.M)
    return found is not None and float(found.group(1)) > 0


async def test_no_reachable_cluster_node_answers_503_and_the_bridge_resumes_by_itself(
    one_node_cluster: EmbeddedValkey, bridge_on: BridgeOn, fake_slack: FakeSlack
) -> None:
    """redis-py then raises RedisClusterException, which is not a RedisError: still 503 (not 500), and
    the delivery dispatcher survives it."""
    bridge = await bridge_on(one_node_cluster.url, cluster=True)
    user = User()
    assert (await bridge.hook(user.escalation()))[0] == 200
    await wait_until(lambda: len(user.roots(fake_slack)) == 1, 10)
    one_node_cluster.kill()
    for i in range(3):
        started = time.monotonic()
        status, answer = await bridge.hook(user.message(f"down-{i:03d}"))
        assert (status, answer.get("error")) == (503, "storage unavailable, retry later")
        assert time.monotonic() - started < 3.0
    await _until(5, lambda: _claims_failed(bridge))  # the dispatcher met the error too
    await one_node_cluster.stop()
    await one_node_cluster.start()  # same port and nodes.conf: it owns every slot again
    deadline = time.monotonic() + 15
    while (await bridge.hook(user.message("back-000")))[0] != 200:
        assert time.monotonic() < deadline, "the bridge did not reconnect by itself"
        await asyncio.sleep(0.1)
    await wait_until(lambda: numbered(user.thread_text(fake_slack), "back") == [0], 10)


@dataclass
class Sent:
    index: int
    status: int
    at: float  # monotonic, when sent
    took: float


async def test_forget_and_the_audit_trail_in_a_cluster(
    cluster: ValkeyCluster, fake_slack: FakeSlack, cluster_redis: RedisCluster
) -> None:
    """Issue 18: forget.lua stays in its partition's slot, the thread mapping, channel queue and audit
    stream are other slots' keys: nothing of the conversation is left, the trail has its entries."""
    clients: list[TestClient] = []
    file = {"privacy": {"audit": True}}
    config = app_config(
        cluster.seed_url, fake_slack.url, file=file, redis_cluster=True, bridge_admin_token="cl-admin-1"
    )
    bridge = await serve_bridge(config, clients)
    try:
        user = User()
        assert await bridge.hook(user.message("hello")) == (200, {"ok": True})
        assert await bridge.hook(user.escalation()) == (200, {"ok": True})
        await wait_until(lambda: bool(user.roots(fake_slack)), 10)
        await wait_until(lambda: bool(user.thread_text(fake_slack)), 10)
        before = [key async for key in cluster_redis.scan_iter(match=f"*{user.client}*")]
        assert len(before) >= 2  # its conversation and history (the scan sees every node)
        response = await bridge.client.delete(
            f"/admin/conversations/{user.skill}/{user.client}?slack=1",
            headers={"Authorization": "Bearer cl-admin-1"},
        )
        answer = await response.json()
        assert response.status == 200 and answer["handover_resolved"], answer
        assert answer["removed"]["thread_mappings"] == 1 and answer["slack"]["deleted"] >= 2
        left = [key async for key in cluster_redis.scan_iter(match=f"*{user.client}*")]
        assert left == []
        for key in [key async for key in cluster_redis.scan_iter(match="bridge:thread:*")]:
            assert (await cluster_redis.get(key)) != user.cid.encode()
        trail = [e for e in await audit_entries(store_of(bridge), 0) if e["client_id"] == user.client]
        assert [(e["actor"], e["action"]) for e in trail] == [
            ("system", "opened"),
            ("admin", "resolved"),
            ("admin", "forgotten"),
        ]
    finally:
        for client in clients:
            await client.close()


async def test_primary_failover_answers_503_then_recovers_without_losing_acknowledged_events(
    cluster: ValkeyCluster, cluster_bridge: ClusterBridge, cluster_redis: RedisCluster, fake_slack: FakeSlack
) -> None:
    a, b = await cluster_bridge(), await cluster_bridge()
    user = User()
    keys = store_of(a).keys(user.cid)
    assert (await a.hook(user.escalation()))[0] == 200
    await wait_until(lambda: len(user.roots(fake_slack)) == 1, 10)
    owner = cluster.primary_for_key(keys.conv)
    replica = await _replica_of(owner)
    sent: list[Sent] = []

    async def send(i: int) -> int:
        started = time.monotonic()
        status, _ = await (a, b)[i % 2].hook(user.message(f"fo-{i:03d}"))
        sent.append(Sent(i, status, started, time.monotonic() - started))
        return status

    for i in range(10):
        assert await send(i) == 200
    cluster.kill_node(owner)
    try:
        killed_at = time.monotonic()
        i, ok_in_a_row = 10, 0
        while time.monotonic() - killed_at < 20 and ok_in_a_row < 20:
            status = await send(i)
            ok_in_a_row = ok_in_a_row + 1 if status == 200 and any(s.status == 503 for s in sent) else 0
            i += 1
            await asyncio.sleep(0.02)

        unavailable = [s for s in sent if s.status == 503]
        acked = [s.index for s in sent if s.status == 200]
        assert {s.status for s in sent} <= {200, 503}, [s for s in sent if s.status not in (200, 503)]
        assert unavailable, "killing the owner of the conversation's slot must be visible"
        assert ok_in_a_row == 20, "the bridges did not recover by themselves"
        assert max(s.took for s in sent) < 3.0
        # Everything acknowledged reaches Slack once, in order (a 503'd event may have been written too).
        await wait_until(lambda: set(acked) <= set(numbered(user.thread_text(fake_slack), "fo")), 15)
        delivered = numbered(user.thread_text(fake_slack), "fo")
        assert delivered == sorted(set(delivered)), "duplicated or out of order"
        lost = sorted(set(acked) - set(delivered))
        assert lost == []
        # Nothing left held: no lease, nothing pending or due for this conversation, on either lane.

        async def settled() -> bool:
            for lane in LANES:
                if await cluster_redis.exists(keys.lease(lane)) or await cluster_redis.exists(keys.out(lane)):
                    return False
                if await cluster_redis.zscore(keys.ready(lane), user.cid) is not None:
                    return False
            return True

        await _until(10, settled)
        window = unavailable[-1].at + unavailable[-1].took - unavailable[0].at
        recovered = next(s.at for s in sent if s.at > unavailable[-1].at) - killed_at
        print(
            f"\nfailover: {len(unavailable)} webhooks answered 503 over {window:.2f}s "
            f"(kill → first 200 after: {recovered:.2f}s), "
            f"slowest answer {max(s.took for s in sent):.3f}s, {len(acked)} acknowledged, {len(lost)} lost, "
            f"{len(set(delivered) - set(acked))} answered 503 but delivered"
        )
    finally:
        # Give the module its cluster back whole: the old primary rejoins as a replica, then takes over again.
        await cluster.restart_node(owner)
        await _failover_back(owner, promoted=replica)
        await cluster.wait_ok(timeout_s=15, require_replicas=True)


async def _failover_back(port: int, *, promoted: int, timeout_s: float = 15) -> None:
    """CLUSTER FAILOVER on the rejoined node once it is in sync, so every node has its first role."""
    client = aredis.Redis(host=HOST, port=port, socket_timeout=2, decode_responses=True)
    try:
        await _until(timeout_s, lambda: _linked_to(client, promoted))
        await client.execute_command("CLUSTER", "FAILOVER")
        await _until(timeout_s, lambda: _role_is(client, "master"))
    finally:
        await client.aclose()


async def _linked_to(client: aredis.Redis, primary: int) -> bool:
    info = await client.info("replication")
    return info.get("master_port") == primary and info.get("master_link_status") == "up"


async def _role_is(client: aredis.Redis, role: str) -> bool:
    return (await client.info("replication")).get("role") == role


async def _until(timeout_s: float, check: Callable[[], Awaitable[bool]]) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() >= deadline:
            raise AssertionError(f"not reached within {timeout_s}s")
        await asyncio.sleep(0.05)


async def test_desk_timers_and_home_tab_across_two_replicas_in_a_cluster(
    cluster_bridge: ClusterBridge, fake_slack: FakeSlack
) -> None:
    """The desk's scripts (desk_tick, desk_open) run in a cluster: each reminder posted once by two
    replicas, the escalation marks the root, the Home tab lists the handover."""
    sla = {"first_response": "1s", "remind_every": "1s", "escalate_after": "2s"}
    a, b = await cluster_bridge(file={"sla": sla}), await cluster_bridge(file={"sla": sla})
    user = User()
    assert await a.hook(user.message("hello")) == (200, {"ok": True})
    assert await b.hook(user.escalation()) == (200, {"ok": True})
    await wait_until(lambda: len(user.roots(fake_slack)) == 1, 10)
    root = user.roots(fake_slack)[0]

    def reminders() -> list[SlackMessage]:
        return [m for m in fake_slack.replies(CHANNEL, root.ts) if m.text.startswith(":alarm_clock:")]

    await wait_until(lambda: len(reminders()) >= 3, 10)
    assert all(later.at - earlier.at > 0.6 for earlier, later in itertools.pairwise(reminders()))
    await wait_until(
        lambda: "Response-time target missed" in str(fake_slack.message(CHANNEL, root.ts).blocks), 10
    )

    viewer = f"U{uuid.uuid4().hex[:8].upper()}"
    event = {
        "type": "event_callback",
        "event": {"type": "app_home_opened", "user": viewer, "tab": "home", "channel": "D0HOME"},
        "event_id": f"Ev{uuid.uuid4().hex[:10]}",
    }
    assert await a.slack_event(event) == (200, {"ok": True})
    await wait_until(lambda: user.client in str(fake_slack.home_views.get(viewer, {})), 10)
