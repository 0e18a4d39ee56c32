"""The Slack Web API calls the bridge makes, with every failure sorted into retry, wait or give up.

slack-sdk's own retry handlers are off: retries belong to the durable outbox, which survives restarts
and shares Slack's rate limits across replicas.
"""

from __future__ import annotations

import asyncio
import re
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

import aiohttp
import orjson
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from .failure import DeliveryFailure, retry_after_s
from .metrics import Metrics

# Slack's documented errors, by what a retry can do about them (per-method docs under "Errors").
# Transient: a later try succeeds; retried with backoff.
TRANSIENT_ERRORS = frozenset(
    {
        "ratelimited",
        "rate_limited",
        "message_limit_exceeded",
        "internal_error",
        "fatal_error",
        "service_unavailable",
        "request_timeout",
        "timeout",
        "update_failed",
        "external_channel_migrating",
    }
)
# The token or its grants: no entry can be delivered until the owner fixes a setting, so delivery
# pauses for every channel instead of burying entries one by one.
AUTH_ERRORS = frozenset(
    {
        "invalid_auth",
        "not_authed",
        "token_revoked",
        "token_expired",
        "account_inactive",
        "missing_scope",
        "no_permission",
        "ekm_access_denied",
        "org_login_required",
    }
)
# This entry can never be delivered as it is (the channel, the message itself): dead-lettered.
PERMANENT_ERRORS = frozenset(
    {
        # files.getUploadURLExternal / files.completeUploadExternal (the transcript file)
        "file_uploads_disabled",
        "file_uploads_except_images_disabled",
        "file_type_not_allowed",
        "file_upload_size_restricted",
        "storage_limit_reached",
        "snippet_too_large",
        "unknown_snippet_type",
        "alt_txt_too_large",
        "missing_argument",
        "posting_to_channel_denied",
        "channels_limit_exceeded",
        "channel_not_found",
        "not_in_channel",
        "is_archived",
        "msg_too_long",
        "no_text",
        "invalid_blocks",
        "invalid_blocks_format",
        "too_many_attachments",
        "restricted_action",
        "restricted_action_read_only_channel",
        "restricted_action_thread_only_channel",
        "restricted_action_non_threadable_channel",
        "cannot_reply_to_message",
        "thread_not_found",
        "message_not_found",
        "cant_update_message",
        "edit_window_closed",
        "invalid_metadata_format",
        "invalid_metadata_schema",
        "metadata_too_large",
        "metadata_must_be_sent_from_app",
        "duplicate_channel_not_found",
        "channel_is_archived",
        "not_allowed_token_type",
        "method_deprecated",
        "invalid_arguments",
        "invalid_arg_name",
        "invalid_array_arg",
        "invalid_charset",
        "invalid_form_data",
        "invalid_post_type",
        "missing_post_type",
        "team_access_not_granted",
        "too_many_blocks",
        "invalid_cursor",
        "user_not_found",
        "users_not_found",
        "team_added_to_org",
        "as_user_not_supported",
        "slack_connect_file_link_sharing_blocked",
        "invalid_ts_latest",
        "invalid_ts_oldest",
        "unknown_method",
        "file_not_found",
        "file_deleted",
        "already_reacted",
        "bad_timestamp",
        "thread_locked",
        "not_visible",
        "too_many_reactions",
        "too_many_emoji",
        "invalid_name",
        "no_item_specified",
        "not_reactable",
        "view_too_large",
        "duplicate_external_id",
        "not_found",
        "expired_trigger_id",
        "exchanged_trigger_id",
        "invalid_trigger_id",
        "upload_failed",
        "posting_to_general_channel_denied",
        "channel_type_not_supported",
        "invalid_channel",
        "user_not_in_channel",
        "not_authorized",
        "invalid_scopes",
        "not_enabled",  # views.publish: the app's Home tab is off
    }
)
DELIVERY_EVENT_TYPE = "bridge_delivery"
# Called for every delivery, and documented as taking a JSON body: sent by hand (see _post_json).
JSON_METHODS = frozenset({"chat.postMessage", "chat.update"})
UPLOAD_STEP = "files.upload_url"  # the POST of a file's bytes (no Slack method name; a metrics label)


# Slack's `error` is a short snake_case code. Anything else (an echo of the request, a proxy's page) must
# not become a log field, a dead-letter reason or a metric label (unbounded, and maybe a credential).
_ERROR_CODE = re.compile(r"[a-z0-9_.]{1,64}")


def _error_code(error: Any, status: int) -> str:
    if not error:
        return f"http_{status}"
    return str(error) if _ERROR_CODE.fullmatch(str(error)) else "unrecognized_error"


