"""One worker per config file: an OS lock plus a small note naming the holder.

The lock is an OS file lock (fcntl/msvcrt through filelock), so it is released
however the process dies. A second ``ui`` launch asks the running window to come to
the front by touching a request file that the running app watches.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout


class InstanceLock:
    """``name``: "instance" for the process that runs the worker; "window" for a window
    attached to it (one per config too, so a second launch raises it)."""

    def __init__(self, state_dir: Path, mode: str, name: str = "instance") -> None:
        self.state_dir = state_dir
        self.mode = mode
        self._lock = FileLock(str(state_dir / f"{name}.lock"), timeout=0)
        self.info_file = state_dir / f"{name}.json"

    def acquire(self) -> bool:
        """Take the lock without waiting; False when another process holds it."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.acquire(timeout=0)
        except Timeout:
            return False
        info = {"pid": os.getpid(), "mode": self.mode, "started_at": time.time()}
        tmp = self.info_file.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        if os.name == "posix":
            os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(json.dumps(info))
        os.replace(tmp, self.info_file)
        return True

    def holder(self) -> dict[str, Any] | None:
        """What the holding process wrote about itself (pid, mode), if readable."""
        try:
            data = json.loads(self.info_file.read_text("utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def release(self) -> None:
        if self._lock.is_locked:
            with contextlib.suppress(OSError):
                self.info_file.unlink()
            self._lock.release()

    def __enter__(self) -> InstanceLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def describe_holder(holder: dict[str, Any] | None, config_file: Path) -> str:
    """The message for a launch that found the lock taken."""
    if not holder:
        return f"another studio-worker is already running with {config_file}"
    pid = holder.get("pid", "?")
    if holder.get("mode") == "run":
        how = (f"stop it with `kill {pid}`, or `systemctl --user stop minis-studio-worker` "
               "if it runs as a service")
        return (f"a headless studio-worker (pid {pid}) is already running with {config_file}; "
                f"{how}, then try again")
    return f"studio-worker (pid {pid}) is already running with {config_file}"


def raise_request_file(state_dir: Path) -> Path:
    return state_dir / "raise-request"


def request_raise(state_dir: Path) -> None:
    """Ask the running window to come to the front."""
    state_dir.mkdir(parents=True, exist_ok=True)
    raise_request_file(state_dir).write_text(str(time.time()), encoding="utf-8")


def take_raise_request(state_dir: Path) -> bool:
    """True (once) when a second launch asked the window to come to the front."""
    path = raise_request_file(state_dir)
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    except OSError:
        return False
    return True
