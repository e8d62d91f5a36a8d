"""Run the window and the worker on one asyncio loop; stop both gracefully."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable
from typing import TYPE_CHECKING

from workerlib.service import DEFAULT_DRAIN_SECS, WorkerService

if TYPE_CHECKING:
    from app.gui import StudioWorkerApp


async def run_window(
    service: WorkerService,
    *,
    start_minimised: bool = False,
    drain_secs: float | None = None,
    on_app: Callable[[StudioWorkerApp], None] | None = None,
) -> int:
    """Open the (already opened) service's window; returns 0 once closed and drained.

    The loops start with the window unless the config says ``auto_start = false``;
    SIGINT/SIGTERM close the window on its next frame, like its close button. A
    running job gets ``drain_secs`` (default: the config's shutdown_drain_secs) to end.
    """
    from app.gui import StudioWorkerApp

    app = StudioWorkerApp(service, start_minimised=start_minimised)
    if on_app is not None:
        on_app(app)
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, app.request_stop)
            installed.append(sig)
    try:
        await service.open()
        if service.config.auto_start:
            await service.start()
        await app.async_run(async_lib="asyncio")
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
        if drain_secs is None:
            try:
                drain_secs = service.config.shutdown_drain_secs
            except RuntimeError:  # the service never opened
                drain_secs = DEFAULT_DRAIN_SECS
        await service.close(drain_secs)
    return 0
