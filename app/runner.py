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
from workerlib.control.client import RemoteWorker
from workerlib.control.endpoint import EndpointError
from workerlib.control.handle import WorkerHandle
from workerlib.control.server import ControlServer, Host
from workerlib.logs import get_logger
from workerlib.runtime.state import Event
from workerlib.service import DEFAULT_DRAIN_SECS, WorkerService

if TYPE_CHECKING:
    from app.gui import StudioWorkerApp, TrayFactory

log = get_logger("ui")

NOTIFY_FLUSH_SECS = 1.0
"""On quit, how long the last notifications (the drained job's) may take to go out."""


def sync_login_entry(enabled: bool, service: WorkerHandle) -> str:
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


def keep_login_entry(service: WorkerHandle) -> Callable[[], None]:
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


def quit_on_signals(app: StudioWorkerApp) -> Callable[[], None]:
    """SIGINT and SIGTERM quit the app as the tray's Quit does; returns the undo."""
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for sig in STOP_SIGNALS:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, app.request_quit, f"{sig.name} received")
            installed.append(sig)

    def remove() -> None:
        for sig in installed:
            loop.remove_signal_handler(sig)

    return remove


def notify_jobs(app: StudioWorkerApp, worker: WorkerHandle, notifier: Notifier | None,
                ) -> tuple[NotificationSender, JobNotifications]:
    sender = NotificationSender(notifier or PlyerNotifier())
    notifications = JobNotifications(worker, sender)
    app.notifications = notifications
    return sender, notifications


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
    remove_signals = quit_on_signals(app)
    sender, notifications = notify_jobs(app, service, notifier)
    unsubscribe_login: Callable[[], None] | None = None
    server: ControlServer | None = None
    try:
        await service.open()
        unsubscribe_login = keep_login_entry(service)
        notifications.start()
        if service.config.auto_start:
            await service.start()

        def quit_(drain: float | None) -> None:
            nonlocal drain_secs
            if drain is not None:
                drain_secs = drain
            app.request_quit("stop requested through the control API")

        server = await serve_control(service, quit_)
        await app.async_run(async_lib="asyncio")
    finally:
        if server is not None:
            await server.close()
        if drain_secs is None:
            try:
                drain_secs = service.config.shutdown_drain_secs
            except RuntimeError:  # the service never opened
                drain_secs = DEFAULT_DRAIN_SECS
        # The signal handlers stay during the drain: another Ctrl-C must not cut it short.
        await service.close(drain_secs)
        remove_signals()
        if unsubscribe_login is not None:
            unsubscribe_login()
        await asyncio.to_thread(sender.wait_idle, NOTIFY_FLUSH_SECS)
        notifications.stop()
    return 0


async def serve_control(service: WorkerService,
                        quit_: Callable[[float | None], None]) -> ControlServer | None:
    """The window's own worker answers the CLI like a headless one (a second ``ui``
    raises this window instead). A quit through it closes the window."""
    server = ControlServer(service, Host(quit=quit_), mode="ui")
    try:
        await server.start()
    except (OSError, EndpointError) as exc:  # the window works on; only the CLI misses it
        log.error("no control API: %s", exc)
        return None
    return server


async def run_attached(
    remote: RemoteWorker,
    *,
    start_minimised: bool = False,
    on_app: Callable[[StudioWorkerApp], None] | None = None,
    tray_factory: TrayFactory | None = None,
    notifier: Notifier | None = None,
) -> int:
    """The window over a worker in another process (the service): same tabs and tray,
    driven through the control API. Closing or quitting the window leaves the worker
    running; the tray's "Stop background worker" stops it."""
    from app.attach import background_for
    from app.gui import StudioWorkerApp

    app = StudioWorkerApp(remote, start_minimised=start_minimised, tray_factory=tray_factory,
                          background=background_for(remote))
    if on_app is not None:
        on_app(app)
    remove_signals = quit_on_signals(app)
    sender, notifications = notify_jobs(app, remote, notifier)
    follower = asyncio.create_task(remote.run(), name="control-events")
    unsubscribe_login = keep_login_entry(remote)
    log.info("attached to the background worker (pid %s, studio-worker %s)",
             remote.link().pid, remote.link().version)
    try:
        notifications.start()
        await app.async_run(async_lib="asyncio")
    finally:
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower
        remove_signals()
        unsubscribe_login()
        await asyncio.to_thread(sender.wait_idle, NOTIFY_FLUSH_SECS)
        notifications.stop()
    return 0
