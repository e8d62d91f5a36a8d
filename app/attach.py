"""A window over a background worker (the service, or a headless ``run``): what the
window can do to that process. Nothing here imports Kivy."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from workerlib.autostart import launch_command
from workerlib.control.client import RemoteWorker
from workerlib.logs import get_logger
from workerlib.paths import Paths
from workerlib.service_install import service_backend, service_command

log = get_logger("ui")


@dataclass(frozen=True)
class Background:
    """What a window attached to a background worker can do to that process."""

    stop: Callable[[], Coroutine[Any, Any, None]]
    """Stop it (the tray's "Stop background worker"); the running job drains."""
    start: Callable[[], Coroutine[Any, Any, None]]
    """Start it again after it stopped (through its service, or as a new process)."""
    restart: Callable[[], Coroutine[Any, Any, None]]
    """Restart it from the installed version (this window's)."""


def start_background_worker(paths: Paths) -> str:
    """Start the headless worker for this config: through the service manager when
    ``install-service`` set it up for this config, else as a detached process."""
    backend = service_backend()
    if backend is not None:
        try:
            installed = backend.path.read_text("utf-8")
        except OSError:
            installed = None
        if installed == backend.render(service_command(paths.config_file)):
            return "; ".join(backend.activate())
    command = launch_command(["run"], paths.config_file)
    flags = {"creationflags": 0x00000008} if sys.platform == "win32" else \
        {"start_new_session": True}  # DETACHED_PROCESS / its own session: outlives the window
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, close_fds=True, **flags)  # type: ignore[call-overload]
    return f"started the background worker (pid {process.pid})"


def background_for(remote: RemoteWorker) -> Background:
    async def stop() -> None:
        await remote.quit()

    async def start() -> None:
        said = await asyncio.to_thread(start_background_worker, remote.paths)
        log.info("%s", said)

    async def restart() -> None:
        await remote.restart()

    return Background(stop=stop, start=start, restart=restart)
