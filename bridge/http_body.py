"""Request bodies as the endpoints take them: bounded in size and in time, and decoded when the sender
compressed them.

aiohttp's own decompression is off (bridge/http_server.py): Slack signs the body as sent, so the raw
bytes are read first, and a body labelled gzip that is not gzip must be a 400, not an exception inside
aiohttp. Only gzip and deflate are accepted; the size limit applies to the decompressed body too.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Awaitable

from aiohttp import web

# How long a sender may take to deliver a body once its headers are in (BRIDGE_BODY_TIMEOUT_S): a
# client trickling bytes (slowloris) must not hold a connection forever.
BODY_TIMEOUT_S = 30.0
_DECODERS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
_IDENTITY = ("", "identity")


class BodyRejected(Exception):
    """A body the endpoint will not take: `status` and a message for the JSON error answer."""

    def __init__(self, status: int, message: str, reason: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.reason = reason  # short, for the log line and metrics


def encoding_of(request: web.Request) -> str:
    """The body's Content-Encoding ("" for none); BodyRejected(415) for one the bridge cannot decode."""
    encoding = request.headers.get("Content-Encoding", "").strip().lower()
    if encoding in _IDENTITY or encoding in _DECODERS:
        return "" if encoding in _IDENTITY else encoding
    raise BodyRejected(415, "unsupported Content-Encoding (gzip, deflate or none)", "unsupported_encoding")


def raw_body(request: web.Request, limit: int, timeout_s: float = BODY_TIMEOUT_S) -> Awaitable[bytes]:
    """The body as sent, at most `limit` bytes (413 beyond), within `timeout_s` (408 beyond). Not a
    coroutine itself: the webhook path awaits one coroutine for its body, not two."""
    if request.content_length is not None and request.content_length > limit:
        raise _too_large(limit)
    if request.content.is_eof():  # the whole body came with the headers (the usual case): no timer
        return _read_limited(request, limit)
    return _read_in_time(request, limit, timeout_s)


async def _read_in_time(request: web.Request, limit: int, timeout_s: float) -> bytes:
    try:
        async with asyncio.timeout(timeout_s):
            return await _read_limited(request, limit)
    except TimeoutError:
        raise BodyRejected(408, f"request body not received within {timeout_s:g} s", "body_timeout") from None


async def _read_limited(request: web.Request, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await request.content.read(limit + 1 - size)  # returns what has arrived, b"" at EOF
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)


def decoded(raw: bytes, encoding: str, limit: int) -> bytes:
    """`raw` decompressed per `encoding` (from encoding_of), at most `limit` bytes once decompressed."""
    if not encoding:
        return raw
    try:
        return _inflate(raw, _DECODERS[encoding], limit)
    except _Undecodable:
        if encoding != "deflate":
            raise BodyRejected(400, f"body is not valid {encoding} data", "undecodable_body") from None
    try:  # deflate as many servers send it: without the zlib header
        return _inflate(raw, -zlib.MAX_WBITS, limit)
    except _Undecodable:
        raise BodyRejected(400, "body is not valid deflate data", "undecodable_body") from None


class _Undecodable(Exception):
    """Not data of that compression, or cut short."""


def _inflate(raw: bytes, wbits: int, limit: int) -> bytes:
    decoder = zlib.decompressobj(wbits)
    try:
        body = decoder.decompress(raw, limit + 1)
    except zlib.error as e:
        raise _Undecodable from e
    if len(body) > limit:
        raise _too_large(limit)
    if not decoder.eof:  # truncated
        raise _Undecodable
    return body


def _too_large(limit: int) -> BodyRejected:
    return BodyRejected(413, f"body larger than {limit} bytes", "too_large")
