"""The only place that touches redis-py's private names, for the autopipelining client (autopipeline.py).

redis-py does not promise to keep them: pyproject.toml pins redis and hiredis to the minor versions
autopipeline.py was checked against, and importing this module checks both the versions and every name
it hands out, failing with one clear message instead of an AttributeError under load. With
`redis.autopipeline: false` nothing imports it: the bridge runs on plain redis-py.
"""

from __future__ import annotations

import asyncio
from typing import Any

import hiredis
import redis

# The minor versions autopipeline.py was read against and tested with (keep pyproject.toml in step).
CHECKED_VERSIONS = {"redis": "8.1", "hiredis": "3.5"}
_FIX = "pin the checked versions (pip install -e .) or set redis.autopipeline: false in config.yaml"


class RedisInternalsChanged(ImportError):
    """The installed redis-py is not the one autopipeline.py was written against."""


def _minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def _check_versions() -> None:
    for module, checked in (("redis", CHECKED_VERSIONS["redis"]), ("hiredis", CHECKED_VERSIONS["hiredis"])):
        installed = getattr(redis if module == "redis" else hiredis, "__version__", "?")
        if _minor(installed) != checked:
            raise RedisInternalsChanged(
                f"the Redis autopipelining client was checked against {module} {checked}.x, "
                f"{module} {installed} is installed: {_FIX}"
            )


_check_versions()
try:
    from redis._parsers.hiredis import NOT_ENOUGH_DATA, _AsyncHiredisParser
    from redis.asyncio.connection import Connection
    from redis.client import EMPTY_RESPONSE, NEVER_DECODE
except ImportError as e:
    raise RedisInternalsChanged(f"redis-py's internals moved ({e}): {_FIX}") from e


def _check_names() -> None:
    """The instance attributes exist on an unconnected connection and parser (no I/O)."""
    connection = Connection()
    parser = _AsyncHiredisParser(socket_read_size=65536)
    wanted = [
        (connection, ("_writer", "_parser", "encoder", "pack_commands", "read_response")),
        (parser, ("_reader", "_hiredis_PushNotificationType", "read_from_socket", "handle_push_response")),
    ]
    for owner, names in wanted:
        missing = [name for name in names if not hasattr(owner, name)]
        if missing:
            raise RedisInternalsChanged(f"redis-py's {type(owner).__name__} lacks {missing}: {_FIX}")


_check_names()

__all__ = ["EMPTY_RESPONSE", "NEVER_DECODE", "NOT_ENOUGH_DATA", "HiredisParser", "hiredis_parser", "writer"]

HiredisParser = _AsyncHiredisParser


def writer(connection: Connection) -> asyncio.StreamWriter | None:
    """The connection's stream writer (None until connected or once closed)."""
    return connection._writer


def hiredis_parser(connection: Connection) -> tuple[Any, hiredis.Reader, Any] | None:
    """(parser, its hiredis Reader, the RESP3 push type or None) when the connection parses with
    hiredis, so replies can be read straight from the Reader's buffer; None otherwise."""
    parser = connection._parser
    if not isinstance(parser, _AsyncHiredisParser) or parser._reader is None:
        return None
    return parser, parser._reader, parser._hiredis_PushNotificationType
