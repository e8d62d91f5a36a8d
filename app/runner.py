"""Run the window and the worker on one asyncio loop; stop both gracefully."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable
from typing import TYPE_CHECKING

from app.notifications import JobNotifications, NotificationSender, Notifier, PlyerNotifier
from workerlib.autostart import backend_for, sync_autostart
from workerlib.cli import STOP_SIGNALS
from workerlib.runtime.state import Event
from workerlib.service import DEFAULT_DRAIN_SECS, WorkerService

if TYPE_CHECKING:
    from app.gui import StudioWorkerApp, TrayFactory

NOTIFY_FLUSH_SECS = 1.0
"""On quit, how long the last notifications (the drained job's) may take to go out."""


def sync_login_entry(enabled: bool, service: WorkerService) -> str:
    """``sync_autostart``, except that a disabled setting removes only this config's entry.

    There is one login entry per user; a window on another config file (``--config``,
    ``studio-worker demo``) must not delete the one the user set up for theirs.
    """
    config_file = service.paths.config_file
    if not enabled:
        backend = backend_for()
        entry = backend.read() if backend is not None else None
        if entry is not None and str(config_file) not in entry:
            return "unchanged"
    return sync_autostart(enabled, config_file)


def keep_login_entry(service: WorkerService) -> Callable[[], None]:
    """Apply ``autostart_on_login`` now (the entry follows the current executable) and
    whenever the setting changes, from the Config tab or the file. Returns unsubscribe."""
    synced = service.config.autostart_on_login
    sync_login_entry(synced, service)

    def on_event(event: Event) -> None:
        nonlocal synced
        if event.kind != "config" or service.config.autostart_on_login == synced:
            return
        synced = service.config.autostart_on_login
        sync_login_entry(synced, service)

    return service.subscribe(on_event)


async def run_window(
    service: WorkerService,
    *,
    start_minimised: bool = False,
    drain_secs: float | None = None,
    on_app: Callable[[StudioWorkerApp], None] | None = None,
    tray_factory: TrayFactory | None = None,
    notifier: Notifier | None = None,
) -> int:
    """Open the (already opened) service's window; returns 0 once closed and drained.

    The loops start with the window unless the config says ``auto_start = false``.
    Quit in the tray, SIGINT, SIGTERM and SIGHUP take one path: the window closes on its next
    frame, claiming stops, and a running job gets ``drain_secs`` (default: the config's
    shutdown_drain_secs) to end before it is reported as failed, retryable.
    """
    from app.gui import StudioWorkerApp

    app = StudioWorkerApp(service, start_minimised=start_minimised, tray_factory=tray_factory)
    if on_app is not None:
        on_app(app)
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for sig in STOP_SIGNALS:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, app.request_quit, f"{sig.name} received")
            installed.append(sig)
    sender = NotificationSender(notifier or PlyerNotifier())
    notifications = JobNotifications(service, sender)
    app.notifications = notifications
    unsubscribe_login: Callable[[], None] | None = None
    try:
        await service.open()
        unsubscribe_login = keep_login_entry(service)
        notifications.start()
        if service.config.auto_start:
            await service.start()
        await app.async_run(async_lib="asyncio")
    finally:
        if drain_secs is None:
            try:
                drain_secs = service.config.shutdown_drain_secs
            except RuntimeError:  # the service never opened
                drain_secs = DEFAULT_DRAIN_SECS
        # The signal handlers stay during the drain: another Ctrl-C must not cut it short.
        await service.close(drain_secs)
        for sig in installed:
            loop.remove_signal_handler(sig)
        if unsubscribe_login is not None:
            unsubscribe_login()
        await asyncio.to_thread(sender.wait_idle, NOTIFY_FLUSH_SECS)
        notifications.stop()
    return 0
