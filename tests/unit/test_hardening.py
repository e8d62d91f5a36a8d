"""Local bounds and hygiene (issue 12): clocks, config files, log caps, tokens on stdin."""

from __future__ import annotations

import io
import logging
import os
import stat
import sys
from pathlib import Path

import pytest

from workerlib.cli import main
from workerlib.config import MAX_CONFIG_BYTES, ConfigStore
from workerlib.errors import ConfigError
from workerlib.instance import InstanceLock
from workerlib.logs import MAX_ENTRY_CHARS, Redactor, ShipQueue, make_file_handler
from workerlib.runtime.state import UpdateInfo, WorkerState
from workerlib.sanitize import remember_secrets
from workerlib.wire import LogEntry


# -- 13. intervals use a monotonic clock --------------------------------------------------
class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_wall_clock_step_back_does_not_stretch_the_cooldown() -> None:
    mono, wall = Clock(1000.0), Clock(1_800_000_000.0)
    state = WorkerState(lambda _e: None, clock=mono, wall=wall)
    state.start_cooldown(180)
    wall.now -= 3 * 3600  # the clock is stepped back three hours
    mono.now += 100
    assert state.cooling_down()
    assert state.cooldown_until is not None and state.cooldown_until == pytest.approx(wall.now + 80)
    mono.now += 81
    assert not state.cooling_down()
    state.start_cooldown(180)
    wall.now += 6 * 3600  # and forward: still cooling down
    assert state.cooling_down()


def test_staleness_ignores_wall_clock_steps() -> None:
    mono, wall = Clock(50.0), Clock(1_800_000_000.0)
    state = WorkerState(lambda _e: None, clock=mono, wall=wall)
    state.heartbeat_ok()
    state.heartbeat_failed("boom")
    wall.now += 3600
    assert state.connection(registered=True, heartbeat_interval=5).value == "connected"
    mono.now += 16
    assert state.connection(registered=True, heartbeat_interval=5).value == "disconnected"


# -- 6, 8, 10. the state model makes every string safe ---------------------------------------
def test_snapshot_strings_are_redacted_escaped_and_truncated() -> None:
    remember_secrets(["tok-SECRET-123456"])
    state = WorkerState(lambda _e: None)
    state.heartbeat_failed("502 — Authorization: Bearer tok-SECRET-123456 \x1b[2J" + "x" * 10**6)
    state.job_started("job-1", "image", "m", "prompt \x1b]0;title\x07")
    assert state.current_job is not None and state.current_job_id == "job-1"
    assert "\x1b" not in state.current_job.prompt_preview
    assert state.last_heartbeat is not None
    error = state.last_heartbeat.error or ""
    assert "tok-SECRET-123456" not in error and "[redacted]" in error
    assert "\x1b" not in error and "\\x1b[2J" in error
    assert len(error) < 3000 and error.endswith("characters in all)")
    token_in_url = UpdateInfo(checked_at=0, current="1", error="http://u:tok-SECRET-123456@h/x")
    assert "tok-SECRET-123456" not in token_in_url.model_dump_json()


# -- 10. log entries and the ship queue are capped in size ---------------------------------------
def test_a_flood_of_huge_log_values_stays_bounded() -> None:
    queue = ShipQueue(capacity=5000, max_bytes=2 * 1024 * 1024)
    redactor = Redactor()
    logger = logging.getLogger("workerlib.flood-test")
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep()
    handler.addFilter(redactor)
    logger.addHandler(handler)
    logger.propagate = False
    try:
        huge = "j" * 1_000_000
        for _ in range(400):
            logger.error("job %s from the studio is unusable: %s", huge, "\x1b[2J" + huge)
    finally:
        logger.removeHandler(handler)
    for record in records:
        message = record.getMessage()
        assert len(message) <= MAX_ENTRY_CHARS + 100 and "\x1b" not in message
        queue.put(LogEntry(ts="2026-01-01T00:00:00.000Z", level="error", category="claim",
                           message=message))
    assert queue.bytes <= 2 * 1024 * 1024
    batch = queue.take(500)
    assert sum(len(e.message) for e in batch) <= 1024 * 1024 + MAX_ENTRY_CHARS
    assert queue.dropped == 0 or batch[0].message.endswith("(queue full)")


