"""`make bench-cluster`: sizing of a scaled-out bridge on this machine.

3 bridge replicas (`python -m bridge serve`, REDIS_CLUSTER=1, REDIS_URL = one seed node) on a local
3 primaries + 3 replicas Valkey cluster (tests.harness.valkey.ValkeyCluster), a fake Slack in its own
process (bench/fake_slack_server.py, Slack pacing set out of the way), one load generator (bench/load.py)
driving all three replicas at once. On a fresh cluster:

  1. memory    1,000 conversations × 10 messages: Redis dataset bytes on the primaries, per conversation
  2. peak      closed loop, message_received for 5,000 users spread over the replicas: webhooks/s, and
     light     open loop at 200/s: the acknowledgement latency of one webhook without queueing;
               both ROUNDS times, alternating redis.wait_replicas 0 and 1 (hot reload, SIGHUP) so that
               the cost of WAIT is measured under the same conditions, on a machine that may be busy
  3. lag       500 open handovers, messages into them at a fixed rate: webhook → visible in Slack p50/p99

The table goes to stdout and bench-results/cluster.md. Everything is bounded and every child process
(valkey-server ×6, bridges, fake Slack) is stopped on the way out, also on failure.

Environment: BENCH_SECONDS (default 4) per pass, BENCH_CONNECTIONS (default 16 per replica),
BENCH_LAG_RATE (default 200 messages/s into the open handovers).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import redis

from bench.load import LoadResult, closed_loop, open_loop, percentile
from bench.process import REPO_ROOT, spawn_fake_slack, stop, wait_fake_slack
from bench.run import (
    CHANNEL,
    HOOK_PATH,
    KEY,
    SKILL,
    drained,
    log,
    machine,
    mib,
    ms,
    request_factory,
    run_and_report,
    slack_stats,
    users,
)
from tests.harness.bridge_process import BridgeProcess
from tests.harness.fake_slack import DEFAULT_TOKEN
from tests.harness.valkey import HOST, ValkeyCluster
from tests.helpers import escalation

SECONDS = float(os.environ.get("BENCH_SECONDS", "4"))
ROUNDS = 3
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "16"))
LAG_RATE = float(os.environ.get("BENCH_LAG_RATE", "200"))
LIGHT_RATE = 200.0
REPLICAS = 3
PEAK_USERS = 5000
OPEN_HANDOVERS = 500
MEMORY_CONVERSATIONS = 1000
MEMORY_MESSAGES = 10
RESULTS = REPO_ROOT / "bench-results" / "cluster.md"

Workload = list[list[bytes]]


def config(wait_replicas: int) -> dict[str, Any]:
    return {
        "slack": {"default_channel": CHANNEL},
        "delivery": {"posts_per_second": 2000, "burst": 2000},  # Slack never rate-limits the bench
        "redis": {"cluster": True, "wait_replicas": wait_replicas, "wait_timeout_ms": 100},
    }


# --- one pass over every replica at once -----------------------------------------------------------


@dataclass
class Pass:
    """What the replicas answered during one pass (one LoadResult each)."""

    results: list[LoadResult]

    @property
    def requests(self) -> int:
        return sum(r.requests for r in self.results)

    @property
    def duration_s(self) -> float:
        return max(r.duration_s for r in self.results)

    @property
    def rate(self) -> float:
        return self.requests / self.duration_s

    def percentile(self, q: float) -> float:
        return percentile([s for r in self.results for s in r.latencies_s], q)

    @property
    def failed(self) -> int:
        return sum(r.non_2xx + r.errors for r in self.results)


@dataclass
class Series:
    """The same pass repeated (one setting, several rounds), taken together."""

    passes: list[Pass]

    @property
    def rate(self) -> float:
        return sum(p.requests for p in self.passes) / sum(p.duration_s for p in self.passes)

    @property
    def per_replica(self) -> str:
        seconds = sum(p.duration_s for p in self.passes)
        counts = [sum(p.results[i].requests for p in self.passes) for i in range(REPLICAS)]
        return " / ".join(f"{count / seconds:.0f}" for count in counts)

    def percentile(self, q: float) -> float:
        return percentile([s for p in self.passes for r in p.results for s in r.latencies_s], q)

    @property
    def failed(self) -> int:
        return sum(p.failed for p in self.passes)


def split(workload: Workload, parts: int) -> list[Workload]:
    """Disjoint slices: each conversation is driven through one replica (others deliver it all the same)."""
    return [workload[i::parts] for i in range(parts)]


async def across(
    bridges: Sequence[BridgeProcess],
    run_one: Callable[[BridgeProcess, int], Awaitable[LoadResult]],
) -> Pass:
    return Pass(list(await asyncio.gather(*(run_one(b, i) for i, b in enumerate(bridges)))))


async def peak(bridges: Sequence[BridgeProcess], workload: Workload, tag: str, seconds: float) -> Pass:
    slices = split(workload, len(bridges))

    def run_one(bridge: BridgeProcess, i: int) -> Awaitable[LoadResult]:
        make = request_factory(bridge.port, slices[i], f"{tag}{i}-")
        return closed_loop(HOST, bridge.port, make, connections=CONNECTIONS, duration_s=seconds)

    return await across(bridges, run_one)


async def fixed_rate(
    bridges: Sequence[BridgeProcess],
    workload: Workload,
    tag: str,
    rate: float,
    *,
    stamped: bool = False,
    seconds: float = SECONDS,
) -> Pass:
    slices = split(workload, len(bridges))

    def run_one(bridge: BridgeProcess, i: int) -> Awaitable[LoadResult]:
        make = request_factory(bridge.port, slices[i], f"{tag}{i}-", stamped=stamped)
        return open_loop(HOST, bridge.port, make, rate=rate / len(bridges), duration_s=seconds)

    return await across(bridges, run_one)


# --- the cluster's memory --------------------------------------------------------------------------


def primaries(cluster: ValkeyCluster) -> Iterator[redis.Redis]:
    """A client for each node that is a primary right now (closed once the caller moves on)."""
    for port in cluster.alive_ports:
        with redis.Redis(host=HOST, port=port, socket_timeout=5) as node:
            if node.info("replication")["role"] == "master":
                yield node


def dataset_bytes(cluster: ValkeyCluster) -> int:
    """MEMORY STATS dataset.bytes: used_memory without the fixed overheads (the replication backlog
    alone fills up to repl-backlog-size during the pass, whatever the number of conversations)."""
    return sum(int(node.memory_stats()["dataset.bytes"]) for node in primaries(cluster))


def keys_memory(cluster: ValkeyCluster, pattern: str) -> tuple[int, int]:
    """(keys, bytes by MEMORY USAGE) matching `pattern`, over every primary."""
    count = total = 0
    for node in primaries(cluster):
        for key in node.scan_iter(match=pattern, count=1000):
            count += 1
            total += int(node.memory_usage(key, samples=0) or 0)
    return count, total


@dataclass
class Memory:
    dataset_per_conversation: float
    keys_per_conversation: float
    dedupe_keys: int


async def memory(cluster: ValkeyCluster, bridges: Sequence[BridgeProcess]) -> Memory:
    before = dataset_bytes(cluster)
    slices = split(users(MEMORY_CONVERSATIONS, "mem"), len(bridges))

    def run_one(bridge: BridgeProcess, i: int) -> Awaitable[LoadResult]:
        make = request_factory(bridge.port, slices[i], f"m{i}-")
        total = len(slices[i]) * MEMORY_MESSAGES
        return closed_loop(HOST, bridge.port, make, connections=CONNECTIONS, total=total)

    result = await across(bridges, run_one)
    if result.failed or result.requests != MEMORY_CONVERSATIONS * MEMORY_MESSAGES:
        raise RuntimeError(f"memory pass: {result.failed} failed of {result.requests}")
    _, conv_bytes = keys_memory(cluster, f"bridge:{{*}}:conv:{SKILL}:mem*")
    _, hist_bytes = keys_memory(cluster, f"bridge:{{*}}:hist:{SKILL}:mem*")
    dedupe, _ = keys_memory(cluster, "bridge:{*}:dedupe:*")
    return Memory(
        dataset_per_conversation=(dataset_bytes(cluster) - before) / MEMORY_CONVERSATIONS,
        keys_per_conversation=(conv_bytes + hist_bytes) / MEMORY_CONVERSATIONS,
        dedupe_keys=dedupe,
    )


# --- handovers and delivery lag ----------------------------------------------------------------------


async def open_handovers(
    session: aiohttp.ClientSession, bridges: Sequence[BridgeProcess], slack: str, count: int
) -> None:
    """`count` escalations, spread over the replicas; wait until every thread has its root in Slack."""
    semaphore = asyncio.Semaphore(32)

    async def escalate(i: int) -> None:
        body = orjson.dumps(escalation(f"ho{i:05d}", skill_id=SKILL))
        url = f"{bridges[i % len(bridges)].url}{HOOK_PATH}"
        headers = {"Content-Type": "application/json"}
        async with semaphore, session.post(url, data=body, headers=headers) as response:
            if response.status != 200:
                raise RuntimeError(f"escalation answered {response.status}: {await response.text()}")

    await asyncio.gather(*(escalate(i) for i in range(count)))
    deadline = time.monotonic() + 60
    while (await slack_stats(session, slack))["roots"] < count:
        if time.monotonic() > deadline:
            raise RuntimeError("handover threads were not opened in fake Slack")
        await asyncio.sleep(0.1)


@dataclass
class Lag:
    rate: float
    sent: int
    delivered: int
    p50_s: float
    p99_s: float
    max_s: float


async def delivery_lag(session: aiohttp.ClientSession, bridges: Sequence[BridgeProcess], slack: str) -> Lag:
    async with session.post(f"{slack}/bench/reset"):
        pass
    workload = users(OPEN_HANDOVERS, "ho")
    result = await fixed_rate(bridges, workload, "lag", LAG_RATE, stamped=True, seconds=2 * SECONDS)
    acked = sum(r.statuses.get(200, 0) for r in result.results)
    deadline = time.monotonic() + 60
    while len(delays := (await slack_stats(session, slack))["delays_s"]) < acked:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {len(delays)} of {acked} acknowledged messages reached Slack in 60 s")
        await asyncio.sleep(0.2)
    return Lag(result.rate, acked, len(delays), percentile(delays, 50), percentile(delays, 99), max(delays))


# --- run -------------------------------------------------------------------------------------------------


async def set_wait_replicas(bridges: Sequence[BridgeProcess], wait_replicas: int) -> None:
    """Hot reload (config file + SIGHUP, as an operator would), then wait until every replica says so."""
    bridges = [b for b in bridges if orjson.loads(b.config_path.read_bytes()) != config(wait_replicas)]
    seen = [len(b.log_events("config reloaded")) for b in bridges]
    for bridge in bridges:
        bridge.config_path.write_bytes(orjson.dumps(config(wait_replicas)))
        assert bridge.pid is not None
        os.kill(bridge.pid, signal.SIGHUP)
    deadline = time.monotonic() + 10
    while any(len(b.log_events("config reloaded")) <= n for b, n in zip(bridges, seen, strict=True)):
        if time.monotonic() > deadline:
            raise RuntimeError(f"redis.wait_replicas={wait_replicas} was not reloaded")
        await asyncio.sleep(0.05)


@dataclass
class Settings:
    """Peak and light passes for one redis.wait_replicas value, over every round."""

    peak: Series
    light: Series


async def wait_rounds(bridges: Sequence[BridgeProcess]) -> dict[int, Settings]:
    plain = users(PEAK_USERS, "u")
    await peak(bridges, plain, "warm", 2.0)  # scripts cached, pools and slot maps filled
    runs: dict[int, tuple[list[Pass], list[Pass]]] = {0: ([], []), 1: ([], [])}
    for round_ in range(ROUNDS):
        for wait_replicas, (peaks, lights) in runs.items():
            await set_wait_replicas(bridges, wait_replicas)
            peaks.append(await peak(bridges, plain, f"p{round_}w{wait_replicas}", SECONDS))
            lights.append(await fixed_rate(bridges, plain, f"l{round_}w{wait_replicas}", LIGHT_RATE))
            log(
                f"round {round_ + 1}, wait_replicas={wait_replicas}: {peaks[-1].rate:.0f} webhooks/s; "
                f"at {LIGHT_RATE:.0f}/s {p50_p99(lights[-1])}"
            )
    await set_wait_replicas(bridges, 0)
    return {wait: Settings(Series(peaks), Series(lights)) for wait, (peaks, lights) in runs.items()}


async def start_bridges(work_dir: Path, seed: str, slack: str) -> list[BridgeProcess]:
    """REPLICAS x `python -m bridge serve`, configured the operator's way: REDIS_URL = one seed node,
    REDIS_CLUSTER=1, a config.yaml. The caller closes them (also when this raises)."""
    bridges = [
        BridgeProcess(
            work_dir,
            redis_url=seed,
            slack_url=f"{slack}/api/",
            webhook_key=KEY,
            slack_token=DEFAULT_TOKEN,
            channel=CHANNEL,
            config=config(0),
            env={"REDIS_CLUSTER": "1", "SLACK_SIGNING_SECRET": "bench-signing-secret"},
            name=f"bridge{i}",
        )
        for i in range(REPLICAS)
    ]
    for bridge in bridges:
        bridge.start()
    await asyncio.gather(*(b.wait_ready() for b in bridges))
    return bridges


async def stop_bridges(bridges: Sequence[BridgeProcess]) -> None:
    """SIGTERM (graceful: deliveries handed back), then make sure nothing is left running."""
    await asyncio.gather(*(b.stop() for b in bridges))


async def run(work_dir: Path) -> str:
    started = time.monotonic()
    cluster = ValkeyCluster(work_dir / "cluster")
    slack_proc, slack = spawn_fake_slack(work_dir)
    bridges: list[BridgeProcess] = []
    try:
        seed = await cluster.start(timeout_s=30)
        await wait_fake_slack(slack_proc, slack)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            bridges = await start_bridges(work_dir, seed, slack)
            mem = await memory(cluster, bridges)
            log(f"memory: {mib(mem.dataset_per_conversation * 10_000)} per 10,000 conversations")
            settings = await wait_rounds(bridges)
            await open_handovers(session, bridges, slack, OPEN_HANDOVERS)
            await drained(session, bridges[0].url)
            lag = await delivery_lag(session, bridges, slack)
            log(f"lag at {lag.rate:.0f} msg/s: p50 {ms(lag.p50_s)}, p99 {ms(lag.p99_s)}")
    finally:
        await stop_bridges(bridges)
        await stop(slack_proc)
        await cluster.stop()
    return render(mem, settings, lag, time.monotonic() - started)


def p50_p99(result: Pass | Series) -> str:
    return f"{ms(result.percentile(50))} / {ms(result.percentile(99))}"


def render(mem: Memory, settings: dict[int, Settings], lag: Lag, elapsed_s: float) -> str:
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True
    ).stdout.strip()
    base = settings[0]
    rows = [
        (
            f"webhooks/s, 3 replicas together (closed loop, {CONNECTIONS} connections each, "
            f"{PEAK_USERS:,} users)",
            f"**{base.peak.rate:.0f}**, i.e. {base.peak.per_replica} per replica",
        ),
        (
            f"delivery lag, {OPEN_HANDOVERS} open handovers, {lag.rate:.0f} messages/s into them, "
            "p50 / p99 (max)",
            f"**{ms(lag.p50_s)} / {ms(lag.p99_s)}** ({ms(lag.max_s)}), "
            f"{lag.delivered} of {lag.sent} delivered",
        ),
        (
            f"Redis memory per 10,000 conversations ({MEMORY_MESSAGES} messages each), primaries",
            f"**{mib(mem.dataset_per_conversation * 10_000)}** of data "
            f"({mem.dataset_per_conversation / 1024:.1f} KiB per conversation), of which conversation + "
            f"history keys {mib(mem.keys_per_conversation * 10_000)}; the rest is one dedupe key per "
            f"webhook ({mem.dedupe_keys:,} in this pass), gone after webhook.dedupe_window. "
            "The same again on the replicas",
        ),
    ]
    wait_rows = [
        f"| {wait} | {s.peak.rate:.0f} ({s.peak.per_replica}) | {p50_p99(s.peak)} | {p50_p99(s.light)} "
        f"| {s.peak.failed + s.light.failed} |"
        for wait, s in settings.items()
    ]
    lines = [
        "# Cluster sizing: 3 bridge replicas on a 3-primary Valkey cluster",
        "",
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, commit {commit or '?'}, {machine()}; "
        f"everything (6 valkey-server, 3 bridges, fake Slack, load generator) on this one machine, "
        f"unpinned; {elapsed_s:.0f} s.",
        "",
        "| measure | result |",
        "|---|---|",
        *(f"| {name} | {value} |" for name, value in rows),
        "",
        f"The cost of `redis.wait_replicas` (record + WAIT pipelined on the connection that wrote; "
        f"{ROUNDS} rounds of {SECONDS:.0f} s passes, the two settings alternating):",
        "",
        f"| wait_replicas | webhooks/s (per replica) | ack p50 / p99 at that peak "
        f"| ack p50 / p99 at {LIGHT_RATE:.0f}/s | failed |",
        "|---|---|---|---|---|",
        *wait_rows,
        "",
        f"All 11 processes share this machine's {os.cpu_count()} CPU(s): the figures are a floor for a "
        "deployment where each replica and each valkey-server has a core of its own.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    run_and_report(run, RESULTS, "bench-cluster-")


if __name__ == "__main__":
    main()
