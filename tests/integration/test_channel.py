"""The real loops over the v2 channel: a real WebSocket to the local studio on loopback.

Every wait is on something observable (a studio record, the worker's state, a log
line), with a generous cap; the 20 s read-idle limit and the 1 h re-probe interval
are constructor parameters so that no test waits on the clock.
"""

from __future__ import annotations

import asyncio
import io
import json
import stat
from typing import Any

import pytest
from PIL import Image

from tests.conftest import ServiceFactory
from tests.integration.test_worker import ALL_KINDS
from workerlib.engines.base import EngineError, ProgressCallback
from workerlib.engines.synthetic import SyntheticEngine
from workerlib.runtime.state import Connection
from workerlib.wire import Task

FAST_POLL = {"registration_poll_secs": 0.05}


def v1_requests(studio: Any) -> list[str]:
    return [r.endpoint for r in studio.requests
            if r.endpoint in ("heartbeat", "claim", "logs", "fail", "complete-json")]


def welcomed(studio: Any, worker_id: str) -> bool:
    session = studio.channel.sessions.get(worker_id)
    return session is not None and session.welcomed


def frames_in(studio: Any, kind: str) -> list[dict[str, Any]]:
    out = []
    for record in studio.channel.frames:
        if record.direction == "in":
            data = json.loads(record.text)
            if data.get("type") == kind:
                out.append(data)
    return out


async def asking_for_approval(studio: Any, make_service: ServiceFactory) -> tuple[Any, Any]:
    """A new install without a token, started: (the service, its pending request)."""
    service = await make_service(register=False, bootstrap_token="", protocol="auto",
                                 loop_options=FAST_POLL)
    await service.start()
    await studio.wait_for(lambda: len(studio.channel.pending()) == 1, timeout=10)
    return service, studio.channel.pending()[0]


class GatedEngine(SyntheticEngine):
    """Blocks its first ``gated`` jobs until ``release`` is set."""

    def __init__(self, gated: int = 1) -> None:
        super().__init__()
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.gated = gated

    async def generate(self, model: str, task: Task, progress: ProgressCallback) -> Any:
        if self.gated > 0:
            self.gated -= 1
            self.started.set()
            await self.release.wait()
        return await super().generate(model, task, progress)


async def test_every_kind_over_the_channel(studio: Any, make_service: ServiceFactory) -> None:
    ids = [studio.enqueue(model=model, task=task) for model, task in ALL_KINDS]
    legacy = studio.enqueue(model="synthetic", prompt="legacy golem", ext="png")
    service = await make_service(protocol="v2")
    await service.start()
    await studio.wait_for(
        lambda: all(studio.jobs[i].status == "completed" for i in [*ids, legacy]), timeout=30)
    jobs = studio.jobs
    image = Image.open(io.BytesIO(jobs[ids[0]].result_bytes))
    assert image.size == (96, 64)
    assert jobs[ids[0]].result_prompt == ALL_KINDS[0][1]["prompt"]
    assert jobs[ids[1]].result_json["choices"][0]["message"]["role"] == "assistant"
    assert "text" in jobs[ids[2]].result_json
    # Binary results through the multipart complete, JSON ones as completeJson frames.
    completes = [r.job_id for r in studio.requests if r.endpoint == "complete"]
    assert sorted(completes) == sorted([ids[0], ids[3], ids[4], legacy])
    assert sorted(f["jobId"] for f in frames_in(studio, "completeJson")) == sorted(ids[1:3])
    assert v1_requests(studio) == []
    # The next offer can arrive before the last upload call returned: never a "busy".
    assert all(not job.rejects for job in jobs.values())
    status = service.status()
    assert status.protocol is not None and status.protocol.name == "v2"
    assert "protocol = v2" in status.protocol.reason
    await studio.wait_for(lambda: any(e["message"].startswith("job ") for e in studio.logs))


