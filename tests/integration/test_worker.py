"""The real loops against the real local studio on loopback."""

from __future__ import annotations

import asyncio
import io
import json
import wave
from typing import Any

import pytest
from PIL import Image

from tests.conftest import BOOTSTRAP, ServiceFactory
from workerlib.config import ConfigStore
from workerlib.engines.base import EngineError, ProgressCallback
from workerlib.engines.synthetic import SyntheticEngine
from workerlib.errors import StudioAuthError, StudioUnreachable
from workerlib.runtime.state import Connection
from workerlib.wire import Task

ALL_KINDS: list[tuple[str, dict[str, Any]]] = [
    ("synthetic", {"kind": "image", "prompt": "a stone golem " + "x" * 300, "width": 96,
                   "height": 64, "ext": "png"}),
    ("synthetic-llm", {"kind": "llm", "messages": [{"role": "user", "content": "lore please"}]}),
    ("synthetic-stt", {"kind": "audio_stt", "input_url": "https://cdn.invalid/a.wav"}),
    ("synthetic-tts", {"kind": "audio_tts", "text": "hello there"}),
    ("synthetic-video", {"kind": "video", "prompt": "spin", "seconds": 0.5, "width": 64,
                         "height": 64}),
]


def claims_by(studio: Any, worker_id: str) -> int:
    return sum(1 for r in studio.requests if r.endpoint == "claim" and r.worker_id == worker_id)


async def test_every_kind_and_a_legacy_claim_complete(
    studio: Any, make_service: ServiceFactory
) -> None:
    ids = [studio.enqueue(model=model, task=task) for model, task in ALL_KINDS]
    legacy = studio.enqueue(model="synthetic", prompt="legacy golem", ext="png")
    service = await make_service()
    await service.run_until_idle(timeout=30)

    jobs = studio.jobs
    assert all(jobs[i].status == "completed" for i in [*ids, legacy]), studio.counts()
    image = Image.open(io.BytesIO(jobs[ids[0]].result_bytes))
    assert image.size == (96, 64) and image.format == "PNG"
    # The full prompt goes back, never the truncated preview.
    assert jobs[ids[0]].result_prompt == ALL_KINDS[0][1]["prompt"]
    chat = jobs[ids[1]].result_json
    assert chat["choices"][0]["message"]["role"] == "assistant"
    assert "text" in jobs[ids[2]].result_json
    with wave.open(io.BytesIO(jobs[ids[3]].result_bytes)) as wav:
        assert wav.getnframes() / wav.getframerate() == pytest.approx(1.0)
    assert jobs[ids[4]].result_ext in ("webp", "gif")
    legacy_image = Image.open(io.BytesIO(jobs[legacy].result_bytes))
    assert legacy_image.size == (512, 512)
    recent = service.recent_jobs()
    assert len(recent) == 6 and recent[0].job_id == legacy  # newest first
    assert all(job.outcome == "completed" for job in recent)


async def test_studio_matching_rule_is_respected(studio: Any, make_service: ServiceFactory) -> None:
    too_big = studio.enqueue(model="synthetic", task={"kind": "image", "prompt": "big"},
                             vram_gb_estimate=20)
    unknown_model = studio.enqueue(model="sdxl-1.0", task={"kind": "image", "prompt": "x"})
    fits = studio.enqueue(model="synthetic", task={"kind": "image", "prompt": "ok"},
                          vram_gb_estimate=12)
    service = await make_service(vram_threshold_gb=12)
    await service.run_until_idle(timeout=20)
    assert studio.jobs[fits].status == "completed"
    assert studio.jobs[too_big].status == "queued"
    assert studio.jobs[unknown_model].status == "queued"
    caps = studio.workers[service.config.worker_id].capabilities
    assert caps["vramTotalGb"] == 16.0 and caps["vramThresholdGb"] == 12
    assert all(m.startswith("synthetic") for m in caps["supportedModels"])


