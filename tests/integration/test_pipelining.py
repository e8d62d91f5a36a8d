"""v1: a job's result is uploaded while the next job runs; no job is lost on the way.

The studio holds a ``complete`` call behind a gate the test opens, so every state is
observed while it lasts (no timer decides anything).
"""

from __future__ import annotations

import asyncio
from typing import Any

from tests.conftest import ServiceFactory
from workerlib.engines.base import BinaryResult, DeferredResult, EngineResult, ProgressCallback
from workerlib.engines.synthetic import SyntheticEngine
from workerlib.wire import Task


class WatchedEngine(SyntheticEngine):
    """The synthetic engine, telling the test which prompts it has generated."""

    def __init__(self) -> None:
        super().__init__()
        self.generated: list[str] = []
        self.changed = asyncio.Event()

    async def generate(self, model: str, task: Task, progress: ProgressCallback) -> EngineResult:
        result = await super().generate(model, task, progress)
        self.generated.append(getattr(task, "prompt", ""))
        self.changed.set()
        return result


def completes(studio: Any) -> list[Any]:
    """``complete`` calls answered or held at the gate, in the order they arrived."""
    return sorted([r for r in [*studio.requests, *studio.held] if r.endpoint == "complete"],
                  key=lambda r: r.time)


def image(prompt: str) -> dict[str, Any]:
    return {"kind": "image", "prompt": prompt, "width": 16, "height": 16, "ext": "png"}


async def held_upload(studio: Any, make_service: ServiceFactory,
                      prompt: str) -> tuple[str, asyncio.Event, Any]:
    """A started worker whose one job's upload the studio holds until the gate opens."""
    job = studio.enqueue(model="synthetic", task=image(prompt))
    gate = asyncio.Event()
    studio.inject_fault("complete", status=0, gate=gate)
    service = await make_service()
    await service.start()
    await studio.wait_for(lambda: len(completes(studio)) == 1, timeout=30)
    return job, gate, service


async def test_next_job_runs_while_the_last_result_uploads(
    studio: Any, make_service: ServiceFactory
) -> None:
    first = studio.enqueue(model="synthetic", task=image("first"))
    gate = asyncio.Event()
    studio.inject_fault("complete", status=0, gate=gate)
    engine = WatchedEngine()
    service = await make_service(engine=engine)
    await service.start()
    await studio.wait_for(lambda: len(completes(studio)) == 1, timeout=30)
    # Only the first result is on its way: the heartbeat still names that job, the journal
    # keeps it, and the status counts it as uploading.
    await studio.wait_for(lambda: service.status().uploading == 1, timeout=30)
    assert service.status().busy and service.status().current_job is None
    worker = studio.workers[service.config.worker_id]
    await studio.wait_for(lambda: worker.current_job_id == first, timeout=30)
    assert [e.job_id for e in service.journal.entries()] == [first]
    # A job queued now is claimed and generated while the first upload is still held.
    second = studio.enqueue(model="synthetic", task=image("second"))
    await studio.wait_for(lambda: studio.jobs[second].status == "claimed", timeout=30)
    await studio.wait_for(lambda: "second" in engine.generated, timeout=30)
    assert studio.jobs[first].status == "claimed"
    assert len(completes(studio)) == 1  # the second waits for the first upload to end
    await studio.wait_for(lambda: worker.current_job_id == second, timeout=30)
    assert {e.job_id for e in service.journal.entries()} == {first, second}
    gate.set()
    await studio.wait_for(lambda: studio.jobs[second].status == "completed", timeout=30)
    assert studio.jobs[first].status == "completed"
    assert [r.job_id for r in completes(studio)] == [first, second]
    await studio.wait_for(lambda: service.status().uploading == 0, timeout=30)
    assert [j.job_id for j in service.recent_jobs()] == [second, first]
    assert all(j.outcome == "completed" for j in service.recent_jobs())
    assert service.journal.entries() == []
    assert not service.status().busy


async def test_stopping_waits_for_the_upload(
    studio: Any, make_service: ServiceFactory
) -> None:
    job, gate, service = await held_upload(studio, make_service, "last one")
    stopping = asyncio.create_task(service.stop(drain_secs=600))
    # Heartbeats go on while the worker drains, and it does not stop before the upload ends.
    worker = studio.workers[service.config.worker_id]
    seen = worker.heartbeats
    await studio.wait_for(lambda: worker.heartbeats >= seen + 2, timeout=30)
    assert not stopping.done()
    assert studio.jobs[job].status == "claimed"
    gate.set()
    await asyncio.wait_for(stopping, 60)
    assert studio.jobs[job].status == "completed"
    assert service.journal.entries() == []