class SlackFailure(DeliveryFailure):
    """A Slack Web API call that failed. Beyond DeliveryFailure's retry/wait/give-up:
    `auth`: the token or a scope is the problem (AUTH_ERRORS): pause every channel, fix a setting;
    `needed`: the scope Slack said is missing (missing_scope), if it said;
    `unknown`: an error code this bridge does not know: retried delivery.unknown_error_attempts times."""

    def __init__(
        self,
        reason: str,
        *,
        permanent: bool = False,
        retry_after_s: float | None = None,
        auth: bool = False,
        needed: str | None = None,
        unknown: bool = False,
    ) -> None:
        super().__init__(reason, permanent=permanent, retry_after_s=retry_after_s)
        self.auth = auth
        self.needed = needed
        self.unknown = unknown

    def fix(self) -> str:
        """Which setting the owner must change, for an auth failure."""
        if self.reason == "missing_scope":
            scope = f"the scope {self.needed}" if self.needed else "the missing scope"
            return f"add {scope} to the Slack app (OAuth & Permissions), reinstall it, update SLACK_BOT_TOKEN"
        return "check SLACK_BOT_TOKEN (the app's Bot User OAuth Token, xoxb-...)"


@dataclass(frozen=True, slots=True)
class Identity:
    user_id: str
    bot_id: str
    team_id: str = ""  # the bridge's workspace: a user of another (Slack Connect) never acts
    name: str = ""  # the bot user's name, as agents /invite it
    url: str = ""  # the workspace's https://<team>.slack.com/ (links to messages are built from it)


