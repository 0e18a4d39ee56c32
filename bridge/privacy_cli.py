"""`bridge forget SKILL_ID CLIENT_ID [--slack]`: erase one user's conversation (privacy/forget.py)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import orjson

from .cli_redis import cli_store
from .handovers_cli import cli_slack
from .privacy.forget import DRAIN_TIMEOUT_S, SlackCleaner, forget
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
