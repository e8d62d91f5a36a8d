"""Every path the worker uses, from platformdirs, with one override hook.

The config file is the one the Rust worker uses (``minis-studio-worker``), so an
existing installation keeps its registration.
"""

from __future__ import annotations

import os
import sys
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
        config_dir = platformdirs.user_config_dir(APP_NAME, appauthor=False)
        default_config = Path(config_dir) / "config.toml"
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
