"""`make demo` runs from a clean checkout with no Slack account and prints the thread as agents read it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bench.process import clean_env

REPO_ROOT = Path(__file__).resolve().parent.parent


def test_demo_prints_the_whole_thread_in_order() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.demo"],
        cwd=REPO_ROOT,
        env=clean_env({}),  # no REDIS_URL, no Slack settings from the developer's shell
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    expected = [
        "1 handover thread(s)",
        "Handover: escalation requested — marie-42",
        "*Platform*: webchat | *Language*: fr-fr",
        ":white_check_mark: Resolved — by @Alice",
        ":bust_in_silhouette: *User:* Bonjour",
        "Comment puis-je vous aider ?",
        "*User:* Mon colis n'est pas arrivé",
        "*User:* CE123456789FR",
        "en cours d'acheminement <en transit>.",  # escaped for Slack, read back as typed
        "*User:* Il devait arriver il y a une semaine !",
        "*User:* Merci, j'attends",  # live, after the escalation
        "Alice  Bonjour Marie, je suis Alice.",
        "@Alice is handling this conversation",
        "*User:* Merci beaucoup !",
        "Resolved by @Alice. The bot has the conversation back.",
        "handover_opened",
        "handover_claimed (agent Alice)",
        "agent_message (agent Alice): 'Bonjour Marie",
        "handover_resolved (agent Alice)",
    ]
    positions = [out.find(line) for line in expected]
    missing = [line for line, at in zip(expected, positions, strict=True) if at < 0]
    assert not missing, f"missing from the demo output: {missing}\n{out}"
    assert positions == sorted(positions), out
    thread, _, relayed = out.partition("Delivered to the bot owner's reply endpoint")
    for line in ("Bonjour Marie, je suis Alice", "*User:* Merci, j'attends", "Resolved by @Alice"):
        assert thread.count(line) == 1, f"{line!r} in the thread {thread.count(line)} times\n{out}"
    assert relayed.count("agent_message") == 1, out  # nothing doubled
