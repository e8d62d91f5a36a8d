"""``studio-worker ui``: the window when a display is usable, else the worker headless."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from typing import Any

from app.env import configure_kivy, headless_reason
from workerlib.cli import EXIT_ERROR, EXIT_OK, console_handler, run_headless
from workerlib.control.client import ControlError, RemoteWorker
from workerlib.control.endpoint import EndpointError
from workerlib.errors import ConfigError
from workerlib.instance import InstanceLock, describe_holder, request_raise
from workerlib.logs import ROOT_LOGGER
from workerlib.paths import Paths
from workerlib.service import WorkerService


def _say(message: str) -> None:
    print(f"studio-worker: {message}", file=sys.stderr, flush=True)


def on_a_real_display(window: Any) -> bool:
    """False when SDL quietly fell back to its offscreen driver (an unreachable DISPLAY).

    The SDL in Kivy's wheel does that instead of failing: the worker would run
    behind a window nobody can see. An explicitly chosen driver is trusted.
    """
    if not sys.platform.startswith("linux") or os.environ.get("SDL_VIDEODRIVER"):
        return True
    info = getattr(getattr(window, "_win", None), "get_window_info", None)
    if info is None:
        return True
    try:
        return info() is not None  # WindowInfoX11 / WindowInfoWayland on a real display
    except Exception:  # cannot tell: assume the window is real
        return True


def open_window_system(*, hidden: bool = False) -> str | None:
    """Import the GUI stack (which creates the window). Returns why it failed, or None.

    ``hidden``: create the window unmapped (started at login, minimised to the tray).
    """
    reason = headless_reason()
    if reason is not None:
        return reason
    configure_kivy(hidden=hidden)
    try:
        from kivy.core.window import Window

        if Window is None:
            return "no usable window provider (Kivy could not create a window)"
        if not on_a_real_display(Window):
            display = os.environ.get("WAYLAND_DISPLAY") or os.environ.get("DISPLAY")
            return f"the display {display} could not be opened"
        import app.gui  # noqa: F401  (kivymd: needs the window)
    except Exception as exc:  # SDL/GL failures surface as assorted exception types
        return f"the window could not be created ({type(exc).__name__}: {exc})"
    except SystemExit:  # Kivy exits when no window provider works at all
        return "the window could not be created (no usable window provider)"
    return None


def run_app(paths: Paths, start_minimised: bool = False) -> int:
    lock = InstanceLock(paths.state_dir, "ui")
    if not lock.acquire():
        holder = lock.holder()
        if holder and holder.get("mode") == "ui":
            request_raise(paths.state_dir)
            _say(f"already open (pid {holder.get('pid', '?')}); brought its window to the front")
            return EXIT_OK
        return attach_app(paths, holder, start_minimised)
    with lock:
        reason = open_window_system(hidden=start_minimised)
        if reason is None:
            return asyncio.run(_run(paths, start_minimised))
    # run_headless takes the lock itself, as a headless worker.
    _say(f"{reason}; running the worker without a window")
    return asyncio.run(run_headless(paths))


def attach_app(paths: Paths, holder: dict[str, Any] | None, start_minimised: bool) -> int:
    """A headless worker (the service) holds this config: open the window over it."""
    window_lock = InstanceLock(paths.state_dir, "ui", name="window")
    if not window_lock.acquire():
        request_raise(paths.state_dir)
        _say("a window on the background worker is already open; brought it to the front")
        return EXIT_OK
    with window_lock:
        try:
            remote = RemoteWorker.attach(paths)
        except (EndpointError, ControlError) as exc:
            _say(f"{describe_holder(holder, paths.config_file)} ({exc})")
            return EXIT_ERROR
        if remote is None:  # a worker without the control API (an older version)
            _say(describe_holder(holder, paths.config_file))
            return EXIT_ERROR
        reason = open_window_system(hidden=start_minimised)
        if reason is not None:
            _say(f"{reason}; the background worker (pid {remote.link().pid}) keeps running")
            return EXIT_ERROR
        from app.runner import run_attached

        # The worker logs to its own file; the window's few lines go to the terminal.
        root = logging.getLogger(ROOT_LOGGER)
        root.setLevel(logging.INFO)
        root.addHandler(console_handler())
        return asyncio.run(run_attached(remote, start_minimised=start_minimised))


async def _run(paths: Paths, start_minimised: bool) -> int:
    from app.runner import run_window

    service = WorkerService(paths, console=console_handler())
    try:
        await service.open()
    except ConfigError as exc:
        _say(str(exc))
        await service.close()
        return EXIT_ERROR
    return await run_window(service, start_minimised=start_minimised)
