"""How the bridge talks to Slack's Web API: one call, its answer, and every failure as a SlackFailure.

slack-sdk's own retry handlers are off: retries belong to the durable outbox, which survives restarts
and shares Slack's rate limits across replicas. The methods the bridge calls are in slack_api.py.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any, Self
from urllib.parse import urljoin

import aiohttp
import orjson
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from .metrics import Metrics
from .slack_errors import SlackFailure, classify

DELIVERY_EVENT_TYPE = "bridge_delivery"
# Called for every delivery, and documented as taking a JSON body: sent by hand (see _post_json).
JSON_METHODS = frozenset({"chat.postMessage", "chat.update"})
UPLOAD_STEP = "files.upload_url"  # the POST of a file's bytes (no Slack method name; a metrics label)


class SlackTransport:
    """A Slack Web API client that answers data or raises SlackFailure, counting every outcome."""

    def __init__(
        self,
        client: AsyncWebClient,
        metrics: Metrics,
        session: aiohttp.ClientSession | None = None,
        timeout_s: float = 10,
    ) -> None:
        self.client = client
        self.metrics = metrics
        self.answered_ok = 0  # calls Slack accepted: proof the token works again (delivery's auth probe)
        self.session = session
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        # Joined as slack-sdk joins them, so both paths reach the same URL for any base_url.
        self._urls = {method: urljoin(client.base_url, method) for method in JSON_METHODS}
        self._json_headers = {
            "Authorization": f"Bearer {client.token}",
            "Content-Type": "application/json;charset=utf-8",
        }

    @classmethod
    def create(
        cls,
        token: str,
        base_url: str,
        session: aiohttp.ClientSession,
        metrics: Metrics,
        timeout_s: float = 10,
    ) -> Self:
        client = AsyncWebClient(
            token=token,
            base_url=base_url,
            session=session,
            timeout=math.ceil(timeout_s),  # (calls are bounded to timeout_s by _sdk_call)
            retry_handlers=[],
        )
        return cls(client, metrics, session, timeout_s)

    async def _call(self, method: str, **kwargs: Any) -> dict[str, Any]:
        try:
            if method in JSON_METHODS and self.session is not None:
                status, headers, data = await self._post_json(method, kwargs)
            else:
                status, headers, data = await self._sdk_call(method, kwargs)
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            self.metrics.slack_requests.labels(method, "unreachable").inc()
            raise SlackFailure(f"unreachable: {type(e).__name__}") from e
        if status == 200 and data.get("ok") is True:
            self.metrics.slack_requests.labels(method, "ok").inc()
            self.answered_ok += 1
            return data
        raise self._failure(method, status, headers, data)

    async def _sdk_call(self, method: str, kwargs: dict[str, Any]) -> tuple[int, Any, dict[str, Any]]:
        """Through slack-sdk's own method, which knows whether a method takes JSON, form or query.
        Bounded here: slack-sdk applies its own timeout only to sessions it creates, and a call must
        end within a worker's lease (TimeoutError: unreachable, retried)."""
        try:
            async with asyncio.timeout(self.timeout.total):
                response = await getattr(self.client, method.replace(".", "_"))(**kwargs)
        except SlackApiError as e:
            response = e.response
        # A body that is not JSON (a proxy's HTML page) comes back as slack-sdk's error around the raw
        # aiohttp response, which has `status` and no `data`: read both shapes, never crash on either.
        status = getattr(response, "status_code", None) or getattr(response, "status", None) or 0
        data = getattr(response, "data", None)
        return int(status), getattr(response, "headers", {}), data if isinstance(data, dict) else {}

    async def _post_json(self, method: str, kwargs: dict[str, Any]) -> tuple[int, Any, dict[str, Any]]:
        """The delivery hot path, straight on the shared aiohttp session: the same JSON request
        slack-sdk would send, at a fraction of its cost per call."""
        assert self.session is not None
        async with self.session.post(
            self._urls[method],
            data=orjson.dumps(kwargs),
            headers=self._json_headers,
            timeout=self.timeout,
            # as slack-sdk sends: its proxy (HTTPS_PROXY from the environment too) and TLS context
            proxy=self.client.proxy or None,
            ssl=self.client.ssl if self.client.ssl is not None else True,
            allow_redirects=False,  # the bot token goes to Slack only, never where a 3xx points
        ) as response:
            body = await response.read()
            try:
                data = orjson.loads(body)
            except orjson.JSONDecodeError:
                data = None
            return response.status, response.headers, data if isinstance(data, dict) else {}

    def _failure(self, method: str, status: int, headers: Any, data: dict[str, Any]) -> SlackFailure:
        outcome, failure = classify(status, headers, data)
        self.metrics.slack_requests.labels(method, outcome).inc()
        return failure
