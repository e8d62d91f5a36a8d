"""Soak: N synthetic jobs through the local studio in one run (default 10 000).

The studio runs as its own process (`studio-worker dev-studio`) so that the worker's
resident memory and open file descriptors are measured alone. Prints a table and
writes bench/results/soak.json.

    .venv/bin/python bench/soak.py [--jobs 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from workerlib.config import ConfigStore  # noqa: E402
from workerlib.engines.synthetic import SyntheticEngine  # noqa: E402
from workerlib.paths import Paths  # noqa: E402
from workerlib.runtime.state import Event  # noqa: E402
from workerlib.service import WorkerService  # noqa: E402

TOKEN = "soak-bootstrap-token"


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def admin(url: str, path: str, body: object | None = None) -> object:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url + path, data=data, method="POST" if data else "GET",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.loads(resp.read())


async def soak(jobs: int) -> dict[str, object]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    studio = subprocess.Popen(
        [sys.executable, "-m", "workerlib", "dev-studio", "--port", str(port),
         "--bootstrap-token", TOKEN], cwd=ROOT, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            admin(url, "/admin/stats")
            break
        except OSError:
            time.sleep(0.1)
    try:
        for start in range(0, jobs, 1000):
            admin(url, "/admin/jobs", {"model": "synthetic", "count": min(1000, jobs - start),
                                       "task": {"kind": "image", "prompt": "soak", "width": 32,
                                                "height": 32, "ext": "png"}})
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            paths = Paths(root / "config.toml", root / "logs", root / "state", root / "cache")
            ConfigStore(paths.config_file).update({
                "api_base_url": url, "bootstrap_token": TOKEN, "auto_update_enabled": False,
                "protocol": "v1",
                "claim_interval_secs": 0.5})
            service = WorkerService(paths, engine_factory=lambda _c: SyntheticEngine(),
                                    vram_probe=lambda: 0.0)
            samples: list[dict[str, float]] = []
            done = 0
            finished = asyncio.Event()
            started = time.monotonic()

            def on_event(event: Event) -> None:
                nonlocal done
                if event.kind == "finished":
                    done += 1
                    if done % 500 == 0 or done == jobs:
                        samples.append({"jobs": done, "rss_mb": round(rss_mb(), 1),
                                        "fds": open_fds(),
                                        "secs": round(time.monotonic() - started, 1)})
                    if done >= jobs:
                        finished.set()

            service.subscribe(on_event)
            await service.open()
            await service.register()
            await service.start()
            await asyncio.wait_for(finished.wait(), timeout=jobs * 0.5 + 120)
            elapsed = time.monotonic() - started
            ring, queue = len(service.ring), len(service.ship_queue)
            completed = service.state.jobs_completed
            await service.close()
        stats = admin(url, "/admin/stats")
    finally:
        studio.terminate()
        studio.wait(timeout=10)
    warm = next(s for s in samples if s["jobs"] >= min(1000, jobs))
    last = samples[-1]
    return {
        "jobs": jobs,
        "completed_by_worker": completed,
        "studio_stats": stats,
        "seconds": round(elapsed, 1),
        "jobs_per_sec": round(jobs / elapsed, 1),
        "rss_after_warmup_mb": warm["rss_mb"],
        "rss_end_mb": last["rss_mb"],
        "rss_growth_after_warmup_mb": round(last["rss_mb"] - warm["rss_mb"], 1),
        "fds_after_warmup": warm["fds"],
        "fds_end": last["fds"],
        "ui_ring_len": ring,
        "ship_queue_len": queue,
        "samples": samples,
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=10_000)
    args = parser.parse_args()
    result = asyncio.run(soak(args.jobs))
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "soak.json").write_text(json.dumps(result, indent=2))
    for key, value in result.items():
        if key != "samples":
            print(f"{key:28} {value}")
    ok = (result["completed_by_worker"] == args.jobs
          and float(result["rss_growth_after_warmup_mb"]) < 10  # type: ignore[arg-type]
          and result["fds_end"] == result["fds_after_warmup"])
    print("soak:", "ok" if ok else "OUT OF BOUNDS")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
