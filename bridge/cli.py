"""`bridge` command line: serve, check-config, doctor, outbox list-dead / replay, handovers list /
show / resolve."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime

import orjson

from .cli_redis import RedisUnreachable, cli_store
from .config import ConfigError, check_config_main
from .handovers_cli import add_parser as add_handovers_parser
from .handovers_cli import handovers_main
from .logs import configure_logging
from .privacy.audit import CLI, audit
from .privacy_cli import add_parsers as add_privacy_parsers
from .privacy_cli import audit_main, forget_main
from .settings import AppConfig, SettingsError, load_app_config
from .store import STORE_OR_SOCKET_ERRORS

# What a command against Redis reports in one line: Redis unreachable, or not found at all.
CLI_FAILURES: tuple[type[Exception], ...] = (RuntimeError, *STORE_OR_SOCKET_ERRORS)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bridge", description="Smartly.ai → Slack handover bridge")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the bridge")
    serve.add_argument("--config", help="config file (default: $BRIDGE_CONFIG, else ./config.yaml)")

    check = commands.add_parser("check-config", help="validate a config file and summarise it")
    check.add_argument("path", nargs="?", help="config file (default: $BRIDGE_CONFIG, else ./config.yaml)")

    outbox = commands.add_parser("outbox", help="inspect and replay undeliverable entries")
    outbox.add_argument("--config", help="config file")
    actions = outbox.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list-dead", help="list dead letters (entries that hit a permanent error)")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    listing.add_argument("--limit", type=int, default=1000)
    replay = actions.add_parser("replay", help="put dead letters back into their outbox, in order")
    replay.add_argument("ids", nargs="*", help="dead-letter ids to replay (see list-dead)")
    replay.add_argument("--all", action="store_true", help="replay every dead letter")
    replay.add_argument("--reason", help="only dead letters with this reason")
    add_handovers_parser(commands)

    doctor = commands.add_parser("doctor", help="check the whole setup against Redis, Slack and your backend")
    doctor.add_argument("--config", help="config file (default: $BRIDGE_CONFIG, else ./config.yaml)")
    doctor.add_argument("--json", action="store_true", help="the checks as a JSON list")
    add_privacy_parsers(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "check-config":
        return check_config_main(args.path)
    if args.command == "doctor":
        from .doctor import doctor_main

        configure_logging("error", [])  # the checklist is the output; secrets never reach it
        return doctor_main(args.config, args.json)
    try:
        app_config = load_app_config(args.config, require=args.command == "serve")
    except (SettingsError, ConfigError) as e:
        print(f"bridge: {e}", file=sys.stderr)
        return 2
    configure_logging(app_config.settings.bridge_log_level, app_config.secrets())
    if args.command == "serve":
        from .app import serve

        try:
            serve(app_config)
        except Exception as e:  # a start-up failure is one clear line, not a traceback
            print(f"bridge: cannot start: {type(e).__name__}: {e}", file=sys.stderr)
            return 1
        return 0
    try:
        if args.command == "handovers":
            return asyncio.run(handovers_main(app_config, args))
        if args.command == "forget":
            return asyncio.run(forget_main(app_config, args))
        if args.command == "audit":
            return asyncio.run(audit_main(app_config, args))
        return asyncio.run(_outbox(app_config, args))
    except RedisUnreachable as e:
        print(f"bridge: {e}", file=sys.stderr)
        return 1
    except CLI_FAILURES as e:
        print(f"bridge: {type(e).__name__}: {e}", file=sys.stderr)
        return 1


async def _outbox(app_config: AppConfig, args: argparse.Namespace) -> int:
    async with cli_store(app_config) as store:
        letters = await store.dead_letters(limit=getattr(args, "limit", 100_000))
        if args.action == "list-dead":
            for letter in letters:
                at = datetime.fromtimestamp(letter.at_ms / 1000, UTC).isoformat(timespec="seconds")
                if args.json:
                    print(
                        orjson.dumps(
                            {
                                "id": letter.id,
                                "partition": letter.partition,
                                "lane": letter.lane,
                                "conversation": letter.cid,
                                "kind": letter.kind,
                                "reason": letter.reason,
                                "channel": letter.channel,
                                "at": at,
                            }
                        ).decode()
                    )
                else:
                    print(
                        f"{letter.id}  {at}  {letter.lane:5}  {letter.kind:13}  "
                        f"{letter.reason:20}  {letter.cid}  {letter.channel}"
                    )
            if not args.json:
                print(f"{len(letters)} dead letter(s)", file=sys.stderr)
            return 0
        if not args.all and not args.ids:
            print("bridge: name dead-letter ids to replay, or --all", file=sys.stderr)
            return 2
        chosen = [
            d
            for d in letters
            if (args.all or d.id in args.ids) and (not args.reason or d.reason == args.reason)
        ]
        unknown = set(args.ids) - {d.id for d in letters}
        for missing in sorted(unknown):
            print(f"bridge: no dead letter {missing}", file=sys.stderr)
        replayed = 0
        for letter in chosen:
            if await store.replay(letter, int(time.time() * 1000)):
                replayed += 1
                detail = f"{letter.lane} {letter.kind} (was {letter.reason})"
                privacy = app_config.file.privacy
                await audit(store, privacy, "dead_letter_replayed", actor=CLI, cid=letter.cid, detail=detail)
        print(f"replayed {replayed} dead letter(s)")
        return 1 if unknown else 0
