"""Runs the real desktop app in this process for one GUI measurement; prints JSON.

Started by bench/gui.py under Xvfb:

    python bench/gui_probe.py first-frame SPAWN_TIME CONFIG
    python bench/gui_probe.py load CONFIG STUDIO_URL SECONDS
    python bench/gui_probe.py jobs CONFIG JOBS
    python bench/gui_probe.py bare-frame SPAWN_TIME
    python bench/gui_probe.py bare-idle          (until SIGTERM; prints nothing)

Like for like with the headless figures: the service is built as bench/headless.py
builds it (synthetic engine, no log file), and the worker starts only once the window
has drawn its first frames.
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
                         vram_probe=lambda: 0.0, file_logging=False)


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def after_first_frames(app: Any, start: Any, frames: int = 3) -> None:
    """Run ``start(app)`` (a coroutine function) once the window has drawn a few frames."""
    from kivy.clock import Clock

    def started(*_a: Any) -> None:
        target = Clock.frames_displayed + frames

        def check(_dt: float) -> bool:
            if Clock.frames_displayed < target:
                return True
            app.run_task(start(app))
            return False

        Clock.schedule_interval(check, 0)

    app.bind(on_start=started)


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

    async def begin(app: Any) -> None:
        Clock.schedule_interval(lambda dt: frames.append(dt), 0)
        await service.start()
        await drive(app)

    await run_window(service, on_app=lambda app: after_first_frames(app, begin), drain_secs=0)
    frames_ms = [f * 1000 for f in frames[5:]]
    lags_ms = [max(0.0, lag) * 1000 for lag in lags]
    return {"frame_p50_ms": statistics.median(frames_ms), "frame_p95_ms": pct(frames_ms, 0.95),
            "lag_p50_ms": statistics.median(lags_ms), "lag_p95_ms": pct(lags_ms, 0.95),
            "jobs_completed": service.state.jobs_completed}


async def jobs(config: str, count: int) -> dict[str, float]:
    """Jobs/s with the window open (the studio already holds ``count`` jobs), timed as
    bench/headless.py times the headless worker: registered first, then from start()
    to the last job finished. Also the resident memory after the first fifth of the
    jobs and at the end (growth over jobs)."""
    from app.runner import run_window
    from workerlib.runtime.state import Event

    service = service_for(config)
    result: dict[str, float] = {}
    started = 0.0
    finished = 0

    def on_app(app: Any) -> None:
        def on_event(event: Event) -> None:
            nonlocal finished
            if event.kind != "finished":
                return
            finished += 1
            if finished == max(1, count // 5):
                result["rss_early_mb"] = rss_mb()
            if finished >= count:
                result["jobs_per_sec"] = count / (time.perf_counter() - started)
                result["rss_end_mb"] = rss_mb()
                app.request_stop()

        async def begin(app: Any) -> None:
            nonlocal started
            await service.register()
            service.subscribe(on_event)
            started = time.perf_counter()
            await service.start()

        after_first_frames(app, begin)

    await run_window(service, on_app=on_app, drain_secs=0)
    return result


def bare_idle() -> None:
    """A bare KivyMD app with two tabs at KivyMD's defaults (60 fps): the yardstick."""
    from kivy.lang import Builder
    from kivymd.app import MDApp

    kv = """
MDBoxLayout:
    orientation: "vertical"
    md_bg_color: self.theme_cls.backgroundColor
    MDTabsPrimary:
        MDTabsItem:
            MDTabsItemText:
                text: "One"
        MDTabsItem:
            MDTabsItemText:
                text: "Two"
    MDScreenManager:
        MDScreen:
            name: "one"
            MDLabel:
                text: "Hello"
                halign: "center"
        MDScreen:
            name: "two"
"""

    class Bare(MDApp):  # type: ignore[misc]
        def build(self) -> Any:
            self.title = "Bare"
            self.theme_cls.theme_style = "Dark"
            return Builder.load_string(kv)

    import signal

    app = Bare()
    from kivy.clock import Clock

    signal.signal(signal.SIGTERM, lambda *_a: Clock.schedule_once(lambda _dt: app.stop(), 0))
    app.run()


def main() -> int:
    mode = sys.argv[1]
    if mode == "bare-idle":
        bare_idle()
        return 0
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