async def test_v2_task_params_and_model_source_defaults_reach_the_engine(
    studio: Any, make_service: ServiceFactory
) -> None:
    seen: list[Task] = []

    class Recording(SyntheticEngine):
        async def generate(self, model: str, task: Task, progress: ProgressCallback) -> Any:
            seen.append(task)
            return await super().generate(model, task, progress)

    job = studio.enqueue(
        model="synthetic",
        task={"kind": "image", "prompt": "golem", "negativePrompt": "blurry", "ext": "png"},
        model_source={"engine": "sdcpp", "files": [{"role": "model", "filename": "m.gguf",
                                                    "url": "https://cdn.invalid/m.gguf"}],
                      "cliDefaults": {"steps": 4, "cfgScale": 1.5, "width": 64, "height": 48}})
    service = await make_service(protocol="v2", engine=Recording())
    await service.start()
    await studio.wait_for(lambda: studio.jobs[job].status == "completed", timeout=15)
    offer = next(json.loads(f.text) for f in studio.channel.frames
                 if f.direction == "out" and '"offer"' in f.text)
    assert offer["claim"]["task"]["negativePrompt"] == "blurry"
    task = seen[0]
    assert task.kind == "image"
    assert (task.negative_prompt, task.cfg_scale, task.steps, task.width, task.height) == (
        "blurry", 1.5, 4, 64, 48)


async def test_approval_pending_then_approved(
    studio: Any, make_service: ServiceFactory
) -> None:
    service, request = await asking_for_approval(studio, make_service)
    await studio.wait_for(lambda: service.status().approval is not None, timeout=5)
    status = service.status()
    assert status.approval is not None and status.approval.phase == "waiting"
    assert status.approval.request_id == request.request_id
    assert status.label == "Waiting for approval"
    assert status.connection is Connection.NOT_REGISTERED
    config = service.config
    assert len(config.registration_secret) == 64 and config.install_id == request.install_id
    assert request.user_agent.startswith("studio-worker/")
    if hasattr(stat, "S_IMODE"):
        assert stat.S_IMODE(service.paths.config_file.stat().st_mode) == 0o600
    await studio.wait_for(lambda: request.polls >= 2, timeout=10)
    worker_id = studio.approve(request.request_id)
    await studio.wait_for(lambda: welcomed(studio, worker_id), timeout=10)
    assert service.config.worker_id == worker_id
    assert service.config.registration_request_id == "" and \
        service.config.registration_secret == ""
    assert service.status().approval is None
    job = studio.enqueue(model="synthetic", task={"kind": "image", "prompt": "approved"})
    await studio.wait_for(lambda: studio.jobs[job].status == "completed", timeout=15)
    shown = "\n".join(line.message for line in service.log_lines())
    assert "approved this PC" in shown
    shipped = json.dumps(studio.logs)
    for secret in (studio.workers[worker_id].auth_token, config.registration_secret,
                   config.install_id):
        assert secret not in shown and secret not in shipped


async def test_rejected_shows_the_reason_and_start_over_asks_again(
    studio: Any, make_service: ServiceFactory
) -> None:
    service, first = await asking_for_approval(studio, make_service)
    studio.reject_registration(first.request_id, "unknown machine")
    await studio.wait_for(lambda: service.status().approval is not None
                          and service.status().approval.phase == "rejected", timeout=10)
    status = service.status()
    assert status.approval is not None and status.approval.reason == "unknown machine"
    assert status.label == "Rejected"
    polls = first.polls
    service.reset_registration()
    await studio.wait_for(lambda: len(studio.channel.pending()) == 1, timeout=10)
    second = studio.channel.pending()[0]
    assert second.request_id != first.request_id
    assert second.install_id == first.install_id  # the same PC asks again
    assert first.polls == polls  # a rejected request is never asked about again


