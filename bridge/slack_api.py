"""The Slack Web API calls the bridge makes (the transport and its failures: slack_transport.py,
slack_errors.py)."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

import aiohttp

from .failure import retry_after_s
from .slack_errors import AUTH_ERRORS, PERMANENT_ERRORS, TRANSIENT_ERRORS, SlackFailure
from .slack_transport import DELIVERY_EVENT_TYPE, JSON_METHODS, UPLOAD_STEP, SlackTransport

__all__ = [
    "AUTH_ERRORS",
    "DELIVERY_EVENT_TYPE",
    "JSON_METHODS",
    "PERMANENT_ERRORS",
    "TRANSIENT_ERRORS",
    "UPLOAD_STEP",
    "Identity",
    "SlackApi",
    "SlackFailure",
]


@dataclass(frozen=True, slots=True)
class Identity:
    user_id: str
    bot_id: str
    team_id: str = ""  # the bridge's workspace: a user of another (Slack Connect) never acts
    name: str = ""  # the bot user's name, as agents /invite it
    url: str = ""  # the workspace's https://<team>.slack.com/ (links to messages are built from it)


class SlackApi(SlackTransport):
    """The calls themselves, each named for what the bridge does with it."""

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
            # identity: the bytes as stored, so the length Slack gives is the length the user gets
            headers={"Authorization": f"Bearer {self.client.token}", "Accept-Encoding": "identity"},
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
