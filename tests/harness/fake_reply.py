"""A fake "reply endpoint": the bot owner's backend that receives agents' replies from the bridge.

Records every POST (any path) with headers, raw body and parsed JSON; checks
`X-Bridge-Signature: v1=<hex HMAC-SHA256(secret, "<X-Bridge-Timestamp>.<raw body>")>` when a secret is
set; injects faults (5xx for a while or N times, latency, going away / coming back on the same port).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

from tests.harness import HttpFake, wait_until

__all__ = ["DEFAULT_SECRET", "SIGNATURE_HEADER", "TIMESTAMP_HEADER", "FakeReply", "ReplyRecord", "sign"]

DEFAULT_SECRET = "reply-signing-secret-for-tests"  # what the fake_reply fixture verifies with
SIGNATURE_HEADER = "X-Bridge-Signature"
TIMESTAMP_HEADER = "X-Bridge-Timestamp"


def sign(secret: str | bytes, timestamp: str | int, body: bytes) -> str:
    """The signature header value the bridge must send: "v1=" + hex HMAC-SHA256 of "<ts>.<body>"."""
    key = secret.encode() if isinstance(secret, str) else secret
    digest = hmac.new(key, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"v1={digest}"


@dataclass
class ReplyRecord:
    """One request received. signature_valid is None when no secret is configured."""

    method: str
    path: str
    headers: CIMultiDict[str]
    body: bytes
    json: Any  # parsed body, None when not JSON
    at: float  # time.monotonic() when received
    status: int  # HTTP status answered
    signature_valid: bool | None


class FakeReply(HttpFake):
    """Fake owner backend. POST anywhere; `url` is a ready-made endpoint URL (…/reply)."""

    def __init__(self, secret: str | bytes | None = None, *, max_skew_s: float | None = None) -> None:
        super().__init__()
        self.secret = secret
        self.max_skew_s = max_skew_s  # when set, a timestamp further than this from now is invalid
        self.records: list[ReplyRecord] = []
        self.reset_faults()

    @property
    def url(self) -> str:
        return f"{self.base_url}/reply"

    def make_app(self) -> web.Application:
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    # -- faults ------------------------------------------------------------------------------------

    def reset_faults(self) -> None:
        self._fail_status: int | None = None
        self._fail_headers: dict[str, str] = {}
        self._fail_until: float | None = None
        self._fail_remaining: int | None = None
        self._delay_s = 0.0
        self.reject_invalid = False

    def reset(self) -> None:
        self.reset_faults()
        self.records.clear()

    def fail_with_status(
        self,
        status: int = 500,
        for_s: float | None = None,
        *,
        times: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Answer `status` (with `headers`, e.g. a Location) for `for_s` seconds, or the next `times`
        requests, or until reset_faults()."""
        self._fail_headers = headers or {}
        self._fail_status = status
        self._fail_until = time.monotonic() + for_s if for_s is not None else None
        self._fail_remaining = times

    def delay(self, seconds: float) -> None:
        """Latency before each answer (0 clears)."""
        self._delay_s = max(0.0, seconds)

    def set_reject_invalid(self, reject: bool = True) -> None:
        """When on, a request with a bad or missing signature gets 401 (it is recorded either way)."""
        self.reject_invalid = reject

    # -- inspection ----------------------------------------------------------------------------------

    def received(self, *, ok_only: bool = False) -> list[ReplyRecord]:
        """POSTs received, in order; ok_only keeps those answered 2xx."""
        return [r for r in self.records if r.method == "POST" and (not ok_only or 200 <= r.status < 300)]

    def bodies(self, *, ok_only: bool = True) -> list[Any]:
        """Parsed JSON bodies of the POSTs answered 2xx (or all with ok_only=False)."""
        return [r.json for r in self.received(ok_only=ok_only)]

    async def wait_for(
        self, count: int, timeout_s: float = 5.0, *, ok_only: bool = True
    ) -> list[ReplyRecord]:
        """Wait (bounded) until `count` POSTs were received (answered 2xx by default)."""
        await wait_until(lambda: len(self.received(ok_only=ok_only)) >= count, timeout_s)
        return self.received(ok_only=ok_only)

    # -- handling --------------------------------------------------------------------------------------

    def _check_signature(self, headers: CIMultiDict[str], body: bytes, now_wall: float) -> bool | None:
        if self.secret is None:
            return None
        timestamp = headers.get(TIMESTAMP_HEADER, "")
        given = headers.get(SIGNATURE_HEADER, "")
        if not timestamp or not given:
            return False
        if self.max_skew_s is not None:
            try:
                if abs(now_wall - float(timestamp)) > self.max_skew_s:
                    return False
            except ValueError:
                return False
        return hmac.compare_digest(given, sign(self.secret, timestamp, body))

    def _failing(self, now: float) -> int | None:
        if self._fail_status is None:
            return None
        if self._fail_until is not None and now >= self._fail_until:
            return None
        if self._fail_remaining is not None:
            if self._fail_remaining <= 0:
                return None
            self._fail_remaining -= 1
        return self._fail_status

    async def _handle(self, request: web.Request) -> web.Response:
        received = time.monotonic()
        body = await request.read()
        headers = CIMultiDict(request.headers)
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = None
        valid = self._check_signature(headers, body, time.time())
        extra_headers: dict[str, str] = {}
        if self._delay_s > 0:
            await asyncio.sleep(self._delay_s)
        if request.method != "POST":
            status, answer = 405, {"ok": False, "error": "method_not_allowed"}
        elif (fail := self._failing(received)) is not None:
            status, answer = fail, {"ok": False, "error": "injected_failure"}
            extra_headers = self._fail_headers
        elif self.reject_invalid and valid is False:
            status, answer = 401, {"ok": False, "error": "invalid_signature"}
        else:
            status, answer = 200, {"ok": True}
        self.records.append(
            ReplyRecord(request.method, request.path, headers, body, parsed, received, status, valid)
        )
        return web.json_response(answer, status=status, headers=extra_headers)