# -- 12. config size ---------------------------------------------------------------------------
def test_a_10_mb_config_is_refused_unread(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("# padding\n" * (1024 * 1024))
    assert config.stat().st_size >= 10 * 1024 * 1024 > MAX_CONFIG_BYTES
    with pytest.raises(ConfigError, match="larger than 1 MiB"):
        ConfigStore(config).load()


def test_status_on_a_10_mb_config_is_one_line(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "config.toml"
    config.write_text("# padding\n" * (1024 * 1024))
    assert main(["--config", str(config), "status"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "larger than 1 MiB" in err


def test_a_huge_comfyui_workflow_is_refused(tmp_path: Path) -> None:
    from workerlib.engines import EngineConfigError
    from workerlib.engines.comfyui import MAX_WORKFLOW_BYTES, load_workflow

    workflow = tmp_path / "wf.json"
    workflow.write_bytes(b" " * (MAX_WORKFLOW_BYTES + 1))
    with pytest.raises(EngineConfigError, match="larger than"):
        load_workflow(str(workflow))


# -- 15. the config file's hygiene ---------------------------------------------------------------
def test_a_symlinked_config_stays_a_symlink(tmp_path: Path) -> None:
    real = tmp_path / "dotfiles" / "studio.toml"
    real.parent.mkdir()
    real.write_text('engine = "synthetic"\n')
    link = tmp_path / "config.toml"
    link.symlink_to(real)
    ConfigStore(link).update({"vram_threshold_gb": 6.0})
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert ConfigStore(real).load().vram_threshold_gb == 6.0


def test_leftover_temp_files_are_cleaned(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    store = ConfigStore(config)
    store.load_or_create()
    leftovers = [tmp_path / f".config.toml.{n}.tmp" for n in ("abc123", "zz9")]
    for leftover in leftovers:
        leftover.write_text("half a config")
    other = tmp_path / ".other.toml.x.tmp"
    other.write_text("not ours")
    store.update({"auto_enabled": False})
    assert not any(p.exists() for p in leftovers) and other.exists()


def test_duplicate_toml_keys_are_refused(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('vram_threshold_gb = 4\nvram_threshold_gb = 40\n')
    with pytest.raises(ConfigError, match="already exists"):
        ConfigStore(config).load()


def test_log_file_and_instance_note_are_owner_only(tmp_path: Path) -> None:
    log_file = tmp_path / "logs" / "studio-worker.log"
    log_file.parent.mkdir()
    log_file.write_text("old line\n")
    log_file.chmod(0o644)
    handler = make_file_handler(log_file)
    handler.emit(logging.LogRecord("workerlib.x", logging.INFO, "", 0, "hello", None, None))
    handler.close()
    assert stat.S_IMODE(log_file.stat().st_mode) == 0o600
    lock = InstanceLock(tmp_path / "state", "run")
    assert lock.acquire()
    try:
        assert stat.S_IMODE(lock.info_file.stat().st_mode) == 0o600
    finally:
        lock.release()


def test_register_reads_the_bootstrap_token_from_stdin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import workerlib.cli as cli

    monkeypatch.setattr(sys, "stdin", io.StringIO("boot-from-stdin-123\n"))
    paths = cli.resolve_paths(str(tmp_path / "c.toml"))
    assert cli.bootstrap_token_from("-", paths) == "boot-from-stdin-123"
    assert cli.bootstrap_token_from("given", paths) == "given"
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))  # not a terminal: no prompt
    assert cli.bootstrap_token_from(None, paths) is None
