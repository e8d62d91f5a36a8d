from pathlib import Path

import pytest

from workerlib.format import ago, clock, duration
from workerlib.paths import resolve_paths, resource_dir


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (12, "12s"), (59.9, "59s"), (60, "1m 00s"), (184, "3m 04s"), (3599, "59m 59s"),
     (3600, "1h 00m"), (4320, "1h 12m"), (-5, "0s")],
)
def test_duration(seconds: float, text: str) -> None:
    assert duration(seconds) == text


def test_ago_and_clock() -> None:
    assert ago(None) == "never"
    assert ago(100.0, now=105.0) == "5s ago"
    assert len(clock(0)) == 8


def test_home_override_puts_everything_under_one_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STUDIO_WORKER_HOME", str(tmp_path))
    paths = resolve_paths()
    assert paths.config_file == tmp_path / "config.toml"
    assert paths.log_file.parent == tmp_path / "logs"
    assert paths.journal_file.parent == paths.status_file.parent == tmp_path / "state"


def test_platform_dirs_and_explicit_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STUDIO_WORKER_HOME", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    default = resolve_paths()
    assert default.config_file == tmp_path / "cfg" / "minis-studio-worker" / "config.toml"
    assert default.log_dir == tmp_path / "state" / "minis-studio-worker" / "log"
    # A second config gets its own logs and state, so two workers never share them.
    other = resolve_paths(tmp_path / "second.toml")
    assert other.config_file == tmp_path / "second.toml"
    assert other.state_dir != default.state_dir and other.log_dir != default.log_dir
    monkeypatch.setenv("STUDIO_WORKER_CONFIG", str(tmp_path / "env.toml"))
    assert resolve_paths().config_file == tmp_path / "env.toml"
    assert resolve_paths(tmp_path / "flag.toml").config_file == tmp_path / "flag.toml"


def test_resource_dir_holds_kv_in_a_checkout() -> None:
    assert (resource_dir() / "workerlib").is_dir()
