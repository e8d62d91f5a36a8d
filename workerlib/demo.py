"""``studio-worker demo``: the local studio, a temporary config, and N jobs of every kind."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from workerlib.devstudio import DevStudio
from workerlib.engines.synthetic import SyntheticEngine
from workerlib.paths import Paths
from workerlib.runtime.state import Event, FinishedJob
from workerlib.service import WorkerService

DEMO_JOB_SECS = 0.3
DEMO_SNOOZE_SECS = 1.5
"""The demo's politeness step: a short snooze holds claiming, then lifts by itself."""


def demo_jobs(count: int) -> Iterator[tuple[str, dict[str, Any] | None, dict[str, Any]]]:
    """(model, task, extra) for ``count`` jobs cycling through every kind."""
    creatures = ["stone golem", "fire sprite", "water serpent", "storm hawk", "moss troll"]
    for i in range(count):
        name = creatures[i % len(creatures)]
        kind = i % 5
        if kind == 0 and i == 0:
            # A legacy claim (no task): what the studio sends to old workers.
            yield "synthetic", None, {"prompt": f"{name}, painted game art", "ext": "png"}
        elif kind == 0:
            yield "synthetic", {"kind": "image", "prompt": f"{name}, painted game art #{i}",
                                "width": 384, "height": 256, "steps": 20, "ext": "webp"}, {}
        elif kind == 1:
            yield "synthetic-llm", {"kind": "llm", "messages": [
                {"role": "system", "content": "You write short game lore."},
                {"role": "user", "content": f"Describe the {name} in two sentences."}]}, {}
        elif kind == 2:
            yield "synthetic-stt", {"kind": "audio_stt",
                                    "input_url": f"https://cdn.example.invalid/voice-{i}.wav"}, {}
        elif kind == 3:
            yield "synthetic-tts", {"kind": "audio_tts", "text": f"Beware the {name}!"}, {}
        else:
            yield "synthetic-video", {"kind": "video", "prompt": f"{name} idle animation",
                                      "seconds": 1.0, "width": 128, "height": 128}, {}


def demo_paths(root: Path) -> Paths:
    return Paths(config_file=root / "config.toml", log_dir=root / "logs",
                 state_dir=root / "state", cache_dir=root / "cache")


async def prepare(root: Path, jobs: int) -> tuple[DevStudio, Paths]:
    studio = DevStudio()
    url = await studio.start()
    paths = demo_paths(root)
    service_config = {
        "api_base_url": url,
        "bootstrap_token": studio.bootstrap_token,
        "heartbeat_interval_secs": 1.0,
        "claim_interval_secs": 0.5,
        "auto_update_enabled": False,
        "engine": "synthetic",
        "vram_threshold_gb": 8.0,
    }
    from workerlib.config import ConfigStore

    ConfigStore(paths.config_file).update(service_config)
    for i, (model, task, extra) in enumerate(demo_jobs(jobs)):
        studio.enqueue(model=model, task=task, vram_gb_estimate=1.0 + (i % 4),
                       asset_name=f"demo/creatures/job-{i:03d}", **extra)
    return studio, paths


def show_a_rule_holding(service: WorkerService, print_fn: Callable[[str], None]) -> None:
    """Snooze the worker briefly before it starts: no job starts until the rule lifts.

    Prints when it holds and when it lifts (seen through the facade's status events).
    """
    hold = service.snooze(DEMO_SNOOZE_SECS)
    if hold is None:
        return
    print_fn(f"rule holding: {hold.text} (a {DEMO_SNOOZE_SECS:g} s snooze; no job starts "
             "meanwhile)")
    unsubscribe: Callable[[], None] | None = None

    def on_event(event: Event) -> None:
        if event.kind == "status" and service.policy.hold_reason() is None and unsubscribe:
            unsubscribe()
            print_fn("rule lifted: the snooze is over; claiming resumes")

    unsubscribe = service.subscribe(on_event)


def describe(job: FinishedJob, studio: DevStudio) -> str:
    record = studio.jobs.get(job.job_id)
    detail = ""
    if record is not None and record.result_bytes is not None:
        detail = f"{len(record.result_bytes)} bytes .{record.result_ext}"
    elif record is not None and record.result_json is not None:
        detail = "JSON result"
    mark = "ok  " if job.outcome == "completed" else "FAIL"
    reason = f" — {job.reason}" if job.reason else ""
    return (f"{mark} {job.job_id}  {job.kind:<9} · {job.model:<15} "
            f"{job.duration_secs:5.2f} s  {detail}{reason}")


async def run_headless_demo(jobs: int, print_fn: Callable[[str], None] = print) -> int:
    with tempfile.TemporaryDirectory(prefix="studio-worker-demo-") as tmp:
        studio, paths = await prepare(Path(tmp), jobs)
        print_fn(f"local studio at {studio.url}; {jobs} jobs queued; worker starting")
        service = WorkerService(
            paths, engine_factory=lambda _c: SyntheticEngine(delay_secs=DEMO_JOB_SECS),
            vram_probe=lambda: 0.0,
        )
        finished = 0
        all_done = asyncio.Event()

        def on_event(event: Event) -> None:
            nonlocal finished
            if event.kind == "finished":
                finished += 1
                print_fn(describe(event.data, studio))
                if finished >= jobs:
                    all_done.set()

        service.subscribe(on_event)
        started = time.monotonic()
        try:
            await service.open()
            await service.register()
            show_a_rule_holding(service, print_fn)
            await service.start()
            await asyncio.wait_for(all_done.wait(), timeout=60 + jobs * 5)
        except TimeoutError:
            print_fn("the demo did not finish in time")
        finally:
            await service.close()
            await studio.stop()
        counts = studio.counts()
        completed = counts.get("completed", 0)
        print_fn(f"{completed}/{jobs} jobs completed in {time.monotonic() - started:.1f} s "
                 f"({counts.get('failed', 0)} failed, {len(studio.logs)} log entries shipped)")
        return 0 if completed == jobs else 1


def _display_available() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")) or \
        sys.platform in ("win32", "darwin")


def run_demo_command(*, jobs: int, gui: Callable[[int], int] | None = None) -> int:
    """``gui``: the windowed demo (from the desktop app), used when a display exists."""
    if jobs < 1:
        print("studio-worker: --jobs must be at least 1", file=sys.stderr)
        return 2
    if gui is not None and _display_available():
        with contextlib.suppress(ImportError):  # the app is there, its GUI packages are not
            return int(gui(jobs))
    return asyncio.run(run_headless_demo(jobs))
