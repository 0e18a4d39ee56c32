"""`bridge forget SKILL_ID CLIENT_ID [--slack]`: erase one user's conversation (privacy/forget.py);
`bridge audit [--since 24h] [--client-id C] [--action A] [--json]`: the audit trail (privacy/audit.py)."""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from typing import Any

import orjson

from .cli_redis import cli_store
from .config import Invalid, parse_duration
from .handovers_cli import cli_slack
from .privacy.audit import ACTIONS, CLI
from .privacy.forget import DRAIN_TIMEOUT_S, SlackCleaner, forget
from .privacy.store import audit_entries
from .settings import AppConfig
from .slack_api import SlackFailure


def add_parsers(commands: Any) -> None:
    erase = commands.add_parser("forget", help="erase everything the bridge holds for one user")
    erase.add_argument("--config", help="config file")
    erase.add_argument("skill_id")
    erase.add_argument("client_id")
    erase.add_argument("--slack", action="store_true", help="also delete the bridge's messages in Slack")
    erase.add_argument(
        "--wait",
        type=float,
        default=DRAIN_TIMEOUT_S,
        help="seconds a running bridge gets to tell the backend handover_resolved first (default 10)",
    )
    erase.add_argument("--json", action="store_true", help="one JSON object")

    trail = commands.add_parser("audit", help="list the audit trail (privacy.audit), newest last")
    trail.add_argument("--config", help="config file")
    trail.add_argument("--since", default="24h", help="how far back: 90s, 30m, 24h, 7d (default 24h)")
    trail.add_argument("--client-id", help="only this client_id")
    trail.add_argument("--action", choices=ACTIONS, help="only this action")
    trail.add_argument("--json", action="store_true", help="one JSON object per line")


async def forget_main(app_config: AppConfig, args: argparse.Namespace) -> int:
    async with cli_store(app_config) as store, cli_slack(app_config) as slack:
        if args.slack and slack is None:
            print("bridge: --slack needs SLACK_BOT_TOKEN", file=sys.stderr)
            return 2
        try:
            cleaner = None
            if args.slack and slack is not None:
                cleaner = SlackCleaner(slack, store, await slack.identity(), app_config.file.delivery)
            report = await forget(
                store,
                args.skill_id,
                args.client_id,
                replies=app_config.replies_enabled,
                privacy=app_config.file.privacy,
                actor=CLI,
                cleaner=cleaner,
                drain_s=args.wait,
            )
        except SlackFailure as e:
            fix = f" ({e.fix()})" if e.auth else ""
            print(
                f"bridge: Slack refused: {e.reason}{fix}; nothing was removed from Redis, run it again",
                file=sys.stderr,
            )
            return 1
    print(orjson.dumps(report.as_dict()).decode() if args.json else "\n".join(report.lines()))
    return 0


async def audit_main(app_config: AppConfig, args: argparse.Namespace) -> int:
    try:
        since_s = parse_duration(args.since)
    except Invalid as e:
        print(f"bridge: --since: {e} ({e.hint})", file=sys.stderr)
        return 2
    since_ms = int((time.time() - since_s) * 1000)
    async with cli_store(app_config) as store:
        entries = await audit_entries(store, since_ms)
    shown = [
        e
        for e in entries
        if (not args.client_id or e.get("client_id") == args.client_id)
        and (not args.action or e.get("action") == args.action)
    ]
    for entry in shown:
        at = datetime.fromtimestamp(int(entry.get("at") or 0) / 1000, UTC).isoformat(timespec="seconds")
        if args.json:
            print(orjson.dumps({**entry, "at": at}).decode())
        else:
            print(
                f"{at}  {entry.get('actor', ''):12}  {entry.get('action', ''):20}  "
                f"{entry.get('skill_id', '')} / {entry.get('client_id', '')}  {entry.get('detail', '')}"
            )
    if not args.json:
        off = "" if app_config.file.privacy.audit else " (privacy.audit is off in this config)"
        print(f"{len(shown)} audit entr{'y' if len(shown) == 1 else 'ies'}{off}", file=sys.stderr)
    return 0