async def test_forgotten_request_404_makes_a_new_request(
    studio: Any, make_service: ServiceFactory
) -> None:
    service, first = await asking_for_approval(studio, make_service)
    old_secret = service.config.registration_secret
    studio.channel.forget(first.request_id)
    await studio.wait_for(lambda: len(studio.channel.pending()) == 1, timeout=10)
    second = studio.channel.pending()[0]
    assert second.request_id != first.request_id
    assert service.config.registration_secret != old_secret
    assert any(r.endpoint == "register-poll" and r.status == 404 for r in studio.requests)


async def test_paused_worker_rejects_offers_with_code_paused(
    studio: Any, make_service: ServiceFactory
) -> None:
    service = await make_service(protocol="v2", auto_enabled=False)
    await service.start()
    job = studio.enqueue(model="synthetic", task={"kind": "image", "prompt": "wait"})
    await studio.wait_for(lambda: studio.jobs[job].rejects, timeout=10)
    reject = studio.jobs[job].rejects[0]
    assert reject["code"] == "paused" and reject["reason"] == "worker paused by operator"
    assert studio.jobs[job].status == "queued"
    service.set_paused(False)
    await studio.wait_for(lambda: studio.jobs[job].status == "completed", timeout=15)


async def test_busy_worker_rejects_offers_with_code_busy(
    studio: Any, make_service: ServiceFactory
) -> None:
    engine = GatedEngine()
    service = await make_service(protocol="v2", engine=engine)
    await service.start()
    first = studio.enqueue(model="synthetic", task={"kind": "image", "prompt": "slow"})
    await asyncio.wait_for(engine.started.wait(), 10)
    second = studio.enqueue(model="synthetic", task={"kind": "image", "prompt": "second"})
    await studio.channel.force_offer(service.config.worker_id, second)
    await studio.wait_for(lambda: studio.jobs[second].rejects, timeout=10)
    assert studio.jobs[second].rejects[0]["code"] == "busy"
    assert studio.jobs[second].rejects[0]["reason"] == "worker already has an in-flight job"
    engine.release.set()
    await studio.wait_for(lambda: studio.jobs[first].status == "completed"
                          and studio.jobs[second].status == "completed", timeout=15)


async def test_a_model_the_engine_cannot_serve_is_rejected_not_failed(
    studio: Any, make_service: ServiceFactory
) -> None:
    job = studio.enqueue(model="sdxl-1.0", task={"kind": "image", "prompt": "x"})
    service = await make_service(protocol="v2")
    await service.start()
    await studio.wait_for(lambda: studio.jobs[job].rejects, timeout=10)
    reject = studio.jobs[job].rejects[0]
    assert reject["code"] is None and "sdxl-1.0" in reject["reason"]
    assert studio.jobs[job].attempts == 0 and service.status().cooldown_until is None


async def test_failures_are_fail_frames(studio: Any, make_service: ServiceFactory) -> None:
    class Broken(SyntheticEngine):
        async def generate(self, model: str, task: Task, progress: ProgressCallback) -> Any:
            raise EngineError("the model refused the prompt", retryable=False)

    job = studio.enqueue(model="synthetic", task={"kind": "image", "prompt": "x"})
    service = await make_service(protocol="v2", engine=Broken())
    await service.start()
    await studio.wait_for(lambda: studio.jobs[job].status == "failed", timeout=10)
    fails = frames_in(studio, "fail")
    assert fails == [{"type": "fail", "jobId": job, "error": "the model refused the prompt",
                      "retryable": False}]
    assert any('"failAck"' in f.text for f in studio.channel.frames if f.direction == "out")
    await studio.wait_for(lambda: service.recent_jobs() != [], timeout=5)
    assert service.recent_jobs()[0].outcome == "failed"


