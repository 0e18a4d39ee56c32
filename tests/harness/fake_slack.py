"""A fake Slack Web API over real HTTP on 127.0.0.1, for slack-sdk's AsyncWebClient(base_url=fake.url).

It keeps channels and threads in memory, answers with Slack's response shapes, records every call,
and injects faults at runtime: 429 + Retry-After (a window, or a per-channel token bucket), HTTP 5xx,
per-channel API errors, latency, and going away / coming back on the same port.

slack-sdk sends chat.* as JSON and conversations.* / users.info as GET query strings; older callers send
form bodies, and the token may come as `Authorization: Bearer` or a `token` field: all are accepted.
Times recorded here (`at`) are time.monotonic() seconds at the moment the request was received.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import re
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from aiohttp import web

from tests.harness import HttpFake, wait_until
from tests.harness.fake_slack_files import FileUploads, SlackUpload

__all__ = [
    "BOT_ID",
    "BOT_USER_ID",
    "DEFAULT_SCOPES",
    "DEFAULT_TOKEN",
    "DEFAULT_USERS",
    "SUITE_CHANNELS",
    "FakeSlack",
    "SlackCall",
    "SlackChannel",
    "SlackFile",
    "SlackMessage",
]

DEFAULT_TOKEN = "xoxb-fake-bridge-token"
APP_TOKEN = "xapp-1-fake-app-token"  # app-level token (Socket Mode): apps.connections.open only
BOT_USER_ID = "UBRIDGE"
BOT_ID = "BBRIDGE"
APP_ID = "ABRIDGE"
TEAM_ID = "TFAKE0001"
TEAM_NAME = "Fake Workspace"
TEAM_URL = "https://fake-workspace.slack.com/"

DEFAULT_USERS: dict[str, dict[str, Any]] = {
    "UAGENT01": {"name": "alice", "real_name": "Alice Martin", "display_name": "Alice"},
    "UAGENT02": {"name": "bob", "real_name": "Bob Dupont", "display_name": ""},
}

MAX_TEXT_CHARS = 40_000  # chat.postMessage: longer text → msg_too_long
MAX_UPDATE_TEXT_CHARS = 4000  # chat.update: longer text → msg_too_long
MAX_BLOCKS = 50  # per message
MAX_SECTION_TEXT_CHARS = 3000  # section block text
MAX_SECTION_FIELD_CHARS = 2000  # each section field
MAX_SECTION_FIELDS = 10
MAX_HEADER_TEXT_CHARS = 150  # header block text
MAX_CONTEXT_ELEMENTS = 10
MAX_TEXT_OBJECT_CHARS = 3000  # any other text object (context elements)

# Channels the test suite's configs name: every fresh fake knows them (member, not archived). Slack
# answers channel_not_found for any other ID: a test naming a new channel declares it with add_channel()
# (or, for a channel many tests configure, adds it here). Tests of unusable channels create theirs.
SUITE_CHANNELS = (
    "C0DEFAULT1",
    "C0DEFAULT0",
    "C0123FRENCH",
    "C0FRENCH1",
    "C0QUEBEC01",
    "C0ENGLISH",
    "C0AFTERHOURS",
    "C0NIGHTDESK",
    "C0AAAAA",
    "C0BBBBB",
    "C0ZZZZZ",
    "C0OTHER",
    "C0SALES",
    "C0BILLING1",
    "C0SUPPORT",
    "C0SUPPORT1",
    "C0RELOADED",
    "C0FROMENV",
    "C0TYPED001",
    "C0BARE",
    "C0BENCH001",
    "CE123456789FR",
    "C0123456789",
    "C0AAA",
    "C0BBB",
    "C0CCC",
    "C0ABC",
    "C0ALL",
    "C0CWD",
    "C0INFILE",
    "C0DEF0001",
    "C0DEF0002",
    "C0EN00001",
    "C0ENV0001",
    "C0ENV0002",
    "C0ENV0003",
    "C0FILE001",
    "C0FR00001",
    "C0FR00002",
    "C0FR00003",
    "C0NEW0001",
    "C0NEW0002",
    "C0NIGHT001",
    "C0NIGHT002",
    "C0OLD0001",
    "C0OTHER1",
    "C0POOLA1",
    "C0POOLB2",
    "C0POOLC3",
    "C0R0001",
    "C0R0002",
    "C0SUPPORT2",
    "C0T0001",
    "C0T0002",
    "C0T0003",
    "C0W0001",
    "C0W0002",
    "C0W0003",
    "C0X0001",
    "G0123ABCD",
    "G0DESK2407",
)
# What the bridge's app is granted by default (README: Slack app setup). x-oauth-scopes lists them.
DEFAULT_SCOPES = frozenset(
    {
        "chat:write",
        "channels:history",
        "groups:history",
        "channels:read",
        "groups:read",
        "users:read",
        "usergroups:read",
        "files:write",
        "files:read",
        "reactions:write",
    }
)
# Bot scope each method needs; (public, private) pairs depend on the channel named (C… / G…).
METHOD_SCOPES: dict[str, str | tuple[str, str]] = {
    "chat.postMessage": "chat:write",
    "chat.update": "chat:write",
    "chat.postEphemeral": "chat:write",
    "conversations.history": ("channels:history", "groups:history"),
    "conversations.replies": ("channels:history", "groups:history"),
    "conversations.info": ("channels:read", "groups:read"),
    "users.info": "users:read",
    "usergroups.users.list": "usergroups:read",
    "reactions.add": "reactions:write",
    "files.info": "files:read",
    "files.getUploadURLExternal": "files:write",
    "files.completeUploadExternal": "files:write",
    "chat.delete": "chat:write",
    "files.delete": "files:write",
}
# Methods that refuse a channel the bot cannot post in (archived, or not a member).
_POSTING = frozenset({"chat.postMessage", "chat.postEphemeral", "reactions.add"})
_READING = frozenset({"conversations.history", "conversations.replies"})
_JSON_FIELDS = ("blocks", "attachments", "metadata", "view")  # sent as JSON strings inside form bodies
# Views (views.open / views.publish), per Slack's surface limits.
MAX_VIEW_BLOCKS = 100
MAX_VIEW_BYTES = 250_000
MAX_VIEW_TITLE_CHARS = 24  # modal title, submit and close texts
MAX_PRIVATE_METADATA_CHARS = 3000
MAX_SELECT_OPTIONS = 100
TRIGGER_TTL_S = 3.0  # a trigger_id must be exchanged within 3 s of the click
VIEWS_PER_MINUTE = {"views.publish": 100, "views.open": 100}  # Slack's Tier 4 (methods/views.*.json)
_TRIGGER_ID = re.compile(r"^\d+\.\d+\.[0-9a-f]+$")


class SlackCall(NamedTuple):
    """One HTTP call as the fake saw it: `params` merges query, body and JSON fields (token removed)."""

    method: str
    params: dict[str, Any]
    at: float  # time.monotonic() when received
    status: int  # HTTP status returned
    response: dict[str, Any]  # JSON body returned


@dataclass
class SlackMessage:
    """A message held in a channel: what the bridge posted (or a test injected as a human)."""

    channel: str
    ts: str
    text: str
    at: float  # time.monotonic() when received
    blocks: list[Any] | None = None
    metadata: dict[str, Any] | None = None
    thread_ts: str | None = None
    user: str = BOT_USER_ID
    bot_id: str | None = BOT_ID
    reply_broadcast: bool = False
    params: dict[str, Any] = field(default_factory=dict)  # the raw chat.postMessage params
    edits: list[dict[str, Any]] = field(default_factory=list)  # chat.update params, in order
    subtype: str | None = None  # "tombstone": a deleted root whose replies remain (chat.delete)
    reactions: list[str] = field(default_factory=list)  # names the bot added (reactions.add)

    @property
    def is_root(self) -> bool:
        return self.thread_ts is None or self.thread_ts == self.ts

    def to_api(
        self, replies: list[SlackMessage] | None = None, parent_user: str | None = None
    ) -> dict[str, Any]:
        """Slack's JSON shape of this message (as in conversations.* and chat.* responses)."""
        msg: dict[str, Any] = {"type": "message", "ts": self.ts, "user": self.user, "text": self.text}
        if self.bot_id:
            msg.update(bot_id=self.bot_id, app_id=APP_ID, team=TEAM_ID)
        if self.blocks is not None:
            msg["blocks"] = self.blocks
        if self.metadata is not None:
            msg["metadata"] = self.metadata
        if self.edits:
            msg["edited"] = {"user": self.user, "ts": self.edits[-1]["_edited_ts"]}
        if self.subtype:
            msg["subtype"] = self.subtype
        if self.params.get("files") and self.bot_id:  # a file share by the bridge (fake_slack_files.py)
            msg["files"] = [dict(f) for f in self.params["files"]]
        if not self.is_root:
            msg["thread_ts"] = self.thread_ts
            msg["parent_user_id"] = parent_user or BOT_USER_ID
            if self.reply_broadcast:
                msg["subtype"] = "thread_broadcast"
        elif replies:
            users = list(dict.fromkeys(r.user for r in replies))
            msg.update(
                thread_ts=self.ts,
                reply_count=len(replies),
                reply_users_count=len(users),
                reply_users=users,
                latest_reply=replies[-1].ts,
                is_locked=False,
                subscribed=False,
            )
        return msg


