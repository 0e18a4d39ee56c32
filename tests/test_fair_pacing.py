"""Fair pacing per channel, across replicas: when a channel's token frees, the thread whose oldest
waiting line has waited longest gets the post, with all its waiting lines.

Three `bridge serve` processes share one Redis and one channel that Slack (the fake, enforcing the
pace) lets them post to 4 times a second, while 8 users write faster than that: the channel is
saturated. Every line must arrive once, in order, and no waiting line may be passed over by two
posts of one other thread whose lines are all younger than it.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections import defaultdict

import pytest

from bridge.keys import conversation_id
from tests.harness import wait_until
from tests.helpers import CHANNEL
from tests.test_faults import (  # noqa: F401  (spawn and slack are fixtures)
    FAST,
    LateAnswerSlack,
    Spawn,
    acknowledged,
    drained,
    line,
    marker_of,
    open_handovers,
    slack,
    spawn,
    tally,
)

pytestmark = pytest.mark.slow

LINE_NUMBER = re.compile(r"\bm-(\d{3})\b")
# A line waits from its webhook's 200; a post that starts within this margin after it may not have
# seen it yet (the claim that puts its thread in the channel's queue), and does not count against it.
MARGIN_S = 0.3


async def test_three_replicas_on_a_saturated_channel_post_the_longest_waiting_thread_first(
    spawn: Spawn,  # noqa: F811
    slack: LateAnswerSlack,  # noqa: F811
    redis_url: str,
) -> None:
    delivery = {**FAST, "posts_per_second": 4, "burst": 1}
    slack.enforce_rate(4.0, burst=1, tolerance_s=0.05)
    bridges = [await spawn(f"bridge-{i}", delivery=delivery) for i in range(3)]
    clients = [f"fair-{i}" for i in range(8)]
    sent = await open_handovers(bridges[0], clients)
    await wait_until(lambda: len(slack.roots(CHANNEL)) == len(clients), 15)

    arrived: dict[tuple[str, int], float] = {}
    rng = random.Random(7)
    pauses = {c: [rng.uniform(0.3, 1.1) for _ in range(8)] for c in clients}

    async def user(k: int, client: str) -> None:
        cid = conversation_id("skill1", client)
        for n, pause in enumerate(pauses[client]):
            await asyncio.sleep(pause)
            assert await acknowledged(bridges[(k + n) % 3], line(client, n)) == [200]
            arrived[(cid, n)] = time.monotonic()
            sent[cid].append(n)

    await asyncio.gather(*(user(k, c) for k, c in enumerate(clients)))
    await drained(redis_url, slack, 8 * len(clients), timeout_s=60)

    result = tally(slack, sent)
    print(result.summary("fair", rate_violations=slack.rate_violations))
    assert result.exact, result

    posts = []  # (at, conversation, line numbers) of each thread post
    for post in slack.posts(CHANNEL):
        numbers = [int(n) for n in LINE_NUMBER.findall(post.text)]
        if not post.is_root and numbers:
            posts.append((post.at, str(marker_of(post)["conversation"]), numbers))
    posted = {(cid, n): at for at, cid, numbers in posts for n in numbers}
    passed_over: dict[tuple[tuple[str, int], str], int] = defaultdict(int)
    for (cid, n), since in arrived.items():
        for at, other, numbers in posts:
            if other == cid or not since + MARGIN_S < at < posted[(cid, n)]:
                continue
            if min(arrived[(other, m)] for m in numbers) > since + MARGIN_S:  # all younger than line n
                passed_over[((cid, n), other)] += 1
    worst = max(passed_over.values(), default=0)
    print(f"FAIR posts={len(posts)} lines_passed_over={len({k[0] for k in passed_over})} worst={worst}")
    assert worst <= 1, {k: v for k, v in passed_over.items() if v > 1}
