"""ConfigHolder: good edits take effect, bad ones are logged and leave the last good config in force."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from bridge.config import FileConfig, load_config
from bridge.reload import ConfigHolder

GOOD_A = "slack:\n  default_channel: C0AAAAA\nhistory:\n  ttl: 1h\n"
GOOD_B = "slack:\n  default_channel: C0BBBBB\nhistory:\n  ttl: 2h\n"
BAD = "slack:\n  default_channel: C0BBBBB\nhistory:\n  ttl: soon\n  max_entires: 3\n"


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(GOOD_A)
    return path


@pytest.fixture
def holder(config_file: Path) -> ConfigHolder:
    return ConfigHolder(str(config_file), load_config(config_file))


def errors(logs: list[dict]) -> list[dict]:
    return [entry for entry in logs if entry["log_level"] == "error"]


def test_starts_with_the_initial_config(holder: ConfigHolder) -> None:
    assert holder.current.slack.default_channel == ("C0AAAAA",)


def test_good_rewrite_takes_effect(holder: ConfigHolder, config_file: Path) -> None:
    config_file.write_text(GOOD_B)
    with capture_logs() as logs:
        assert holder.reload() is True
    assert holder.current.slack.default_channel == ("C0BBBBB",)
    assert holder.current.history.ttl_s == 7200.0
    [entry] = logs
    assert (entry["event"], entry["log_level"]) == ("config_reloaded", "info")
    assert (entry["triggers"], entry["routes"]) == (2, 0)


def test_unchanged_file_is_not_a_new_config(holder: ConfigHolder) -> None:
    before = holder.current
    assert holder.reload() is False
    assert holder.current is before


def test_bad_rewrite_is_logged_and_the_last_good_config_kept(holder: ConfigHolder, config_file: Path) -> None:
    before = holder.current
    config_file.write_text(BAD)
    with capture_logs() as logs:
        assert holder.reload() is False
    assert holder.current is before
    [entry] = errors(logs)
    assert entry["event"] == "config_rejected"
    assert not holder.file_ok
    assert entry["path"] == str(config_file)
    assert len(entry["problems"]) == 2
    assert entry["problems"][0].startswith(f"{config_file}:4:8: history.ttl: bad duration 'soon'")
    assert entry["problems"][1].startswith(f"{config_file}:5:3: history.max_entires: unknown key")
    assert entry["error"].splitlines()[1:] == entry["problems"]

    config_file.write_text(GOOD_B)  # fixed: the next reload applies it
    with capture_logs() as logs:
        assert holder.reload() is True
    assert holder.current.slack.default_channel == ("C0BBBBB",)
    assert holder.file_ok
    assert [entry["event"] for entry in logs] == ["config_reloaded"]


def test_fixing_a_rejected_file_back_to_the_running_rules_is_logged(
    holder: ConfigHolder, config_file: Path
) -> None:
    """The owner reverts a bad edit: nothing changes, but they must see the file is good again."""
    config_file.write_text(BAD)
    assert holder.reload() is False
    config_file.write_text(GOOD_A)
    with capture_logs() as logs:
        assert holder.reload() is False  # the same rules as before: no new config
    assert holder.file_ok
    [entry] = logs
    assert (entry["event"], entry["triggers"], entry["routes"]) == ("config_reloaded", 2, 0)
    with capture_logs() as logs:
        assert holder.reload() is False
    assert logs == []  # once: not on every poll


def test_route_opting_out_of_business_hours_is_a_change(holder: ConfigHolder, config_file: Path) -> None:
    """`business_hours: always` must not compare equal to "inherit", or the edit would be ignored."""
    hours = "business_hours: {timezone: UTC, weekly: {mon: closed}}\n"
    config_file.write_text(hours + "routes:\n  - name: night\n")
    assert holder.reload() is True
    config_file.write_text(hours + "routes:\n  - name: night\n    business_hours: always\n")
    assert holder.reload() is True
    night = holder.current.routes[0]
    assert night.hours(holder.current.business_hours) != holder.current.business_hours


def test_deleted_file_keeps_the_last_good_config(holder: ConfigHolder, config_file: Path) -> None:
    before = holder.current
    config_file.unlink()
    with capture_logs() as logs:
        assert holder.reload() is False
    assert holder.current is before
    assert [entry["event"] for entry in errors(logs)] == ["config_rejected"]
    assert not holder.file_ok


def test_secrets_are_not_logged(holder: ConfigHolder, config_file: Path) -> None:
    token = "xoxb-99999-secretsecret"
    config_file.write_text(f"slack:\n  default_channel: {token}\n")
    with capture_logs() as logs:
        assert holder.reload() is False
    assert token not in repr(logs)
    assert "SLACK_BOT_TOKEN" in errors(logs)[0]["problems"][0]


def test_no_path_means_nothing_to_reload() -> None:
    holder = ConfigHolder(None, FileConfig())
    assert holder.reload() is False
    assert holder.current == FileConfig()


async def wait_for(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.01)


async def test_watch_applies_good_edits_and_rejects_bad_ones(holder: ConfigHolder, config_file: Path) -> None:
    with capture_logs() as logs:
        task = asyncio.create_task(holder.watch(interval_s=0.01))
        try:
            config_file.write_text(GOOD_B)
            await wait_for(lambda: holder.current.slack.default_channel == ("C0BBBBB",))

            config_file.write_text(BAD)
            await wait_for(lambda: len(errors(logs)) == 1)
            await asyncio.sleep(0.1)  # many polls later: still one error, still the last good config
            assert len(errors(logs)) == 1
            assert holder.current.slack.default_channel == ("C0BBBBB",)

            config_file.write_text(GOOD_A)
            await wait_for(lambda: holder.current.slack.default_channel == ("C0AAAAA",))
        finally:
            task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_watch_sees_a_same_size_edit_with_the_same_mtime(
    holder: ConfigHolder, config_file: Path
) -> None:
    stat = config_file.stat()
    replaced = GOOD_A.replace("C0AAAAA", "C0ZZZZZ")
    assert len(replaced) == len(GOOD_A)
    task = asyncio.create_task(holder.watch(interval_s=0.01))
    try:
        await asyncio.sleep(0.05)
        config_file.write_text(replaced)
        os.utime(config_file, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        await wait_for(lambda: holder.current.slack.default_channel == ("C0ZZZZZ",))
    finally:
        task.cancel()


async def test_watch_survives_the_file_disappearing(holder: ConfigHolder, config_file: Path) -> None:
    task = asyncio.create_task(holder.watch(interval_s=0.01))
    try:
        config_file.unlink()
        await asyncio.sleep(0.05)
        assert holder.current.slack.default_channel == ("C0AAAAA",)
        config_file.write_text(GOOD_B)
        await wait_for(lambda: holder.current.slack.default_channel == ("C0BBBBB",))
        assert not task.done()
    finally:
        task.cancel()


async def test_watch_without_a_path_returns() -> None:
    await asyncio.wait_for(ConfigHolder(None, FileConfig()).watch(interval_s=0.01), timeout=1)
