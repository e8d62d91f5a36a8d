"""``studio-worker demo`` with a window: the local studio, N jobs, the real app over them."""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from app.main import open_window_system
from workerlib.demo import (
    DEMO_JOB_SECS,
    describe,
    prepare,
    run_headless_demo,
    show_a_rule_holding,
)
from workerlib.engines.synthetic import SyntheticEngine
from workerlib.runtime.state import Event
from workerlib.service import WorkerService

if TYPE_CHECKING:
    from app.gui import StudioWorkerApp

LINGER_SECS = 2.0
"""How long the window stays open after the last job, so the result can be seen."""


def run_gui_demo(jobs: int) -> int:
    reason = open_window_system()
    if reason is not None:
        print(f"studio-worker: {reason}; running the demo without a window", file=sys.stderr)
        return asyncio.run(run_headless_demo(jobs))
    return asyncio.run(gui_demo(jobs))


async def gui_demo(jobs: int, print_fn: Callable[[str], None] = print,
                   linger_secs: float = LINGER_SECS) -> int:
    with tempfile.TemporaryDirectory(prefix="studio-worker-demo-") as tmp:
        studio, paths = await prepare(Path(tmp), jobs)
        print_fn(f"local studio at {studio.url}; {jobs} jobs queued; opening the window")
        service = WorkerService(
            paths, engine_factory=lambda _c: SyntheticEngine(delay_secs=DEMO_JOB_SECS),
            vram_probe=lambda: 0.0,
        )
        holder: list[StudioWorkerApp] = []
        finished = 0
        timed_out = False

        def on_event(event: Event) -> None:
            nonlocal finished
            if event.kind != "finished":
                return
            finished += 1
            print_fn(describe(event.data, studio))
            if finished >= jobs and holder:
                app = holder[0]
                asyncio.get_running_loop().call_later(linger_secs, app.request_stop)

        def on_app(app: StudioWorkerApp) -> None:
            holder.append(app)

        async def watchdog() -> None:
            nonlocal timed_out
            await asyncio.sleep(60 + jobs * 5)
            timed_out = True
            if holder:
                holder[0].request_stop()

        from app.runner import run_window

        service.subscribe(on_event)
        started = time.monotonic()
        guard = asyncio.create_task(watchdog())
        try:
            await service.open()
            await service.register()
            show_a_rule_holding(service, print_fn)  # the window shows it in its badge
            await run_window(service, on_app=on_app)
        finally:
            guard.cancel()
            await service.close()
            await studio.stop()
        if timed_out:
            print_fn("the demo did not finish in time")
        counts = studio.counts()
        completed = counts.get("completed", 0)
        print_fn(f"{completed}/{jobs} jobs completed in {time.monotonic() - started:.1f} s "
                 f"({counts.get('failed', 0)} failed, {len(studio.logs)} log entries shipped)")
        return 0 if completed == jobs else 1