async def test_first_heartbeat_at_start_and_current_job_sent(
    studio: Any, make_service: ServiceFactory
) -> None:
    started = asyncio.Event()
    release = asyncio.Event()

    class SlowEngine(SyntheticEngine):
        async def generate(self, model: str, task: Task, progress: ProgressCallback) -> Any:
            started.set()
            progress(0.5)
            await release.wait()
            return await super().generate(model, task, progress)

    service = await make_service(engine=SlowEngine(), heartbeat_interval_secs=0.3,
                                 claim_interval_secs=5)
    worker_id = service.config.worker_id
    await service.start()
    await studio.wait_for(lambda: studio.workers[worker_id].heartbeats >= 1, timeout=5)
    job = studio.enqueue(model="synthetic", task={"kind": "image", "prompt": "slow"})
    # claim_interval is 5 s: resume() wakes the claim loop immediately.
    service.set_paused(False)
    await asyncio.wait_for(started.wait(), 10)
    await studio.wait_for(lambda: studio.workers[worker_id].current_job_id == job, timeout=5)
    status = service.status()
    assert status.busy and status.label == "Busy"
    assert status.current_job is not None and status.current_job.progress == 0.5
    release.set()
    await studio.wait_for(lambda: studio.jobs[job].status == "completed", timeout=10)
    await studio.wait_for(lambda: studio.workers[worker_id].current_job_id is None, timeout=5)


async def test_the_first_heartbeat_is_sent_at_start_not_one_interval_later(
    studio: Any, make_service: ServiceFactory
) -> None:
    # At a 300 s interval a heartbeat that waited one interval would never be seen here.
    service = await make_service(heartbeat_interval_secs=300)
    worker_id = service.config.worker_id
    await service.start()
    await studio.wait_for(lambda: studio.workers[worker_id].heartbeats >= 1)
    await studio.wait_for(lambda: service.status().connection is Connection.CONNECTED)


async def test_paused_worker_heartbeats_but_never_claims(
    studio: Any, make_service: ServiceFactory
) -> None:
    job = studio.enqueue(model="synthetic", task={"kind": "image", "prompt": "wait"})
    service = await make_service(auto_enabled=False)
    worker_id = service.config.worker_id
    await service.start()
    await studio.wait_for(lambda: studio.workers[worker_id].heartbeats >= 3, timeout=5)
    assert claims_by(studio, worker_id) == 0
    assert studio.workers[worker_id].capabilities["autoEnabled"] is False
    assert service.status().label == "Paused"
    service.set_paused(False)
    await studio.wait_for(lambda: studio.jobs[job].status == "completed", timeout=10)
    assert ConfigStore(service.paths.config_file).load().auto_enabled is True


async def test_external_config_edit_disables_claiming_in_a_running_worker(
    studio: Any, make_service: ServiceFactory
) -> None:
    service = await make_service(claim_interval_secs=0.2)
    worker_id = service.config.worker_id
    await service.start()
    await studio.wait_for(lambda: claims_by(studio, worker_id) >= 2, timeout=5)
    # What `studio-worker disable` does from another process.
    ConfigStore(service.paths.config_file).update({"auto_enabled": False})
    await studio.wait_for(lambda: service.config.auto_enabled is False, timeout=3)
    await asyncio.sleep(0.3)  # one claim interval for a claim already in flight
    before = claims_by(studio, worker_id)
    await asyncio.sleep(1.0)
    assert claims_by(studio, worker_id) == before
    job = studio.enqueue(model="synthetic", task={"kind": "image", "prompt": "later"})
    await asyncio.sleep(0.5)
    assert studio.jobs[job].status == "queued"
    ConfigStore(service.paths.config_file).update({"auto_enabled": True})
    await studio.wait_for(lambda: studio.jobs[job].status == "completed", timeout=5)


async def test_a_broken_external_edit_keeps_the_last_good_config(
    studio: Any, make_service: ServiceFactory
) -> None:
    service = await make_service()
    await service.start()
    path = service.paths.config_file
    good = path.read_text()
    path.write_text(good + "\nvram_threshold_gb = [broken\n")
    await studio.wait_for(lambda: any("keeping the last good one" in line.message
                                      for line in service.log_lines()))
    assert service.config.vram_threshold_gb == 12.0
    assert path.read_text().endswith("[broken\n")  # never overwritten


async def test_registration_is_saved_and_idempotent(
    studio: Any, make_service: ServiceFactory
) -> None:
    service = await make_service(register=False)
    assert not service.config.is_registered()
    assert service.status().label == "Not registered"
    first = await service.register()
    saved = ConfigStore(service.paths.config_file).load()
    assert saved.worker_id == first.worker_id and saved.auth_token == first.auth_token
    again = await service.register()
    assert again.worker_id == first.worker_id
    assert len(studio.workers) == 1
    assert "auth_token=<hidden>" in repr(again)


