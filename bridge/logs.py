"""structlog JSON logs on stdout, one line per event, with every secret in force scrubbed out."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from typing import Any

import orjson
import structlog

from .store import split_conversation_id

REDACTED = "[redacted]"


class SecretScrubber:
    """Replaces any configured secret found in a log line's values (defence in depth: the code never
    logs secrets on purpose, but a URL or an exception text might carry one)."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets: tuple[str, ...] = ()
        self.update(secrets)

    def update(self, secrets: Iterable[str]) -> None:
        self.secrets = tuple(sorted({s for s in secrets if s}, key=len, reverse=True))

    def _clean(self, value: Any) -> Any:
        if isinstance(value, str):
            for secret in self.secrets:
                if secret in value:
                    value = value.replace(secret, REDACTED)
            return value
        if isinstance(value, dict):
            return {k: self._clean(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._clean(v) for v in value]
        return value

    def _clean_already(self, event_dict: dict[str, Any]) -> bool:
        """The common case, cheaply: flat text values, none holding a secret (one scan per secret)."""
        texts = []
        for value in event_dict.values():
            if isinstance(value, str):
                texts.append(value)
            elif isinstance(value, dict | list | tuple):
                return False
        joined = "\0".join(texts)
        return not any(secret in joined for secret in self.secrets)

    def __call__(self, logger: Any, method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
        if not self.secrets or self._clean_already(event_dict):
            return event_dict
        return {k: self._clean(v) for k, v in event_dict.items()}


scrubber = SecretScrubber()


def conversation_fields(logger: Any, method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """Lines that name a conversation by its id (`cid`, as delivery does) also get its skill_id and
    client_id, so an operator finds every line of a conversation by the ids they know."""
    cid = event_dict.get("cid")
    if cid and "client_id" not in event_dict and isinstance(cid, str):
        event_dict["skill_id"], event_dict["client_id"] = split_conversation_id(cid)
    return event_dict


def _fast_output(stream: Any) -> tuple[structlog.processors.JSONRenderer, Any]:
    """orjson straight to the binary stdout when there is one (a third of the cost of json + print)."""
    binary = getattr(stream, "buffer", None)
    if binary is not None:
        return (
            structlog.processors.JSONRenderer(serializer=orjson.dumps, option=orjson.OPT_NON_STR_KEYS),
            structlog.BytesLoggerFactory(binary),
        )
    return structlog.processors.JSONRenderer(), structlog.PrintLoggerFactory(stream)


def configure_logging(level: str = "info", secrets: Iterable[str] = (), stream: Any = None) -> None:
    """Configure structlog and route stdlib logging (aiohttp, slack_sdk, redis) through it."""
    scrubber.update(secrets)
    numeric = logging.getLevelName(level.upper()) if isinstance(level, str) else level
    if not isinstance(numeric, int):
        numeric = logging.INFO
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        conversation_fields,
    ]
    renderer = structlog.processors.JSONRenderer()
    fast_renderer, logger_factory = _fast_output(stream or sys.stdout)
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.format_exc_info,
            scrubber,
            fast_renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=logger_factory,
        # One log line per webhook is on the hot path: resolve each module's logger once (structlog's
        # performance recipe). Code that must see a later reconfiguration calls get_logger() per use.
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                scrubber,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(max(numeric, logging.WARNING))
    # aiohttp's access log prints the query string, which carries the webhook key: never enable it.
    logging.getLogger("aiohttp.access").disabled = True
