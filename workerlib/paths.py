"""Every path the worker uses, from platformdirs, with one override hook.

The config file is the one the Rust worker uses, where the Rust worker keeps it on each
OS (``directories``' ``ProjectDirs::from("gg", "minis", "minis-studio-worker")``), so an
existing installation keeps its registration and settings (README, "Upgrading from the
Rust worker").
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import platformdirs

APP_NAME = "minis-studio-worker"
CONFIG_ENV = "STUDIO_WORKER_CONFIG"
HOME_ENV = "STUDIO_WORKER_HOME"
"""When set, every directory lives under this one folder (tests, portable installs)."""


@dataclass(frozen=True)
class Paths:
    config_file: Path
    log_dir: Path
    state_dir: Path
    cache_dir: Path

    @property
    def log_file(self) -> Path:
        return self.log_dir / "studio-worker.log"

    @property
    def status_file(self) -> Path:
        """Live state a running worker publishes for ``studio-worker status``."""
        return self.state_dir / "status.json"

    @property
    def journal_file(self) -> Path:
        return self.state_dir / "inflight.json"

    @property
    def snooze_file(self) -> Path:
        """A snooze ("pause for 2 h"): state, not config, so it survives a restart."""
        return self.state_dir / "snooze.json"

    @property
    def stats_file(self) -> Path:
        """Every finished job, for the Stats tab and ``studio-worker stats``."""
        return self.state_dir / "stats.sqlite3"


def rust_config_file(platform: str = sys.platform, env: Mapping[str, str] | None = None,
                     home: Path | None = None) -> Path:
    """Where the Rust worker keeps ``config.toml`` on ``platform`` (docs/PROTOCOL.md §7)."""
    env = os.environ if env is None else env
    home = Path.home() if home is None else home
    if platform == "win32":
        appdata = Path(env.get("APPDATA") or home / "AppData" / "Roaming")
        return appdata / "minis" / APP_NAME / "config" / "config.toml"
    if platform == "darwin":
        return home / "Library" / "Application Support" / f"gg.minis.{APP_NAME}" / "config.toml"
    xdg = env.get("XDG_CONFIG_HOME", "")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else home / ".config"
    return base / APP_NAME / "config.toml"


def earlier_config_file(platform: str = sys.platform, env: Mapping[str, str] | None = None,
                        home: Path | None = None) -> Path:
    """Where versions of this worker before 0.3 kept it (platformdirs' own folder, the
    same as the Rust worker's on Linux)."""
    env = os.environ if env is None else env
    home = Path.home() if home is None else home
    if platform == "win32":
        local = Path(env.get("LOCALAPPDATA") or home / "AppData" / "Local")
        return local / APP_NAME / "config.toml"
    if platform == "darwin":
        return home / "Library" / "Application Support" / APP_NAME / "config.toml"
    return rust_config_file(platform, env, home)


def default_config_file(platform: str = sys.platform, env: Mapping[str, str] | None = None,
                        home: Path | None = None) -> Path:
    """The Rust worker's file (taken over as it is); one of ours from before 0.3 when only
    that exists; else the Rust worker's place, so both programs share one file."""
    rust = rust_config_file(platform, env, home)
    earlier = earlier_config_file(platform, env, home)
    if not rust.exists() and earlier.exists():
        return earlier
    return rust


def resolve_paths(config_override: str | os.PathLike[str] | None = None) -> Paths:
    """Resolve the paths: ``--config`` beats ``STUDIO_WORKER_CONFIG`` beats platformdirs.

    State, logs and cache follow the config file when it was given explicitly, so two
    workers with two config files never share a status file or a log.
    """
    home = os.environ.get(HOME_ENV)
    if home:
        base = Path(home).expanduser()
        default_config = base / "config.toml"
        log_dir, state_dir, cache_dir = base / "logs", base / "state", base / "cache"
    else:
        default_config = default_config_file()
        log_dir = Path(platformdirs.user_log_dir(APP_NAME, appauthor=False))
        state_dir = Path(platformdirs.user_state_dir(APP_NAME, appauthor=False))
        cache_dir = Path(platformdirs.user_cache_dir(APP_NAME, appauthor=False))

    explicit = config_override or os.environ.get(CONFIG_ENV)
    if explicit:
        config_file = Path(explicit).expanduser().absolute()
        if config_file != default_config.absolute():
            # A second config gets its own state and logs next to it.
            sibling = config_file.parent / f".{config_file.stem}.d"
            log_dir, state_dir = sibling / "logs", sibling / "state"
    else:
        config_file = default_config
    return Paths(config_file=config_file, log_dir=log_dir, state_dir=state_dir, cache_dir=cache_dir)


def resource_dir() -> Path:
    """Folder holding the app's resources (kv/, assets/).

    The bundle's folder when frozen; the checkout for a source or editable install;
    ``<prefix>/share/studio-worker`` for a wheel install (see pyproject's data-files).
    """
    frozen_base = getattr(sys, "_MEIPASS", None)
    if frozen_base:
        return Path(frozen_base)
    checkout = Path(__file__).resolve().parent.parent
    if (checkout / "kv").is_dir():
        return checkout
    return Path(sys.prefix) / "share" / "studio-worker"