class SlackApi:
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
    ) -> SlackApi:
        client = AsyncWebClient(
            token=token, base_url=base_url, session=session, timeout=timeout_s, retry_handlers=[]
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
        ) as response:
            body = await response.read()
            try:
                data = orjson.loads(body)
            except orjson.JSONDecodeError:
                data = None
            return response.status, response.headers, data if isinstance(data, dict) else {}

    def _failure(self, method: str, status: int, headers: Any, data: dict[str, Any]) -> SlackFailure:
        error = data.get("error")
        if status == 429 or error in ("ratelimited", "rate_limited"):
            self.metrics.slack_requests.labels(method, "ratelimited").inc()
            return SlackFailure("ratelimited", retry_after_s=retry_after_s(headers.get("Retry-After")))
        if status >= 500 or status == 408:
            self.metrics.slack_requests.labels(method, "server_error").inc()
            return SlackFailure(f"http_{status}")
        if not error:  # not Slack's JSON at all (a proxy's HTML page, an empty body): try again later
            self.metrics.slack_requests.labels(method, "not_json").inc()
            return SlackFailure(f"not_json_{status}")
        reason = _error_code(error, status)
        self.metrics.slack_requests.labels(method, "error").inc()
        if reason in AUTH_ERRORS:
            needed = data.get("needed")
            return SlackFailure(
                reason, auth=True, needed=str(needed) if isinstance(needed, str) and needed else None
            )
        if reason in TRANSIENT_ERRORS:
            return SlackFailure(reason)
        return SlackFailure(
            reason, permanent=reason in PERMANENT_ERRORS, unknown=reason not in PERMANENT_ERRORS
        )

    async def identity(self) -> Identity:
        data = await self._call("auth.test")
        return Identity(
            user_id=str(data.get("user_id", "")),
            bot_id=str(data.get("bot_id", "")),
            team_id=str(data.get("team_id", "")),
            name=str(data.get("user", "")),
            url=str(data.get("url", "")),
        )

    async def channel_info(self, channel: str) -> dict[str, Any]:
        """conversations.info's `channel` object (is_archived, is_member...)."""
        data = await self._call("conversations.info", channel=channel)
        info = data.get("channel")
        return info if isinstance(info, dict) else {}

    async def usergroup_members(self, group: str) -> list[str]:
        data = await self._call("usergroups.users.list", usergroup=group)
        return [str(u) for u in data.get("users") or [] if isinstance(u, str)]

    async def post_ephemeral(
        self,
        channel: str,
        user: str,
        text: str,
        *,
        thread_ts: str = "",
        blocks: list[dict[str, Any]] | None = None,
    ) -> None:
        """A message only `user` sees (not stored by Slack: best effort)."""
        args: dict[str, Any] = {"channel": channel, "user": user, "text": text}
        if thread_ts:
            args["thread_ts"] = thread_ts
        if blocks:
            args["blocks"] = blocks
        await self._call("chat.postEphemeral", **args)

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
        self, channel: str, marker: dict[str, str], *, thread_ts: str | None, oldest_s: float
    ) -> str | None:
        """The ts of a message we posted carrying exactly `marker` (every field: a stream id alone
        repeats across conversations, and another conversation's post must never be taken for ours)."""
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
            payload = metadata.get("event_payload") or {}
            if metadata.get("event_type") == DELIVERY_EVENT_TYPE and all(
                str(payload.get(name, "")) == value for name, value in marker.items()
            ):
                return str(message.get("ts"))
        return None

    async def permalink(self, channel: str, ts: str) -> str:
        """A link that opens the message (a handover's root, so its thread) in Slack."""
        data = await self._call("chat.getPermalink", channel=channel, message_ts=ts)
        return str(data.get("permalink", ""))

    async def thread_messages(self, channel: str, ts: str) -> list[dict[str, Any]]:
        """Every message of the thread rooted at `ts`, root first (conversations.replies, all pages)."""
        messages: list[dict[str, Any]] = []
        cursor = ""
        while True:
            args: dict[str, Any] = {"channel": channel, "ts": ts, "limit": 200}
            if cursor:
                args["cursor"] = cursor
            data = await self._call("conversations.replies", **args)
            messages += data.get("messages") or []
            cursor = (data.get("response_metadata") or {}).get("next_cursor") or ""
            if not cursor or not data.get("has_more"):
                return messages

    async def delete(self, channel: str, ts: str) -> None:
        """chat.delete: a bot token deletes the bot's own messages only (cant_delete_message)."""
        await self._call("chat.delete", channel=channel, ts=ts)

    async def react(self, channel: str, ts: str, name: str) -> None:
        """Add the bot's reaction `name` to a message; one already there is as good as added."""
        try:
            await self._call("reactions.add", channel=channel, timestamp=ts, name=name)
        except SlackFailure as e:
            if e.reason != "already_reacted":
                raise

    async def file_info(self, file_id: str) -> dict[str, Any]:
        """Slack's file object (files.info; scope files:read)."""
        data = await self._call("files.info", file=file_id)
        file = data.get("file")
        return file if isinstance(file, dict) else {}

    def download(self, url: str) -> AbstractAsyncContextManager[aiohttp.ClientResponse]:
        """GET a file's url_private_download with the bot token (the caller streams the answer)."""
        assert self.session is not None
        return self.session.get(
            url,
            headers={"Authorization": f"Bearer {self.client.token}"},
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.timeout.total, sock_read=30),
            allow_redirects=True,
            proxy=self.client.proxy or None,
            ssl=self.client.ssl if self.client.ssl is not None else True,
        )

    async def delete_file(self, file_id: str) -> None:
        """files.delete: a file the bot uploaded (a transcript); others' files are cant_delete_file."""
        await self._call("files.delete", file=file_id)

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

    async def upload_file(
        self, channel: str, thread_ts: str, filename: str, content: bytes, *, title: str, comment: str
    ) -> str:
        """Attach a file to a thread in Slack's three steps (files.getUploadURLExternal, the POST of
        the bytes to the URL it returns, files.completeUploadExternal); returns the file id."""
        got = await self._call("files.getUploadURLExternal", filename=filename, length=len(content))
        url, file_id = str(got.get("upload_url", "")), str(got.get("file_id", ""))
        if not url.startswith(("https://", "http://")) or not file_id:
            raise SlackFailure("upload_url_missing")
        await self._upload(url, content)
        await self._call(
            "files.completeUploadExternal",
            files=[{"id": file_id, "title": title}],
            channel_id=channel,
            thread_ts=thread_ts,
            initial_comment=comment,
        )
        return file_id

    async def find_file(self, channel: str, thread_ts: str, name: str, *, oldest_s: float) -> str | None:
        """The id of a file named `name` shared in the thread since `oldest_s`, if Slack has it: an
        upload completed just before a crash is not attached a second time."""
        data = await self._call(
            "conversations.replies", channel=channel, ts=thread_ts, oldest=f"{oldest_s:.6f}", limit=200
        )
        for message in data.get("messages", []):
            for file in message.get("files") or []:
                if isinstance(file, dict) and file.get("name") == name:
                    return str(file.get("id", ""))
        return None

    async def _upload(self, url: str, content: bytes) -> None:
        """The bytes to Slack's upload URL: pre-signed, so without the token. A 4xx is permanent
        (the same bytes get the same answer), a 5xx, 429 or network error transient."""
        session = self.session or aiohttp.ClientSession()
        try:
            async with session.post(
                url,
                data=content,
                timeout=self.timeout,
                proxy=self.client.proxy or None,
                ssl=self.client.ssl if self.client.ssl is not None else True,
            ) as response:
                await response.read()
                status, headers = response.status, response.headers
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            self.metrics.slack_requests.labels(UPLOAD_STEP, "unreachable").inc()
            raise SlackFailure(f"unreachable: {type(e).__name__}") from e
        finally:
            if self.session is None:
                await session.close()
        if status == 200:
            self.metrics.slack_requests.labels(UPLOAD_STEP, "ok").inc()
            return
        self.metrics.slack_requests.labels(UPLOAD_STEP, "error").inc()
        if status == 429:
            raise SlackFailure("ratelimited", retry_after_s=retry_after_s(headers.get("Retry-After")))
        raise SlackFailure(f"upload_http_{status}", permanent=400 <= status < 500 and status != 408)
