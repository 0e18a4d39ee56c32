"""The test suite's FakeSlack in a process of its own, so the benchmark can pin it to a CPU and it never
steals the bridge's event loop; plus two bench-only routes:

  GET  /bench/stats   posts, roots, and "webhook sent → visible in Slack" delays (seconds) measured from
                      `sent=<epoch seconds>` stamps that load generators put in the user's text
  POST /bench/reset   forget delays (and every message too with ?messages=1)

Run: python -m bench.fake_slack_server --port 9001   (prints "ready <port>" once listening, then every
thread it receives: roots, replies and root updates, as an agent would read them; --quiet for benches)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import signal
import time
from typing import Any

import orjson
from aiohttp import web

from bridge.slack_format import slack_to_plain
from tests.harness.fake_slack import DEFAULT_TOKEN, SUITE_CHANNELS, FakeSlack, SlackCall, SlackMessage

STAMP = re.compile(r"sent=(\d+\.\d+)")


def stamp(now: float | None = None) -> str:
    """The marker a load generator writes into a message so its Slack delay can be measured."""
    return f"sent={time.time() if now is None else now:.6f}"


class BenchSlack(FakeSlack):
    """FakeSlack with O(1) message lookup (threads grow to thousands of replies under load) and
    delay recording."""

    def __init__(self, *, echo: bool = False, token: str = DEFAULT_TOKEN) -> None:
        super().__init__(token=token)
        self.echo = echo  # print each post and root update (the bench keeps it off: printing costs CPU)
        self.delays_s: list[float] = []
        self._by_ts: dict[tuple[str, str], SlackMessage] = {}

    def make_app(self) -> web.Application:
        app = super().make_app()
        app.router.add_get("/bench/stats", self._stats)
        app.router.add_post("/bench/reset", self._reset_delays)
        return app

    def message(self, channel: str, ts: str) -> SlackMessage | None:
        return self._by_ts.get((channel, ts))

    def replies(self, channel: str, ts: str) -> list[SlackMessage]:
        return []  # only used to decorate API answers; the bridge never reads reply counts

    def _bench_post(self, params: dict[str, Any], now: float) -> dict[str, Any]:
        answer = FakeSlack._chat_post_message(self, params, now)
        if answer.get("ok"):
            message = self.channels[answer["channel"]][-1]
            self._by_ts[(message.channel, message.ts)] = message
            received = time.time()
            self.delays_s.extend(received - float(sent) for sent in STAMP.findall(message.text))
            if self.echo:
                show(message)
        return answer

    def _bench_update(self, params: dict[str, Any], now: float) -> dict[str, Any]:
        answer = FakeSlack._chat_update(self, params, now)
        if answer.get("ok") and self.echo:
            first = plain(str(answer.get("text", ""))).splitlines()[:1]
            print(f"[{answer['channel']}] root {answer['ts']} updated: {''.join(first)}", flush=True)
        return answer

    _methods = {**FakeSlack._methods, "chat.postMessage": _bench_post, "chat.update": _bench_update}

    async def _handle(self, request: web.Request) -> web.Response:
        """chat.postMessage with a JSON body, the bench's whole load, at a fraction of the harness's
        cost (orjson both ways): the fake shares its CPU with the load generator, and its slowness
        would show up as the bridge's delay. Everything else takes the harness's own path."""
        if request.match_info["method"] != "chat.postMessage" or request.content_type != "application/json":
            return await super()._handle(request)
        received = time.monotonic()
        try:
            params = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            params = None
        if not isinstance(params, dict):
            return await super()._handle(request)
        auth = request.headers.get("Authorization", "")
        token = auth[len("Bearer ") :].strip() if auth.startswith("Bearer ") else params.pop("token", None)
        status, body, headers = self._answer("chat.postMessage", params, token, None, received)
        self.calls.append(SlackCall("chat.postMessage", params, received, status, body))
        return web.Response(
            body=orjson.dumps(body),
            status=status,
            headers=self._scope_headers("chat.postMessage", params, headers),
            content_type="application/json",
        )

    async def _stats(self, request: web.Request) -> web.Response:
        posts = [m for messages in self.channels.values() for m in messages]
        return web.json_response(
            {
                "posts": len(posts),
                "roots": sum(1 for m in posts if m.is_root),
                "updates": len(self.calls_to("chat.update")),
                "failed_calls": sum(1 for c in self.calls if c.status != 200 or not c.response.get("ok")),
                "delays_s": self.delays_s,
            }
        )

    async def _reset_delays(self, request: web.Request) -> web.Response:
        self.delays_s = []
        self.calls.clear()
        if request.query.get("messages") == "1":
            self.channels.clear()
            self._by_ts.clear()
        return web.json_response({"ok": True})


def plain(text: str) -> str:
    """Slack markup as a person reads it (mentions stay IDs: this fake knows no names)."""
    return slack_to_plain(text, lambda _user: None)


def show(message: SlackMessage) -> None:
    """One post as an agent reads it: a new thread's root, or a reply under its thread."""
    lines = plain(message.text).splitlines() or [""]
    if message.is_root:
        head, body = f"[{message.channel}] new thread {message.ts}", lines
    else:
        head, body = f"[{message.channel} › {message.thread_ts}] {lines[0]}", lines[1:]
    print("\n".join([head, *(f"    {line}" for line in body)]), flush=True)


async def serve(port: int, *, echo: bool = False, token: str = DEFAULT_TOKEN, channels: list[str]) -> None:
    fake = BenchSlack(echo=echo, token=token)
    for channel in channels:
        fake.add_channel(channel)
    await fake.start(port)
    print(f"ready {fake.port}", flush=True)
    if echo:
        print(
            f"fake Slack Web API on {fake.url}: run the bridge with SLACK_API_URL={fake.url} "
            f"SLACK_BOT_TOKEN={token} SLACK_CHANNEL=<one of {', '.join(channels or SUITE_CHANNELS[:1])}>",
            flush=True,
        )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await fake.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--quiet", action="store_true", help="do not print what the bridge posts")
    parser.add_argument("--token", default=DEFAULT_TOKEN, help="the bot token it accepts")
    parser.add_argument(
        "--channel",
        action="append",
        default=[],
        help="a channel ID that exists in this fake workspace (repeatable; C0123456789 always does)",
    )
    args = parser.parse_args()
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    channels = list(dict.fromkeys(["C0123456789", *args.channel]))
    asyncio.run(serve(args.port, echo=not args.quiet, token=args.token, channels=channels))


if __name__ == "__main__":
    main()