async def test_an_upload_cut_off_by_the_drain_is_reported_retryable(
    studio: Any, make_service: ServiceFactory
) -> None:
    job, gate, service = await held_upload(studio, make_service, "cut off")
    await service.stop(drain_secs=0.2)
    gate.set()
    failure = studio.jobs[job].fail_history[0]
    assert failure == {**failure, "error": "worker shutting down", "retryable": True}
    assert service.journal.entries() == []
    assert [j.outcome for j in service.recent_jobs()] == ["failed"]
    assert service.status().uploading == 0


async def test_a_failed_upload_beside_the_next_job_is_retried_then_reported(
    studio: Any, make_service: ServiceFactory
) -> None:
    first = studio.enqueue(model="synthetic", task=image("flaky upload"))
    second = studio.enqueue(model="synthetic", task=image("next"))
    studio.inject_fault("complete", status=503, count=4)  # every attempt of the first
    service = await make_service(engine=SyntheticEngine())
    await service.start()
    await studio.wait_for(lambda: studio.jobs[second].status == "completed", timeout=60)
    await studio.wait_for(lambda: bool(studio.jobs[first].fail_history), timeout=60)
    failure = studio.jobs[first].fail_history[0]
    assert failure["retryable"] is True and "upload failed" in failure["error"]
    # The studio queued it again and the worker completed it on its second run.
    await studio.wait_for(lambda: studio.jobs[first].status == "completed", timeout=60)
    await studio.wait_for(lambda: service.journal.entries() == [], timeout=30)


async def test_v2_never_takes_a_job_while_a_result_uploads(
    studio: Any, make_service: ServiceFactory
) -> None:
    first = studio.enqueue(model="synthetic", task=image("first"))
    second = studio.enqueue(model="synthetic", task=image("second"))
    gate = asyncio.Event()
    studio.inject_fault("complete", status=0, gate=gate)
    service = await make_service(protocol="v2")
    await service.start()
    await studio.wait_for(lambda: len(completes(studio)) == 1, timeout=30)
    # Two heartbeats while the upload is held: the worker names its job, and the studio
    # has not placed the second one with it.
    worker = studio.workers[service.config.worker_id]
    seen = worker.heartbeats
    await studio.wait_for(lambda: worker.heartbeats >= seen + 2, timeout=30)
    assert worker.current_job_id == first
    assert studio.jobs[second].status == "queued"
    assert service.status().uploading == 0 and service.status().current_job is not None
    gate.set()
    await studio.wait_for(lambda: studio.jobs[second].status == "completed", timeout=30)
    assert studio.jobs[first].status == "completed"


class LateEncodingEngine(SyntheticEngine):
    """Leaves encoding to the worker, as the diffusers engine does; "broken" prompts
    cannot be encoded."""

    async def generate(self, model: str, task: Task, progress: ProgressCallback) -> EngineResult:
        result = await super().generate(model, task, progress)
        assert isinstance(result, BinaryResult)

        def encode() -> BinaryResult:
            if getattr(task, "prompt", "") == "broken":
                raise ValueError("cannot write mode P as WEBP")
            return result

        return DeferredResult(encode)


async def test_results_encoded_by_the_worker_and_an_encoding_failure_is_reported(
    studio: Any, make_service: ServiceFactory
) -> None:
    broken = studio.enqueue(model="synthetic", task=image("broken"))
    fine = studio.enqueue(model="synthetic", task=image("fine"))
    service = await make_service(engine=LateEncodingEngine())
    await service.start()
    await studio.wait_for(lambda: studio.jobs[fine].status == "completed", timeout=30)
    await studio.wait_for(lambda: bool(studio.jobs[broken].fail_history), timeout=30)
    failure = studio.jobs[broken].fail_history[0]
    assert failure["retryable"] is True
    assert "could not be encoded: ValueError: cannot write mode P" in failure["error"]
    assert studio.jobs[fine].result_bytes is not None
    await studio.wait_for(lambda: service.journal.entries() == [], timeout=30)
