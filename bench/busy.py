"""`make bench`'s "busy channel" case: many open handovers sharing what Slack allows per channel.

A fake Slack enforcing 1 post/s per channel (burst 3; a post beyond gets 429), 20 open handovers, each
user writing about every 6 s (uniform 4-8 s) and the bot answering (one message_received each), for
40 s; run on one channel and on a 4-channel pool. Line latency is webhook 200 → the Slack post that
carries the line, measured on one clock (the fake Slack runs in this process). Beside it, an ideal
scheduler on the same recorded arrivals and the same limit: whenever a channel has a token, the whole
backlog of the thread whose oldest waiting line is oldest, at zero cost. Also: lines lost, doubled or
out of order, posts answered 429, and a handover opened 25 s in (its root, and the post carrying its
latest exchange, after the escalation).

Run alone: python -m bench.busy   (BUSY_SECONDS, default 40)
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import re
import tempfile
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.load import percentile
from bridge.embedded import EmbeddedValkey
from tests.harness.bridge_process import BridgeProcess
from tests.harness.fake_slack import DEFAULT_TOKEN, FakeSlack
from tests.helpers import escalation, message

SECONDS = float(os.environ.get("BUSY_SECONDS", "40"))
HANDOVERS = 20
EVERY_S = (4.0, 8.0)  # a user line every ~6 s, jittered
RATE, BURST = 1.0, 3
LATE_AT_S = 25.0  # a new handover opens this far into the traffic
LATE_HISTORY = 5  # exchanges before its escalation
KEY = "busy-bench-key-0001"
LINE = re.compile(r"\bbz(\d\d)-(\d{3})\b")
LATE_LINE = re.compile(r"\blate-(\d)\b")


@dataclass
class Case:
    name: str
    channels: list[str]
    sent: dict[str, float] = field(default_factory=dict)  # line id → webhook 200 (monotonic s)
    thread_of: dict[str, str] = field(default_factory=dict)  # line id → client
    late_escalated: float = 0.0


@dataclass
class Result:
    name: str
    latencies: list[float]
    ideal: list[float]
    lost: int
    doubled: int
    reordered: int
    posts: int
    answered_429: int
    late_root_s: float | None
    late_history_s: float | None

    def row(self) -> str:
        def p(values: Sequence[float], q: float) -> str:
            return f"{percentile(sorted(values), q):.1f} s" if values else "–"

        share = 100 * self.answered_429 / max(self.posts + self.answered_429, 1)
        late = (
            f"{self.late_root_s:.1f} s / {self.late_history_s:.1f} s"
            if self.late_root_s is not None and self.late_history_s is not None
            else "–"
        )
        return (
            f"| {self.name} | {p(self.latencies, 50)} | {p(self.latencies, 95)} | "
            f"{max(self.latencies, default=0):.1f} s | {p(self.ideal, 50)} | {p(self.ideal, 95)} | "
            f"{max(self.ideal, default=0):.1f} s | {self.lost} / {self.doubled} / {self.reordered} | "
            f"{self.answered_429} of {self.posts + self.answered_429} ({share:.1f} %) | {late} |"
        )


HEADER = (
    "| channels | p50 | p95 | max | ideal p50 | ideal p95 | ideal max | lost / doubled / reordered "
    "| posts answered 429 | new handover: root after escalation / latest exchange after root |\n"
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
)


def ideal_latencies(
    arrivals: list[tuple[float, str, str, bool]], rate: float, burst: float, start: float
) -> dict[str, float]:
    """Post times of the ideal scheduler for one channel. `arrivals`: (time, thread, item, opening),
    opening items (a root, then its history once the root is posted) before any line."""
    tokens, at = float(burst), start
    waiting: dict[str, list[tuple[float, str, bool]]] = defaultdict(list)
    posted: dict[str, float] = {}
    pending = sorted(arrivals)
    i, t = 0, start
    while i < len(pending) or any(waiting.values()):
        while i < len(pending) and pending[i][0] <= t:
            arrived, thread, item, opening = pending[i]
            waiting[thread].append((arrived, item, opening))
            i += 1
        tokens = min(burst, tokens + (t - at) * rate)
        at = t
        queued = [
            (min((a for a, _, o in w), default=0), any(o for _, _, o in w), th)
            for th, w in waiting.items()
            if w
        ]
        if queued and tokens >= 1:
            _, _, thread = min(queued, key=lambda q: (not q[1], q[0]))
            tokens -= 1
            for _, item, _ in waiting.pop(thread):
                posted[item] = t
            continue
        t += 0.001
    return posted


async def run_case(work_dir: Path, case: Case, valkey_url: str) -> Result:
    fake = FakeSlack(token=DEFAULT_TOKEN)
    for channel in case.channels:
        fake.add_channel(channel)
    fake.enforce_rate(RATE, burst=BURST, tolerance_s=0.1)
    await fake.start()
    bridge = BridgeProcess(
        work_dir,
        redis_url=valkey_url,
        slack_url=fake.url,
        webhook_key=KEY,
        slack_token=DEFAULT_TOKEN,
        channel=",".join(case.channels),
        config={"delivery": {"posts_per_second": RATE, "burst": BURST}, "history": {"shown_on_open": 20}},
        name=f"busy-{len(case.channels)}",
    )
    try:
        await bridge.started(timeout_s=30)
        return await drive(bridge, fake, case)
    finally:
        await bridge.close()
        await fake.stop()


async def drive(bridge: BridgeProcess, fake: FakeSlack, case: Case) -> Result:
    clients = [f"bz{i:02d}" for i in range(HANDOVERS)]
    for client in clients:
        assert (await bridge.hook(escalation(client)))[0] == 200
    for n in range(LATE_HISTORY):  # the late handover's conversation so far (history, not posted)
        assert (await bridge.hook(message("late", f"late-{n}", "noted")))[0] == 200
    deadline = time.monotonic() + 60
    while len(fake.roots()) < HANDOVERS and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    await asyncio.sleep(BURST / RATE + 0.5)  # the buckets full again: traffic starts from rest
    fake.reset_counters()
    start = time.monotonic()
    rng = random.Random(12)
    await asyncio.gather(*(user(bridge, case, c, start, rng.uniform(0, EVERY_S[1]), rng) for c in clients),
                         late(bridge, case, start))  # fmt: skip
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and not all_posted(fake, case):
        await asyncio.sleep(0.5)
    return tally(fake, case, start)


async def user(
    bridge: BridgeProcess, case: Case, client: str, start: float, first: float, rng: random.Random
) -> None:
    t, n = first, 0
    while t < SECONDS:
        await asyncio.sleep(max(start + t - time.monotonic(), 0))
        line = f"{client}-{n:03d}"
        status, _ = await bridge.hook(message(client, f"question {line}", "an answer from the bot"))
        if status == 200:
            case.sent[line] = time.monotonic()
            case.thread_of[line] = client
        n += 1
        t += rng.uniform(*EVERY_S)


async def late(bridge: BridgeProcess, case: Case, start: float) -> None:
    await asyncio.sleep(max(start + LATE_AT_S - time.monotonic(), 0))
    if (await bridge.hook(escalation("late")))[0] == 200:
        case.late_escalated = time.monotonic()


def posts_of(fake: FakeSlack) -> list[tuple[float, str, str, str]]:
    """(at, channel, thread ts or own ts, text) of each post Slack accepted, in order."""
    return [
        (
            c.at,
            str(c.params.get("channel")),
            str(c.params.get("thread_ts") or c.response.get("ts")),
            str(c.params.get("text", "")),
        )
        for c in fake.calls_to("chat.postMessage")
        if c.status == 200 and c.response.get("ok")
    ]


def all_posted(fake: FakeSlack, case: Case) -> bool:
    seen = {m.group(0) for _, _, _, text in posts_of(fake) for m in LINE.finditer(text)}
    return set(case.sent) <= seen and any(LATE_LINE.search(text) for _, _, _, text in posts_of(fake))


def tally(fake: FakeSlack, case: Case, start: float) -> Result:
    posts = posts_of(fake)
    first_post: dict[str, float] = {}
    counts: dict[str, int] = defaultdict(int)
    order: dict[str, list[int]] = defaultdict(list)
    channel_of: dict[str, str] = {}
    for at, channel, _, text in posts:
        for line in dict.fromkeys(m.group(0) for m in LINE.finditer(text)):
            counts[line] += 1
            first_post.setdefault(line, at)
            client, number = line.rsplit("-", 1)
            order[client].append(int(number))
            channel_of[client] = channel
    latencies = [first_post[line] - sent for line, sent in case.sent.items() if line in first_post]
    reordered = sum(1 for numbers in order.values() for a, b in itertools.pairwise(numbers) if b < a)
    roots_after = [
        (c.at, str(c.params.get("channel")))
        for c in fake.calls_to("chat.postMessage")
        if c.status == 200 and not c.params.get("thread_ts") and c.at > start
    ]
    late_root_at, late_channel = roots_after[0] if roots_after else (None, "")
    late_history_at = next((at for at, _, _, text in posts if f"late-{LATE_HISTORY - 1}" in text), None)
    ideal: list[float] = []
    for channel in case.channels:
        arrivals = [
            (sent, case.thread_of[line], line, False)
            for line, sent in case.sent.items()
            if channel_of.get(case.thread_of[line]) == channel
        ]
        if late_root_at is not None and case.late_escalated and late_channel == channel:
            arrivals.append((case.late_escalated, "late-root", "late-root", True))
        if not arrivals:
            continue
        posted = ideal_latencies(arrivals, RATE, BURST, start)
        ideal += [
            posted[line] - sent for sent, _, line, opening in arrivals if not opening and line in posted
        ]
    return Result(
        name=f"{len(case.channels)} channel{'s' if len(case.channels) > 1 else ''}",
        latencies=latencies,
        ideal=ideal,
        lost=sum(1 for line in case.sent if line not in first_post),
        doubled=sum(1 for c in counts.values() if c > 1),
        reordered=reordered,
        posts=len(posts),
        answered_429=fake.rate_violations,
        late_root_s=late_root_at - case.late_escalated if late_root_at and case.late_escalated else None,
        late_history_s=late_history_at - late_root_at if late_history_at and late_root_at else None,
    )


async def run(work_dir: Path, pools: Sequence[int] = (1, 4)) -> str:
    results = []
    for size in pools:
        valkey = EmbeddedValkey(work_dir / f"busy-valkey-{size}")
        url = await valkey.start()
        try:
            case = Case(f"{size}", [f"C0BUSY{size}{i}" for i in range(size)])
            results.append(await run_case(work_dir, case, url))
        finally:
            await valkey.stop()
        print(f"busy channel: {results[-1].row()}", flush=True)
    return render(results)


def render(results: Sequence[Result]) -> str:
    lines = [
        "## Busy channel",
        "",
        f"Fake Slack enforcing {RATE:g} post/s per channel (burst {BURST}, 429 beyond, 0.1 s of network "
        f"jitter forgiven); {HANDOVERS} open handovers, a user line every {EVERY_S[0]:g}-{EVERY_S[1]:g} s "
        f"each plus the bot's answer, {SECONDS:g} s; a new handover (with {LATE_HISTORY} earlier "
        f"exchanges) opens {LATE_AT_S:g} s in. Latency: webhook 200 → the post carrying the line. Ideal: "
        "oldest waiting thread first, whole backlog per token, zero cost, same arrivals.",
        "",
        HEADER,
        *(r.row() for r in results),
        "",
    ]
    for r in results:
        lines.append(f"- {r.name}: " + "; ".join(targets(r)))
    return "\n".join(lines) + "\n"


def targets(r: Result) -> list[str]:
    def p95(values: Sequence[float]) -> float:
        return percentile(sorted(values), 95) if values else 0.0

    checks = []
    if r.name.startswith("1 "):
        bound = max(1.25 * p95(r.ideal), p95(r.ideal) + 1.5)
        checks.append(f"p95 {p95(r.latencies):.1f} s ≤ {bound:.1f} s {mark(p95(r.latencies) <= bound)}")
    else:
        checks.append(f"p95 {p95(r.latencies):.1f} s ≤ 3 s {mark(p95(r.latencies) <= 3)}")
    share = 100 * r.answered_429 / max(r.posts + r.answered_429, 1)
    checks.append(f"429s {share:.1f} % ≤ 2 % {mark(share <= 2)}")
    checks.append(f"lost/doubled/reordered 0 {mark(r.lost + r.doubled + r.reordered == 0)}")
    if r.late_root_s is not None and r.late_history_s is not None:
        checks.append(f"new root ≤ 3 s {mark(r.late_root_s <= 3)}")
        checks.append(f"its latest exchange ≤ 3 s after it {mark(r.late_history_s <= 3)}")
    return checks


def mark(ok: bool) -> str:
    return "✓" if ok else "✗"


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="busy-bench-") as tmp:
        print(asyncio.run(run(Path(tmp))))


if __name__ == "__main__":
    main()
