"""Rules from config.yaml, end to end: routing through the webhook endpoint, and hot reload."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson

from bridge.keys import conversation_id
from bridge.runtime import BRIDGE
from tests.harness import wait_until
from tests.harness.fake_slack import FakeSlack
from tests.helpers import CHANNEL, escalation, message

FAST = """
delivery: {posts_per_second: 1000, burst: 1000, poll_interval: 100ms, backoff_base: 100ms, backoff_max: 1s}
"""

ROUTES_V1 = (
    FAST
    + """
handover:
  triggers:
    - event: escalation_requested
    - keywords: [conseiller, humain]
routes:
  - name: french
    match: {lang: "fr-*"}
    channel: C0FRENCH1
    mention: "<!subteam^S0FRENCH>"
"""
)

ROUTES_V2 = (
    FAST
    + """
handover:
  triggers:
    - event: escalation_requested
routes:
  - name: english
    match: {lang: "en-*"}
    channel: C0ENGLISH
"""
)


async def test_routes_and_triggers_from_the_file(make_bridge, fake_slack: FakeSlack, tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(ROUTES_V1)
    bridge = await make_bridge(config_path=path)
    await bridge.hook(message("fr1", "je veux un conseiller", lang="fr-fr"))  # keyword trigger
    await bridge.hook(escalation("en1", lang="en-us"))  # no route: default channel
    await wait_until(lambda: len(fake_slack.roots("C0FRENCH1")) == 1 and len(fake_slack.roots(CHANNEL)) == 1)
    french = fake_slack.roots("C0FRENCH1")[0]
    assert "<!subteam^S0FRENCH>" in french.text
    rendered = orjson.dumps(french.blocks).decode()
    assert "french" in rendered and "keyword" in rendered  # which route and which trigger applied


async def test_hot_reload_good_then_bad_keeps_last_good(
    make_bridge, fake_slack: FakeSlack, tmp_path: Path
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(ROUTES_V1)
    bridge = await make_bridge(config_path=path)
    await bridge.hook(escalation("r1", lang="en-gb"))
    await wait_until(lambda: len(fake_slack.roots(CHANNEL)) == 1)

    holder = bridge.app[BRIDGE].holder
    first = holder.current
    path.write_text(ROUTES_V2)  # the watcher picks it up without a restart
    await wait_until(lambda: holder.current is not first, 5)
    # requests keep flowing during and after the reload
    statuses = await asyncio.gather(*(bridge.hook(message(f"load{i}", "hi")) for i in range(20)))
    assert {s for s, _ in statuses} == {200}
    await bridge.hook(escalation("r2", lang="en-gb"))
    await wait_until(lambda: len(fake_slack.roots("C0ENGLISH")) == 1, 5)

    good = holder.current
    path.write_text(ROUTES_V2 + "\nrouts: []\nhistory: {ttl: soon}\n")  # invalid: rejected, last good kept
    await wait_until(lambda: not holder.file_ok, 5)
    assert holder.current is good
    await bridge.hook(escalation("r3", lang="en-gb"))
    await wait_until(lambda: len(fake_slack.roots("C0ENGLISH")) == 2, 5)
    assert (await bridge.hook(message("fr2", "un conseiller svp", lang="fr-fr")))[0] == 200
    # the keywords trigger is gone in v2: recorded (the 200 says so), and no handover opened
    recorded = await bridge.app[BRIDGE].store.conversation(conversation_id("skill1", "fr2"))
    assert recorded["client_id"] == "fr2" and "state" not in recorded
    assert fake_slack.roots("C0FRENCH1") == []
