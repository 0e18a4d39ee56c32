"""The HTTP server around the app: what aiohttp answers by itself is JSON too, and logged in one line.

aiohttp answers a request it cannot parse (request line or header over its limits, a bad chunk size,
both Content-Length and Transfer-Encoding...) before any route runs, through its request handler's
handle_error: a text/plain body and a logged traceback. JsonErrorHandler answers those as
`{"ok": false, "error": ...}` with one `request_rejected` warning, and closes the connection as aiohttp
does. `serve_app` runs the app with it (web.run_app builds its own server, with aiohttp's handler).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from http import HTTPStatus
from typing import Any

import orjson
import structlog
from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

log = structlog.get_logger("bridge.web")


class JsonErrorHandler(RequestHandler):
    """aiohttp's per-connection protocol handler, answering its own errors as JSON."""

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "error"
        # aiohttp's parser messages run over lines (the offending bytes, a caret): the first says it
        text = str(getattr(exc, "message", None) or message or phrase).strip()
        reason = (text.splitlines() or [phrase])[0].rstrip(":")[:200]
        log.warning(
            "request_rejected", status=status, reason=reason, error=type(exc).__name__ if exc else None
        )
        if request.writer.output_size > 0:  # part of a response is out already: aiohttp's own rule
            raise ConnectionError("Response is sent already, cannot send another response")
        body = {"ok": False, "error": f"{phrase.lower()}: {reason}" if status < 500 else "internal error"}
        response = web.Response(body=orjson.dumps(body), status=status, content_type="application/json")
        response.force_close()
        return response


class JsonErrorServer(web.Server):
    """A web.Server whose connections are handled by JsonErrorHandler."""

    def __call__(self) -> RequestHandler:
        return JsonErrorHandler(self, loop=asyncio.get_running_loop(), **self._kwargs)


class JsonErrorRunner(web.AppRunner):
    """An AppRunner serving the app through JsonErrorServer."""

    async def _make_server(self) -> web.Server:
        made = await super()._make_server()  # the app's own server: startup ran, handler arguments set
        return JsonErrorServer(
            made.request_handler,
            request_factory=made.request_factory,
            handler_cancellation=made.handler_cancellation,
            **made._kwargs,  # (debug, access log, and the handler arguments the runner was given)
        )


async def _serve(runner: web.AppRunner, host: str, port: int, backlog: int) -> None:
    """Serve until SIGTERM/SIGINT, then clean up INSIDE this task while every other task still runs:
    delivery's shutdown grace lets in-flight posts finish and be committed. (Raising GracefulExit
    out of the loop, as aiohttp's handlers do, would make asyncio.run cancel those tasks at once.)"""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, backlog=backlog).start()
        await stop.wait()
    finally:
        await runner.cleanup()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


def serve_app(app: web.Application, *, host: str, port: int, backlog: int, shutdown_timeout: float) -> None:
    """web.run_app's job with JsonErrorRunner: serve until SIGTERM/SIGINT, then shut down gracefully
    (the runner stops accepting, waits up to `shutdown_timeout` for requests, runs cleanups)."""
    options: dict[str, Any] = {
        "access_log": None,
        "shutdown_timeout": shutdown_timeout,
        "keepalive_timeout": 75.0,
    }
    runner = JsonErrorRunner(app, handle_signals=False, **options)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(runner, host, port, backlog))
