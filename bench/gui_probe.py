"""Runs the real desktop app in this process for one GUI measurement; prints JSON.

Started by bench/gui.py under Xvfb:

    python bench/gui_probe.py first-frame SPAWN_TIME CONFIG
    python bench/gui_probe.py load CONFIG STUDIO_URL SECONDS
    python bench/gui_probe.py jobs CONFIG JOBS
    python bench/gui_probe.py bare-frame SPAWN_TIME
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("KIVY_NO_ARGS", "1")
os.environ.setdefault("KIVY_LOG_MODE", "PYTHON")
os.environ.setdefault("KIVY_NO_CONSOLELOG", "1")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def service_for(config: str) -> Any:
    from workerlib.engines.synthetic import SyntheticEngine
    from workerlib.paths import resolve_paths
    from workerlib.service import WorkerService

    return WorkerService(resolve_paths(config), engine_factory=lambda _c: SyntheticEngine(),
                         vram_probe=lambda: 0.0)


async def first_frame(spawned: float, config: str) -> dict[str, float]:
    from kivy.clock import Clock

    from app.runner import run_window

    result: dict[str, float] = {}
    service = service_for(config)

    def on_app(app: Any) -> None:
        def drawn(_dt: float) -> None:
            result["first_frame_secs"] = time.time() - spawned
            Clock.schedule_once(lambda _dt: app.request_stop(), 0.5)

        app.bind(on_start=lambda *_a: Clock.schedule_once(drawn, 0))

    await run_window(service, on_app=on_app, drain_secs=0)
    return result


async def bare_frame(spawned: float) -> dict[str, float]:
    from kivy.app import App
    from kivy.clock import Clock
    from kivy.uix.label import Label

    result: dict[str, float] = {}

    class Bare(App):  # type: ignore[misc]
        def build(self) -> Label:
            return Label(text="hello")

        def on_start(self) -> None:
            def drawn(_dt: float) -> None:
                result["first_frame_secs"] = time.time() - spawned
                Clock.schedule_once(lambda _dt: self.stop(), 0.5)

            Clock.schedule_once(drawn, 0)

    await Bare().async_run(async_lib="asyncio")
    return result


async def load(config: str, url: str, seconds: float) -> dict[str, float]:
    """A full log ring taking 50 entries/s and a job finishing every second."""
    from kivy.clock import Clock

    from app.runner import run_window
    from bench.common import admin

    frames: list[float] = []
    lags: list[float] = []
    service = service_for(config)
    log = logging.getLogger("workerlib.bench")

    async def drive(app: Any) -> None:
        for i in range(1000):
            log.info("warm-up line %d", i)
        end = time.monotonic() + seconds
        next_job = time.monotonic()
        while time.monotonic() < end:
            t = time.monotonic()
            await asyncio.sleep(0.1)
            lags.append(time.monotonic() - t - 0.1)
            for i in range(5):
                log.info("load line %d", i)
            if time.monotonic() >= next_job:
                await asyncio.to_thread(admin, url, "/admin/jobs", {
                    "model": "synthetic",
                    "task": {"kind": "image", "prompt": "load", "width": 64, "height": 64}})
                next_job += 1.0
        app.request_stop()

    def on_app(app: Any) -> None:
        def started(*_a: Any) -> None:
            Clock.schedule_interval(lambda dt: frames.append(dt), 0)
            asyncio.get_running_loop().create_task(drive(app))

        app.bind(on_start=started)

    await run_window(service, on_app=on_app, drain_secs=0)
    frames_ms = [f * 1000 for f in frames[5:]]
    lags_ms = [max(0.0, lag) * 1000 for lag in lags]
    return {"frame_p50_ms": statistics.median(frames_ms), "frame_p95_ms": pct(frames_ms, 0.95),
            "lag_p50_ms": statistics.median(lags_ms), "lag_p95_ms": pct(lags_ms, 0.95),
            "jobs_completed": service.state.jobs_completed}


async def jobs(config: str, count: int) -> dict[str, float]:
    """Jobs/s with the window open (the studio already holds ``count`` jobs)."""
    from app.runner import run_window
    from workerlib.runtime.state import Event

    service = service_for(config)
    result: dict[str, float] = {}
    started = 0.0

    def on_app(app: Any) -> None:
        def on_event(event: Event) -> None:
            nonlocal started
            if event.kind == "job" and event.data is not None and not started:
                started = time.perf_counter()
            if event.kind == "finished" and service.state.jobs_completed >= count:
                result["jobs_per_sec"] = (count - 1) / (time.perf_counter() - started)
                app.request_stop()

        service.subscribe(on_event)

    await run_window(service, on_app=on_app, drain_secs=0)
    return result


def main() -> int:
    mode = sys.argv[1]
    if mode == "first-frame":
        out = asyncio.run(first_frame(float(sys.argv[2]), sys.argv[3]))
    elif mode == "bare-frame":
        out = asyncio.run(bare_frame(float(sys.argv[2])))
    elif mode == "load":
        out = asyncio.run(load(sys.argv[2], sys.argv[3], float(sys.argv[4])))
    else:
        out = asyncio.run(jobs(sys.argv[2], int(sys.argv[3])))
    print("RESULT " + json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
