"""Requests a worker sends while the studio is down, and time to recover.

A misbehaving proxy sits between the worker and the local studio and resets every
connection for the outage (default 60 s), with the default heartbeat and claim
intervals (5 s). Writes bench/results/outage.json.

    .venv/bin/python bench/outage.py [--outage 60]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.integration.proxy import FaultyProxy  # noqa: E402
from workerlib.config import ConfigStore  # noqa: E402
from workerlib.devstudio import DevStudio  # noqa: E402
from workerlib.engines.synthetic import SyntheticEngine  # noqa: E402
from workerlib.paths import Paths  # noqa: E402
from workerlib.service import WorkerService  # noqa: E402


async def outage(seconds: float, mode: str) -> dict[str, object]:
    studio = DevStudio()
    url = await studio.start()
    proxy = FaultyProxy(int(url.rsplit(":", 1)[1]))
    await proxy.start()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        paths = Paths(root / "config.toml", root / "logs", root / "state", root / "cache")
        ConfigStore(paths.config_file).update({
            "api_base_url": proxy.url, "bootstrap_token": studio.bootstrap_token,
            "auto_update_enabled": False, "protocol": "v1"})
        service = WorkerService(paths, engine_factory=lambda _c: SyntheticEngine(),
                                vram_probe=lambda: 0.0)
        await service.open()
        await service.register()
        await service.start()
        await studio.wait_for(lambda: service.status().connection == "connected", 15)
        await asyncio.sleep(6)
        await proxy.set_mode(mode)
        before = proxy.requests
        await asyncio.sleep(seconds)
        during = proxy.requests - before
        label_during = service.status().label
        await proxy.set_mode("pass")
        back = time.monotonic()
        job = studio.enqueue(model="synthetic", task={"kind": "image", "prompt": "back"})
        await studio.wait_for(lambda: studio.jobs[job].status == "completed", 120)
        recovered = time.monotonic() - back
        await service.close()
    await proxy.close()
    await studio.stop()
    return {"outage_secs": seconds, "mode": mode, "requests_during_outage": during,
            "state_during_outage": label_during,
            "secs_to_complete_a_job_after_recovery": round(recovered, 2),
            "jobs_lost": sum(1 for j in studio.jobs.values() if j.status != "completed")}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--outage", type=float, default=60.0)
    parser.add_argument("--mode", choices=["reset", "refuse"], default="reset")
    args = parser.parse_args()
    result = asyncio.run(outage(args.outage, args.mode))
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "outage.json").write_text(json.dumps(result, indent=2))
    for key, value in result.items():
        print(f"{key:40} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
