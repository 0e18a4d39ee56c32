"""structlog JSON logs on stdout, one line per event, with every secret in force scrubbed out."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

import orjson
import structlog

from .keys import split_conversation_id

REDACTED = "[redacted]"


class SecretScrubber:
    """Replaces any configured secret found in a log line (defence in depth: the code never logs
    secrets on purpose, but a URL or an exception text might carry one).

    It looks in the finished JSON, not the event's values: one C-speed search per secret whatever the
    line holds (nested values, keys, tracebacks). JSON escapes text character by character, so a
    secret inside any string shows up as the secret's own JSON escaping. Only a line where one shows
    up is decoded, cleaned value by value, and encoded again, so it stays valid JSON."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets: tuple[str, ...] = ()
        self.encoded: tuple[bytes, ...] = ()
        self.update(secrets)

    def update(self, secrets: Iterable[str]) -> None:
        self.secrets = tuple(sorted({s for s in secrets if s}, key=len, reverse=True))
        self.encoded = tuple(orjson.dumps(s)[1:-1] for s in self.secrets)

    def __call__(self, logger: Any, method: str, rendered: bytes | str) -> bytes | str:
        text = rendered.encode() if isinstance(rendered, str) else rendered
        for secret in self.encoded:  # (a loop: any() over a generator costs a third of this call)
            if secret in text:
                break
        else:
            return rendered
        cleaned = orjson.dumps(self._clean(orjson.loads(text)))
        return cleaned.decode() if isinstance(rendered, str) else cleaned

    def _clean(self, value: Any) -> Any:
        if isinstance(value, dict):
            return {self._clean(k): self._clean(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._clean(v) for v in value]
        if isinstance(value, str):
            for secret in self.secrets:
                value = value.replace(secret, REDACTED)
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            text = str(value)  # a numeric secret written as a number
            return REDACTED if any(secret in text for secret in self.secrets) else value
        return value


scrubber = SecretScrubber()


class FastTimeStamper:
    """ISO-8601 UTC with milliseconds, as structlog's TimeStamper(fmt="iso") but at a fraction of the
    cost: the date and time to the second are formatted once per second, the whole stamp once per
    millisecond (at thousands of lines a second, most lines share their millisecond)."""

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""
        self._ms = -1
        self._stamp = ""

    def __call__(self, logger: Any, method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
        ms = int(time.time() * 1000)
        if ms != self._ms:
            second, milli = divmod(ms, 1000)
            if second != self._second:
                self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
                self._second = second
            self._stamp = f"{self._prefix}.{milli:03d}Z"
            self._ms = ms  # after the stamp: a line on another thread never gets a stale one
        event_dict["timestamp"] = self._stamp
        return event_dict


def _orjson_text(obj: Any, **kwargs: Any) -> str:
    return orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS, default=str).decode()


def conversation_fields(logger: Any, method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """Lines that name a conversation by its id (`cid`, as delivery does) also get its skill_id and
    client_id, so an operator finds every line of a conversation by the ids they know."""
    cid = event_dict.get("cid")
    if cid and "client_id" not in event_dict and isinstance(cid, str):
        event_dict["skill_id"], event_dict["client_id"] = split_conversation_id(cid)
    return event_dict


class LoopBatchedLines:
    """A structlog logger writing its lines once per event-loop iteration, in one write() and one
    flush, instead of a system call per line (the webhook path logs a line per event). Outside a
    running loop, or on a non-loop thread, a line is written at once."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self._lines: list[bytes] = []

    def msg(self, message: bytes) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
            self._write(message + b"\n")
            return
        self._lines.append(message)
        if len(self._lines) == 1:
            loop.call_soon(self.flush)

    log = debug = info = warn = warning = error = critical = exception = failure = fatal = msg

    def flush(self) -> None:
        lines, self._lines = self._lines, []
        if lines:
            lines.append(b"")
            self._write(b"\n".join(lines))

    def _write(self, data: bytes) -> None:
        with contextlib.suppress(ValueError, OSError):  # closed or broken stdout: logs are not worth a crash
            self._stream.write(data)
            self._stream.flush()


_output: LoopBatchedLines | None = None
_timestamper = FastTimeStamper()
# The chain's renderer when it writes bytes to our batch (info_line renders with it too).
_renderer = structlog.processors.JSONRenderer(serializer=orjson.dumps, option=orjson.OPT_NON_STR_KEYS)
_info_enabled = True


def _shared_output(binary: Any) -> Callable[..., LoopBatchedLines]:
    """Every structlog logger writes through ONE batch, so their lines keep their order (stdlib
    logging lines, from aiohttp or redis, are written at once and may come before a turn's batch)."""
    global _output
    if _output is not None:
        _output.flush()
    else:
        atexit.register(lambda: _output.flush() if _output else None)
    _output = LoopBatchedLines(binary)
    output = _output
    return lambda *args: output


def _fast_output(stream: Any) -> tuple[structlog.processors.JSONRenderer, Any]:
    """orjson straight to the binary stdout when there is one (a third of the cost of json + print)."""
    binary = getattr(stream, "buffer", None)
    if binary is not None:
        return _renderer, _shared_output(binary)
    return structlog.processors.JSONRenderer(_orjson_text), structlog.PrintLoggerFactory(stream)


def info_line(event: str, fields: dict[str, Any]) -> None:
    """One info line (no exc_info), exactly as the structlog chain below renders it: the same
    processors in the same order, the same renderer and scrubber, at about half the cost. The
    webhook path writes one per event. Where the chain does not write through our batch (a text
    stream, before configure_logging), the line goes through structlog itself."""
    if not _info_enabled:
        return
    output = _output
    if output is None:
        structlog.get_logger("bridge").info(event, **fields)
        return
    line = _timestamper(None, "info", {**fields, "event": event, "level": "info"})
    rendered = scrubber(None, "info", _renderer(None, "info", conversation_fields(None, "info", line)))
    output.msg(rendered if isinstance(rendered, bytes) else rendered.encode())


def configure_logging(level: str = "info", secrets: Iterable[str] = (), stream: Any = None) -> None:
    """Configure structlog and route stdlib logging (aiohttp, slack_sdk, redis) through it."""
    global _info_enabled, _output
    scrubber.update(secrets)
    numeric = logging.getLevelName(level.upper()) if isinstance(level, str) else level
    if not isinstance(numeric, int):
        numeric = logging.INFO
    _info_enabled = numeric <= logging.INFO
    shared: list[Any] = [structlog.processors.add_log_level, _timestamper, conversation_fields]
    if getattr(stream or sys.stdout, "buffer", None) is None and _output is not None:
        _output.flush()
        _output = None  # info_line must not write to a stream the chain no longer uses
    fast_renderer, logger_factory = _fast_output(stream or sys.stdout)
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, fast_renderer, scrubber],  # type: ignore[list-item]  # (as below)
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
                structlog.processors.JSONRenderer(_orjson_text),
                scrubber,  # type: ignore[list-item]  # a last processor sees the rendered line
            ],
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(max(numeric, logging.WARNING))
    # aiohttp's access log prints the query string, which carries the webhook key: never enable it.
    logging.getLogger("aiohttp.access").disabled = True
