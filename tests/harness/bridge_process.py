"""The real bridge as a child process (`python -m bridge serve`), for the tests that signal, kill and
restart it, and for the benches and the demo.

Everything an operator would set is passed the operator's way: environment variables and a config.yaml
(BRIDGE_CONFIG) written to a temp dir; nothing of the caller's own bridge settings (BRIDGE_*, SLACK_*,
SMARTLY_*, REDIS_*) is inherited. stdout and stderr go to files so a test can assert on the JSON log
lines. The child is a plain subprocess.Popen waited on by polling (never blocking the event loop),
asked by Linux to die with its parent, optionally pinned to CPUs, and always reaped by `close()` (the
fixtures call it) or `stop()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bench.process import child_preexec, clean_env
from bridge.embedded import free_port

__all__ = ["BridgeFleet", "BridgeProcess", "BridgeProcessError"]

CLI_TIMEOUT_S = 60


class BridgeProcessError(RuntimeError):
    """The bridge did not start, did not stop in time, or answered nonsense (message has the log tail)."""


class BridgeProcess:
    """One `bridge serve` child on 127.0.0.1:`port`; start/stop it as often as a test needs.

    `config` is the config.yaml content (a dict, written as JSON, which YAML reads; or YAML text);
    `env` overrides or adds environment variables on top of the required ones. Without `redis_url`
    the bridge runs its own embedded valkey-server. `cpus` pins it.
    """

    def __init__(
        self,
        work_dir: Path,
        *,
        redis_url: str | None,
        slack_url: str,
        webhook_key: str,
        slack_token: str,
        channel: str,
        config: dict[str, Any] | str | None = None,
        env: dict[str, str] | None = None,
        name: str = "bridge",
        cpus: set[int] | None = None,
    ) -> None:
        self.name = name
        self.work_dir = Path(work_dir)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.webhook_key = webhook_key
        self.cpus = cpus
        self.config_path = self.work_dir / f"{name}-config.yaml"
        if isinstance(config, str):
            self.config_path.write_text(config)
        else:
            self.config_path.write_bytes(orjson.dumps(config or {}, option=orjson.OPT_INDENT_2))
        self.stdout_path = self.work_dir / f"{name}.stdout.log"
        self.stderr_path = self.work_dir / f"{name}.stderr.log"
        self.env = clean_env({
            **({"REDIS_URL": redis_url} if redis_url else {}),
            "SLACK_API_URL": slack_url,
            "SMARTLY_WEBHOOK_KEY": webhook_key,
            "SLACK_BOT_TOKEN": slack_token,
            "SLACK_CHANNEL": channel,
            "BRIDGE_HOST": "127.0.0.1",
            "BRIDGE_PORT": str(self.port),
            "BRIDGE_CONFIG": str(self.config_path),
            "BRIDGE_DATA_DIR": str(self.work_dir / f"{name}-data"),
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        })  # fmt: skip
        self._proc: subprocess.Popen[bytes] | None = None
        self._session: aiohttp.ClientSession | None = None
        self.starts = 0

    # -- lifecycle -------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Launch (again, same port and files; logs are appended, so restarts keep earlier lines)."""
        if self.running:
            raise BridgeProcessError(f"{self.name} already running (pid {self.pid})")
        with self.stdout_path.open("ab") as out, self.stderr_path.open("ab") as err:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "bridge", "serve"],
                cwd=self.work_dir,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                preexec_fn=child_preexec(self.cpus, signal.SIGKILL),  # no orphan keeps a port or a lease
                start_new_session=True,  # Ctrl-C reaches the parent only, which stops children in order
            )
        self.starts += 1

    async def wait_ready(self, timeout_s: float = 20.0) -> None:
        """Poll GET /readyz until 200 (Redis reachable, app up); fail fast if the child exits."""
        deadline = time.monotonic() + timeout_s
        session = self._client()
        while True:
            if self._proc is None or self._proc.poll() is not None:
                code = self._proc.returncode if self._proc else None
                raise BridgeProcessError(f"{self.name} exited with {code} before ready\n{self.log_tail()}")
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with session.get(f"{self.url}/readyz", timeout=aiohttp.ClientTimeout(total=1)) as r:
                    if r.status == 200:
                        return
            if time.monotonic() >= deadline:
                raise BridgeProcessError(f"{self.name} not ready within {timeout_s}s\n{self.log_tail()}")
            await asyncio.sleep(0.05)

    async def started(self, timeout_s: float = 20.0) -> BridgeProcess:
        self.start()
        await self.wait_ready(timeout_s)
        return self

    async def wait_exit(self, timeout_s: float) -> int | None:
        """The exit code once the child has exited and been reaped, None if still running at timeout."""
        proc = self._proc
        if proc is None:
            return None
        deadline = time.monotonic() + timeout_s
        while proc.poll() is None:
            if time.monotonic() >= deadline:
                return None
            await asyncio.sleep(0.02)
        return proc.returncode

    async def terminate(self, timeout_s: float = 15.0) -> int:
        """SIGTERM, then wait (bounded) for the graceful exit and return its code.

        Raises when the child has not exited in time (after SIGKILLing it, so nothing is left behind).
        """
        proc = self._proc
        if proc is None:
            raise BridgeProcessError(f"{self.name} was never started")
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        code = await self.wait_exit(timeout_s)
        if code is None:
            self.kill()
            await self.wait_exit(5)
            raise BridgeProcessError(f"{self.name} ignored SIGTERM for {timeout_s}s\n{self.log_tail()}")
        return code

    def kill(self) -> None:
        """SIGKILL now: a crash, no cleanup of any kind in the bridge."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()

    async def killed(self) -> int | None:
        """SIGKILL and reap; the (negative) exit code."""
        self.kill()
        return await self.wait_exit(5)

    async def stop(self, timeout_s: float = 15.0) -> int | None:
        """Graceful and never raising, for the benches: SIGTERM (deliveries finish or are handed
        back), SIGKILL if it hangs, then close(). The exit code, None if it had to be killed."""
        code = None
        if self.running:
            with contextlib.suppress(BridgeProcessError):
                code = await self.terminate(timeout_s)
        await self.close()
        return code

    async def close(self) -> None:
        """Guaranteed cleanup: kill whatever still runs, reap it, close the HTTP client."""
        self.kill()
        if self._proc is not None:
            await self.wait_exit(5)
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- talking to it ---------------------------------------------------------------------------

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15))
        return self._session

    async def hook(self, body: dict[str, Any] | bytes) -> tuple[int, dict[str, Any]]:
        """POST a Smartly webhook; (0, {"error": ...}) when the bridge cannot be reached at all."""
        data = body if isinstance(body, bytes) else orjson.dumps(body)
        try:
            async with self._client().post(
                f"{self.url}/smartly/hooks",
                params={"key": self.webhook_key},
                data=data,
                headers={"Content-Type": "application/json"},
            ) as response:
                raw = await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as e:
            return 0, {"error": type(e).__name__}
        try:
            parsed = orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError:
            parsed = {"raw": raw.decode(errors="replace")}
        return status, parsed

    async def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run `python -m bridge <args>` with this bridge's environment (REDIS_URL, BRIDGE_CONFIG), as an
        operator would next to it; bounded in time."""
        return await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "bridge", *args],
            cwd=self.work_dir,
            env=self.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT_S,
        )

    async def metrics(self) -> str:
        async with self._client().get(f"{self.url}/metrics") as response:
            return await response.text()

    async def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples of `name` whose labels include `labels` (0 when absent)."""
        total = 0.0
        for line in (await self.metrics()).splitlines():
            if not line.startswith(name + "{") and not line.startswith(name + " "):
                continue
            head, _, value = line.rpartition(" ")
            if all(f'{k}="{v}"' in head for k, v in labels.items()):
                total += float(value)
        return total

    # -- what it said ----------------------------------------------------------------------------

    def log_events(self, event: str | None = None) -> list[dict[str, Any]]:
        """The JSON log lines written to stdout so far (all starts), optionally one `event` only."""
        events = []
        if not self.stdout_path.exists():
            return events
        for line in self.stdout_path.read_bytes().splitlines():
            try:
                parsed = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if isinstance(parsed, dict) and (event is None or parsed.get("event") == event):
                events.append(parsed)
        return events

    def rss_bytes(self) -> int:
        """Resident set size of the running bridge, from /proc."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def stderr_text(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def log_tail(self, lines: int = 40) -> str:
        parts = []
        for path in (self.stdout_path, self.stderr_path):
            if path.exists():
                text = path.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"--- {path.name}\n" + "\n".join(text))
        return "\n".join(parts) or "(no output)"

    def __repr__(self) -> str:
        return f"BridgeProcess({self.name!r}, port={self.port}, pid={self.pid})"


class BridgeFleet:
    """Starts bridge processes that share one fake Slack and (by default) one Redis; `close()` reaps all."""

    def __init__(
        self,
        work_dir: Path,
        *,
        redis_url: str,
        slack_url: str,
        webhook_key: str,
        slack_token: str,
        channel: str,
    ) -> None:
        self.work_dir = work_dir
        self.defaults: dict[str, str] = {
            "redis_url": redis_url,
            "slack_url": slack_url,
            "webhook_key": webhook_key,
            "slack_token": slack_token,
            "channel": channel,
        }
        self.processes: list[BridgeProcess] = []

    async def start(
        self,
        name: str = "bridge",
        *,
        config: dict[str, Any] | None = None,
        redis_url: str | None = None,
        channel: str | None = None,
    ) -> BridgeProcess:
        """A new bridge process, started and ready (`channel`: its SLACK_CHANNEL, if not the fleet's)."""
        settings = {**self.defaults, "redis_url": redis_url or self.defaults["redis_url"]}
        if channel:
            settings["channel"] = channel
        proc = BridgeProcess(self.work_dir, config=config, name=name, **settings)
        self.processes.append(proc)
        return await proc.started()

    async def close(self) -> None:
        for proc in self.processes:
            await proc.close()