async def test_dropped_socket_mid_job_is_reported_retryable_after_reconnect(
    studio: Any, make_service: ServiceFactory
) -> None:
    engine = GatedEngine()
    service = await make_service(protocol="v2", engine=engine)
    await service.start()
    job = studio.enqueue(model="synthetic", task={"kind": "image", "prompt": "dropped"})
    await asyncio.wait_for(engine.started.wait(), 10)
    await studio.drop_session(service.config.worker_id, code=1011)
    await studio.wait_for(lambda: studio.jobs[job].fail_history, timeout=15)
    failure = studio.jobs[job].fail_history[0]
    assert failure["retryable"] is True and "connection" in failure["error"]
    assert studio.channel.sessions_opened >= 2  # reported on the new session
    engine.release.set()
    await studio.wait_for(lambda: studio.jobs[job].status == "completed", timeout=15)
    # The worker drops the journal entry once it has read the studio's ack.
    await studio.wait_for(lambda: service.journal.entries() == [])


@pytest.mark.parametrize(("error", "words"), [("duplicate_worker", "another worker"),
                                              ("worker_deleted", "register again")])
async def test_duplicate_and_deleted_are_shown_and_not_retried(
    studio: Any, make_service: ServiceFactory, error: str, words: str
) -> None:
    service = await make_service(protocol="v2")
    await service.start()
    worker_id = service.config.worker_id
    await studio.wait_for(lambda: welcomed(studio, worker_id), timeout=10)
    assert service.loops is not None
    await studio.drop_session(worker_id, error=error)
    await studio.wait_for(lambda: service.status().last_error is not None
                          and words in (service.status().last_error or ""), timeout=10)
    await studio.wait_for(lambda: service.loops is not None and service.loops.transport is None,
                          timeout=10)
    assert studio.channel.sessions_opened == 1  # no reconnect storm
    assert error in (service.status().last_error or "")


async def test_close_4003_without_an_error_frame_is_treated_alike(
    studio: Any, make_service: ServiceFactory
) -> None:
    service = await make_service(protocol="v2")
    await service.start()
    worker_id = service.config.worker_id
    await studio.wait_for(lambda: welcomed(studio, worker_id), timeout=10)
    await studio.drop_session(worker_id, code=4004)
    await studio.wait_for(lambda: "worker_deleted" in (service.status().last_error or ""),
                          timeout=10)


async def test_error_frame_before_welcome_ends_the_session(
    studio: Any, make_service: ServiceFactory
) -> None:
    studio.channel.error_before_welcome = ("internal_error", "database is warming up")
    service = await make_service(protocol="v2", loop_options={"idle_timeout_secs": 30.0})
    await service.start()
    await studio.wait_for(lambda: studio.channel.sessions_opened >= 2, timeout=15)
    shown = [line.message for line in service.log_lines()]
    assert any("internal_error: database is warming up" in m for m in shown)
    studio.channel.error_before_welcome = None
    job = studio.enqueue(model="synthetic", task={"kind": "image", "prompt": "later"})
    await studio.wait_for(lambda: studio.jobs[job].status == "completed", timeout=20)


async def test_auth_failed_before_welcome_stops_reconnecting(
    studio: Any, make_service: ServiceFactory
) -> None:
    studio.channel.error_before_welcome = ("auth_failed", "token revoked")
    service = await make_service(protocol="v2")
    await service.start()
    await studio.wait_for(lambda: service.status().connection is Connection.UNAUTHORISED,
                          timeout=10)
    await studio.wait_for(lambda: service.loops is not None and service.loops.transport is None,
                          timeout=10)
    assert studio.channel.sessions_opened == 1


async def test_a_studio_that_never_answers_is_detected_by_read_idle(
    studio: Any, make_service: ServiceFactory
) -> None:
    studio.channel.silent = True
    service = await make_service(protocol="v2", loop_options={"idle_timeout_secs": 0.3})
    await service.start()
    await studio.wait_for(lambda: any("sent nothing for 0.3 s" in line.message
                                      for line in service.log_lines()), timeout=15)
    studio.channel.silent = False
    job = studio.enqueue(model="synthetic", task={"kind": "image", "prompt": "awake"})
    await studio.wait_for(lambda: studio.jobs[job].status == "completed", timeout=20)


