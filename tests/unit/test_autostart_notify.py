import plistlib
import shlex
import sys
from pathlib import Path

import pytest

from workerlib.autostart import (
    MacLaunchAgent,
    WindowsRunKey,
    XdgAutostart,
    autostart_command,
    backend_for,
    sync_autostart,
)
from workerlib.config import Config
from workerlib.notify import NewJobs, notice_for
from workerlib.runtime.state import FinishedJob


def test_xdg_entry_round_trip(tmp_path: Path) -> None:
    backend = XdgAutostart(tmp_path)
    config_file = tmp_path / "my config.toml"
    assert sync_autostart(True, config_file, backend) == "added"
    text = backend.path.read_text()
    assert backend.path == tmp_path / "autostart" / "studio-worker.desktop"
    exec_line = next(line for line in text.splitlines() if line.startswith("Exec="))
    argv = shlex.split(exec_line[len("Exec="):])
    assert argv[0] == sys.executable
    assert argv[-2:] == ["ui", "--autostart"]
    assert argv[argv.index("--config") + 1] == str(config_file)
    assert sync_autostart(True, config_file, backend) == "unchanged"
    # Kept current: a moved config (or executable) rewrites the entry.
    assert sync_autostart(True, tmp_path / "moved.toml", backend) == "updated"
    assert sync_autostart(False, None, backend) == "removed"
    assert not backend.path.exists()
    assert sync_autostart(False, None, backend) == "unchanged"


def test_mac_plist_and_windows_entry_as_data(tmp_path: Path) -> None:
    command = autostart_command(Path("/Users/me/c.toml"))
    plist = plistlib.loads(MacLaunchAgent(tmp_path).render(command).encode())
    assert plist["Label"] == "gg.minis.studio-worker-ui"
    assert plist["ProgramArguments"] == command and plist["RunAtLoad"] is True
    mac = MacLaunchAgent(tmp_path)
    assert mac.path == tmp_path / "Library/LaunchAgents/gg.minis.studio-worker-ui.plist"
    assert sync_autostart(True, None, mac) == "added" and mac.read() is not None
    win = WindowsRunKey()
    line = win.render([r"C:\Program Files\Studio Worker\StudioWorker.exe", "ui", "--autostart"])
    assert line == r'"C:\Program Files\Studio Worker\StudioWorker.exe" ui --autostart'
    assert win.location.endswith(r"CurrentVersion\Run\StudioWorker")


@pytest.mark.parametrize(("platform", "name"),
                         [("linux", "xdg"), ("darwin", "launchd"), ("win32", "windows-run")])
def test_backend_factory(platform: str, name: str) -> None:
    backend = backend_for(platform)
    assert backend is not None and backend.name == name
    assert backend_for("sunos5") is None


def test_unwritable_location_warns_and_carries_on(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert sync_autostart(True, None, XdgAutostart(blocker)) == "failed"


def _job(job_id: str, outcome: str, at: float, reason: str | None = None) -> FinishedJob:
    return FinishedJob(job_id=job_id, kind="image", model="sdxl", prompt_preview="p",
                       outcome=outcome, reason=reason, duration_secs=1, finished_at=at)  # type: ignore[arg-type]


@pytest.mark.parametrize(("on_done", "on_fail"), [(False, False), (True, False), (False, True),
                                                  (True, True)])
def test_notification_gate(on_done: bool, on_fail: bool) -> None:
    config = Config(notify_on_completion=on_done, notify_on_failure=on_fail)
    done = notice_for(_job("a", "completed", 1), config)
    failed = notice_for(_job("b", "failed", 2, "CUDA out of memory"), config)
    assert (done is not None) == on_done and (failed is not None) == on_fail
    if done:
        assert done.title == "Job completed" and done.body == "image · sdxl"
    if failed:
        assert failed.title == "Job failed" and "CUDA out of memory" in failed.body


def test_new_jobs_by_identity_even_when_the_ring_is_full() -> None:
    watcher = NewJobs()
    ring = [_job(f"j{i}", "completed", float(i)) for i in range(50)]
    watcher.prime(ring)
    assert watcher.new(ring) == []
    ring = [*ring[1:], _job("j50", "completed", 50.0)]  # same length, one new job
    assert [j.job_id for j in watcher.new(ring)] == ["j50"]
    # The same job id finishing again later (a retry) is a new event.
    assert [j.job_id for j in watcher.new([_job("j3", "failed", 60.0)])] == ["j3"]
