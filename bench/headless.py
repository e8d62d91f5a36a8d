"""Headless benchmarks: overhead per job, pickup latency, idle cost, start-up, large results.

Each measures the worker side by side with a baseline in the same run.
"""

from __future__ import annotations

import asyncio
import io
import random
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import aiohttp
from PIL import Image

from bench.common import (
    PY,
    ROOT,
    TOKEN,
    Row,
    Stat,
    admin,
    cpu_seconds,
    rss_mb,
    studio_process,
)
from workerlib.config import ConfigStore
from workerlib.devstudio import DevStudio
from workerlib.engines.synthetic import SyntheticEngine, render_image
from workerlib.paths import Paths
from workerlib.runtime.state import Event
from workerlib.service import WorkerService
from workerlib.wire import ImageTask

TASK = {"kind": "image", "prompt": "bench", "width": 32, "height": 32, "ext": "png"}


def _paths(root: Path) -> Paths:
    return Paths(root / "config.toml", root / "logs", root / "state", root / "cache")


async def _worker_jobs_per_sec(url: str, jobs: int, **config: object) -> float:
    for start in range(0, jobs, 1000):  # the local studio queues at most 1 000 per call
        admin(url, "/admin/jobs", {"model": "synthetic", "count": min(1000, jobs - start),
                                   "task": TASK})
    with tempfile.TemporaryDirectory() as tmp:
        paths = _paths(Path(tmp))
        ConfigStore(paths.config_file).update({"api_base_url": url, "bootstrap_token": TOKEN,
                                               "auto_update_enabled": False,
                                               "protocol": "v1", **config})
        service = WorkerService(paths, engine_factory=lambda _c: SyntheticEngine(),
                                vram_probe=lambda: 0.0, file_logging=False)
        done = asyncio.Event()
        count = 0

        def on_event(event: Event) -> None:
            nonlocal count
            if event.kind == "finished":
                count += 1
                if count >= jobs:
                    done.set()

        service.subscribe(on_event)
        await service.open()
        await service.register()
        started = time.perf_counter()
        await service.start()
        await asyncio.wait_for(done.wait(), 300)
        elapsed = time.perf_counter() - started
        await service.close()
    return jobs / elapsed


UA = {"User-Agent": "studio-worker/bench"}
BARE_CAPS = {"machineName": "bench", "username": "bench", "agentVersion": "0",
             "engine": "bare", "vramTotalGb": 0, "vramThresholdGb": 12.0, "autoEnabled": True,
             "autoStart": True, "supportedModels": ["synthetic"], "taskKinds": ["image"],
             "supportedModelsPerKind": {"image": ["synthetic"]}}