async def test_auto_falls_back_to_v1_and_moves_to_v2_when_it_appears(
    studio: Any, make_service: ServiceFactory
) -> None:
    studio.protocol = "v1"
    service = await make_service(protocol="auto", loop_options={"reprobe_secs": 0.2})
    await service.start()
    first = studio.enqueue(model="synthetic", task={"kind": "image", "prompt": "polled"})
    await studio.wait_for(lambda: studio.jobs[first].status == "completed", timeout=15)
    status = service.status()
    assert status.protocol is not None and status.protocol.name == "v1"
    assert status.protocol.reason == "studio has no v2 channel: polling"
    assert any(r.endpoint == "claim" for r in studio.requests)
    studio.protocol = "both"
    worker_id = service.config.worker_id

    def on_v2() -> bool:
        session = studio.channel.sessions.get(worker_id)  # the probe's socket says no hello
        protocol = service.status().protocol
        return session is not None and session.welcomed and protocol is not None \
            and protocol.name == "v2"

    await studio.wait_for(on_v2, timeout=15)
    claims_before = sum(1 for r in studio.requests if r.endpoint == "claim")
    second = studio.enqueue(model="synthetic", task={"kind": "image", "prompt": "offered"})
    await studio.wait_for(lambda: studio.jobs[second].status == "completed", timeout=15)
    assert sum(1 for r in studio.requests if r.endpoint == "claim") == claims_before
    assert any('"offer"' in f.text and second in f.text for f in studio.channel.frames)


async def test_auto_registers_by_request_when_v1_register_is_gone(
    studio: Any, make_service: ServiceFactory
) -> None:
    studio.protocol = "v2"
    service = await make_service(register=False, protocol="auto",  # has a token
                                 loop_options=FAST_POLL)
    await service.start()
    await studio.wait_for(lambda: len(studio.channel.pending()) == 1, timeout=10)
    assert any(r.endpoint == "register" and r.status == 404 for r in studio.requests)


# ---- frame conformance ----------------------------------------------------------------------
# Written from the contract (docs/PROTOCOL.md §3), not from our models: each frame type
# with its exact keys.
FRAME_KEYS: dict[str, tuple[set[str], set[str]]] = {
    "hello": ({"type", "authToken", "capabilities"}, set()),
    "heartbeat": ({"type", "capabilities"}, {"currentJobId"}),
    "accept": ({"type", "jobId"}, set()),
    "reject": ({"type", "jobId", "reason"}, {"code"}),
    "completeJson": ({"type", "jobId", "result", "prompt"}, set()),
    "fail": ({"type", "jobId", "error", "retryable"}, set()),
    "logBatch": ({"type", "entries"}, set()),
}
CAPABILITY_ORDER = ["machineName", "username", "agentVersion", "engine", "vramTotalGb",
                    "vramThresholdGb", "autoEnabled", "autoStart", "supportedModels",
                    "taskKinds", "supportedModelsPerKind", "autoUpdate", "startMinimised",
                    "onlyWhenIdle", "userPresence"]
LOG_KEYS = {"ts", "level", "category", "message"}


def check_frame(frame: dict[str, Any], accepted: set[str]) -> None:
    kind = frame["type"]
    assert kind in FRAME_KEYS, f"a frame the contract does not have: {kind}"
    required, optional = FRAME_KEYS[kind]
    assert required <= set(frame) <= required | optional, (kind, sorted(frame))
    for key in ("jobId", "currentJobId"):
        if key in frame:
            assert isinstance(frame[key], str) and frame[key], (kind, key, frame[key])
    if kind in ("hello", "heartbeat"):
        caps = list(frame["capabilities"])
        assert caps[:11] == CAPABILITY_ORDER[:11], caps
        assert caps == [k for k in CAPABILITY_ORDER if k in caps], caps
        assert None not in frame["capabilities"].values()  # unknown = left out
    if kind == "heartbeat" and "currentJobId" in frame:
        assert frame["currentJobId"] in accepted
    if kind == "accept":
        accepted.add(frame["jobId"])
    if kind == "reject":
        assert frame.get("code", "paused") in ("paused", "busy")
        assert isinstance(frame["reason"], str) and frame["reason"]
    if kind == "fail":
        assert isinstance(frame["retryable"], bool) and isinstance(frame["error"], str)
    if kind == "logBatch":
        for entry in frame["entries"]:
            assert LOG_KEYS <= set(entry) <= LOG_KEYS | {"jobId"}, sorted(entry)
            assert entry["level"] in ("info", "warn", "error")


