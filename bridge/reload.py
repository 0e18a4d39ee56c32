"""Hot reload of config.yaml: a good edit takes effect for the next event, a bad one changes nothing.

The holder is the only place the running bridge gets its FileConfig from, so swapping one reference
is the whole reload: an event already being decided keeps the config it started with.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

import structlog

from . import privacy
from .config import ConfigError, FileConfig, parse_config

# (mtime_ns, size, sha256): mtime alone misses two edits within one timestamp tick, and a hash alone
# cannot tell "rewritten with the same bytes" from "untouched" (which does not matter: both are no-ops).
Fingerprint = tuple[int, int, str]


def _read(path: Path) -> tuple[Fingerprint, bytes]:
    stat = path.stat()
    content = path.read_bytes()
    return (stat.st_mtime_ns, stat.st_size, hashlib.sha256(content).hexdigest()), content


class ConfigHolder:
    """Holds the last good config; reload() swaps it only for a config that validates. It also
    activates the config's redaction rules (privacy.redact), which every Slack-bound text goes through."""

    def __init__(self, path: str | os.PathLike[str] | None, initial: FileConfig) -> None:
        self._path = Path(path) if path is not None else None
        self._current = initial
        privacy.activate(initial.privacy.redactor)
        # None until the first read, so a change made between the caller's load and now is not missed.
        self._seen: Fingerprint | None = None
        self._file_ok = True

    @property
    def current(self) -> FileConfig:
        return self._current

    @property
    def path(self) -> Path | None:
        return self._path

    def _fingerprint(self) -> Fingerprint | None:
        if self._path is None:
            return None
        try:
            return _read(self._path)[0]
        except OSError:
            return None

    @property
    def file_ok(self) -> bool:
        """False while the file on disk is rejected (unreadable or invalid) and the last good config
        runs: /readyz reports it as `"config": "file_invalid"`."""
        return self._file_ok

    def reload(self) -> bool:
        """Re-read the file; True when a new config took effect. Never raises for a bad file."""
        if self._path is None:
            return False
        log = structlog.get_logger()  # per call, so late configuration and test capture apply
        try:
            self._seen, content = _read(self._path)
            new = parse_config(content, str(self._path))
        except (OSError, ConfigError) as e:
            if isinstance(e, OSError):
                self._seen = None
            self._file_ok = False
            problems = e.problems if isinstance(e, ConfigError) else []
            log.error(
                "config_rejected",
                path=str(self._path),
                problems=problems,
                error=str(e),
                effect="the last good config keeps running",
            )
            return False
        was_rejected, self._file_ok = not self._file_ok, True
        changed = new != self._current
        if changed:
            self._current = new
            privacy.activate(new.privacy.redactor)
        if changed or was_rejected:  # fixing a rejected file is news even when it returns to the same rules
            log.info(
                "config_reloaded",
                path=str(self._path),
                triggers=len(new.handover.triggers),
                routes=len(new.routes),
                trigger_names=[trigger.name for trigger in new.handover.triggers],
                route_names=[route.name for route in new.routes],
            )
        return changed

    async def watch(self, interval_s: float = 1.0) -> None:
        """Poll for changes forever (until cancelled); returns at once when there is no file to watch.

        Polling rather than inotify: it behaves the same on every OS, in containers and on
        Kubernetes ConfigMaps (whose files change by symlink swap), and costs one small read a second.
        """
        if self._path is None:
            return
        while True:
            try:
                if self._fingerprint() != self._seen:
                    self.reload()
            except Exception:  # a watcher that dies silently would freeze the rules until restart
                structlog.get_logger().exception("config_watch_failed", path=str(self._path))
            await asyncio.sleep(interval_s)
