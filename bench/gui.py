"""Desktop-app benchmarks under Xvfb: idle cost, first frame, UI under load.

Needs the `ui` extra and Xvfb (`scripts/test` installs both).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from bench.common import PY, ROOT, TOKEN, Row, Stat, admin, cpu_seconds, rss_mb, studio_process
from bench.headless import _worker_jobs_per_sec
from workerlib.config import ConfigStore

PROBE = str(ROOT / "bench" / "gui_probe.py")


@contextlib.contextmanager
def xvfb() -> Iterator[dict[str, str]]:
    if shutil.which("Xvfb") is None:
        raise RuntimeError("Xvfb is not installed (apt-get install xvfb)")
    display = next(n for n in range(90, 200) if not Path(f"/tmp/.X11-unix/X{n}").exists())
    server = subprocess.Popen(["Xvfb", f":{display}", "-screen", "0", "1280x800x24", "-nolisten",
                               "tcp"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not Path(f"/tmp/.X11-unix/X{display}").exists():
        if time.monotonic() > deadline:
            server.kill()
            raise RuntimeError("Xvfb did not start")
        time.sleep(0.05)
    env = {k: v for k, v in os.environ.items() if k != "SDL_VIDEODRIVER"}
    env.update(DISPLAY=f":{display}", KIVY_NO_ARGS="1", KIVY_LOG_MODE="PYTHON",
               KIVY_HOME=tempfile.mkdtemp(prefix="kivy-bench-"))
    try:
        yield env
    finally:
        server.terminate()
        server.wait(timeout=10)


def _config(tmp: Path, url: str) -> Path:
    config = tmp / "config.toml"
    ConfigStore(config).update({"api_base_url": url, "bootstrap_token": TOKEN,
                                "auto_update_enabled": False,
                                "protocol": "v1", "claim_interval_secs": 0.5})
    return config


def _probe(env: dict[str, str], *args: str, timeout: float = 180) -> dict[str, float]:
    out = subprocess.run([PY, PROBE, *args], env=env, capture_output=True, text=True,
                         timeout=timeout, cwd=ROOT)
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            return dict(json.loads(line[7:]))
    raise RuntimeError(f"probe {args[0]} failed: {out.stderr[-2000:]}")


def first_frame(runs: int = 3) -> list[Row]:
    ours, bare = Stat(), Stat()
    with xvfb() as env, studio_process() as url, tempfile.TemporaryDirectory() as tmp:
        config = _config(Path(tmp), url)
        for _ in range(runs):
            bare.values.append(_probe(env, "bare-frame", str(time.time()))["first_frame_secs"])
            ours.values.append(_probe(env, "first-frame", str(time.time()), str(config))[
                "first_frame_secs"])
    return [Row("start-up: app start to first frame (Xvfb)", "bare Kivy app", bare, ours, " s",
                "≤ 4 s", ours.median <= 4.0, "{:.2f}", ours.median / bare.median)]


def idle_app(seconds: float = 60.0) -> list[Row]:
    rows: list[Row] = []
    with xvfb() as env, studio_process() as url, tempfile.TemporaryDirectory() as tmp:
        for label, extra, goal_cpu in (("window visible", [], 3.0),
                                       ("hidden to the tray", ["--minimised"], 1.0)):
            config = _config(Path(tmp) / label.replace(" ", "-"), url)
            proc = subprocess.Popen([PY, "-m", "app", "--config", str(config), "ui",
                                     *extra], env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
            try:
                time.sleep(8)
                c0 = cpu_seconds(proc.pid)
                time.sleep(seconds)
                cpu = (cpu_seconds(proc.pid) - c0) / seconds * 100
                mem = rss_mb(proc.pid)
            finally:
                proc.terminate()
                proc.wait(timeout=20)
            rows.append(Row(f"idle CPU, desktop app, {label} ({seconds:.0f} s)", "—", Stat(),
                            Stat([cpu]), " %", f"≤ {goal_cpu:g} % of a core", cpu <= goal_cpu,
                            "{:.2f}"))
            rows.append(Row(f"idle resident memory, desktop app, {label}", "—", Stat(),
                            Stat([mem]), " MB", "≤ 250 MB", mem <= 250, "{:.0f}"))
    return rows


def ui_load(seconds: float = 20.0, jobs: int = 200) -> list[Row]:
    with xvfb() as env, tempfile.TemporaryDirectory() as tmp:
        with studio_process() as url:
            result = _probe(env, "load", str(_config(Path(tmp) / "a", url)), url, str(seconds))
        with studio_process() as url:
            headless = asyncio.run(_worker_jobs_per_sec(url, jobs))
        with studio_process() as url:
            admin(url, "/admin/jobs", {"model": "synthetic", "count": jobs, "task": {
                "kind": "image", "prompt": "bench", "width": 32, "height": 32, "ext": "png"}})
            windowed = _probe(env, "jobs", str(_config(Path(tmp) / "b", url)), str(jobs))[
                "jobs_per_sec"]
    ratio = windowed / headless
    return [
        Row("UI under load: frame time (1 000-line ring, 50 lines/s, a job a second)", "—",
            Stat(), Stat([result["frame_p50_ms"]]), " ms", "p95 reported",
            True, "{:.1f}", note=f"p95 {result['frame_p95_ms']:.1f} ms"),
        Row("UI under load: event-loop lag of a 100 ms timer", "—", Stat(),
            Stat([result["lag_p50_ms"]]), " ms", "p95 ≤ 50 ms", result["lag_p95_ms"] <= 50,
            "{:.1f}", note=f"p95 {result['lag_p95_ms']:.1f} ms"),
        Row(f"jobs/s with the window open ({jobs} jobs)", "headless worker",
            Stat([headless]), Stat([windowed]), " jobs/s", "within 10 % of headless",
            ratio >= 0.9, "{:.0f}", ratio),
    ]


BENCHES: dict[str, Callable[[bool], list[Row]]] = {
    "first-frame": lambda quick: first_frame(runs=1 if quick else 3),
    "idle-app": lambda quick: idle_app(seconds=10 if quick else 60),
    "ui-load": lambda quick: ui_load(seconds=8 if quick else 20, jobs=100 if quick else 200),
}
