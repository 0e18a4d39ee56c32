"""The Slack methods only the desk calls: views.open (modals), views.publish (Home tab),
chat.getPermalink (cached in Redis) and chat.postEphemeral (a word to the agent who clicked)."""

from __future__ import annotations

from typing import Any

from ..slack_api import SlackApi, SlackFailure
from .store import DeskStore


class DeskSlack:
    def __init__(self, api: SlackApi, store: DeskStore) -> None:
        self.api = api
        self.store = store

    async def open_modal(self, trigger_id: str, view: dict[str, Any]) -> None:
        await self.api._call("views.open", trigger_id=trigger_id, view=view)

    async def publish_home(self, user_id: str, view: dict[str, Any]) -> None:
        await self.api._call("views.publish", user_id=user_id, view=view)

    async def tell(self, channel: str, user_id: str, text: str) -> None:
        """An ephemeral line only the agent sees; best effort (a failure changes nothing else)."""
        try:
            await self.api._call("chat.postEphemeral", channel=channel, user=user_id, text=text)
        except SlackFailure:
            return

    async def permalink(self, channel: str, ts: str) -> str:
        """The message's permalink ('' when Slack cannot give one): asked once, then cached."""
        cached = await self.store.cached_permalink(channel, ts)
        if cached is not None:
            return cached
        try:
            data = await self.api._call("chat.getPermalink", channel=channel, message_ts=ts)
        except SlackFailure as e:
            if e.permanent:  # e.g. message_not_found: remember there is none
                await self.store.cache_permalink(channel, ts, "")
            return ""
        link = str(data.get("permalink") or "")
        await self.store.cache_permalink(channel, ts, link)
        return link
