"""Test harness: real valkey-server processes and fake HTTP peers (Slack Web API, the owner's reply URL).

Faults are injected by the fakes (HTTP status, latency, going away on the same port), never mocked.
Everything binds 127.0.0.1 and every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

__all__ = ["HttpFake", "eventually", "wait_until"]


async def eventually(check: Callable[[], Awaitable[bool]], timeout_s: float = 10.0) -> None:
    """Poll an async fact (e.g. a Redis read) until true; AssertionError after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s}s")
        await asyncio.sleep(0.05)


async def wait_until(
    predicate: Callable[[], object], timeout_s: float = 5.0, interval_s: float = 0.01
) -> None:
    """Poll `predicate` until truthy; AssertionError after timeout_s (wait on facts, never sleep blindly)."""
    deadline = time.monotonic() + timeout_s
    while True:
        if predicate():
            return
        if time.monotonic() >= deadline:
            raise AssertionError(f"condition not met within {timeout_s}s")
        await asyncio.sleep(interval_s)


class HttpFake:
    """An aiohttp server on 127.0.0.1 that can go away and come back on the same port.

    Subclasses implement make_app(); all state lives on the instance, so a fresh Application is built
    on every (re)start and nothing is lost when the server "goes down".
    """

    shutdown_timeout_s = 0.5  # in-flight handlers (e.g. an injected delay) do not hold go_down() up

    def __init__(self) -> None:
        self._runner: web.AppRunner | None = None
        self._port: int | None = None

    def make_app(self) -> web.Application:
        raise NotImplementedError

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError(f"{type(self).__name__} not started")
        return self._port

    @property
    def base_url(self) -> str:
        """http://127.0.0.1:PORT (no trailing slash)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def is_up(self) -> bool:
        return self._runner is not None

    async def start(self, port: int = 0) -> None:
        """Listen on 127.0.0.1:port (0 = any free port; kept for come_back())."""
        if self._runner is not None:
            raise RuntimeError(f"{type(self).__name__} already started")
        runner = web.AppRunner(self.make_app(), shutdown_timeout=self.shutdown_timeout_s, access_log=None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, "127.0.0.1", port, reuse_address=True)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._port = int(runner.addresses[0][1])

    async def stop(self) -> None:
        """Close the listener and every open connection (keep-alive ones too). Idempotent."""
        runner, self._runner = self._runner, None
        if runner is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(runner.cleanup(), self.shutdown_timeout_s + 5)

    async def go_down(self) -> None:
        """Become unreachable: connections are refused until come_back()."""
        await self.stop()

    async def come_back(self) -> None:
        """Listen again on the SAME port, with all recorded state intact."""
        if self._port is None:
            raise RuntimeError(f"{type(self).__name__} was never started")
        if self._runner is None:
            await self.start(self._port)
