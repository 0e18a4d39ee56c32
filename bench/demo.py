"""`make demo`: one handover from the first message to the agent's answer, with no Slack account at all.

It starts `python -m bridge serve` exactly as an operator would, on an embedded Valkey (no REDIS_URL,
BRIDGE_DATA_DIR in a temp dir), pointed at a local fake Slack Web API and a fake bot-owner reply
endpoint; replays a conversation built from the Smartly guide's payloads (a few exchanges, an
escalation, live messages); an agent answers in the thread and resolves it (signed Slack requests, as
Slack sends them); then prints the Slack thread as an agent reads it, what the bot owner received,
and stops everything.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bridge.slack_format import RESOLVE_ACTION, slack_to_plain
from tests.harness import wait_until
from tests.harness.bridge_process import BridgeProcess
from tests.harness.fake_reply import FakeReply
from tests.harness.fake_slack import DEFAULT_TOKEN, DEFAULT_USERS, FakeSlack, SlackMessage
from tests.helpers import block_action, escalation, message, signed_headers, thread_reply_event

KEY = "demo-webhook-key"
SIGNING_SECRET = "demo-signing-secret"
REPLY_SECRET = "demo-reply-secret"
CHANNEL = "C0SUPPORT1"
SKILL = "colis-express"
CLIENT = "marie-42"
AGENT = "UAGENT01"  # the fake Slack's "Alice"
CONFIG = f"""
slack: {{default_channel: {CHANNEL}}}
delivery: {{posts_per_second: 20, burst: 20, poll_interval: 100ms}}
"""
TIMEOUT_S = 45

# (user input, bot answer, extra payload fields) — shaped like the guide's message_received
BEFORE_ESCALATION: list[tuple[str, str, dict[str, Any]]] = [
    (
        "Bonjour",
        "Bonjour ! Je suis l'assistant de Colis Express. Comment puis-je vous aider ?",
        {"intent": "Greetings"},
    ),
    ("Mon colis n'est pas arrivé", "Pouvez-vous me donner votre numéro de suivi ?", {"intent": "ParcelLate"}),
    ("CE123456789FR", "Ce colis est en cours d'acheminement <en transit>.", {"intent": "TrackParcel"}),
    (
        "Il devait arriver il y a une semaine !",
        "Je n'ai pas compris, pouvez-vous reformuler ?",
        {"intent": "", "understood": False, "number_of_nounderstood": 1},
    ),
]
AFTER_ESCALATION = [
    ("Merci, j'attends", "Un conseiller va vous répondre dans quelques instants.", {"intent": "Thanks"}),
]
AGENT_REPLY = "Bonjour Marie, je suis Alice. Je regarde votre colis CE123456789FR tout de suite."
USER_AFTER_AGENT = ("Merci beaucoup !", "", {"intent": "Thanks", "muted": True})


class Demo:
    def __init__(self, work_dir: Path) -> None:
        self.work_dir = work_dir
        self.slack = FakeSlack(token=DEFAULT_TOKEN)
        self.reply = FakeReply(secret=REPLY_SECRET)
        self.bridge: BridgeProcess | None = None
        self.http: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        await self.slack.start()
        await self.reply.start()
        self.bridge = BridgeProcess(
            self.work_dir,
            redis_url=None,  # the bridge runs its own valkey-server in BRIDGE_DATA_DIR
            slack_url=self.slack.url,
            webhook_key=KEY,
            slack_token=DEFAULT_TOKEN,
            channel=CHANNEL,
            config=CONFIG,
            env={
                "SLACK_SIGNING_SECRET": SIGNING_SECRET,
                "BRIDGE_REPLY_URL": self.reply.url,
                "BRIDGE_REPLY_SECRET": REPLY_SECRET,
            },
        )
        await self.bridge.started(timeout_s=30)
        self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))

    async def stop(self) -> None:
        if self.http is not None:
            await self.http.close()
        if self.bridge is not None:
            await self.bridge.stop()
        await self.reply.stop()
        await self.slack.stop()

    # -- talking to the bridge the way Smartly and Slack do ----------------------------------------

    async def _post(self, path: str, body: bytes, headers: dict[str, str]) -> None:
        assert self.http is not None and self.bridge is not None
        async with self.http.post(f"{self.bridge.url}{path}", data=body, headers=headers) as response:
            if response.status != 200:
                raise RuntimeError(f"{path} answered {response.status}: {await response.text()}")

    async def smartly(self, event: dict[str, Any]) -> None:
        await self._post(
            f"/smartly/hooks?key={KEY}", orjson.dumps(event), {"Content-Type": "application/json"}
        )

    async def say(self, text: str, answer: str, extra: dict[str, Any]) -> None:
        body = message(CLIENT, text, answer, skill_id=SKILL, user_id="u-marie", **extra)
        body["payload"]["answer"] = answer  # an empty answer stays empty (the bot is muted)
        await self.smartly(body)

    async def slack_event(self, envelope: dict[str, Any]) -> None:
        body = orjson.dumps(envelope)
        await self._post("/slack/events", body, signed_headers(body, secret=SIGNING_SECRET))

    async def click(self, root_ts: str, action: str) -> None:
        body = block_action(CHANNEL, root_ts, action, user=AGENT, name="alice")
        headers = signed_headers(
            body, secret=SIGNING_SECRET, content_type="application/x-www-form-urlencoded"
        )
        await self._post("/slack/interactions", body, headers)

    # -- the story ----------------------------------------------------------------------------------

    def thread_text(self, root_ts: str) -> str:
        return "\n".join(m.text for m in self.slack.replies(CHANNEL, root_ts))

    async def run(self) -> None:
        for text, answer, extra in BEFORE_ESCALATION:
            await self.say(text, answer, extra)
        await self.smartly(escalation(CLIENT, skill_id=SKILL))  # the guide's escalation_requested
        await wait_until(lambda: len(self.slack.roots(CHANNEL)) == 1, 10)
        root = self.slack.roots(CHANNEL)[0]
        await wait_until(lambda: "reformuler" in self.thread_text(root.ts), 10)  # history posted

        for text, answer, extra in AFTER_ESCALATION:
            await self.say(text, answer, extra)
        await wait_until(lambda: "quelques instants" in self.thread_text(root.ts), 10)  # mirrored live

        # An agent answers in the thread: Slack stores the message and sends the bridge a signed event.
        posted = self.slack.add_message(CHANNEL, AGENT_REPLY, user=AGENT, thread_ts=root.ts)
        await self.slack_event(thread_reply_event(CHANNEL, root.ts, AGENT_REPLY, user=AGENT, ts=posted.ts))
        await wait_until(lambda: self._replies_of("agent_message"), 10)
        await wait_until(lambda: "is handling this conversation" in self.thread_text(root.ts), 10)

        text, answer, extra = USER_AFTER_AGENT
        await self.say(text, answer, extra)
        await wait_until(lambda: text in self.thread_text(root.ts), 10)

        await self.click(root.ts, RESOLVE_ACTION)
        await wait_until(lambda: "Resolved by" in self.thread_text(root.ts), 10)
        await wait_until(lambda: self._replies_of("handover_resolved"), 10)

    def _replies_of(self, kind: str) -> list[dict[str, Any]]:
        return [b for b in self.reply.bodies() if isinstance(b, dict) and b.get("type") == kind]

    # -- what it looks like --------------------------------------------------------------------------

    def report(self) -> str:
        names = {
            uid: u.get("display_name") or u.get("real_name") or u["name"] for uid, u in DEFAULT_USERS.items()
        }
        plain: Callable[[str], str] = lambda text: slack_to_plain(text, names.get)  # noqa: E731
        roots = self.slack.roots(CHANNEL)
        out = [f"Slack channel {CHANNEL}: {len(roots)} handover thread(s), as an agent reads them", ""]
        for root in roots:
            edits = f", updated {len(root.edits)}×" if root.edits else ""
            out.append(f"┌ bridge (thread root{edits})")
            out += [f"│ {line}" for line in render_root(root, plain)]
            for reply in self.slack.replies(CHANNEL, root.ts):
                author = "bridge" if reply.bot_id else names.get(reply.user, reply.user)
                lines = plain(reply.text).splitlines() or [""]
                out.append(f"├─ {author:<7}{lines[0]}")
                out += [f"│  {'':<7}{line}" for line in lines[1:]]
            out.append("└")
        out += ["", "Delivered to the bot owner's reply endpoint (BRIDGE_REPLY_URL), signed:"]
        for body in self.reply.bodies():
            detail = f": {body['text']!r}" if body.get("text") else ""
            agent = (body.get("agent") or {}).get("name")
            by = f" (agent {agent})" if agent else ""
            out.append(f"  {body.get('type')}{by}{detail}")
        return "\n".join(out)


def render_root(message: SlackMessage, plain: Callable[[str], str]) -> list[str]:
    """Block Kit as text: title, fields, status line, buttons."""
    lines = []
    for block in message.blocks or []:
        if block["type"] == "section" and "text" in block:
            lines.append(plain(block["text"]["text"]))
        elif block["type"] == "section":
            fields = [plain(f["text"]).replace("\n", ": ", 1) for f in block.get("fields", [])]
            lines += [" | ".join(fields[i : i + 3]) for i in range(0, len(fields), 3)]
        elif block["type"] == "context":
            lines.append(" · ".join(plain(e.get("text", "")) for e in block["elements"]))
        elif block["type"] == "actions":
            lines.append("  ".join(f"[{e['text']['text']}]" for e in block["elements"]))
    return lines or [plain(message.text)]


async def main() -> int:
    with tempfile.TemporaryDirectory(prefix="bridge-demo-") as tmp:
        demo = Demo(Path(tmp))
        print(
            "Demo: bridge on an embedded Valkey, a fake Slack and a fake bot-owner endpoint on 127.0.0.1",
            flush=True,
        )
        try:
            async with asyncio.timeout(TIMEOUT_S):
                await demo.start()
                await demo.run()
            print(demo.report())
        except (Exception, TimeoutError) as e:
            tail = demo.bridge.log_tail() if demo.bridge is not None else ""
            print(f"demo failed: {type(e).__name__}: {e}\n--- bridge output\n{tail}", file=sys.stderr)
            return 1
        finally:
            await demo.stop()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
