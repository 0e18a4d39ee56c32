"""`bridge handovers list|show|resolve`: what is open, one conversation's whole state, and closing a
stuck handover exactly as the Resolve button does (root updated, backend told `handover_resolved`)."""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson

from .cli_redis import cli_store
from .desk.store import DeskStore
from .keys import LANES, SLACK, conversation_id, split_conversation_id
from .metrics import Metrics
from .privacy.audit import CLI, audit
from .settings import AppConfig
from .slack_api import SlackApi, SlackFailure
from .store import Store

MAX_REASON_CHARS = 500
SHOW_ENTRIES = 1000


def add_parser(commands: Any) -> None:
    """The `handovers` sub-command and its three actions."""
    handovers = commands.add_parser("handovers", help="list, inspect and resolve open handovers")
    handovers.add_argument("--config", help="config file")
    actions = handovers.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="one line per open handover")
    listing.add_argument("--state", choices=("open", "claimed"), help="only handovers in this state")
    listing.add_argument("--channel", help="only handovers in this channel ID")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    show = actions.add_parser("show", help="one conversation: state, history, pending entries, dead letters")
    show.add_argument("skill_id")
    show.add_argument("client_id")
    show.add_argument("--json", action="store_true", help="one JSON object")
    resolve = actions.add_parser("resolve", help="close a handover as the Resolve button does")
    resolve.add_argument("skill_id")
    resolve.add_argument("client_id")
    resolve.add_argument("--reason", default="operator", help="told to the backend and shown in the thread")


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds") if ms else ""