@dataclass
class SlackChannel:
    """A conversation as conversations.info describes it."""

    id: str
    name: str
    archived: bool = False
    member: bool = True  # is the bot a member
    private: bool = False

    def to_api(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "name_normalized": self.name,
            "is_channel": not self.private,
            "is_group": self.private,
            "is_im": False,
            "is_mpim": False,
            "is_private": self.private,
            "created": 1700000000,
            "creator": "UADMIN01",
            "is_archived": self.archived,
            "is_general": False,
            "is_member": self.member,
            "is_shared": False,
            "is_ext_shared": False,
            "is_org_shared": False,
            "topic": {"value": "", "creator": "", "last_set": 0},
            "purpose": {"value": "", "creator": "", "last_set": 0},
        }


@dataclass
class SlackFile:
    """A file shared in Slack: files.info describes it, url_private_download serves it to the token."""

    id: str
    name: str
    mimetype: str
    content: bytes
    user: str
    base_url: str
    deleted: bool = False
    restricted: bool = False  # the download answers Slack's sign-in page, as for a file the token cannot read
    reported_size: int | None = None  # what files.info says (None: the real size)

    @property
    def url_private_download(self) -> str:
        return f"{self.base_url}/files-pri/{TEAM_ID}-{self.id}/download/{self.name}"

    def to_api(self) -> dict[str, Any]:
        """Slack's file object (files.info, and a message's `files`)."""
        ext = self.name.rpartition(".")[2].lower() if "." in self.name else "binary"
        return {
            "id": self.id,
            "created": 1700000000,
            "timestamp": 1700000000,
            "name": self.name,
            "title": self.name,
            "mimetype": self.mimetype,
            "filetype": ext,
            "pretty_type": ext.upper(),
            "user": self.user,
            "user_team": TEAM_ID,
            "mode": "hosted",
            "editable": False,
            "is_external": False,
            "external_type": "",
            "is_public": True,
            "size": len(self.content) if self.reported_size is None else self.reported_size,
            "url_private": f"{self.base_url}/files-pri/{TEAM_ID}-{self.id}/{self.name}",
            "url_private_download": self.url_private_download,
            "permalink": f"{TEAM_URL}files/{self.user}/{self.id}/{self.name}",
        }


@dataclass
class _StatusFault:
    status: int
    error: str
    until: float | None  # monotonic deadline, None = until cleared or `remaining` runs out
    remaining: int | None
    methods: frozenset[str] | None
    headers: dict[str, str] = field(default_factory=dict)
    fields: dict[str, Any] = field(default_factory=dict)  # more of the error body (needed, provided)
    only_with: str | None = None  # only calls carrying this argument (e.g. "blocks")

    def matches(self, method: str, now: float) -> bool:
        if self.until is not None and now >= self.until:
            return False
        if self.remaining is not None and self.remaining <= 0:
            return False
        return self.methods is None or method in self.methods


def _truthy(value: Any) -> bool:
    return value in (True, 1, "1", "true", "True", "TRUE")


def _ts_key(ts: Any) -> tuple[int, int]:
    """Slack ts ("1700000000.000100") → sortable tuple; numbers and bare seconds accepted."""
    text = str(ts)
    sec, _, frac = text.partition(".")
    return int(sec or 0), int((frac + "000000")[:6])


def _cursor(offset: int) -> str:
    return base64.b64encode(f"next_offset:{offset}".encode()).decode()


def _offset(cursor: Any) -> int:
    if not cursor:
        return 0
    try:
        return int(base64.b64decode(str(cursor)).decode().rpartition(":")[2])
    except ValueError:
        return -1