async def test_refused_bootstrap_token_is_explained(
    studio: Any, make_service: ServiceFactory
) -> None:
    service = await make_service(register=False, bootstrap_token="wrong-token-123456")
    with pytest.raises(StudioAuthError) as err:
        await service.register()
    assert "bootstrap_token" in str(err.value)
    assert "wrong-token-123456" not in str(err.value)


async def test_unreachable_studio_is_explained(make_service: ServiceFactory) -> None:
    service = await make_service(register=False, api_base_url="http://127.0.0.1:9")
    with pytest.raises(StudioUnreachable) as err:
        await service.register()
    assert "could not be reached at http://127.0.0.1:9" in str(err.value)


async def test_run_registers_when_credentials_are_missing(
    studio: Any, make_service: ServiceFactory
) -> None:
    job = studio.enqueue(model="synthetic", task={"kind": "image", "prompt": "first"})
    service = await make_service(register=False)
    await service.start()
    await studio.wait_for(lambda: studio.jobs[job].status == "completed", timeout=10)
    assert service.config.is_registered()


async def test_claim_errors_back_off_and_recover(
    studio: Any, make_service: ServiceFactory
) -> None:
    job = studio.enqueue(model="synthetic", task={"kind": "image", "prompt": "after 500s"})
    studio.inject_fault("claim", status=500, count=2)
    service = await make_service()
    await service.start()
    await studio.wait_for(lambda: studio.jobs[job].status == "completed", timeout=15)
    statuses = [r.status for r in studio.requests if r.endpoint == "claim"]
    assert statuses[:2] == [500, 500]
    messages = [line.message for line in service.log_lines()]
    assert sum("claim failed" in m for m in messages) == 1  # logged once on the way down
    assert any("claiming works again" in m for m in messages)


async def test_unauthorised_heartbeat_shows_not_authorised(
    studio: Any, make_service: ServiceFactory
) -> None:
    service = await make_service()
    studio.inject_fault("heartbeat", status=401, count=1000, body="token revoked")
    studio.inject_fault("claim", status=401, count=1000, body="token revoked")
    await service.start()
    await studio.wait_for(lambda: service.status().connection is Connection.UNAUTHORISED, 5)
    assert service.status().label == "Not authorised"
    claims = claims_by(studio, service.config.worker_id)
    await asyncio.sleep(1.0)
    # Backing off, not hammering: at most a couple of claims in a second.
    assert claims_by(studio, service.config.worker_id) - claims <= 2


async def test_disconnected_after_three_missed_intervals(
    studio: Any, make_service: ServiceFactory
) -> None:
    service = await make_service(heartbeat_interval_secs=0.1)
    await service.start()
    await studio.wait_for(lambda: service.status().connection is Connection.CONNECTED, 5)
    studio.inject_fault("heartbeat", status=503, count=1000)
    await studio.wait_for(lambda: service.status().label == "Disconnected", timeout=5)
    assert service.status().last_heartbeat is not None
    assert not service.status().last_heartbeat.ok  # type: ignore[union-attr]