async def _bare_register(session: aiohttp.ClientSession,
                         url: str) -> tuple[str, str, dict[str, str]]:
    """Register and heartbeat once, as any client must: (api root, worker id, auth)."""
    api = url + "/graphics/api"
    async with session.post(api + "/workers/register", json={
            "bootstrapToken": TOKEN, "capabilities": BARE_CAPS},
            headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
        reg = await resp.json()
    auth = {"Authorization": f"Bearer {reg['authToken']}"}
    async with session.post(f"{api}/workers/{reg['workerId']}/heartbeat",
                            json={"capabilities": BARE_CAPS}, headers=auth) as resp:
        resp.raise_for_status()
    return api, reg["workerId"], auth


async def _bare_jobs_per_sec(url: str, jobs: int) -> float:
    """A bare keep-alive client: claim, make the result, upload it, repeat.

    Like for like: the result is the synthetic engine's own image for the task (same
    bytes, same rendering work, done inline as a bare client would), so what the
    worker adds on top is its own cost: the engine's thread, state, events, logs,
    journal, status file and log shipping.
    """
    admin(url, "/admin/jobs", {"model": "synthetic", "count": jobs, "task": TASK})
    async with aiohttp.ClientSession(headers=UA) as session:
        api, wid, auth = await _bare_register(session, url)
        done = 0
        started = time.perf_counter()
        while done < jobs:
            async with session.post(f"{api}/workers/{wid}/claim", headers=auth) as resp:
                if resp.status == 204:
                    continue
                job = await resp.json()
            result = render_image(ImageTask.model_validate(job["task"]))
            form = aiohttp.FormData()
            form.add_field("prompt", job["task"]["prompt"])
            form.add_field("ext", result.ext)
            form.add_field("image", result.data, filename=f"{job['jobId']}.{result.ext}",
                           content_type="image/png")
            async with session.post(f"{api}/workers/{wid}/jobs/{job['jobId']}/complete",
                                    data=form, headers=auth) as resp:
                resp.raise_for_status()
            done += 1
        return jobs / (time.perf_counter() - started)


def overhead(runs: int = 3, jobs: int = 300) -> Row:
    worker, bare = Stat(), Stat()
    for _ in range(runs):
        with studio_process() as url:
            bare.values.append(asyncio.run(_bare_jobs_per_sec(url, jobs)))
        with studio_process() as url:
            worker.values.append(asyncio.run(_worker_jobs_per_sec(url, jobs)))
    ratio = worker.median / bare.median
    return Row(f"worker overhead: jobs/s over {jobs} synthetic jobs", "bare keep-alive client",
               bare, worker, " jobs/s", "≥ 0.70 of bare", ratio >= 0.70, "{:.0f}", ratio)


async def _pickup(samples: int, interval: float, bare: bool) -> list[float]:
    studio = DevStudio(bootstrap_token=TOKEN)
    url = await studio.start()
    latencies: list[float] = []
    # Stratified arrivals: after a job the poller claims again at once, then waits the
    # interval, so a job queued d seconds after the last one finished waits
    # interval - d. Offsets spread evenly over the interval sample every phase once.
    offsets = [(i + 0.5) / samples * interval for i in range(samples)]
    random.Random(7).shuffle(offsets)
    with tempfile.TemporaryDirectory() as tmp:
        if bare:
            task = asyncio.create_task(_bare_poller(url, interval))
        else:
            paths = _paths(Path(tmp))
            ConfigStore(paths.config_file).update({
                "api_base_url": url, "bootstrap_token": TOKEN, "auto_update_enabled": False,
                "protocol": "v1",
                "claim_interval_secs": interval})
            service = WorkerService(paths, engine_factory=lambda _c: SyntheticEngine(),
                                    vram_probe=lambda: 0.0, file_logging=False)
            await service.open()
            await service.register()
            await service.start()
        await asyncio.sleep(interval + 1)
        primer = studio.enqueue(model="synthetic", task=TASK)
        await studio.wait_for(lambda: studio.jobs[primer].status == "completed", interval * 3)
        for offset in offsets:
            await asyncio.sleep(offset)
            queued = time.time()
            job = studio.enqueue(model="synthetic", task=TASK)
            await studio.wait_for(lambda j=job: studio.jobs[j].claimed_at is not None,
                                  interval * 3)
            latencies.append(float(studio.jobs[job].claimed_at) - queued)
            await studio.wait_for(lambda j=job: studio.jobs[j].status == "completed", 30)
        if bare:
            task.cancel()
        else:
            await service.close()
    await studio.stop()
    return latencies


async def _bare_poller(url: str, interval: float) -> None:
    """What every polling worker does: claim, and sleep the interval after a 204."""
    async with aiohttp.ClientSession(headers=UA) as session:
        api, wid, auth = await _bare_register(session, url)

        async def beat() -> None:  # a silent worker's claims are released after 30 s
            while True:
                await asyncio.sleep(5)
                async with session.post(f"{api}/workers/{wid}/heartbeat",
                                        json={"capabilities": BARE_CAPS}, headers=auth):
                    pass

        beating = asyncio.ensure_future(beat())
        try:
            await _bare_poll_loop(session, api, wid, auth, interval)
        finally:
            beating.cancel()


async def _bare_poll_loop(session: aiohttp.ClientSession, api: str, wid: str,
                          auth: dict[str, str], interval: float) -> None:
    while True:
        async with session.post(f"{api}/workers/{wid}/claim", headers=auth) as resp:
            if resp.status == 204:
                await asyncio.sleep(interval)
                continue
            job = await resp.json()
        form = aiohttp.FormData()
        form.add_field("prompt", job["task"]["prompt"])
        form.add_field("ext", "png")
        buf = io.BytesIO()
        Image.new("RGB", (32, 32)).save(buf, "PNG")
        form.add_field("image", buf.getvalue(), filename=f"{job['jobId']}.png",
                       content_type="image/png")
        async with session.post(f"{api}/workers/{wid}/jobs/{job['jobId']}/complete",
                                data=form, headers=auth) as resp:
            resp.raise_for_status()


def pickup(samples: int = 8, interval: float = 5.0) -> Row:
    bare = Stat(asyncio.run(_pickup(samples, interval, bare=True)))
    ours = Stat(asyncio.run(_pickup(samples, interval, bare=False)))
    goal = interval / 2 + 0.05
    return Row(f"pickup latency at claim interval {interval:g} s (median of {samples})",
               "bare poller", bare, ours, " s", f"median ≤ {goal:.2f} s",
               ours.median <= goal, "{:.2f}", ours.median / bare.median)


BARE_IDLE = textwrap.dedent("""
    import asyncio, sys, aiohttp
    async def main(url, token):
        api = url + "/graphics/api"
        caps = {"machineName": "b", "username": "b", "agentVersion": "0", "engine": "bare",
                "vramTotalGb": 0, "vramThresholdGb": 12.0, "autoEnabled": True,
                "autoStart": True, "supportedModels": ["synthetic"], "taskKinds": ["image"],
                "supportedModelsPerKind": {"image": ["synthetic"]}}
        async with aiohttp.ClientSession(headers={"User-Agent": "studio-worker/b"}) as s:
            async with s.post(api + "/workers/register", json={"bootstrapToken": token,
                              "capabilities": caps},
                              headers={"Authorization": "Bearer " + token}) as r:
                reg = await r.json()
            auth = {"Authorization": "Bearer " + reg["authToken"]}
            wid = reg["workerId"]
            async def beat():
                while True:
                    await s.post(f"{api}/workers/{wid}/heartbeat", json={"capabilities": caps},
                                 headers=auth)
                    await asyncio.sleep(5)
            asyncio.ensure_future(beat())
            while True:
                await s.post(f"{api}/workers/{wid}/claim", headers=auth)
                await asyncio.sleep(5)
    asyncio.run(main(sys.argv[1], sys.argv[2]))
""")


def idle_headless(seconds: float = 60.0) -> list[Row]:
    with studio_process() as url, tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "config.toml"
        ConfigStore(config).update({"api_base_url": url, "bootstrap_token": TOKEN,
                                    "auto_update_enabled": False, "protocol": "v1"})
        ours = subprocess.Popen([PY, "-m", "workerlib", "--config", str(config), "run"],
                                cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        bare = subprocess.Popen([PY, "-c", BARE_IDLE, url, TOKEN], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            time.sleep(6)
            c0 = {p.pid: cpu_seconds(p.pid) for p in (ours, bare)}
            time.sleep(seconds)
            cpu = {p.pid: (cpu_seconds(p.pid) - c0[p.pid]) / seconds * 100 for p in (ours, bare)}
            mem = {p.pid: rss_mb(p.pid) for p in (ours, bare)}
        finally:
            for p in (ours, bare):
                p.terminate()
                p.wait(timeout=15)
    return [
        Row(f"idle CPU, headless worker ({seconds:.0f} s)", "bare aiohttp poller",
            Stat([cpu[bare.pid]]), Stat([cpu[ours.pid]]), " %", "≤ 0.5 % of a core",
            cpu[ours.pid] <= 0.5, "{:.2f}"),
        Row("idle resident memory, headless worker", "bare aiohttp poller",
            Stat([mem[bare.pid]]), Stat([mem[ours.pid]]), " MB", "≤ 80 MB",
            mem[ours.pid] <= 80, "{:.0f}", mem[ours.pid] / mem[bare.pid]),
    ]


def _time_cmd(argv: list[str], runs: int) -> Stat:
    stat = Stat()
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       check=True)
        stat.values.append(time.perf_counter() - t0)
    return stat


async def _first_heartbeat(runs: int) -> tuple[Stat, Stat]:
    ours, bare = Stat(), Stat()
    studio = DevStudio(bootstrap_token=TOKEN)
    url = await studio.start()
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "config.toml"
        ConfigStore(config).update({"api_base_url": url, "bootstrap_token": TOKEN,
                                    "auto_update_enabled": False, "protocol": "v1"})
        for _ in range(runs):
            for which, stat in (("bare", bare), ("ours", ours)):
                seen = len([r for r in studio.requests if r.endpoint == "heartbeat"])
                t0 = time.time()
                argv = ([PY, "-c", BARE_IDLE, url, TOKEN] if which == "bare" else
                        [PY, "-m", "workerlib", "--config", str(config), "run"])
                proc = await asyncio.create_subprocess_exec(
                    *argv, cwd=str(ROOT), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                await studio.wait_for(lambda s=seen: len(
                    [r for r in studio.requests if r.endpoint == "heartbeat"]) > s, 30)
                first = next(r for r in studio.requests[::-1] if r.endpoint == "heartbeat")
                stat.values.append(first.time - t0)
                proc.terminate()
                await proc.wait()
    await studio.stop()
    return ours, bare


def startup(runs: int = 5) -> list[Row]:
    version = _time_cmd([PY, "-m", "app", "--version"], runs)
    python = _time_cmd([PY, "-c", "pass"], runs)
    ours, bare = asyncio.run(_first_heartbeat(3))
    return [
        Row("start-up: `studio-worker --version`", "`python -c pass`", python, version, " s",
            "≤ 0.3 s", version.median <= 0.3, "{:.3f}", version.median / python.median),
        Row("start-up: headless start to first heartbeat", "bare aiohttp client", bare, ours,
            " s", "≤ 1.5 s", ours.median <= 1.5, "{:.2f}", ours.median / bare.median),
    ]


LARGE = textwrap.dedent("""
    import asyncio, os, sys, tempfile
    from pathlib import Path
    sys.path.insert(0, sys.argv[3])
    from workerlib.config import ConfigStore
    from workerlib.engines.base import BinaryResult
    from workerlib.engines.synthetic import SyntheticEngine, render_image
    from workerlib.paths import Paths
    from workerlib.service import WorkerService
    SIZE = int(sys.argv[2])

    def hwm():
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024

    class Big(SyntheticEngine):
        async def generate(self, model, task, progress):
            print("before", hwm(), flush=True)
            return BinaryResult(os.urandom(SIZE), "bin")

    async def main():
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            paths = Paths(root / "c.toml", root / "l", root / "s", root / "x")
            ConfigStore(paths.config_file).update({"api_base_url": sys.argv[1],
                "bootstrap_token": "bench-bootstrap-token", "auto_update_enabled": False,
                "protocol": "v1"})
            svc = WorkerService(paths, engine_factory=lambda c: Big(), vram_probe=lambda: 0.0)
            await svc.open(); await svc.register()
            await svc.run_until_idle(timeout=120)
            print("after", hwm(), flush=True)
            await svc.close()
    asyncio.run(main())
""")


def large_result(size_mb: int = 50) -> Row:
    size = size_mb * 1024 * 1024
    with studio_process() as url:
        admin(url, "/admin/jobs", {"model": "synthetic", "task": TASK})
        out = subprocess.run([PY, "-c", LARGE, url, str(size), str(ROOT)], capture_output=True,
                             text=True, timeout=300, check=True).stdout
    values = dict(line.split() for line in out.splitlines() if line[:5] in ("befor", "after"))
    increase = float(values["after"]) - float(values["before"])
    ratio = increase / size_mb
    return Row(f"large result: peak RSS increase for a {size_mb} MB upload",
               "the payload itself", Stat([float(size_mb)]), Stat([increase]), " MB",
               "≤ 1.5 × payload", ratio <= 1.5, "{:.0f}", ratio)


if __name__ == "__main__":
    sys.exit(0)
