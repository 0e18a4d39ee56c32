"""The owner's reply endpoint: agent replies and lifecycle notifications, signed like Slack signs us.

Signature: `X-Bridge-Signature: v1=<hex HMAC-SHA256(secret, "<X-Bridge-Timestamp>.<raw body>")>`.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass

import aiohttp
import structlog

from .failure import DeliveryFailure, retry_after_s

log = structlog.get_logger("bridge.replies")


def sign(secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"v1={digest}"


def verify(
    secret: str,
    timestamp: str,
    body: bytes,
    signature: str,
    *,
    max_age_s: int = 300,
    now: float | None = None,
) -> bool:
    """What a receiver does (also used by tests and the README example)."""
    try:
        ts = int(timestamp)
    except ValueError:
        return False
    if abs((now or time.time()) - ts) > max_age_s:
        return False
    return hmac.compare_digest(sign(secret, ts, body), signature)


class ReplyError(DeliveryFailure):
    """A POST to the owner's reply endpoint that did not succeed."""


@dataclass
class ReplySender:
    session: aiohttp.ClientSession
    url: str
    secret: str
    timeout_s: float = 10.0

    async def send(self, body: bytes) -> None:
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "X-Bridge-Timestamp": str(timestamp),
            "X-Bridge-Signature": sign(self.secret, timestamp, body),
            "User-Agent": "smartly-slack-bridge",
        }
        try:
            # Never follow a redirect: the body and its signature go to BRIDGE_REPLY_URL only (aiohttp
            # would re-send them, or turn the POST into a GET, to wherever Location points).
            async with self.session.post(
                self.url,
                data=body,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=self.timeout_s),
                allow_redirects=False,
            ) as response:
                await response.read()
                status = response.status
                retry_after = response.headers.get("Retry-After")
                location = response.headers.get("Location", "")
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            raise ReplyError(f"unreachable: {type(e).__name__}", permanent=False) from e
        if 200 <= status < 300:
            return
        if 300 <= status < 400:  # a moved endpoint is the operator's to fix (BRIDGE_REPLY_URL)
            log.error("reply_redirected", status=status, location=location[:300], fix="set BRIDGE_REPLY_URL")
            raise ReplyError("redirect", permanent=True)
        if status in (408, 425, 429) or status >= 500:
            after = retry_after_s(retry_after) if retry_after is not None else None
            raise ReplyError(f"http_{status}", permanent=False, retry_after_s=after)
        raise ReplyError(f"http_{status}", permanent=True)