async def test_request_timeouts_are_survived(
    studio: Any, make_service: ServiceFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    from workerlib import api

    monkeypatch.setattr(api, "REQUEST_TIMEOUT_SECS", 0.3)
    job = studio.enqueue(model="synthetic", task={"kind": "image", "prompt": "slow studio"})
    studio.inject_fault("claim", status=0, delay=1.0, count=1)
    service = await make_service()
    await service.start()
    await studio.wait_for(lambda: studio.jobs[job].status == "completed", timeout=15)
    assert any("did not answer" in line.message for line in service.log_lines())


async def test_upload_retried_then_completed(studio: Any, make_service: ServiceFactory) -> None:
    job = studio.enqueue(model="synthetic", task={"kind": "image", "prompt": "retry me"})
    studio.inject_fault("complete", status=503, count=2)
    service = await make_service()
    await service.run_until_idle(timeout=20)
    assert studio.jobs[job].status == "completed"
    assert [r.status for r in studio.requests if r.endpoint == "complete"] == [503, 503, 200]


async def test_upload_that_keeps_failing_is_reported_retryable(
    studio: Any, make_service: ServiceFactory
) -> None:
    job = studio.enqueue(model="synthetic-llm",
                         task={"kind": "llm", "messages": [{"role": "user", "content": "x"}]})
    studio.inject_fault("complete-json", status=502, count=4)
    service = await make_service()
    await service.start()
    await studio.wait_for(lambda: len(studio.jobs[job].fail_history) >= 1, timeout=15)
    failure = studio.jobs[job].fail_history[0]
    assert failure["retryable"] is True and "upload failed" in failure["error"]
    # Requeued by the studio and then completed by the same worker.
    await studio.wait_for(lambda: studio.jobs[job].status == "completed", timeout=15)
    assert service.recent_jobs()[-1].outcome == "failed"


async def test_conflict_on_complete_is_not_retried(
    studio: Any, make_service: ServiceFactory
) -> None:
    job = studio.enqueue(model="synthetic", task={"kind": "image", "prompt": "taken"})
    studio.inject_fault("complete", status=409, count=1, body="already claimed")
    service = await make_service()
    await service.start()
    await studio.wait_for(lambda: bool(service.recent_jobs()), timeout=10)
    assert [r.status for r in studio.requests if r.endpoint == "complete"] == [409]
    finished = service.recent_jobs()[0]
    assert finished.job_id == job and finished.outcome == "failed"
    assert "409" in (finished.reason or "")


async def test_bad_request_on_complete_is_reported_as_failed(
    studio: Any, make_service: ServiceFactory
) -> None:
    job = studio.enqueue(model="synthetic", task={"kind": "image", "prompt": "bad"})
    studio.inject_fault("complete", status=400, count=1, body="ext part missing")
    service = await make_service()
    await service.start()
    await studio.wait_for(lambda: len(studio.jobs[job].fail_history) >= 1, timeout=10)
    assert "400" in studio.jobs[job].fail_history[0]["error"]


class FlakyEngine(SyntheticEngine):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    async def generate(self, model: str, task: Task, progress: ProgressCallback) -> Any:
        self.calls += 1
        if self.calls == 1:
            raise EngineError("out of memory", retryable=False)
        if self.calls == 2:
            raise RuntimeError("segfault-ish crash")
        return await super().generate(model, task, progress)


async def test_engine_failures_are_reported_and_the_next_job_runs(
    studio: Any, make_service: ServiceFactory
) -> None:
    ids = [studio.enqueue(model="synthetic", task={"kind": "image", "prompt": f"p{i}"})
           for i in range(3)]
    service = await make_service(engine=FlakyEngine())
    await service.start()
    await studio.wait_for(
        lambda: studio.jobs[ids[2]].status == "completed" or
        sum(j.status == "completed" for j in studio.jobs.values()) >= 2, timeout=15)
    first = studio.jobs[ids[0]]
    assert first.status == "failed" and first.retryable is False
    assert "out of memory" in (first.error or "")
    crash = studio.jobs[ids[1]].fail_history[0]
    assert crash["retryable"] is True and "engine crashed" in crash["error"]


async def test_kind_the_engine_cannot_serve_is_non_retryable(
    studio: Any, make_service: ServiceFactory
) -> None:
    job = studio.enqueue(model="sdxl", task={"kind": "image", "prompt": "x"})
    service = await make_service(supported_models_override=["sdxl"])
    await service.run_until_idle(timeout=10)
    record = studio.jobs[job]
    assert record.status == "failed" and record.retryable is False
    assert "cannot serve" in (record.error or "")


@pytest.mark.parametrize(
    "payload",
    [
        {"jobId": "raw-1", "gameId": "g", "assetName": "a", "model": 5, "vramGbEstimate": 1},
        {"jobId": "raw-1", "gameId": "g", "assetName": "a", "model": "synthetic",
         "vramGbEstimate": 1, "task": {"kind": "teleport"}},
    ],
)
async def test_invalid_claim_with_job_id_is_failed_non_retryable(
    studio: Any, make_service: ServiceFactory, payload: dict[str, Any]
) -> None:
    studio.enqueue_raw(payload)
    follow_up = studio.enqueue(model="synthetic", task={"kind": "image", "prompt": "next"})
    service = await make_service()
    await service.start()
    await studio.wait_for(lambda: studio.jobs[follow_up].status == "completed", timeout=10)
    fails = [r for r in studio.requests if r.endpoint == "fail" and "raw-1" in r.path]
    assert len(fails) == 1
    body = json.loads(fails[0].body)
    assert body["retryable"] is False and "invalid job" in body["error"]


async def test_unreadable_claim_is_logged_and_worker_keeps_claiming(
    studio: Any, make_service: ServiceFactory
) -> None:
    studio.enqueue_raw(b"\x00\xffgarbage", content_type="application/octet-stream")
    follow_up = studio.enqueue(model="synthetic", task={"kind": "image", "prompt": "next"})
    service = await make_service()
    await service.start()
    await studio.wait_for(lambda: studio.jobs[follow_up].status == "completed", timeout=10)
    assert any(line.level == "error" and "unusable claim" in line.message
               for line in service.log_lines())


async def test_journaled_job_is_reported_after_a_restart(
    studio: Any, make_service: ServiceFactory
) -> None:
    job = studio.enqueue(model="synthetic", task={"kind": "image", "prompt": "lost"})
    service = await make_service()
    claim = await service.client.claim(service.config.worker_id, service.config.auth_token)
    assert claim is not None and claim.job_id == job
    service.journal.begin(job)  # what a worker killed mid-job leaves behind
    await service.start()
    await studio.wait_for(lambda: len(studio.jobs[job].fail_history) >= 1, timeout=5)
    assert studio.jobs[job].fail_history[0]["error"] == "worker restarted"
    assert studio.jobs[job].fail_history[0]["retryable"] is True
    await studio.wait_for(lambda: studio.jobs[job].status == "completed", timeout=10)
    # Cleared once the studio acknowledged the result.
    await studio.wait_for(lambda: service.journal.entries() == [], timeout=5)


async def test_logs_are_shipped_with_categories_and_job_ids_and_no_secrets(
    studio: Any, make_service: ServiceFactory
) -> None:
    job = studio.enqueue(model="synthetic", task={"kind": "image", "prompt": "logged"})
    service = await make_service()
    await service.start()
    await studio.wait_for(lambda: studio.jobs[job].status == "completed", timeout=10)
    await studio.wait_for(lambda: any(e.get("jobId") == job and e["category"] == "complete"
                                      for e in studio.logs), timeout=5)
    categories = {e["category"] for e in studio.logs}
    assert {"claim", "generate", "complete"} <= categories
    token = service.config.auth_token
    await service.close()
    blob = json.dumps(studio.logs) + "\n".join(line.message for line in service.log_lines())
    blob += service.paths.log_file.read_text()
    blob += service.paths.status_file.read_text()
    assert token not in blob and BOOTSTRAP not in blob


async def test_stop_with_a_long_job_reports_it_retryable(
    studio: Any, make_service: ServiceFactory
) -> None:
    started = asyncio.Event()

    class HangingEngine(SyntheticEngine):
        async def generate(self, model: str, task: Task, progress: ProgressCallback) -> Any:
            started.set()
            await asyncio.sleep(60)
            raise AssertionError("unreachable")

    job = studio.enqueue(model="synthetic", task={"kind": "image", "prompt": "long"})
    service = await make_service(engine=HangingEngine())
    await service.start()
    await asyncio.wait_for(started.wait(), 10)
    # The engine would run 60 s: stop() returning at all means the drain budget cut it.
    await asyncio.wait_for(service.stop(drain_secs=0.5), 30)
    failure = studio.jobs[job].fail_history[0]
    assert failure == {**failure, "error": "worker shutting down", "retryable": True}


async def test_stop_with_a_short_job_waits_and_uploads(
    studio: Any, make_service: ServiceFactory
) -> None:
    job = studio.enqueue(model="synthetic", task={"kind": "image", "prompt": "short"})
    service = await make_service(engine=SyntheticEngine(delay_secs=0.5))
    await service.start()
    await studio.wait_for(lambda: studio.jobs[job].status == "claimed", timeout=5)
    await service.stop(drain_secs=5)
    assert studio.jobs[job].status == "completed"


async def test_engine_change_rebuilds_after_the_job(
    studio: Any, make_service: ServiceFactory
) -> None:
    service = await make_service()
    await service.start()
    assert service.engine.name == "synthetic"
    ConfigStore(service.paths.config_file).update({"engine": "multi", "engines": ["synthetic"]})
    await studio.wait_for(lambda: service.engine.name == "multi", timeout=5)
    job = studio.enqueue(model="synthetic-tts", task={"kind": "audio_tts", "text": "multi"})
    await studio.wait_for(lambda: studio.jobs[job].status == "completed", timeout=5)
    await service.restart_loops()
    job2 = studio.enqueue(model="synthetic", task={"kind": "image", "prompt": "after restart"})
    await studio.wait_for(lambda: studio.jobs[job2].status == "completed", timeout=5)


async def test_job_timeout_interrupts_the_engine_and_reports_retryable(
    studio: Any, make_service: ServiceFactory
) -> None:
    interrupted = asyncio.Event()

    class StuckEngine(SyntheticEngine):
        async def generate(self, model: str, task: Task, progress: ProgressCallback) -> Any:
            await asyncio.sleep(30)

        async def interrupt(self) -> None:
            interrupted.set()

    job = studio.enqueue(model="synthetic", task={"kind": "image", "prompt": "stuck"})
    service = await make_service(engine=StuckEngine(), job_timeout_secs=1)
    await service.start()
    await studio.wait_for(lambda: len(studio.jobs[job].fail_history) >= 1, timeout=10)
    assert interrupted.is_set()
    failure = studio.jobs[job].fail_history[0]
    assert failure["retryable"] is True and failure["error"] == "timed out after 1 s"


async def test_three_failures_in_a_row_start_a_cooldown(
    studio: Any, make_service: ServiceFactory
) -> None:
    class BrokenEngine(SyntheticEngine):
        async def generate(self, model: str, task: Task, progress: ProgressCallback) -> Any:
            raise EngineError("CUDA error: device lost")

    ids = [studio.enqueue(model="synthetic", task={"kind": "image", "prompt": f"f{i}"})
           for i in range(5)]
    service = await make_service(engine=BrokenEngine(), failure_cooldown_secs=60)
    await service.start()
    await studio.wait_for(lambda: service.status().label == "Cooling down", timeout=10)
    claims = claims_by(studio, service.config.worker_id)
    await asyncio.sleep(0.8)
    assert claims_by(studio, service.config.worker_id) == claims
    assert service.status().cooldown_until is not None
    assert len(service.recent_jobs()) == 3
    assert sum(1 for i in ids if studio.jobs[i].status == "queued") >= 2


async def test_backend_down_stops_claiming_until_it_answers(
    studio: Any, make_service: ServiceFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    class FlakyBackend(SyntheticEngine):
        problem: str | None = "ComfyUI at http://127.0.0.1:8188 is not answering"

        async def check(self) -> str | None:
            return self.problem

    engine = FlakyBackend()
    job = studio.enqueue(model="synthetic", task={"kind": "image", "prompt": "wait for it"})
    service = await make_service(engine=engine, claim_interval_secs=0.2)
    await service.start()
    await studio.wait_for(lambda: studio.workers[service.config.worker_id].heartbeats >= 3, 5)
    status = service.status()
    assert status.label == "Engine offline"
    assert status.backend_problem == "ComfyUI at http://127.0.0.1:8188 is not answering"
    assert claims_by(studio, service.config.worker_id) == 0
    engine.problem = None
    await studio.wait_for(lambda: studio.jobs[job].status == "completed", timeout=5)
    assert service.status().backend_problem is None


async def test_unknown_engine_name_is_a_config_error(make_service: ServiceFactory) -> None:
    from workerlib.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        await make_service(register=False, engine="warp-drive")
    assert err.value.key == "engine" and "warp-drive" in str(err.value)


async def test_models_appearing_later_are_advertised_before_claiming(
    studio: Any, make_service: ServiceFactory
) -> None:
    class LateModels(SyntheticEngine):
        extra: tuple[str, ...] = ()

        def models_per_kind(self) -> dict[str, list[str]]:
            models = super().models_per_kind()
            models["image"] = sorted({*models["image"], *self.extra})
            return models

        async def generate(self, model: str, task: Task, progress: ProgressCallback) -> Any:
            return await super().generate("synthetic", task, progress)

    engine = LateModels()
    service = await make_service(engine=engine, heartbeat_interval_secs=30,
                                 claim_interval_secs=0.2)
    await service.start()
    worker_id = service.config.worker_id
    await studio.wait_for(lambda: claims_by(studio, worker_id) >= 1, timeout=5)
    job = studio.enqueue(model="sdxl-late", task={"kind": "image", "prompt": "late"})
    engine.extra = ("sdxl-late",)  # e.g. the backend finished loading a checkpoint
    # No heartbeat is due for 30 s: the worker sends one itself before its next claim.
    await studio.wait_for(lambda: studio.jobs[job].status == "completed", timeout=5)
    assert "sdxl-late" in studio.workers[worker_id].capabilities["supportedModels"]