def _block_errors(blocks: Any, limit: int = MAX_BLOCKS) -> list[str]:
    if not isinstance(blocks, list):
        return ["must be an array"]
    errors = []
    if len(blocks) > limit:
        errors.append(f"no more than {limit} items allowed [json-pointer:/blocks]")
    for i, block in enumerate(blocks):
        if not isinstance(block, dict) or "type" not in block:
            errors.append(f"missing required field: type [json-pointer:/blocks/{i}]")
            continue
        text = block.get("text")
        text = text.get("text", "") if isinstance(text, dict) else ""
        if block["type"] == "section" and len(text) > MAX_SECTION_TEXT_CHARS:
            errors.append(
                f"must be at most {MAX_SECTION_TEXT_CHARS} characters [json-pointer:/blocks/{i}/text]"
            )
        if block["type"] == "header" and len(text) > MAX_HEADER_TEXT_CHARS:
            errors.append(
                f"must be at most {MAX_HEADER_TEXT_CHARS} characters [json-pointer:/blocks/{i}/text]"
            )
        if block["type"] == "section":
            errors += _list_errors(
                block.get("fields"), f"/blocks/{i}/fields", MAX_SECTION_FIELDS, MAX_SECTION_FIELD_CHARS
            )
        if block["type"] == "context":
            errors += _list_errors(
                block.get("elements"), f"/blocks/{i}/elements", MAX_CONTEXT_ELEMENTS, MAX_TEXT_OBJECT_CHARS
            )
    return errors


def _list_errors(items: Any, pointer: str, max_items: int, max_chars: int) -> list[str]:
    """A section's fields or a context's elements: how many, and each text's length."""
    if items is None:
        return []
    if not isinstance(items, list):
        return [f"must be an array [json-pointer:{pointer}]"]
    errors = []
    if len(items) > max_items:
        errors.append(f"must have at most {max_items} items [json-pointer:{pointer}]")
    for j, item in enumerate(items):
        text = item.get("text") if isinstance(item, dict) else None
        if isinstance(text, str) and len(text) > max_chars:
            errors.append(f"must be at most {max_chars} characters [json-pointer:{pointer}/{j}/text]")
    return errors


def _plain_text_errors(value: Any, where: str, limit: int) -> list[str]:
    if not isinstance(value, dict) or value.get("type") != "plain_text" or not value.get("text"):
        return [f"must be a plain_text object [json-pointer:/view/{where}]"]
    if len(str(value["text"])) > limit:
        return [f"must be at most {limit} characters [json-pointer:/view/{where}/text]"]
    return []


def _input_errors(blocks: list[Any]) -> list[str]:
    """Input blocks: a label and an element; a select holds 1-100 options of text <= 75, value <= 150."""
    errors = []
    for i, block in enumerate(blocks):
        if not isinstance(block, dict) or block.get("type") != "input":
            continue
        errors += _plain_text_errors(block.get("label"), f"blocks/{i}/label", 2000)
        element = block.get("element")
        if not isinstance(element, dict) or not element.get("type"):
            errors.append(f"missing required field: element [json-pointer:/view/blocks/{i}]")
            continue
        if element["type"] == "static_select":
            options = element.get("options")
            if not isinstance(options, list) or not 1 <= len(options) <= MAX_SELECT_OPTIONS:
                errors.append(f"must hold 1 to {MAX_SELECT_OPTIONS} options [json-pointer:/view/blocks/{i}]")
                continue
            for option in options:
                text = (option.get("text") or {}).get("text", "") if isinstance(option, dict) else ""
                if not text or len(text) > 75 or len(str(option.get("value", ""))) > 150:
                    errors.append(f"invalid option [json-pointer:/view/blocks/{i}/element/options]")
    return errors


def _view_errors(view: Any, kind: str) -> list[str]:
    """Slack's checks of a view payload (a modal for views.open, a home tab for views.publish)."""
    if not isinstance(view, dict):
        return ["must be an object [json-pointer:/view]"]
    if view.get("type") != kind:
        return [f"must be {kind} [json-pointer:/view/type]"]
    blocks = view.get("blocks")
    errors = [e.replace("/blocks", "/view/blocks") for e in _block_errors(blocks, MAX_VIEW_BLOCKS)]
    if len(str(view.get("private_metadata") or "")) > MAX_PRIVATE_METADATA_CHARS:
        errors.append("must be at most 3000 characters [json-pointer:/view/private_metadata]")
    if len(str(view.get("callback_id") or "")) > 255:
        errors.append("must be at most 255 characters [json-pointer:/view/callback_id]")
    if kind == "modal":
        errors += _plain_text_errors(view.get("title"), "title", MAX_VIEW_TITLE_CHARS)
        for name in ("submit", "close"):
            if view.get(name) is not None:
                errors += _plain_text_errors(view[name], name, MAX_VIEW_TITLE_CHARS)
        if isinstance(blocks, list):
            has_input = any(isinstance(b, dict) and b.get("type") == "input" for b in blocks)
            if has_input and view.get("submit") is None:
                errors.append("submit is required when a view holds input blocks [json-pointer:/view/submit]")
            errors += _input_errors(blocks)
    return errors


