"""Child processes for the benches and the demo: small Python servers (the bare app, the fake Slack
server), optionally pinned to CPUs, and the clean environment and pinning that the bridge's own
process wrapper (tests/harness/bridge_process.py) uses too.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import aiohttp

from bridge.embedded import die_with_parent, free_port

REPO_ROOT = Path(__file__).resolve().parent.parent
# The bridge reads these from the environment: never inherit the caller's, so a developer's shell
# (a real SLACK_BOT_TOKEN, a REDIS_URL) cannot leak into a bench or a test run.
_OWN_PREFIXES = ("BRIDGE_", "SLACK_", "SMARTLY_", "REDIS_")


def clean_env(extra: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_OWN_PREFIXES)}
    env.update(extra)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH", "")]))
    return env


def child_preexec(cpus: set[int] | None, sig: signal.Signals = signal.SIGTERM) -> Callable[[], None]:
    """In the child before exec: die with the parent (`sig`: no orphan holding a port), pin to `cpus`."""
    with_parent = die_with_parent(sig)

    def preexec() -> None:
        if with_parent is not None:
            with_parent()
        if cpus:
            os.sched_setaffinity(0, cpus)

    return preexec


def spawn(
    args: Sequence[str],
    *,
    env: Mapping[str, str],
    log_dir: Path,
    name: str,
    cpus: set[int] | None = None,
    stdout: int | None = None,
) -> subprocess.Popen[bytes]:
    """Start a child with stdout/stderr in log_dir/<name>.stdout|stderr (or stdout=PIPE)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    out = stdout if stdout is not None else (log_dir / f"{name}.stdout").open("wb")
    err = (log_dir / f"{name}.stderr").open("wb")
    try:
        return subprocess.Popen(
            list(args),
            env=clean_env(env),
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            preexec_fn=child_preexec(cpus),
            start_new_session=True,  # Ctrl-C reaches the parent only, which stops children in order
        )
    finally:
        if stdout is None:
            out.close()  # type: ignore[union-attr]
        err.close()


async def stop(proc: subprocess.Popen[bytes], timeout_s: float = 15) -> int | None:
    """SIGTERM, wait (bounded, without blocking the loop), SIGKILL if it hangs; the exit status."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while proc.poll() is None and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await asyncio.sleep(0.1)
    return proc.poll()


async def wait_http_ok(
    url: str, proc: subprocess.Popen[bytes], timeout_s: float, describe: Callable[[], str]
) -> None:
    """Poll `url` until it answers 200; fail fast (with the child's output) if the child exits."""
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{url}: process exited with {proc.returncode}\n{describe()}")
            with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} not ready within {timeout_s}s\n{describe()}")
            await asyncio.sleep(0.05)


def spawn_fake_slack(log_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """bench/fake_slack_server.py in a process of its own: the process and its base URL. Start-up
    goes on meanwhile; wait_fake_slack() returns once it answers."""
    port = free_port()
    proc = spawn(
        [sys.executable, "-m", "bench.fake_slack_server", "--port", str(port), "--quiet"],
        env={},
        log_dir=log_dir,
        name="fake_slack",
    )
    return proc, f"http://127.0.0.1:{port}"


async def wait_fake_slack(proc: subprocess.Popen[bytes], url: str) -> None:
    await wait_http_ok(f"{url}/bench/stats", proc, 15, lambda: "fake Slack did not start")
