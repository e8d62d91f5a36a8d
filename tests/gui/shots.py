"""Screenshots of every tab over realistic data from the local studio.

Run as ``python -m tests.gui.shots OUT_DIR``: under Xvfb (``xvfb-run -a -s "-screen 0
980x700x24"``) it grabs the X screen, which holds exactly the window; without a
display it uses SDL's offscreen driver and ``Window.screenshot()``. It writes
``{status,jobs,stats,config,logs,about}.png`` and a JSON report (the texts readable on
each tab, for the test to check) when a report path is given.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TABS = ("status", "jobs", "stats", "config", "logs", "about")
TOKEN = "boot-SHOT-4e1b7c9a2f"
FEED_VERSION = "0.9.0"


def _environment() -> str:
    """Kivy settings before kivy is imported; returns how screenshots are taken."""
    os.environ.setdefault("KIVY_HOME", tempfile.mkdtemp(prefix="kivy-home-"))
    for key in ("KIVY_NO_ARGS", "KIVY_NO_CONSOLELOG", "KIVY_NO_FILELOG", "KIVY_NO_CONFIG"):
        os.environ[key] = "1"
    os.environ["KIVY_LOG_MODE"] = "PYTHON"
    if os.environ.get("DISPLAY"):
        return "xvfb"
    os.environ["SDL_VIDEODRIVER"] = "offscreen"
    return "offscreen"


async def _feed() -> tuple[Any, str]:
    """A GitHub-releases feed on loopback announcing a newer version."""
    from aiohttp import web

    async def releases(_request: web.Request) -> web.Response:
        return web.json_response([{"tag_name": f"v{FEED_VERSION}", "prerelease": False,
                                   "draft": False, "assets": []}])

    app = web.Application()
    app.router.add_get("/releases", releases)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}/releases"


def seed_history(paths: Any, now: float) -> None:
    """A week of earlier demo runs in the stats store, recorded as the worker records them,
    so the Stats chart has a history; the last minutes come from this run's jobs. The PC
    is lent mostly in the evening and at night, as a polite schedule would have it."""
    import random

    from workerlib.demo import demo_jobs
    from workerlib.stats import StatsStore

    rng = random.Random(15)
    mix = [(model, (task or {"kind": "image"})["kind"]) for model, task, _ in demo_jobs(5)]
    secs = {"image": 6.0, "llm": 2.5, "audio_stt": 1.5, "audio_tts": 1.0, "video": 9.0}
    store = StatsStore(paths.stats_file)
    for hours_ago in range(1, 24 * 7):
        at = now - hours_ago * 3600
        hour = time.localtime(at).tm_hour
        for j in range(rng.randint(0, 14 if hour >= 18 or hour < 8 else 2)):
            model, kind = mix[rng.randrange(len(mix))]
            outcome = "failed" if rng.random() < 0.06 else "completed"
            store.record(f"earlier-{hours_ago}-{j}", kind, model, outcome,
                         secs[kind] * rng.uniform(0.7, 1.3), at - rng.uniform(0, 3500))
    store.close()


async def scenario(out: Path, mode: str) -> dict[str, Any]:
    from app.env import configure_kivy

    configure_kivy()
    from kivy.config import Config as KivyConfig

    # No window manager under Xvfb: put the window where the screen grab starts.
    KivyConfig.set("graphics", "position", "custom")
    KivyConfig.set("graphics", "left", "0")
    KivyConfig.set("graphics", "top", "0")

    from app.runner import run_window
    from tests.gui.pilot import Pilot
    from workerlib.config import ConfigStore
    from workerlib.demo import demo_jobs, demo_paths
    from workerlib.devstudio import DevStudio
    from workerlib.engines.base import ProgressCallback
    from workerlib.engines.synthetic import SyntheticEngine
    from workerlib.service import WorkerService
    from workerlib.wire import Task

    class ShowcaseEngine(SyntheticEngine):
        """Synthetic results; the video job stays on screen at 60 % until released."""

        def __init__(self) -> None:
            super().__init__()
            self.release = asyncio.Event()

        async def generate(self, model: str, task: Task, progress: ProgressCallback) -> Any:
            # Unequal, believable run times, yet short enough for a test.
            await asyncio.sleep({"image": 1.6, "llm": 1.1, "audio_stt": 0.4}.get(task.kind, 0.2))
            if task.kind == "video":
                for step in range(1, 4):
                    progress(step / 5)
                    await asyncio.sleep(0.1)
                await self.release.wait()
            return await super().generate(model, task, progress)

    studio = DevStudio(bootstrap_token=TOKEN)
    await studio.start()
    feed_runner, feed_url = await _feed()
    home = Path(tempfile.mkdtemp(prefix="studio-worker-shots-"))
    paths = demo_paths(home)
    ConfigStore(paths.config_file).update({
        "api_base_url": studio.url, "bootstrap_token": TOKEN, "heartbeat_interval_secs": 1.0,
        "claim_interval_secs": 0.3, "auto_update_enabled": False, "protocol": "v1",
        "auto_update_feed": feed_url, "vram_threshold_gb": 16.0,
    })
    seed_history(paths, time.time())
    engine = ShowcaseEngine()
    service = WorkerService(paths, engine_factory=lambda _c: engine, vram_probe=lambda: 24.0)
    await service.open()
    await service.register()
    jobs = [job for job in demo_jobs(10) if job[1] is None or job[1]["kind"] != "video"]
    for i, (model, task, extra) in enumerate(jobs[:6]):
        studio.enqueue(model=model, task=task, asset_name=f"demo/creatures/job-{i:03d}", **extra)
    studio.enqueue(model="synthetic", task={"kind": "image", "prompt": "a titan, full size",
                                            "width": 8192, "height": 8192})
    for model, task, extra in jobs[6:]:
        studio.enqueue(model=model, task=task, **extra)
    studio.enqueue(model="synthetic-video", task={
        "kind": "video", "prompt": "storm hawk idle animation, looping, painted game art",
        "seconds": 1.0, "width": 128, "height": 128})
    expected = len(jobs) + 1

    holder: list[Any] = []
    app_task = asyncio.create_task(run_window(service, on_app=holder.append, drain_secs=0.5))
    pilot = Pilot(holder, app_task)
    report: dict[str, Any] = {"mode": mode, "tabs": {}, "worker_id": service.config.worker_id}
    try:
        await pilot.started()
        await pilot.wait_for(lambda: len(service.recent_jobs()) >= expected, 60, "the jobs")

        def video_on_screen() -> bool:
            job = service.status().current_job
            return job is not None and (job.progress or 0) >= 0.6

        await pilot.wait_for(video_on_screen, 20, "the video job")
        # A careless proxy's error page quotes the request, token and all: the window
        # (logs tab, status) must show it redacted; the report's "leaks" checks that.
        studio.inject_fault("heartbeat", status=503, count=1, body="studio restarting; "
                            f"Authorization: Bearer {service.config.auth_token}")
        await studio.wait_for(lambda: any(r.endpoint == "heartbeat" and r.status == 503
                                          for r in studio.requests), 10)

        def heartbeat_ok() -> bool:
            beat = service.status().last_heartbeat
            return beat is not None and beat.ok

        await studio.wait_for(heartbeat_ok, 10)
        for name in TABS:
            screen = await pilot.switch_tab(name)
            if name == "about":
                await check_for_updates(pilot, screen)
            await pilot.settle()
            await asyncio.sleep(0.6)  # tab indicator and ripple animations end
            await pilot.frames(2)
            path = out / f"{name}.png"
            await grab(path, mode)
            texts = pilot.texts()
            secrets = {"bootstrap_token": TOKEN, "auth_token": service.config.auth_token}
            report["tabs"][name] = {
                "texts": texts,
                "masked_fields": sum(1 for f in password_fields(pilot.app.root) if f["password"]),
                # Which secrets a reader of the screenshot could see (none, we hope).
                "leaks": sorted(key for key, value in secrets.items()
                                if any(value in text for text in texts)),
                "file": str(path),
            }
        engine.release.set()
    finally:
        exit_code = await pilot.close()
        await studio.stop()
        await feed_runner.cleanup()
    report["exit_code"] = exit_code
    return report


async def check_for_updates(pilot: Any, screen: Any) -> None:
    label = screen.ids.update_text
    await pilot.click(screen.ids.check_button)
    await pilot.wait_for(lambda: FEED_VERSION in label.text, 10, "the update check")


def password_fields(root: Any) -> list[dict[str, Any]]:
    from kivy.uix.textinput import TextInput

    found = []

    def walk(node: Any) -> None:
        if isinstance(node, TextInput) and node.text:
            found.append({"password": bool(node.password), "length": len(node.text)})
        for child in node.children:
            walk(child)

    walk(root)
    return found


async def grab(path: Path, mode: str) -> None:
    if mode == "xvfb":
        from PIL import ImageGrab

        ImageGrab.grab(xdisplay=os.environ["DISPLAY"]).save(path)
        return
    from kivy.core.window import Window

    written = Window.screenshot(name=str(path.with_name(path.stem + "-.png")))
    Path(written).replace(path)


def main(argv: list[str]) -> int:
    """``shots.py OUT_DIR [REPORT_JSON]``."""
    out = Path(argv[1] if len(argv) > 1 else "docs/screenshots").resolve()
    out.mkdir(parents=True, exist_ok=True)
    mode = _environment()
    report = asyncio.run(scenario(out, mode))
    if len(argv) > 2:
        Path(argv[2]).write_text(json.dumps(report, indent=1))
    print(f"{len(report['tabs'])} screenshots ({mode}) in {out}")
    return int(report["exit_code"])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