class FakeSlack(FileUploads, HttpFake):
    """Fake Slack Web API. `url` is the slack-sdk base_url ("http://127.0.0.1:PORT/api/")."""

    def __init__(
        self,
        token: str | None = DEFAULT_TOKEN,
        users: Mapping[str, Mapping[str, Any]] | None = None,
        *,
        scopes: Iterable[str] = DEFAULT_SCOPES,
        known_channels: Iterable[str] = SUITE_CHANNELS,
    ) -> None:
        super().__init__()
        self.token = token  # None disables the auth check
        self.app_token = APP_TOKEN
        self.users: dict[str, dict[str, Any]] = {k: dict(v) for k, v in (users or DEFAULT_USERS).items()}
        self.scopes = set(scopes)  # granted to the token: x-oauth-scopes, and missing_scope beyond them
        self._suite_channels = tuple(known_channels)
        self.conversations: dict[str, SlackChannel] = {}  # what exists in the workspace
        self.usergroups: dict[str, list[str]] = {}  # S… → member user IDs
        self.calls: list[SlackCall] = []
        self.channels: dict[str, list[SlackMessage]] = {}
        self.ephemerals: list[dict[str, Any]] = []
        self.uploads: dict[str, SlackUpload] = {}  # file id → its upload (fake_slack_files.py)
        self._reset_conversations()
        self.deleted: list[tuple[str, str]] = []  # (channel, ts) of chat.delete calls that succeeded
        self.triggers: dict[str, float] = {}  # trigger_id -> when issued (time.monotonic())
        self.modals: list[dict[str, Any]] = []  # views opened (views.open), in order
        self.home_views: dict[str, dict[str, Any]] = {}  # user -> their last published Home view
        self.home_enabled = True  # the app's Home tab (App Home settings); off: views.publish not_enabled
        self.files: dict[str, SlackFile] = {}  # F… → a file shared in the workspace (add_file)
        self.rate_violations = 0
        self.rate_violations_by_channel: dict[str, int] = {}
        self._last_ts = (0, 0)
        self.reset_faults()

    # -- server ----------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"{self.base_url}/api/"

    def make_app(self) -> web.Application:
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_route("*", "/api/{method}", self._handle)
        app.router.add_get("/files-pri/{team}-{file}/download/{name}", self._download)
        self.add_upload_route(app)
        return app

    # -- fault injection (all runtime-settable) --------------------------------------------------

    def reset_faults(self) -> None:
        """Clear every injected fault (429 window, rate enforcement, 5xx, channel errors, latency)."""
        self._status_faults: list[_StatusFault] = []
        self._channel_errors: dict[str, str] = {}
        self._delay_s = 0.0
        self._delay_methods: frozenset[str] | None = None
        self._rate_per_s: float | None = None
        self._rate_burst = 1.0
        self._rate_tolerance_s = 0.0
        self._buckets: dict[str, tuple[float, float]] = {}
        self._views_calls: dict[str, list[float]] = {}  # views.* calls within the last minute

    def reset_counters(self) -> None:
        """Forget recorded calls and rate violations (messages stay)."""
        self.calls.clear()
        self.rate_violations = 0
        self.rate_violations_by_channel.clear()
        self._buckets.clear()

    def reset(self) -> None:
        """Everything back to a fresh fake: faults, counters, channels, ephemerals."""
        self.reset_faults()
        self.reset_counters()
        self.channels.clear()
        self.ephemerals.clear()
        self.uploads.clear()
        self._reset_conversations()
        self.triggers.clear()
        self.modals.clear()
        self.home_views.clear()
        self.files.clear()

    def _reset_conversations(self) -> None:
        self.conversations = {
            c: SlackChannel(c, c.lower(), private=c.startswith("G")) for c in self._suite_channels
        }

    def add_channel(
        self,
        channel: str,
        *,
        name: str = "",
        archived: bool = False,
        member: bool = True,
        private: bool | None = None,
    ) -> SlackChannel:
        """Create (or redefine) a conversation. Private defaults to G… IDs."""
        info = SlackChannel(
            channel,
            name or channel.lower(),
            archived,
            member,
            channel.startswith("G") if private is None else private,
        )
        self.conversations[channel] = info
        return info

    def remove_channel(self, channel: str) -> None:
        """The channel no longer exists (deleted): channel_not_found from then on."""
        self.conversations.pop(channel, None)

    def add_usergroup(self, group: str, users: Iterable[str]) -> None:
        self.usergroups[group] = list(users)

    def fail_with_error(
        self,
        error: str,
        *,
        methods: Iterable[str] | None = None,
        times: int | None = None,
        only_with: str | None = None,
        **fields: Any,
    ) -> None:
        """HTTP 200 {"ok": false, "error": error, **fields} for the next `times` calls (or until
        reset_faults()) of `methods` (or all), or only of calls carrying the argument `only_with`: any
        Slack error code on demand (e.g. invalid_blocks for calls with blocks, missing_scope with
        needed=..., update_failed)."""
        self._status_faults.append(
            _StatusFault(
                status=200,
                error=error,
                until=None,
                remaining=times,
                methods=frozenset(methods) if methods is not None else None,
                fields=fields,
                only_with=only_with,
            )
        )
        self.deleted.clear()

    def rate_limit_for(
        self, seconds: float, retry_after: int = 1, *, methods: Iterable[str] | None = None
    ) -> None:
        """Every call (or only `methods`) answers HTTP 429, Retry-After: retry_after, for `seconds`."""
        self._status_faults.append(
            _StatusFault(
                status=429,
                error="ratelimited",
                until=time.monotonic() + seconds,
                remaining=None,
                methods=frozenset(methods) if methods is not None else None,
                headers={"Retry-After": str(int(retry_after))},
            )
        )

    def enforce_rate(
        self, per_channel_per_s: float = 1.0, burst: float = 1.0, *, tolerance_s: float = 0.0
    ) -> None:
        """chat.postMessage faster than `per_channel_per_s` (token bucket of `burst`) gets 429 + Retry-After.

        Each rejected post adds one to rate_violations (and rate_violations_by_channel[channel]).
        tolerance_s forgives a post arriving that much too early (network jitter). Rate <= 0 disables.
        """
        self._rate_per_s = per_channel_per_s if per_channel_per_s > 0 else None
        self._rate_burst = max(1.0, float(burst))
        self._rate_tolerance_s = tolerance_s
        self._buckets.clear()

    def fail_with_status(
        self,
        status: int = 500,
        for_s: float | None = None,
        *,
        times: int | None = None,
        methods: Iterable[str] | None = None,
        error: str | None = None,
    ) -> None:
        """Answer HTTP `status` for `for_s` seconds, or the next `times` calls, or until reset_faults()."""
        self._status_faults.append(
            _StatusFault(
                status=status,
                error=error or ("service_unavailable" if status == 503 else "fatal_error"),
                until=time.monotonic() + for_s if for_s is not None else None,
                remaining=times,
                methods=frozenset(methods) if methods is not None else None,
            )
        )

    def fail_channel(self, channel: str, error: str | None = "channel_not_found") -> None:
        """HTTP 200 {"ok": false, "error": error} for every call naming `channel`; error=None clears it."""
        if error is None:
            self._channel_errors.pop(channel, None)
        else:
            self._channel_errors[channel] = error

    def delay(self, seconds: float, *, methods: Iterable[str] | None = None) -> None:
        """Add `seconds` of latency before answering each call (or only `methods`); 0 clears."""
        self._delay_s = max(0.0, seconds)
        self._delay_methods = frozenset(methods) if methods is not None else None

    # -- state helpers for tests -----------------------------------------------------------------

    def add_user(
        self, user_id: str, name: str, real_name: str = "", display_name: str = "", **extra: Any
    ) -> None:
        self.users[user_id] = {"name": name, "real_name": real_name, "display_name": display_name, **extra}

    def add_message(
        self, channel: str, text: str, *, user: str = "UAGENT01", thread_ts: str | None = None, **extra: Any
    ) -> SlackMessage:
        """Inject a message as a human would write it (e.g. an agent's reply in a thread)."""
        msg = SlackMessage(
            channel=channel,
            ts=self._next_ts(),
            text=text,
            at=time.monotonic(),
            thread_ts=thread_ts,
            user=user,
            bot_id=None,
            **extra,
        )
        self.channels.setdefault(channel, []).append(msg)
        return msg

    def trigger_id(self) -> str:
        """A fresh trigger_id, as Slack puts in an interaction payload (valid once, for 3 s)."""
        trigger = f"{int(time.time())}.{secrets.randbelow(10**9)}.{secrets.token_hex(16)}"
        self.triggers[trigger] = time.monotonic()
        return trigger

    def permalink(self, channel: str, ts: str) -> str:
        return f"{TEAM_URL}archives/{channel}/p{ts.replace('.', '')}"

    def add_file(
        self, name: str, content: bytes, *, mimetype: str = "application/octet-stream", user: str = "UAGENT01"
    ) -> SlackFile:
        """A file as an agent's upload creates it; `to_api()` is also its entry in a message's `files`."""
        file_id = f"F{len(self.files) + 1:08d}"
        shared = SlackFile(file_id, name, mimetype, content, user, self.base_url)
        self.files[file_id] = shared
        return shared

    def reactions(self, channel: str, ts: str) -> list[str]:
        """Reaction names on a message, in the order added (the bot's own)."""
        msg = self.message(channel, ts)
        return list(msg.reactions) if msg is not None else []

    def messages(self, channel: str) -> list[SlackMessage]:
        """Every message of `channel` in the order received (roots and replies)."""
        return list(self.channels.get(channel, []))

    def message(self, channel: str, ts: str) -> SlackMessage | None:
        return next((m for m in self.channels.get(channel, []) if m.ts == ts), None)

    def posts(self, channel: str | None = None) -> list[SlackMessage]:
        """Messages created by successful chat.postMessage calls, in the order received."""
        chans = [channel] if channel is not None else list(self.channels)
        out = [m for c in chans for m in self.channels.get(c, []) if m.bot_id == BOT_ID]
        return sorted(out, key=lambda m: _ts_key(m.ts))

    def roots(self, channel: str | None = None) -> list[SlackMessage]:
        """Top-level posts (thread parents), oldest first."""
        return [m for m in self.posts(channel) if m.is_root]

    def replies(self, channel: str, ts: str) -> list[SlackMessage]:
        """Replies in the thread rooted at `ts`, oldest first (any author)."""
        return [m for m in self.channels.get(channel, []) if not m.is_root and m.thread_ts == ts]

    def thread(self, channel: str, ts: str) -> list[str]:
        """Texts of the thread: root first, then replies oldest → newest."""
        root = self.message(channel, ts)
        head = [root.text] if root is not None else []
        return head + [m.text for m in self.replies(channel, ts)]

    def calls_to(self, method: str) -> list[SlackCall]:
        return [c for c in self.calls if c.method == method]

    async def wait_for_posts(
        self, count: int, channel: str | None = None, timeout_s: float = 5.0
    ) -> list[SlackMessage]:
        """Wait (bounded) until at least `count` successful posts exist, then return them."""
        await wait_until(lambda: len(self.posts(channel)) >= count, timeout_s)
        return self.posts(channel)

    # -- request handling ------------------------------------------------------------------------

    def _next_ts(self) -> str:
        now = time.time()
        key = (int(now), int((now % 1) * 1_000_000))
        if key <= self._last_ts:
            sec, micro = self._last_ts
            key = (sec + 1, 0) if micro >= 999_999 else (sec, micro + 1)
        self._last_ts = key
        return f"{key[0]}.{key[1]:06d}"

    async def _read_params(self, request: web.Request) -> tuple[dict[str, Any], str | None, str | None]:
        """Merge query + body into params; return (params, token, error)."""
        params: dict[str, Any] = dict(request.query)
        error = None
        if request.can_read_body:
            if request.content_type == "application/json":
                try:
                    body = await request.json()
                except ValueError:
                    body, error = None, "invalid_json"
                if isinstance(body, dict):
                    params.update(body)
                elif error is None:
                    error = "json_not_object"
            elif request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
                form = await request.post()
                params.update({k: v for k, v in form.items() if isinstance(v, str)})
        for key in _JSON_FIELDS:
            if isinstance(params.get(key), str) and params[key]:
                try:
                    params[key] = json.loads(params[key])
                except ValueError:
                    error = error or "invalid_json"
        token = params.pop("token", None)
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            token = auth[len("Bearer ") :].strip()
        return params, token, error

    async def _handle(self, request: web.Request) -> web.Response:
        received = time.monotonic()
        method = request.match_info["method"]
        params, token, parse_error = await self._read_params(request)
        if self._delay_s > 0 and (self._delay_methods is None or method in self._delay_methods):
            await asyncio.sleep(self._delay_s)
        status, body, headers = self._answer(method, params, token, parse_error, received)
        self.calls.append(SlackCall(method, params, received, status, body))
        return web.json_response(body, status=status, headers=self._scope_headers(method, params, headers))

    def _scope_headers(self, method: str, params: dict[str, Any], headers: dict[str, str]) -> dict[str, str]:
        """Slack's scope headers, on every answer: what the token has, and what `method` accepts."""
        headers = {**headers, "x-oauth-scopes": ",".join(sorted(self.scopes))}
        needed = self._needed_scope(method, params)
        if needed:
            headers["x-accepted-oauth-scopes"] = needed
        return headers

    @staticmethod
    def _needed_scope(method: str, params: dict[str, Any]) -> str | None:
        scope = METHOD_SCOPES.get(method)
        if isinstance(scope, tuple):
            return scope[1] if str(params.get("channel") or "").startswith("G") else scope[0]
        return scope

    def _channel_error(self, method: str, channel: str) -> str | None:
        """What Slack answers for a channel the bot cannot use in `method`, or None."""
        info = self.conversations.get(channel)
        if info is None or (info.private and not info.member):
            return "channel_not_found"
        if method in _POSTING and info.archived:
            return "is_archived"
        if method in _POSTING | _READING and not info.member:
            return "not_in_channel"
        return None

    def _answer(
        self, method: str, params: dict[str, Any], token: str | None, parse_error: str | None, now: float
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        for fault in self._status_faults:
            if fault.only_with and not params.get(fault.only_with):
                continue
            if fault.matches(method, now):
                if fault.remaining is not None:
                    fault.remaining -= 1
                return fault.status, {"ok": False, "error": fault.error, **fault.fields}, dict(fault.headers)
        if method == "apps.connections.open":
            return 200, self._apps_connections_open(token), {}
        handler = self._methods.get(method)
        if handler is None:
            return 200, {"ok": False, "error": "unknown_method", "req_method": method}, {}
        if self.token is not None and token != self.token:
            return 200, {"ok": False, "error": "invalid_auth"}, {}  # missing or wrong token alike
        if parse_error:
            return 200, {"ok": False, "error": parse_error}, {}
        needed = self._needed_scope(method, params)
        if needed and needed not in self.scopes:
            provided = ",".join(sorted(self.scopes))
            return 200, {"ok": False, "error": "missing_scope", "needed": needed, "provided": provided}, {}
        if method in VIEWS_PER_MINUTE:  # Tier 4: ~100 a minute per app and workspace
            window = self._views_calls.setdefault(method, [])
            window[:] = [at for at in window if now - at < 60.0]
            if len(window) >= VIEWS_PER_MINUTE[method]:
                retry = max(1, math.ceil(60.0 - (now - window[0])))
                return 429, {"ok": False, "error": "ratelimited"}, {"Retry-After": str(retry)}
            window.append(now)
        if method == "chat.postMessage" and self._rate_per_s is not None:
            retry_after = self._take_token(str(params.get("channel", "")), now)
            if retry_after is not None:
                headers = {"Retry-After": str(retry_after)}
                return 429, {"ok": False, "error": "ratelimited"}, headers
        channel = params.get("channel")
        if channel is not None and channel in self._channel_errors:
            return 200, {"ok": False, "error": self._channel_errors[channel]}, {}
        if channel and method in METHOD_SCOPES and (error := self._channel_error(method, str(channel))):
            return 200, {"ok": False, "error": error}, {}
        return 200, handler(self, params, now), {}

    def _take_token(self, channel: str, now: float) -> int | None:
        """Token bucket per channel: None when allowed, else the Retry-After seconds."""
        rate = self._rate_per_s
        assert rate is not None
        tokens, last = self._buckets.get(channel, (self._rate_burst, now))
        tokens = min(self._rate_burst, tokens + (now - last) * rate)
        if tokens >= 1.0 - self._rate_tolerance_s * rate:
            self._buckets[channel] = (max(0.0, tokens - 1.0), now)
            return None
        self._buckets[channel] = (tokens, now)
        self.rate_violations += 1
        self.rate_violations_by_channel[channel] = self.rate_violations_by_channel.get(channel, 0) + 1
        return max(1, math.ceil((1.0 - tokens) / rate))

    # -- Slack methods ---------------------------------------------------------------------------

    def _parent_user(self, channel: str, thread_ts: str | None) -> str | None:
        root = self.message(channel, thread_ts) if thread_ts else None
        return root.user if root is not None else None

    def _api(self, msg: SlackMessage, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Slack's shape of `msg`; when read back (conversations.*, `params` given) its metadata
        only with include_all_metadata, as Slack does."""
        replies = self.replies(msg.channel, msg.ts) if msg.is_root else None
        api = msg.to_api(replies, self._parent_user(msg.channel, msg.thread_ts))
        if params is not None and not _truthy(params.get("include_all_metadata")):
            api.pop("metadata", None)
        return api

    def _apps_connections_open(self, token: str | None) -> dict[str, Any]:
        """Socket Mode's URL, for the app-level token only (a bot token is the wrong type)."""
        if not token:
            return {"ok": False, "error": "not_authed"}
        if token == self.app_token:
            return {"ok": True, "url": f"wss://wss-primary.slack.com/link/?ticket=fake-{self._next_ts()}"}
        if token == self.token:
            return {"ok": False, "error": "not_allowed_token_type"}
        return {"ok": False, "error": "invalid_auth"}

    def _auth_test(self, params: dict[str, Any], now: float) -> dict[str, Any]:
        return {
            "ok": True,
            "url": TEAM_URL,
            "team": TEAM_NAME,
            "user": "bridge",
            "team_id": TEAM_ID,
            "user_id": BOT_USER_ID,
            "bot_id": BOT_ID,
            "is_enterprise_install": False,
        }

    def _validate_post(self, params: dict[str, Any]) -> dict[str, Any] | None:
        if not params.get("channel"):
            return {"ok": False, "error": "channel_not_found"}
        text = params.get("text")
        if not text and not params.get("blocks") and not params.get("attachments"):
            return {"ok": False, "error": "no_text"}
        if isinstance(text, str) and len(text) > MAX_TEXT_CHARS:
            return {"ok": False, "error": "msg_too_long"}
        if "blocks" in params and params["blocks"] is not None:
            errors = _block_errors(params["blocks"])
            if errors:
                return {"ok": False, "error": "invalid_blocks", "errors": errors}
        metadata = params.get("metadata")
        if metadata is not None and not (
            isinstance(metadata, dict)
            and isinstance(metadata.get("event_type"), str)
            and isinstance(metadata.get("event_payload"), dict)
        ):
            return {"ok": False, "error": "invalid_metadata_format"}
        return None

    def _chat_post_message(self, params: dict[str, Any], now: float) -> dict[str, Any]:
        error = self._validate_post(params)
        if error is not None:
            return error
        channel = str(params["channel"])
        thread_ts = params.get("thread_ts") or None
        if thread_ts is not None:
            parent = self.message(channel, str(thread_ts))
            if parent is not None and not parent.is_root:  # replying to a reply threads under its parent
                thread_ts = parent.thread_ts
        msg = SlackMessage(
            channel=channel,
            ts=self._next_ts(),
            text=str(params.get("text") or ""),
            at=now,
            blocks=params.get("blocks"),
            metadata=params.get("metadata"),
            thread_ts=str(thread_ts) if thread_ts is not None else None,
            reply_broadcast=_truthy(params.get("reply_broadcast")),
            params=dict(params),
        )
        self.channels.setdefault(channel, []).append(msg)
        return {"ok": True, "channel": channel, "ts": msg.ts, "message": self._api(msg)}

    def _chat_update(self, params: dict[str, Any], now: float) -> dict[str, Any]:
        channel = str(params.get("channel") or "")
        if not channel:
            return {"ok": False, "error": "channel_not_found"}
        msg = self.message(channel, str(params.get("ts") or ""))
        if msg is None:
            return {"ok": False, "error": "message_not_found"}
        if msg.bot_id != BOT_ID:
            return {"ok": False, "error": "cant_update_message"}
        text = params.get("text")
        if isinstance(text, str) and len(text) > MAX_UPDATE_TEXT_CHARS:
            return {"ok": False, "error": "msg_too_long"}
        if params.get("blocks") is not None:
            errors = _block_errors(params["blocks"])
            if errors:
                return {"ok": False, "error": "invalid_blocks", "errors": errors}
        if text is not None:
            msg.text = str(text)
        if "blocks" in params:
            msg.blocks = params["blocks"] or None
        if params.get("metadata") is not None:
            msg.metadata = params["metadata"]
        msg.edits.append({**params, "_edited_ts": self._next_ts(), "_at": now})
        return {"ok": True, "channel": channel, "ts": msg.ts, "text": msg.text, "message": self._api(msg)}

    def _chat_delete(self, params: dict[str, Any], now: float) -> dict[str, Any]:
        """As Slack: a bot token deletes only its own messages; a root whose thread has replies left
        becomes a tombstone ("This message was deleted."), as conversations.replies then shows it."""
        channel = str(params.get("channel") or "")
        if not channel:
            return {"ok": False, "error": "channel_not_found"}
        msg = self.message(channel, str(params.get("ts") or ""))
        if msg is None or msg.subtype == "tombstone":
            return {"ok": False, "error": "message_not_found"}
        if msg.bot_id != BOT_ID:
            return {"ok": False, "error": "cant_delete_message"}
        if msg.is_root and self.replies(channel, msg.ts):
            msg.text, msg.blocks, msg.metadata, msg.subtype = (
                "This message was deleted.",
                None,
                None,
                "tombstone",
            )
            msg.user, msg.bot_id = "USLACKBOT", None
        else:
            self.channels[channel].remove(msg)
        self.deleted.append((channel, msg.ts))
        return {"ok": True, "channel": channel, "ts": msg.ts}

    def _page(
        self, items: list[dict[str, Any]], params: dict[str, Any], default_limit: int
    ) -> dict[str, Any]:
        try:
            limit = int(params.get("limit") or default_limit)
        except ValueError:
            limit = default_limit
        limit = max(1, min(limit, 1000))
        start = _offset(params.get("cursor"))
        if start < 0:
            return {"ok": False, "error": "invalid_cursor"}
        page = items[start : start + limit]
        more = start + limit < len(items)
        return {
            "ok": True,
            "messages": page,
            "has_more": more,
            "response_metadata": {"next_cursor": _cursor(start + limit) if more else ""},
        }

    @staticmethod
    def _in_window(ts: str, params: dict[str, Any]) -> bool:
        inclusive = _truthy(params.get("inclusive"))
        key = _ts_key(ts)
        if params.get("oldest") not in (None, ""):
            oldest = _ts_key(params["oldest"])
            if key < oldest or (key == oldest and not inclusive):
                return False
        if params.get("latest") not in (None, ""):
            latest = _ts_key(params["latest"])
            if key > latest or (key == latest and not inclusive):
                return False
        return True

    def _conversations_replies(self, params: dict[str, Any], now: float) -> dict[str, Any]:
        channel = str(params.get("channel") or "")
        if not channel:
            return {"ok": False, "error": "channel_not_found"}
        msg = self.message(channel, str(params.get("ts") or ""))
        if msg is None:
            return {"ok": False, "error": "thread_not_found"}
        if not msg.is_root:  # a reply's ts: Slack answers with the whole thread it belongs to
            msg = self.message(channel, str(msg.thread_ts)) or msg
        items = [self._api(msg, params)] + [
            self._api(r, params) for r in self.replies(channel, msg.ts) if self._in_window(r.ts, params)
        ]
        return self._page(items, params, default_limit=1000)

    def _conversations_history(self, params: dict[str, Any], now: float) -> dict[str, Any]:
        channel = str(params.get("channel") or "")
        if not channel:
            return {"ok": False, "error": "channel_not_found"}
        top = [m for m in self.channels.get(channel, []) if m.is_root or m.reply_broadcast]
        top = [m for m in top if self._in_window(m.ts, params)]
        top.sort(key=lambda m: _ts_key(m.ts), reverse=True)
        page = self._page([self._api(m, params) for m in top], params, default_limit=100)
        if page["ok"]:
            page.update(pin_count=0, channel_actions_ts=None, channel_actions_count=0)
        return page

    def _users_info(self, params: dict[str, Any], now: float) -> dict[str, Any]:
        user_id = str(params.get("user") or "")
        if user_id == BOT_USER_ID:
            spec: dict[str, Any] = {"name": "bridge", "real_name": "Handover Bridge", "is_bot": True}
        elif user_id in self.users:
            spec = dict(self.users[user_id])
        else:
            return {"ok": False, "error": "user_not_found"}
        name = spec.pop("name", user_id.lower())
        real_name = spec.pop("real_name", "")
        display_name = spec.pop("display_name", "")
        profile_extra = spec.pop("profile", {})
        profile = {
            "real_name": real_name,
            "real_name_normalized": real_name,
            "display_name": display_name,
            "display_name_normalized": display_name,
            "avatar_hash": "g0000000000",
            "image_48": f"https://avatars.example.invalid/{user_id}_48.png",
            "image_72": f"https://avatars.example.invalid/{user_id}_72.png",
            "status_text": "",
            "status_emoji": "",
            "team": TEAM_ID,
            **profile_extra,
        }
        user = {
            "id": user_id,
            "team_id": TEAM_ID,
            "name": name,
            "deleted": False,
            "color": "9f69e7",
            "real_name": real_name,
            "tz": "Europe/Paris",
            "tz_label": "Central European Time",
            "tz_offset": 3600,
            "profile": profile,
            "is_admin": False,
            "is_owner": False,
            "is_primary_owner": False,
            "is_restricted": False,
            "is_ultra_restricted": False,
            "is_bot": False,
            "is_app_user": False,
            "updated": 1700000000,
            **spec,
        }
        return {"ok": True, "user": user}

    def _chat_post_ephemeral(self, params: dict[str, Any], now: float) -> dict[str, Any]:
        if not params.get("channel"):
            return {"ok": False, "error": "channel_not_found"}
        if str(params.get("user") or "") not in self.users:
            return {"ok": False, "error": "user_not_in_channel"}
        if not params.get("text") and not params.get("blocks") and not params.get("attachments"):
            return {"ok": False, "error": "no_text"}
        if isinstance(params.get("text"), str) and len(params["text"]) > MAX_TEXT_CHARS:
            return {"ok": False, "error": "msg_too_long"}
        if params.get("blocks") is not None and (errors := _block_errors(params["blocks"])):
            return {"ok": False, "error": "invalid_blocks", "errors": errors}
        ts = self._next_ts()
        self.ephemerals.append({**params, "message_ts": ts, "_at": now})
        return {"ok": True, "message_ts": ts}

    def _views_open(self, params: dict[str, Any], now: float) -> dict[str, Any]:
        trigger = str(params.get("trigger_id") or "")
        if not trigger:
            return {"ok": False, "error": "invalid_arguments"}
        if not _TRIGGER_ID.match(trigger) or trigger not in self.triggers:
            return {"ok": False, "error": "invalid_trigger_id"}
        issued = self.triggers[trigger]
        if issued < 0:
            return {"ok": False, "error": "exchanged_trigger_id"}
        if now - issued > TRIGGER_TTL_S:
            return {"ok": False, "error": "expired_trigger_id"}
        error = self._view_error(params.get("view"), "modal")
        if error is not None:
            return error
        self.triggers[trigger] = -1.0  # exchanged
        view = dict(params["view"])
        self.modals.append({**view, "_trigger_id": trigger, "_at": now})
        return {"ok": True, "view": self._view_api(view)}

    def _views_publish(self, params: dict[str, Any], now: float) -> dict[str, Any]:
        user = str(params.get("user_id") or "")
        if not user:
            return {"ok": False, "error": "invalid_arguments"}
        if not self.home_enabled:
            return {"ok": False, "error": "not_enabled"}
        error = self._view_error(params.get("view"), "home")
        if error is not None:
            return error
        self.home_views[user] = dict(params["view"])
        return {"ok": True, "view": self._view_api(dict(params["view"]))}

    @staticmethod
    def _view_error(view: Any, kind: str) -> dict[str, Any] | None:
        if len(json.dumps(view)) > MAX_VIEW_BYTES:
            return {"ok": False, "error": "view_too_large"}
        errors = _view_errors(view, kind)
        if errors:
            return {"ok": False, "error": "invalid_arguments", "response_metadata": {"messages": errors}}
        return None

    @staticmethod
    def _view_api(view: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": f"V{secrets.token_hex(5).upper()}",
            "team_id": TEAM_ID,
            "app_id": APP_ID,
            "bot_id": BOT_ID,
            "state": {"values": {}},
            "hash": f"{int(time.time())}.{secrets.token_hex(4)}",
            **view,
        }

    def _chat_get_permalink(self, params: dict[str, Any], now: float) -> dict[str, Any]:
        channel = str(params.get("channel") or "")
        if not channel or channel not in self.channels:
            return {"ok": False, "error": "channel_not_found"}
        msg = self.message(channel, str(params.get("message_ts") or ""))
        if msg is None:
            return {"ok": False, "error": "message_not_found"}
        link = self.permalink(channel, msg.ts)
        if not msg.is_root:
            link += f"?thread_ts={msg.thread_ts}&cid={channel}"
        return {"ok": True, "channel": channel, "permalink": link}

    def _conversations_info(self, params: dict[str, Any], now: float) -> dict[str, Any]:
        channel = str(params.get("channel") or "")
        if not channel:
            return {"ok": False, "error": "channel_not_found"}
        return {"ok": True, "channel": self.conversations[channel].to_api()}

    def _usergroups_users_list(self, params: dict[str, Any], now: float) -> dict[str, Any]:
        group = str(params.get("usergroup") or "")
        if group not in self.usergroups:
            return {"ok": False, "error": "no_such_subteam"}
        return {"ok": True, "users": list(self.usergroups[group])}

    def _files_info(self, params: dict[str, Any], now: float) -> dict[str, Any]:
        shared = self.files.get(str(params.get("file") or ""))
        if shared is None:
            return {"ok": False, "error": "file_not_found"}
        if shared.deleted:
            return {"ok": False, "error": "file_deleted"}
        return {
            "ok": True,
            "file": shared.to_api(),
            "comments": [],
            "response_metadata": {"next_cursor": ""},
        }

    def _reactions_add(self, params: dict[str, Any], now: float) -> dict[str, Any]:
        channel, ts, name = (str(params.get(k) or "") for k in ("channel", "timestamp", "name"))
        if not channel or not ts:
            return {"ok": False, "error": "no_item_specified"}
        if not name:
            return {"ok": False, "error": "invalid_name"}
        if not all(c.isalnum() or c in "_-+'" for c in name):
            return {"ok": False, "error": "invalid_name"}
        try:
            _ts_key(ts)
        except ValueError:
            return {"ok": False, "error": "bad_timestamp"}
        msg = self.message(channel, ts)
        if msg is None:
            return {"ok": False, "error": "message_not_found"}
        if name in msg.reactions:
            return {"ok": False, "error": "already_reacted"}
        msg.reactions.append(name)
        return {"ok": True}

    async def _download(self, request: web.Request) -> web.StreamResponse:
        """url_private_download: the bytes for the bot token; like Slack, anyone else gets the
        sign-in page (HTML, 200), never the file."""
        shared = self.files.get(request.match_info["file"])
        auth = request.headers.get("Authorization", "")
        self.calls.append(
            SlackCall("files.download", {"file": request.match_info["file"]}, time.monotonic(), 200, {})
        )
        if shared is None or shared.deleted:
            return web.Response(status=404, text="<html>File not found</html>", content_type="text/html")
        if shared.restricted or (self.token is not None and auth != f"Bearer {self.token}"):
            return web.Response(text="<html><body>Sign in to Slack</body></html>", content_type="text/html")
        return web.Response(body=shared.content, content_type=shared.mimetype)

    _methods: dict[str, Any] = {
        "auth.test": _auth_test,
        "chat.postMessage": _chat_post_message,
        "chat.update": _chat_update,
        "chat.delete": _chat_delete,
        "chat.postEphemeral": _chat_post_ephemeral,
        "chat.getPermalink": _chat_get_permalink,
        "conversations.replies": _conversations_replies,
        "conversations.history": _conversations_history,
        "users.info": _users_info,
        "conversations.info": _conversations_info,
        "usergroups.users.list": _usergroups_users_list,
        "views.open": _views_open,
        "views.publish": _views_publish,
        "files.info": _files_info,
        "reactions.add": _reactions_add,
        "files.getUploadURLExternal": FileUploads._files_get_upload_url_external,
        "files.completeUploadExternal": FileUploads._files_complete_upload_external,
        "files.delete": FileUploads._files_delete,
    }
