"""A bot owner's reply endpoint, to try the bridge by hand: it verifies each request's signature
(401 when wrong), prints each event, and answers 204.

    BRIDGE_REPLY_SECRET=another-long-random-secret python examples/reply_backend.py --port 9000

then run the bridge with BRIDGE_REPLY_URL=http://127.0.0.1:9000/bridge and the same
BRIDGE_REPLY_SECRET. Copy it as the start of your own backend: where it prints, send the agent's text
to the user, and mute or unmute your bot (README: Reply endpoint). Needs only aiohttp.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import sys
import time
from collections.abc import Mapping
from typing import Any

from aiohttp import web

MAX_AGE_S = 300  # refuse replays of an old request


def verified(secret: bytes, headers: Mapping[str, str], body: bytes) -> bool:
    """X-Bridge-Signature: v1=<hex HMAC-SHA256 of "<X-Bridge-Timestamp>.<raw body>">."""
    ts = headers.get("X-Bridge-Timestamp", "")
    if not ts.isdigit() or abs(time.time() - int(ts)) > MAX_AGE_S:
        return False
    expected = "v1=" + hmac.new(secret, f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, headers.get("X-Bridge-Signature", ""))


def describe(event: dict[str, Any]) -> str:
    """One line per event, saying what a real backend would do with it."""
    who = f"{event.get('skill_id')}/{event.get('client_id')}"
    kind = event.get("type")
    agent = (event.get("agent") or {}).get("name") or "nobody"
    if kind == "agent_message":
        return f"{who}: {agent} says {event.get('text')!r}  -> send it to the user on {event.get('platform')}"
    if kind in ("handover_opened", "handover_claimed"):
        return f"{who}: {kind} (agent: {agent})  -> mute the bot for this user"
    if kind == "handover_resolved":
        return f"{who}: handover_resolved ({event.get('reason', '')})  -> unmute the bot"
    if kind == "ping":
        return "ping from `bridge doctor`: answering 2xx"
    return f"{who}: {kind} (not handled here)"


def make_app(secret: bytes) -> web.Application:
    async def bridge_hook(request: web.Request) -> web.Response:
        body = await request.read()
        if not verified(secret, request.headers, body):
            print("401: bad or missing signature (same BRIDGE_REPLY_SECRET on both sides?)", flush=True)
            return web.json_response({"ok": False, "error": "invalid signature"}, status=401)
        try:
            event = json.loads(body)
        except ValueError:
            return web.json_response({"ok": False, "error": "body is not JSON"}, status=400)
        print(describe(event), flush=True)
        print(f"  {json.dumps(event, ensure_ascii=False)}", flush=True)
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/bridge", bridge_hook)
    app.router.add_post("/", bridge_hook)
    return app


def main() -> int:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    secret = os.environ.get("BRIDGE_REPLY_SECRET", "")
    if not secret:
        print("set BRIDGE_REPLY_SECRET (the same value the bridge has)", file=sys.stderr)
        return 2
    print(f"reply endpoint on http://{args.host}:{args.port}/bridge", flush=True)
    web.run_app(make_app(secret.encode()), host=args.host, port=args.port, print=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
