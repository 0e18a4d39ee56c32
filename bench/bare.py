"""The ceiling: the least a webhook receiver can do on this stack (aiohttp + uvloop, as `bridge serve`).

It checks the key in constant time, reads and parses the same JSON body and answers 200; no Redis, no
logging, no metrics. Run: python -m bench.bare --port 8081 --key SECRET
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hmac

import orjson
from aiohttp import web

OK = b'{"ok":true}'


def make_app(key: str) -> web.Application:
    expected = key.encode()

    async def hook(request: web.Request) -> web.Response:
        if not hmac.compare_digest(request.query.get("key", "").encode(), expected):
            return web.Response(status=401, body=b'{"ok":false}', content_type="application/json")
        orjson.loads(await request.read())
        return web.Response(body=OK, content_type="application/json")

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(body=OK, content_type="application/json")

    app = web.Application()
    app.router.add_post("/smartly/hooks", hook)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", healthz)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--key", required=True)
    args = parser.parse_args()
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    web.run_app(make_app(args.key), host=args.host, port=args.port, access_log=None, print=None, backlog=1024)


if __name__ == "__main__":
    main()
