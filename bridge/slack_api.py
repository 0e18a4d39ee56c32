"""The Slack Web API calls the bridge makes, with every failure sorted into retry, wait or give up.

slack-sdk's own retry handlers are off: retries belong to the durable outbox, which survives restarts
and shares Slack's rate limits across replicas.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from .metrics import Metrics

# Slack errors that succeed on a later try; any other `ok: false` error will fail forever.
TRANSIENT_ERRORS = frozenset(
    {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout", "timeout"}
)
DELIVERY_EVENT_TYPE = "bridge_delivery"


# Slack's `error` is a short snake_case code. Anything else (an echo of the request, a proxy's page) must
# not become a log field, a dead-letter reason or a metric label (unbounded, and maybe a credential).
_ERROR_CODE = re.compile(r"[a-z0-9_.]{1,64}")


def _error_code(error: Any, status: int) -> str:
    if not error:
        return f"http_{status}"
    return str(error) if _ERROR_CODE.fullmatch(str(error)) else "unrecognized_error"


class SlackFailure(Exception):
    """A call that failed: `retry_after_s` for 429, `permanent` for errors no retry can fix."""

    def __init__(self, reason: str, *, permanent: bool = False, retry_after_s: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent
        self.retry_after_s = retry_after_s


@dataclass(frozen=True, slots=True)
class Identity:
    user_id: str
    bot_id: str


class SlackApi:
    def __init__(self, client: AsyncWebClient, metrics: Metrics) -> None:
        self.client = client
        self.metrics = metrics

    @classmethod
    def create(
        cls,
        token: str,
        base_url: str,
        session: aiohttp.ClientSession,
        metrics: Metrics,
        timeout_s: float = 10,
    ) -> SlackApi:
        client = AsyncWebClient(
            token=token, base_url=base_url, session=session, timeout=timeout_s, retry_handlers=[]
        )
        return cls(client, metrics)

    async def _call(self, method: str, **kwargs: Any) -> dict[str, Any]:
        """Call through slack-sdk's own method (it knows which methods take JSON, form or query)."""
        sdk_method = getattr(self.client, method.replace(".", "_"))
        try:
            response = await sdk_method(**kwargs)
        except SlackApiError as e:
            status = e.response.status_code
            error = e.response.get("error") if isinstance(e.response.data, dict) else None
            if status == 429 or error == "ratelimited":
                retry_after = e.response.headers.get("Retry-After", "1")
                self.metrics.slack_requests.labels(method, "ratelimited").inc()
                try:
                    wait = max(float(retry_after), 0.0)
                except ValueError:
                    wait = 1.0
                raise SlackFailure("ratelimited", retry_after_s=wait) from e
            if status >= 500 or status in (408,):
                self.metrics.slack_requests.labels(method, "server_error").inc()
                raise SlackFailure(f"http_{status}") from e
            reason = _error_code(error, status)
            permanent = reason not in TRANSIENT_ERRORS
            self.metrics.slack_requests.labels(method, "error").inc()
            raise SlackFailure(reason, permanent=permanent) from e
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            self.metrics.slack_requests.labels(method, "unreachable").inc()
            raise SlackFailure(f"unreachable: {type(e).__name__}") from e
        self.metrics.slack_requests.labels(method, "ok").inc()
        return response.data if isinstance(response.data, dict) else {}

    async def identity(self) -> Identity:
        data = await self._call("auth.test")
        return Identity(user_id=str(data.get("user_id", "")), bot_id=str(data.get("bot_id", "")))

    async def post(
        self,
        channel: str,
        text: str,
        *,
        thread_ts: str | None = None,
        blocks: list[dict[str, Any]] | None = None,
        marker: dict[str, str] | None = None,
    ) -> str:
        """Post and return the message ts. `marker` rides along as message metadata so a post
        that Slack accepted just before a crash can be found again instead of posted twice."""
        args: dict[str, Any] = {
            "channel": channel,
            "text": text,
            "unfurl_links": False,
            "unfurl_media": False,
        }
        if thread_ts:
            args["thread_ts"] = thread_ts
        if blocks:
            args["blocks"] = blocks
        if marker:
            args["metadata"] = {"event_type": DELIVERY_EVENT_TYPE, "event_payload": marker}
        data = await self._call("chat.postMessage", **args)
        return str(data.get("ts", ""))

    async def update(self, channel: str, ts: str, text: str, blocks: list[dict[str, Any]]) -> None:
        await self._call("chat.update", channel=channel, ts=ts, text=text, blocks=blocks)

    async def find_marked(
        self, channel: str, marker_first: str, *, thread_ts: str | None, oldest_s: float
    ) -> str | None:
        """The ts of a message we posted carrying `marker_first`, if Slack has it."""
        if thread_ts:
            data = await self._call(
                "conversations.replies",
                channel=channel,
                ts=thread_ts,
                oldest=f"{oldest_s:.6f}",
                limit=200,
                include_all_metadata=True,
            )
        else:
            data = await self._call(
                "conversations.history",
                channel=channel,
                oldest=f"{oldest_s:.6f}",
                limit=200,
                include_all_metadata=True,
            )
        for message in data.get("messages", []):
            metadata = message.get("metadata") or {}
            if metadata.get("event_type") == DELIVERY_EVENT_TYPE and (
                (metadata.get("event_payload") or {}).get("first") == marker_first
            ):
                return str(message.get("ts"))
        return None

    async def user_name(self, user_id: str) -> str | None:
        try:
            data = await self._call("users.info", user=user_id)
        except SlackFailure as e:
            if e.permanent:
                return None
            raise
        user = data.get("user") or {}
        profile = user.get("profile") or {}
        return (
            profile.get("display_name")
            or profile.get("real_name")
            or user.get("real_name")
            or user.get("name")
        ) or None