async def test_every_frame_we_send_matches_the_contract(
    studio: Any, make_service: ServiceFactory
) -> None:
    class Mixed(GatedEngine):
        async def generate(self, model: str, task: Task, progress: ProgressCallback) -> Any:
            if task.kind == "audio_stt":
                raise EngineError("no such audio", retryable=False)
            return await super().generate(model, task, progress)

    engine = Mixed()
    service = await make_service(protocol="v2", engine=engine, auto_enabled=False)
    await service.start()
    worker_id = service.config.worker_id
    held = studio.enqueue(model="synthetic-llm", task=ALL_KINDS[1][1])
    await studio.wait_for(lambda: studio.jobs[held].rejects, timeout=10)  # paused
    unservable = studio.enqueue(model="nope", task={"kind": "image", "prompt": "x"})
    service.set_paused(False)
    await asyncio.wait_for(engine.started.wait(), 10)  # the llm job runs, gated
    await studio.wait_for(lambda: studio.workers[worker_id].current_job_id == held, timeout=10)
    failing = studio.enqueue(model="synthetic-stt", task=ALL_KINDS[2][1])
    await studio.channel.force_offer(worker_id, failing)  # busy
    await studio.wait_for(lambda: studio.jobs[failing].rejects, timeout=10)
    engine.release.set()
    await studio.wait_for(lambda: studio.jobs[held].status == "completed"
                          and studio.jobs[failing].status == "failed"
                          and studio.jobs[unservable].rejects != [], timeout=15)
    await studio.wait_for(lambda: studio.workers[worker_id].current_job_id is None
                          and any('"logBatch"' in f.text for f in studio.channel.frames),
                          timeout=10)
    await service.stop()

    frames = [json.loads(f.text) for f in studio.channel.frames if f.direction == "in"]
    assert all(f.refusal is None for f in studio.channel.frames)
    kinds = {frame["type"] for frame in frames}
    assert kinds >= {"hello", "heartbeat", "accept", "reject", "completeJson", "fail",
                     "logBatch"}, kinds
    assert frames[0]["type"] == "hello"
    accepted: set[str] = set()
    for frame in frames:
        check_frame(frame, accepted)
    heartbeats = [f for f in frames if f["type"] == "heartbeat"]
    assert any("currentJobId" not in f for f in heartbeats)  # left out when idle
    assert any(f.get("currentJobId") == held for f in heartbeats)
    codes = [f.get("code") for f in frames if f["type"] == "reject"]
    assert {"paused", "busy", None} <= set(codes)
    completed = next(f for f in frames if f["type"] == "completeJson")
    assert completed["prompt"] == "lore please"  # the full prompt, §3.3


async def test_ws_reconnect_attempts_gives_up_and_says_so(
    studio: Any, make_service: ServiceFactory
) -> None:
    studio.inject_fault("connect", status=503, count=100)
    service = await make_service(protocol="v2", ws_reconnect_attempts=2)
    await service.start()
    await studio.wait_for(lambda: "gave up reconnecting" in (service.status().last_error or ""),
                          timeout=20)
    await studio.wait_for(lambda: service.loops is not None and service.loops.transport is None,
                          timeout=10)
    assert sum(1 for r in studio.requests if r.endpoint == "connect") == 2
