"""A lean HTTP/1.1 load generator (keep-alive, raw asyncio protocol), for when wrk is absent and for
the fixed-rate pass wrk cannot do (wrk2 is not packaged here).

aiohttp's client costs ~100 µs of Python per request, which would make the generator, not the server,
the bottleneck on a 2-core machine; this one writes pre-rendered request bytes and only parses the
status line and Content-Length of each answer.

Two modes:
  closed loop  `connections` workers, each sends its next request as soon as the previous one answered
               (peak throughput, like wrk);
  open loop    requests are due at a fixed rate whatever the server does, and each latency is measured
               from the moment the request was due, not sent (no coordinated omission, like wrk2).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

RequestFactory = Callable[[int], bytes]


def http_post(host: str, port: int, path: str, body: bytes, content_type: str = "application/json") -> bytes:
    """One keep-alive POST, rendered to bytes."""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


@dataclass
class LoadResult:
    """What one pass measured; latencies in seconds, in completion order."""

    duration_s: float
    latencies_s: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    errors: int = 0

    @property
    def requests(self) -> int:
        return len(self.latencies_s)

    @property
    def rate(self) -> float:
        return self.requests / self.duration_s if self.duration_s > 0 else 0.0

    def percentile(self, q: float) -> float:
        return percentile(self.latencies_s, q)

    def record(self, status: int, latency_s: float) -> None:
        self.latencies_s.append(latency_s)
        self.statuses[status] = self.statuses.get(status, 0) + 1

    @property
    def non_2xx(self) -> int:
        return sum(n for status, n in self.statuses.items() if not 200 <= status < 300)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def _content_length(head: bytes) -> int:
    at = head.find(b"content-length:")
    if at < 0:
        return 0
    end = head.find(b"\r\n", at)
    return int(head[at + len(b"content-length:") : end if end >= 0 else len(head)])


class _Connection(asyncio.Protocol):
    """One keep-alive connection with at most one request in flight."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[int] | None = None
        self.lost: Exception | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = exc or ConnectionResetError("closed by server")
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(self.lost)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        total = end + 4 + _content_length(bytes(self.buffer[:end]).lower())
        if len(self.buffer) < total:
            return
        status = int(self.buffer[9:12])
        del self.buffer[:total]
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(status)

    async def request(self, raw: bytes) -> int:
        if self.lost is not None or self.transport is None:
            raise ConnectionResetError("connection lost")
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(raw)
        return await self.waiter

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def _connect(host: str, port: int, count: int) -> list[_Connection]:
    loop = asyncio.get_running_loop()
    connections = []
    for _ in range(count):
        _, protocol = await loop.create_connection(_Connection, host, port)
        connections.append(protocol)
    return connections


async def closed_loop(
    host: str,
    port: int,
    make_request: RequestFactory,
    *,
    connections: int,
    duration_s: float | None = None,
    total: int | None = None,
) -> LoadResult:
    """Peak throughput: every connection sends again as soon as it has its answer; stops after
    `duration_s` or after `total` requests, whichever comes first."""
    conns = await _connect(host, port, connections)
    result = LoadResult(0.0)
    counter = iter(range(total if total is not None else 1 << 62))
    deadline = time.monotonic() + (duration_s if duration_s is not None else 1e9)

    async def worker(conn: _Connection) -> None:
        for n in counter:
            if time.monotonic() >= deadline:
                return
            raw = make_request(n)
            started = time.monotonic()
            try:
                status = await conn.request(raw)
            except OSError:
                result.errors += 1
                return
            result.record(status, time.monotonic() - started)

    started = time.monotonic()
    try:
        await asyncio.gather(*(worker(c) for c in conns))
    finally:
        for conn in conns:
            conn.close()
    result.duration_s = time.monotonic() - started
    return result


async def open_loop(
    host: str,
    port: int,
    make_request: RequestFactory,
    *,
    rate: float,
    duration_s: float,
    connections: int = 64,
) -> LoadResult:
    """Fixed arrival rate; latency counts from when each request was due (waiting for a free
    connection included), so a stalled server shows up as latency, not as a lower rate."""
    conns = await _connect(host, port, connections)
    idle: asyncio.Queue[_Connection] = asyncio.Queue()
    for conn in conns:
        idle.put_nowait(conn)
    result = LoadResult(duration_s)
    total = int(rate * duration_s)
    pending: set[asyncio.Task[None]] = set()

    async def send(conn: _Connection, raw: bytes, due: float) -> None:
        try:
            status = await conn.request(raw)
        except OSError:
            result.errors += 1
            return
        result.record(status, time.monotonic() - due)
        idle.put_nowait(conn)

    start = time.monotonic()
    for i in range(total):
        due = start + i / rate
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        conn = await idle.get()
        task = asyncio.create_task(send(conn, make_request(i), due))
        pending.add(task)
        task.add_done_callback(pending.discard)
    if pending:
        await asyncio.wait(pending, timeout=10)
    for conn in conns:
        conn.close()
    result.duration_s = time.monotonic() - start
    return result