def ago(ms: int, now_ms: int) -> str:
    """3s, 4m, 2h05m, 3d: how long since `ms`, for a person."""
    if not ms:
        return "-"
    seconds = max(0, (now_ms - ms) // 1000)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d"


@contextlib.asynccontextmanager
async def cli_slack(app_config: AppConfig) -> AsyncIterator[SlackApi | None]:
    """Slack with the bridge's token, for permalinks (None without a token: links are left out)."""
    token = app_config.settings.slack_bot_token
    if token is None or not token.get_secret_value():
        yield None
        return
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield SlackApi.create(
            token.get_secret_value(), app_config.settings.slack_api_url, session, Metrics(), timeout_s=5
        )


async def permalink(slack: SlackApi | None, channel: str, ts: str) -> str:
    if slack is None or not channel or not ts:
        return ""
    try:
        return await slack.permalink(channel, ts)
    except SlackFailure:
        return ""


async def describe(
    store: Store, slack: SlackApi | None, cid: str, last_ms: int, now_ms: int
) -> dict[str, Any]:
    """One open handover as `list` shows it."""
    conv = await store.conversation(cid)
    header = orjson.loads(conv["header"]) if conv.get("header") else {}
    skill_id, client_id = split_conversation_id(cid)
    # Its thread's channel once posted; before that, the channel or pool the route chose.
    channel = conv.get("thread_channel") or header.get("channel") or ",".join(header.get("pool", []))
    thread_ts = conv.get("thread_ts", "")
    agent = conv.get("agent_name") or conv.get("agent_id") or ""
    return {
        "skill_id": skill_id,
        "client_id": client_id,
        "route": header.get("route", ""),
        "channel": channel,
        "state": conv.get("state", ""),
        "agent": {"slack_user_id": conv["agent_id"], "name": agent} if conv.get("agent_id") else None,
        "opened_at": iso(int(conv.get("opened_at") or 0)),
        "opened_ago": ago(int(conv.get("opened_at") or 0), now_ms),
        "waiting_for_slack": await store.outbox_length(SLACK, cid),
        "last_activity": iso(last_ms),
        "last_activity_ago": ago(last_ms, now_ms),
        "thread_ts": thread_ts,
        "permalink": await permalink(slack, channel, thread_ts),
    }


def text_line(row: dict[str, Any]) -> str:
    agent = row["agent"]["name"] if row["agent"] else "-"
    return (
        f"{row['skill_id']}  {row['client_id']}  route={row['route'] or '-'}  {row['channel'] or '-'}  "
        f"{row['state']}  agent={agent}  opened {row['opened_ago']} ago  "
        f"{row['waiting_for_slack']} waiting for Slack  last activity {row['last_activity_ago']} ago  "
        f"{row['permalink'] or '(no thread yet)'}"
    )


async def list_handovers(store: Store, slack: SlackApi | None, args: argparse.Namespace) -> int:
    now_ms = int(time.time() * 1000)
    rows = []
    for cid, last_ms in sorted(await store.open_handovers(), key=lambda item: item[1]):
        row = await describe(store, slack, cid, last_ms, now_ms)
        if args.state and row["state"] != args.state:
            continue
        if args.channel and args.channel not in row["channel"].split(","):
            continue
        rows.append(row)
        print(orjson.dumps(row).decode() if args.json else text_line(row))
    if not args.json:
        print(f"{len(rows)} open handover(s)", file=sys.stderr)
    return 0


async def show_handover(store: Store, slack: SlackApi | None, args: argparse.Namespace) -> int:
    cid = conversation_id(args.skill_id, args.client_id)
    conv = await store.conversation(cid)
    if not conv:
        print(f"bridge: no conversation {args.skill_id} {args.client_id} in Redis", file=sys.stderr)
        return 1
    header = orjson.loads(conv.pop("header")) if conv.get("header") else None
    pending = {}
    for lane in LANES:
        _, entries = await store.fetch(lane, cid, SHOW_ENTRIES)
        pending[lane] = [{"id": e.id, "kind": e.kind, "hid": e.hid, "data": e.data} for e in entries]
    dead = [
        {"id": d.id, "lane": d.lane, "kind": d.kind, "reason": d.reason, "at": iso(d.at_ms)}
        for d in await store.dead_letters(limit=100_000)
        if d.cid == cid
    ]
    channel, ts = conv.get("thread_channel", ""), conv.get("thread_ts", "")
    shown = {
        "skill_id": args.skill_id,
        "client_id": args.client_id,
        "state": conv.get("state") or "no handover",
        "conversation": conv,
        "header": header,
        "permalink": await permalink(slack, channel, ts),
        "history": await store.history(cid),
        "pending": pending,
        "dead_letters": dead,
    }
    if args.json:
        print(orjson.dumps(shown).decode())
    else:
        print_show(shown)
    return 0


def print_show(shown: dict[str, Any]) -> None:
    conv = shown["conversation"]
    print(f"{shown['skill_id']} {shown['client_id']}: {shown['state']}")
    for field in sorted(conv):
        print(f"  {field}: {conv[field]}")
    if shown["header"]:
        print(f"  route: {shown['header'].get('route', '')}  channel: {shown['header'].get('channel', '')}")
    if shown["permalink"]:
        print(f"  thread: {shown['permalink']}")
    print(f"history ({len(shown['history'])} exchange(s), oldest first):")
    for entry in shown["history"]:
        at = iso(int(entry.get("t") or 0))
        print(f"  {at}  user: {entry.get('in', '')!r}  bot: {entry.get('out', '')!r}")
    for lane, entries in shown["pending"].items():
        print(f"pending for {lane} ({len(entries)}):")
        for entry in entries:
            print(f"  {entry['id']}  {entry['kind']}  handover {entry['hid']}")
    print(f"dead letters ({len(shown['dead_letters'])}):")
    for letter in shown["dead_letters"]:
        print(f"  {letter['id']}  {letter['at']}  {letter['lane']}  {letter['kind']}  {letter['reason']}")


async def resolve(store: Store, app_config: AppConfig, args: argparse.Namespace) -> int:
    reason = " ".join(args.reason.split())[:MAX_REASON_CHARS] or "operator"
    cid = conversation_id(args.skill_id, args.client_id)
    status = await store.resolve_handover(
        cid,
        thread_ts="",
        agent_id="",
        agent_name="",
        now_ms=int(time.time() * 1000),
        replies=app_config.replies_enabled,
        reason=reason,
    )
    if status < 0:
        print(f"bridge: no open handover for {args.skill_id} {args.client_id}", file=sys.stderr)
        return 1
    await DeskStore(store).mark_home_dirty()  # the running bridges publish fresh Home tabs
    await audit(
        store, app_config.file.privacy, "resolved", actor=CLI, cid=cid, detail="bridge handovers resolve"
    )
    told = "backend told handover_resolved" if app_config.replies_enabled else "no BRIDGE_REPLY_URL here"
    print(f"resolved {args.skill_id} {args.client_id} ({reason}); root updated, {told}")
    return 0


async def handovers_main(app_config: AppConfig, args: argparse.Namespace) -> int:
    async with cli_store(app_config) as store:
        if args.action == "resolve":
            return await resolve(store, app_config, args)
        async with cli_slack(app_config) as slack:
            if args.action == "list":
                return await list_handovers(store, slack, args)
            return await show_handover(store, slack, args)
