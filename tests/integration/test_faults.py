"""Faults the worker must survive: outages, resets, truncation, restarts, kill -9."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import BOOTSTRAP, ServiceFactory
from tests.integration.proxy import FaultyProxy
from workerlib.config import ConfigStore
from workerlib.engines.base import ProgressCallback
from workerlib.engines.synthetic import SyntheticEngine
from workerlib.runtime.state import Connection
from workerlib.wire import Task

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def proxy(studio: Any) -> AsyncIterator[FaultyProxy]:
    port = int(studio.url.rsplit(":", 1)[1])
    server = FaultyProxy(port)
    await server.start()
    yield server
    await server.close()


async def _through_proxy(make_service: ServiceFactory, proxy: FaultyProxy, **config: Any) -> Any:
    service = await make_service(register=False, api_base_url=proxy.url,
                                 heartbeat_interval_secs=0.3, claim_interval_secs=0.3, **config)
    await service.register()
    await service.start()
    return service


@pytest.mark.parametrize("mode", ["reset", "refuse"])
async def test_outage_backs_off_shows_disconnected_and_recovers(
    studio: Any, make_service: ServiceFactory, proxy: FaultyProxy, mode: str
) -> None:
    service = await _through_proxy(make_service, proxy)
    await studio.wait_for(lambda: service.status().connection is Connection.CONNECTED)
    await proxy.set_mode(mode)
    before = proxy.requests
    await studio.wait_for(lambda: service.status().label == "Disconnected")
    # Let the outage last a dozen heartbeats, counted by the worker itself.
    await studio.wait_for(lambda: service.state.heartbeat_failures >= 12)
    heartbeats = service.state.heartbeat_failures
    sent = proxy.requests - before
    if mode == "reset":
        # Per heartbeat at most a backed-off claim or log batch besides it, whatever the
        # machine's speed; a claim loop that did not back off would send many per beat.
        assert sent <= 2 * heartbeats + 6, (sent, heartbeats)
    await proxy.set_mode("pass")
    job = studio.enqueue(model="synthetic", task={"kind": "image", "prompt": "after outage"})
    await studio.wait_for(lambda: studio.jobs[job].status == "completed")
    # The answered claim triggers a heartbeat at once: the Status tab turns green.
    await studio.wait_for(lambda: service.status().connection is Connection.CONNECTED)
    messages = [line.message for line in service.log_lines()]
    assert sum("heartbeat failed" in m for m in messages) == 1
    assert any("heartbeat ok again" in m for m in messages)


async def test_truncated_replies_are_survived(
    studio: Any, make_service: ServiceFactory, proxy: FaultyProxy
) -> None:
    await _through_proxy(make_service, proxy)
    job = studio.enqueue(model="synthetic", task={"kind": "image", "prompt": "cut"})
    await proxy.set_mode("truncate")
    await studio.wait_for(lambda: len(studio.jobs[job].fail_history) >= 1, timeout=10)
    await proxy.set_mode("pass")
    await studio.wait_for(lambda: studio.jobs[job].status == "completed", timeout=15)
    # The claim reply was cut off after the job id: the worker handed the job straight
    # back (retryable) instead of leaving it claimed by nobody.
    failure = studio.jobs[job].fail_history[0]
    assert failure["retryable"] is True and "cut off" in failure["error"]


async def test_500_502_503_bursts(studio: Any, make_service: ServiceFactory) -> None:
    job = studio.enqueue(model="synthetic", task={"kind": "image", "prompt": "bursts"})
    for status in (500, 502, 503):
        studio.inject_fault("heartbeat", status=status, count=2)
        studio.inject_fault("claim", status=status, count=1)
        studio.inject_fault("logs", status=status, count=1)
    service = await make_service(heartbeat_interval_secs=0.2)
    await service.start()
    await studio.wait_for(lambda: studio.jobs[job].status == "completed", timeout=20)
    await studio.wait_for(lambda: service.status().connection is Connection.CONNECTED, 10)


async def test_studio_restart_mid_job_loses_nothing(
    studio: Any, make_service: ServiceFactory
) -> None:
    gate = asyncio.Event()
    running = asyncio.Event()

    class GatedEngine(SyntheticEngine):
        async def generate(self, model: str, task: Task, progress: ProgressCallback) -> Any:
            running.set()
            await gate.wait()
            return await super().generate(model, task, progress)

    job = studio.enqueue(model="synthetic", task={"kind": "image", "prompt": "restart"})
    service = await make_service(engine=GatedEngine(), heartbeat_interval_secs=0.2)
    await service.start()
    await asyncio.wait_for(running.wait(), 10)
    port = int(studio.url.rsplit(":", 1)[1])
    await studio.stop()  # the studio process dies while the job runs
    gate.set()
    # The upload fails and is retried; then the fail report fails too and is kept.
    await studio.wait_for(lambda: any("could not report job" in line.message
                                      for line in service.log_lines()))
    await studio.start(port=port)  # the studio comes back with its state
    await studio.wait_for(lambda: studio.jobs[job].status == "completed", timeout=15)
    record = studio.jobs[job]
    assert record.fail_history and record.fail_history[0]["retryable"] is True
    await studio.wait_for(lambda: service.journal.entries() == [])


def _spawn_worker(config: Path, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "workerlib", "--config", str(config),
                                 "run"], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)


async def test_kill_9_mid_job_is_reported_on_restart(studio: Any, tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    ConfigStore(config).update({
        "api_base_url": studio.url, "bootstrap_token": BOOTSTRAP,
        "heartbeat_interval_secs": 0.5, "claim_interval_secs": 0.3,
        "auto_update_enabled": False, "engine": "synthetic", "synthetic.delay_secs": 60,
    })
    job = studio.enqueue(model="synthetic", task={"kind": "image", "prompt": "slow"})
    log = tmp_path / "worker.log"
    worker = _spawn_worker(config, log)
    try:
        await studio.wait_for(lambda: studio.jobs[job].status == "claimed", timeout=20)
        journal = tmp_path / ".c.d" / "state" / "inflight.json"
        await studio.wait_for(journal.exists, timeout=5)
        assert oct(journal.stat().st_mode & 0o777) == "0o600"
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)
        assert json.loads(journal.read_text())["jobs"][0]["job_id"] == job
        fails_before = len(studio.jobs[job].fail_history)
        worker = _spawn_worker(config, log)
        # The job would otherwise wait out its 60 s delay or the studio's lease.
        await studio.wait_for(lambda: len(studio.jobs[job].fail_history) > fails_before, 30)
        failure = studio.jobs[job].fail_history[-1]
        assert failure["error"] == "worker restarted" and failure["retryable"] is True
    finally:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(timeout=15)
            except subprocess.TimeoutExpired:
                worker.kill()


async def test_huge_claim_reply_is_refused_unread(
    studio: Any, make_service: ServiceFactory
) -> None:
    studio.enqueue_raw(b'{"jobId": "huge", "pad": "' + b"x" * (50 * 1024 * 1024) + b'"}')
    follow_up = studio.enqueue(model="synthetic", task={"kind": "image", "prompt": "next"})
    service = await make_service()
    await service.start()
    await studio.wait_for(lambda: studio.jobs[follow_up].status == "completed", timeout=20)
    assert any("larger than" in line.message for line in service.log_lines())
