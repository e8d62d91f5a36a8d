"""The dev studio, driven over real HTTP on loopback with a raw aiohttp client."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workerlib.devstudio import DevStudio, run_dev_studio
from workerlib.devstudio import server as server_module
from workerlib.devstudio.validate import Rejected, parse_multipart

BOOT = "boot-devstudio-test-4f1e"
UA = {"User-Agent": "studio-worker/9.9.9"}
API = "/graphics/api"


def caps(**overrides: Any) -> dict[str, Any]:
    value: dict[str, Any] = {
        "machineName": "box",
        "username": "me",
        "agentVersion": "9.9.9",
        "engine": "synthetic",
        "vramTotalGb": 16,
        "vramThresholdGb": 8.0,
        "autoEnabled": True,
        "autoStart": True,
        "supportedModels": ["synthetic", "synthetic-llm"],
        "taskKinds": ["image", "llm"],
        "supportedModelsPerKind": {"image": ["synthetic"], "llm": ["synthetic-llm"]},
    }
    value.update(overrides)
    return value


class Client:
    """A raw HTTP client speaking to the studio the way a worker should."""

    def __init__(self, studio: DevStudio, session: aiohttp.ClientSession) -> None:
        self.studio = studio
        self.session = session
        self.worker_id = ""
        self.token = ""

    async def post(self, path: str, token: str | None = None, *, json_body: Any = None,
                   data: Any = None, headers: dict[str, str] | None = None
                   ) -> tuple[int, bytes]:
        sent = dict(UA)
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        sent.update(headers or {})
        kwargs: dict[str, Any] = {"headers": sent}
        if json_body is not None:
            kwargs["json"] = json_body
        if data is not None:
            kwargs["data"] = data
        async with self.session.post(self.studio.url + API + path, **kwargs) as response:
            return response.status, await response.read()

    async def register(self, **body: Any) -> dict[str, Any]:
        status, raw = await self.post("/workers/register", BOOT, json_body={
            "bootstrapToken": BOOT, "capabilities": body.pop("capabilities", caps()), **body})
        assert status == 201, raw
        reply: dict[str, Any] = json.loads(raw)
        self.worker_id, self.token = reply["workerId"], reply["authToken"]
        return reply

    async def worker(self, action: str, **kwargs: Any) -> tuple[int, bytes]:
        return await self.post(f"/workers/{self.worker_id}/{action}", self.token, **kwargs)

    async def claim(self) -> tuple[int, dict[str, Any] | None]:
        status, raw = await self.worker("claim")
        return status, (json.loads(raw) if status == 200 else None)

    async def complete(self, job_id: str, prompt: str, ext: str = "png", *,
                       order: tuple[str, ...] = ("prompt", "ext", "image"),
                       filename: str | None = None, content_type: str = "image/png",
                       image: bytes = b"\x89PNG fake") -> tuple[int, bytes]:
        form = aiohttp.FormData()
        for name in order:
            if name == "prompt":
                form.add_field("prompt", prompt, content_type="text/plain; charset=utf-8")
            elif name == "ext":
                form.add_field("ext", ext, content_type="text/plain; charset=utf-8")
            else:
                form.add_field("image", image, filename=filename or f"{job_id}.{ext}",
                               content_type=content_type)
        return await self.worker(f"jobs/{job_id}/complete", data=form)

    async def complete_json(self, job_id: str, prompt: str, **extra: Any) -> tuple[int, bytes]:
        body = {"jobId": job_id, "prompt": prompt, "result": {"text": "hi"},
                "resultKind": "json", **extra}
        return await self.worker(f"jobs/{job_id}/complete-json", json_body=body)

    async def fail(self, job_id: str, error: str = "boom", retryable: bool = True
                   ) -> tuple[int, bytes]:
        return await self.worker(f"jobs/{job_id}/fail",
                                 json_body={"error": error, "retryable": retryable})


@pytest.fixture
async def studio() -> AsyncIterator[DevStudio]:
    server = DevStudio(bootstrap_token=BOOT, stale_after_secs=0.4, max_attempts=3)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def client(studio: DevStudio) -> AsyncIterator[Client]:
    async with aiohttp.ClientSession() as session:
        yield Client(studio, session)


@pytest.fixture
async def worker(client: Client) -> Client:
    await client.register()
    return client


IMAGE_TASK = {"kind": "image", "prompt": "a stone golem " + "x" * 300, "ext": "png"}
LLM_TASK = {"kind": "llm", "messages": [{"role": "system", "content": "be brief"},
                                        {"role": "user", "content": "lore please"}]}


# ---- transport and register --------------------------------------------------------------


async def test_start_gives_a_loopback_url_and_stop_is_idempotent() -> None:
    studio = DevStudio()
    url = await studio.start()
    assert url == studio.url and url.startswith("http://127.0.0.1:")
    assert studio.bootstrap_token == "dev-bootstrap-token"
    await studio.stop()
    await studio.stop()
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientConnectionError):
            await session.post(url + API + "/workers/register")


async def test_register_returns_ids_and_stores_the_worker(client: Client,
                                                          studio: DevStudio) -> None:
    reply = await client.register()
    assert list(reply) == ["workerId", "authToken"]
    assert reply["workerId"].startswith("w-") and len(reply["authToken"]) >= 20
    record = studio.workers[reply["workerId"]]
    assert record.capabilities == caps() and record.heartbeats == 0
    assert studio.requests[-1].endpoint == "register" and studio.requests[-1].status == 201
    assert studio.requests[-1].worker_id == reply["workerId"]


@pytest.mark.parametrize(
    ("token", "needle"),
    [("wrong", "bootstrap token refused"), (None, "Authorization")],
)
async def test_register_refuses_a_wrong_or_missing_bootstrap_token(
    client: Client, studio: DevStudio, token: str | None, needle: str
) -> None:
    status, raw = await client.post("/workers/register", token,
                                    json_body={"bootstrapToken": BOOT, "capabilities": caps()})
    assert status == 401 and needle in raw.decode()
    assert studio.workers == {}


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"bootstrapToken": "other", "capabilities": caps()}, "bootstrapToken"),
        ({"capabilities": caps()}, "bootstrapToken"),
        ({"bootstrapToken": BOOT, "capabilities": caps(), "name": "x"}, "'name'"),
        ({"bootstrapToken": BOOT, "capabilities": caps(), "workerId": None}, "workerId"),
    ],
)
async def test_register_body_is_strict(client: Client, body: dict[str, Any],
                                       needle: str) -> None:
    status, raw = await client.post("/workers/register", BOOT, json_body=body)
    assert status == 400 and needle in raw.decode()


async def test_register_again_with_the_worker_id_is_idempotent(client: Client,
                                                               studio: DevStudio) -> None:
    first = await client.register()
    again = await client.register(workerId=first["workerId"],
                                  capabilities=caps(vramThresholdGb=4))
    assert again == first and len(studio.workers) == 1
    assert studio.workers[first["workerId"]].capabilities["vramThresholdGb"] == 4
    chosen = await client.register(workerId="w-chosen")
    assert chosen["workerId"] == "w-chosen" and chosen["authToken"] != first["authToken"]
    assert len(studio.workers) == 2


async def test_any_user_agent_or_none_is_accepted_and_method_is_checked(
    client: Client, studio: DevStudio
) -> None:
    """Strict about the contract, not about who we are: the Rust 0.1.x client sends no
    User-Agent at all."""
    status, raw = await client.post("/workers/register", BOOT, headers={"User-Agent": "curl/8"},
                                    json_body={"bootstrapToken": BOOT, "capabilities": caps()})
    assert status == 201, raw
    async with client.session.post(
        studio.url + API + "/workers/register", skip_auto_headers=["User-Agent"],
        headers={"Authorization": f"Bearer {BOOT}"},
        json={"bootstrapToken": BOOT, "capabilities": caps()},
    ) as r:
        assert r.status == 201, await r.text()
    async with client.session.get(studio.url + API + "/workers/register", headers=UA) as r:
        assert r.status == 405
    assert [r.status for r in studio.requests] == [201, 201, 405]
    assert [r.user_agent for r in studio.requests][:2] == ["curl/8", None]


async def test_unknown_api_path_is_404_and_recorded(client: Client, studio: DevStudio) -> None:
    status, raw = await client.post("/graphics/api/workers/register", BOOT)
    assert status == 404 and "no such studio endpoint" in raw.decode()
    assert studio.requests[-1].endpoint == "unknown"


async def test_json_bodies_must_be_json_objects(worker: Client) -> None:
    status, raw = await worker.worker("heartbeat", data=b"{}",
                                      headers={"Content-Type": "text/plain"})
    assert status == 400 and "application/json" in raw.decode()
    status, raw = await worker.worker(
        "heartbeat", data=b'{"capabilities": 1, "capabilities": 2}',
        headers={"Content-Type": "application/json"})
    assert status == 400 and "duplicate key" in raw.decode()


async def test_oversized_requests_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server_module, "MAX_REQUEST_BYTES", 1024)
    studio = DevStudio(bootstrap_token=BOOT)
    await studio.start()
    try:
        async with aiohttp.ClientSession() as session:
            client = Client(studio, session)
            status, _ = await client.post("/workers/register", BOOT, data=b"x" * 4096,
                                          headers={"Content-Type": "application/json"})
        assert status == 413
    finally:
        await studio.stop()


# ---- heartbeat ---------------------------------------------------------------------------


async def test_heartbeat_stores_capabilities_and_current_job(worker: Client,
                                                             studio: DevStudio) -> None:
    status, raw = await worker.worker("heartbeat", json_body={
        "capabilities": caps(autoEnabled=False), "currentJobId": "job-1"})
    assert status == 200 and json.loads(raw) == {"ok": True}
    record = studio.workers[worker.worker_id]
    assert record.heartbeats == 1 and record.current_job_id == "job-1"
    assert record.capabilities["autoEnabled"] is False and record.last_heartbeat is not None
    await worker.worker("heartbeat", json_body={"capabilities": caps()})
    assert record.heartbeats == 2 and record.current_job_id is None


async def test_heartbeat_needs_the_workers_own_token(worker: Client, studio: DevStudio) -> None:
    body = {"capabilities": caps()}
    status, raw = await worker.post(f"/workers/{worker.worker_id}/heartbeat", BOOT,
                                    json_body=body)
    assert status == 401 and "refused" in raw.decode()
    status, raw = await worker.post("/workers/w-nobody/heartbeat", worker.token, json_body=body)
    assert status == 401 and "unknown worker" in raw.decode()
    assert studio.workers[worker.worker_id].heartbeats == 0


def _reordered() -> dict[str, Any]:
    value = caps()
    return {"username": value.pop("username"), **value}


def _missing(key: str) -> dict[str, Any]:
    value = caps()
    del value[key]
    return value


@pytest.mark.parametrize(
    ("capabilities", "needle"),
    [
        (_missing("autoStart"), "'autoStart'"),
        (_reordered(), "out of order"),
        ({**caps(), "gpu": "x"}, "'gpu'"),
        (caps(supportedModels=["synthetic-llm", "synthetic"]), "sorted"),
        (caps(supportedModels=["synthetic", "synthetic", "synthetic-llm"]), "de-duplicated"),
        (caps(supportedModels=["synthetic"]), "union"),
        (caps(taskKinds=["llm", "image"]), "kind order"),
        (caps(taskKinds=["image"]), "supportedModelsPerKind"),
        (caps(taskKinds=["image", "teleport"]), "teleport"),
        (caps(vramTotalGb="16"), "'vramTotalGb'"),
        (caps(vramThresholdGb=True), "'vramThresholdGb'"),
        (caps(autoEnabled=1), "'autoEnabled'"),
        (caps(engine=""), "'engine'"),
        (caps(supportedModelsPerKind={"image": ["synthetic"], "llm": "synthetic-llm"}),
         "supportedModelsPerKind.llm"),
        ([], "capabilities must be an object"),
    ],
)
async def test_heartbeat_capabilities_are_validated(
    worker: Client, capabilities: Any, needle: str
) -> None:
    status, raw = await worker.worker("heartbeat", json_body={"capabilities": capabilities})
    assert status == 400 and needle in raw.decode(), raw


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({}, "'capabilities'"),
        ({"capabilities": caps(), "currentJobId": None}, "currentJobId"),
        ({"capabilities": caps(), "jobId": "x"}, "'jobId'"),
    ],
)
async def test_heartbeat_body_is_strict(worker: Client, body: dict[str, Any],
                                        needle: str) -> None:
    status, raw = await worker.worker("heartbeat", json_body=body)
    assert status == 400 and needle in raw.decode()


# ---- claim -------------------------------------------------------------------------------


async def test_claim_respects_vram_and_models(worker: Client, studio: DevStudio) -> None:
    big = studio.enqueue(model="synthetic", task=IMAGE_TASK, vram_gb_estimate=8.5)
    other = studio.enqueue(model="sdxl", task=IMAGE_TASK)
    assert await worker.claim() == (204, None)
    fits = studio.enqueue(model="synthetic", task=IMAGE_TASK, vram_gb_estimate=8.0,
                          game_id="g", asset_name="a/b")
    status, claim = await worker.claim()
    assert status == 200 and claim == {
        "jobId": fits, "gameId": "g", "assetName": "a/b", "model": "synthetic",
        "vramGbEstimate": 8.0, "task": IMAGE_TASK,
    }
    job = studio.jobs[fits]
    assert job.status == "claimed" and job.worker_id == worker.worker_id and job.attempts == 1
    assert studio.jobs[big].status == "queued" and studio.jobs[other].status == "queued"
    assert studio.workers[worker.worker_id].claims == 2
    assert studio.requests[-1].job_id == fits


async def test_legacy_claim_has_prompt_and_ext_but_no_task(worker: Client,
                                                           studio: DevStudio) -> None:
    job = studio.enqueue(prompt="legacy golem", ext="png")
    status, claim = await worker.claim()
    assert status == 200 and claim is not None
    assert claim["prompt"] == "legacy golem" and claim["ext"] == "png" and "task" not in claim
    assert claim["jobId"] == job
    studio.enqueue()
    _, default = await worker.claim()
    assert default is not None and (default["prompt"], default["ext"]) == ("", "webp")


async def test_claim_must_have_no_body(worker: Client, studio: DevStudio) -> None:
    job = studio.enqueue(task=IMAGE_TASK)
    status, raw = await worker.worker("claim", json_body={})
    assert status == 400 and "no request body" in raw.decode()
    assert studio.jobs[job].status == "queued"


async def test_claims_while_paused_are_counted(worker: Client, studio: DevStudio) -> None:
    await worker.worker("heartbeat", json_body={"capabilities": caps(autoEnabled=False)})
    await worker.claim()
    record = studio.workers[worker.worker_id]
    assert record.claims == 1 and record.claims_while_paused == 1


# ---- complete ----------------------------------------------------------------------------


async def claimed(worker: Client, studio: DevStudio, task: dict[str, Any] | None = IMAGE_TASK,
                  model: str = "synthetic") -> str:
    job = studio.enqueue(model=model, task=task)
    status, claim = await worker.claim()
    assert status == 200 and claim is not None and claim["jobId"] == job
    return job


async def test_complete_stores_the_result(worker: Client, studio: DevStudio) -> None:
    job = await claimed(worker, studio)
    status, _ = await worker.complete(job, IMAGE_TASK["prompt"], image=b"\x89PNG bytes")
    assert status == 200
    record = studio.jobs[job]
    assert record.status == "completed" and record.result_bytes == b"\x89PNG bytes"
    assert (record.result_ext, record.result_content_type) == ("png", "image/png")
    assert record.result_filename == f"{job}.png"
    assert record.result_prompt == IMAGE_TASK["prompt"] and record.finished_at is not None
    # A legacy job's prompt is its claim's prompt; unknown exts are octet-stream.
    legacy = studio.enqueue(prompt="héllo wörld", ext="png")
    await worker.claim()
    status, raw = await worker.complete(legacy, "héllo wörld", ext="bin",
                                        content_type="application/octet-stream")
    assert status == 200, raw


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"order": ("ext", "prompt", "image")}, "in that order"),
        ({"order": ("prompt", "image")}, "in that order"),
        ({"order": ("prompt", "ext", "image", "image")}, "in that order"),
        ({"filename": "result.png"}, "filename"),
        ({"content_type": "image/webp"}, "content type"),
        ({"ext": ".png", "filename": "x..png"}, "without the dot"),
        ({"image": b""}, "empty"),
        ({"prompt": "a stone golem xxx…"}, "truncated"),
    ],
)
async def test_complete_violations_are_refused(
    worker: Client, studio: DevStudio, kwargs: dict[str, Any], needle: str
) -> None:
    job = await claimed(worker, studio)
    prompt = kwargs.pop("prompt", IMAGE_TASK["prompt"])
    status, raw = await worker.complete(job, prompt, **kwargs)
    assert status == 400 and needle in raw.decode(), raw
    assert studio.jobs[job].status == "claimed"
    assert studio.requests[-1].reason == raw.decode()


async def test_complete_needs_multipart(worker: Client, studio: DevStudio) -> None:
    job = await claimed(worker, studio)
    status, raw = await worker.worker(f"jobs/{job}/complete", json_body={"prompt": "x"})
    assert status == 400 and "multipart/form-data" in raw.decode()


async def test_complete_by_a_non_owner_conflicts(worker: Client, studio: DevStudio) -> None:
    job = await claimed(worker, studio)
    async with aiohttp.ClientSession() as session:
        other = Client(studio, session)
        await other.register()
        status, raw = await other.complete(job, IMAGE_TASK["prompt"])
        assert status == 409 and raw.decode() == f"job {job} is not claimed by this worker"
        status, _ = await other.complete("job-missing", "x")
        assert status == 409
    assert studio.jobs[job].status == "claimed"


async def test_complete_refuses_json_kinds(worker: Client, studio: DevStudio) -> None:
    job = await claimed(worker, studio, LLM_TASK, "synthetic-llm")
    status, raw = await worker.complete(job, "lore please")
    assert status == 400 and "complete-json" in raw.decode()


# ---- complete-json -----------------------------------------------------------------------


async def test_complete_json_stores_the_result(worker: Client, studio: DevStudio) -> None:
    job = await claimed(worker, studio, LLM_TASK, "synthetic-llm")
    status, _ = await worker.complete_json(job, "lore please")
    assert status == 200
    record = studio.jobs[job]
    assert record.status == "completed" and record.result_json == {"text": "hi"}
    assert record.result_prompt == "lore please" and record.result_bytes is None


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        ({"jobId": "job-other"}, "does not match"),
        ({"resultKind": "text"}, "resultKind"),
        ({"prompt": "be brief"}, "full prompt"),
        ({"status": "ok"}, "'status'"),
    ],
)
async def test_complete_json_violations_are_refused(
    worker: Client, studio: DevStudio, extra: dict[str, Any], needle: str
) -> None:
    job = await claimed(worker, studio, LLM_TASK, "synthetic-llm")
    status, raw = await worker.complete_json(job, extra.pop("prompt", "lore please"), **extra)
    assert status == 400 and needle in raw.decode(), raw
    assert studio.jobs[job].status == "claimed"


async def test_complete_json_refuses_binary_kinds(worker: Client, studio: DevStudio) -> None:
    job = await claimed(worker, studio)
    status, raw = await worker.complete_json(job, IMAGE_TASK["prompt"])
    assert status == 400 and "multipart" in raw.decode()


# ---- fail and staleness ------------------------------------------------------------------


async def test_retryable_fail_requeues_until_max_attempts(worker: Client,
                                                          studio: DevStudio) -> None:
    job = await claimed(worker, studio)
    assert (await worker.fail(job, "engine crashed", True))[0] == 200
    record = studio.jobs[job]
    assert record.status == "queued" and record.worker_id is None and record.error is None
    assert record.fail_history[0]["error"] == "engine crashed"
    assert record.fail_history[0]["retryable"] is True
    for attempt in (2, 3):
        assert (await worker.claim())[0] == 200
        assert record.attempts == attempt
        await worker.fail(job, "engine crashed", True)
    assert studio.jobs[job].status == "failed" and len(record.fail_history) == 3  # max 3
    assert (await worker.fail(job))[0] == 409


async def test_non_retryable_fail_is_final(worker: Client, studio: DevStudio) -> None:
    job = await claimed(worker, studio)
    await worker.fail(job, "cannot serve model sdxl", False)
    record = studio.jobs[job]
    assert record.status == "failed" and record.retryable is False
    assert record.error == "cannot serve model sdxl"
    assert studio.counts() == {"queued": 0, "claimed": 0, "completed": 0, "failed": 1}


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"error": "x", "retryable": "yes"}, "'retryable'"),
        ({"error": "x"}, "'retryable'"),
        ({"error": 5, "retryable": True}, "'error'"),
        ({"error": "x", "retryable": True, "code": 1}, "'code'"),
    ],
)
async def test_fail_body_is_strict(worker: Client, studio: DevStudio, body: dict[str, Any],
                                   needle: str) -> None:
    job = await claimed(worker, studio)
    status, raw = await worker.worker(f"jobs/{job}/fail", json_body=body)
    assert status == 400 and needle in raw.decode()
    assert studio.jobs[job].status == "claimed"


async def test_stale_claims_are_requeued(worker: Client, studio: DevStudio) -> None:
    job = await claimed(worker, studio)
    await studio.wait_for(lambda: studio.jobs[job].status == "queued", timeout=3)
    history = studio.jobs[job].fail_history
    assert history[0]["error"] == "worker heartbeat stale" and history[0]["retryable"] is True
    assert history[0]["workerId"] == worker.worker_id


async def test_heartbeats_keep_a_claim_alive(worker: Client, studio: DevStudio) -> None:
    job = await claimed(worker, studio)
    for _ in range(8):
        await worker.worker("heartbeat", json_body={"capabilities": caps(),
                                                     "currentJobId": job})
        await asyncio.sleep(0.1)
    assert studio.jobs[job].status == "claimed"


# ---- logs --------------------------------------------------------------------------------


def entry(**overrides: Any) -> dict[str, Any]:
    return {"ts": "2026-05-16T00:00:00.000Z", "level": "info", "category": "claim",
            "message": "claimed", **overrides}


async def test_valid_logs_are_kept_with_the_worker_id(worker: Client, studio: DevStudio) -> None:
    batch = [entry(), entry(level="warn", jobId="job-1", message="")]
    status, _ = await worker.worker("logs", json_body={"entries": batch})
    assert status == 200
    assert studio.logs == [{**e, "workerId": worker.worker_id} for e in batch]


@pytest.mark.parametrize(
    ("batch", "needle"),
    [
        ([entry(), entry(ts="2026-05-16T00:00:00Z")], "entries[1]: 'ts'"),
        ([entry(ts="2026-05-16T00:00:00.000000Z")], "entries[0]: 'ts'"),
        ([entry(ts="2026-05-16T00:00:00.000+00:00")], "'ts'"),
        ([entry(ts="2026-13-16T00:00:00.000Z")], "real date"),
        ([entry(level="debug")], "'level'"),
        ([entry(jobId=None)], "'jobId'"),
        ([entry(extra=1)], "'extra'"),
        ([{"ts": "2026-05-16T00:00:00.000Z", "level": "info", "message": "m"}], "'category'"),
        ([entry(message=5)], "'message'"),
        ([], "non-empty"),
    ],
)
async def test_log_entries_are_validated(worker: Client, studio: DevStudio,
                                         batch: list[Any], needle: str) -> None:
    status, raw = await worker.worker("logs", json_body={"entries": batch})
    assert status == 400 and needle in raw.decode(), raw
    assert studio.logs == []


# ---- test hooks --------------------------------------------------------------------------


async def test_enqueue_raw_answers_the_next_claim(worker: Client, studio: DevStudio) -> None:
    studio.enqueue_raw({"jobId": "raw-1", "model": 5})
    studio.enqueue_raw(b"\x00garbage", content_type="application/octet-stream", status=202)
    job = studio.enqueue(task=IMAGE_TASK)
    status, raw = await worker.worker("claim")
    assert status == 200 and json.loads(raw) == {"jobId": "raw-1", "model": 5}
    status, raw = await worker.worker("claim")
    assert status == 202 and raw == b"\x00garbage"
    assert studio.jobs[job].status == "queued"
    # The worker answers a bad claim with fail; the studio accepts it for the raw job id.
    status, _ = await worker.fail("raw-1", "invalid job: model", False)
    assert status == 200 and json.loads(studio.requests[-1].body)["retryable"] is False
    assert (await worker.claim())[1] is not None


async def test_injected_faults_answer_then_clear(worker: Client, studio: DevStudio) -> None:
    studio.inject_fault("claim", status=503, count=2, body="studio busy")
    assert await worker.worker("claim") == (503, b"studio busy")
    assert await worker.worker("claim") == (503, b"studio busy")
    assert (await worker.worker("claim"))[0] == 204
    assert [r.status for r in studio.requests if r.endpoint == "claim"] == [503, 503, 204]
    with pytest.raises(ValueError):
        studio.inject_fault("claims")


async def test_injected_delay_then_normal_handling(worker: Client, studio: DevStudio) -> None:
    studio.inject_fault("heartbeat", status=0, delay=0.3)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    status, _ = await worker.worker("heartbeat", json_body={"capabilities": caps()})
    assert status == 200 and loop.time() - t0 >= 0.3
    assert studio.workers[worker.worker_id].heartbeats == 1


async def test_a_request_abandoned_during_a_delay_is_not_handled(
    worker: Client, studio: DevStudio
) -> None:
    job = studio.enqueue(task=IMAGE_TASK)
    studio.inject_fault("claim", status=0, delay=0.4)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.1):
            await worker.claim()
    await studio.wait_for(lambda: any(r.endpoint == "claim" for r in studio.requests), 2)
    assert studio.requests[-1].status == 499
    assert studio.jobs[job].status == "queued"


async def test_wait_for_explains_a_timeout(studio: DevStudio) -> None:
    studio.enqueue()
    studio.wait_floor_secs = 0.0
    with pytest.raises(TimeoutError, match=r"within 0.1 s.*KeyError.*'queued': 1"):
        await studio.wait_for(lambda: studio.workers["nobody"].claims > 0, timeout=0.1)


# ---- admin API ---------------------------------------------------------------------------


async def test_admin_api_enqueues_and_reports_without_tokens(
    worker: Client, studio: DevStudio
) -> None:
    session = worker.session
    async with session.post(studio.url + "/admin/jobs", json={
            "model": "synthetic", "task": IMAGE_TASK, "vramGbEstimate": 2, "count": 2}) as r:
        assert r.status == 201
        ids = (await r.json())["jobIds"]
    assert len(ids) == 2 and all(studio.jobs[i].vram_gb_estimate == 2 for i in ids)
    async with session.post(studio.url + "/admin/jobs", json={"count": 0}) as r:
        assert r.status == 400 and "count" in await r.text()
    async with session.get(f"{studio.url}/admin/jobs/{ids[0]}/result") as r:
        assert r.status == 404
    await worker.claim()
    await worker.complete(ids[0], IMAGE_TASK["prompt"], image=b"PNGDATA")
    await worker.worker("logs", json_body={"entries": [entry()]})

    async with session.get(studio.url + "/admin/jobs") as r:
        jobs = await r.json()
    assert [j["jobId"] for j in jobs] == ids
    assert jobs[0]["status"] == "completed" and jobs[0]["resultSize"] == 7
    assert jobs[0]["resultExt"] == "png" and jobs[1]["attempts"] == 0
    async with session.get(f"{studio.url}/admin/jobs/{ids[1]}") as r:
        assert (await r.json())["status"] == "queued"
    async with session.get(f"{studio.url}/admin/jobs/nope") as r:
        assert r.status == 404
    async with session.get(f"{studio.url}/admin/jobs/{ids[0]}/result") as r:
        assert r.content_type == "image/png" and await r.read() == b"PNGDATA"

    blobs = []
    for path in ("/admin/jobs", "/admin/workers", "/admin/logs", "/admin/stats"):
        async with session.get(studio.url + path) as r:
            assert r.status == 200
            blobs.append(await r.text())
    assert worker.token not in "".join(blobs) and BOOT not in "".join(blobs)
    workers = json.loads(blobs[1])
    assert workers[0]["workerId"] == worker.worker_id and workers[0]["claims"] == 1
    assert json.loads(blobs[2])[0]["workerId"] == worker.worker_id
    stats = json.loads(blobs[3])
    assert stats["jobs"]["completed"] == 1 and stats["workers"] == 1
    assert stats["requests"]["claim"] == 1 and stats["requests"]["register"] == 1


async def test_admin_serves_json_results(worker: Client, studio: DevStudio) -> None:
    job = await claimed(worker, studio, LLM_TASK, "synthetic-llm")
    await worker.complete_json(job, "lore please")
    async with worker.session.get(f"{studio.url}/admin/jobs/{job}/result") as r:
        assert r.status == 200 and await r.json() == {"text": "hi"}


# ---- run_dev_studio and the multipart parser ---------------------------------------------


async def test_run_dev_studio_prints_and_stops_on_cancel() -> None:
    lines: list[str] = []
    task = asyncio.create_task(run_dev_studio("127.0.0.1", 0, "tok-123", print_fn=lines.append))
    for _ in range(500):
        if len(lines) >= 4:
            break
        await asyncio.sleep(0.01)
    url = lines[0].split("listening at ", 1)[1].split(" ", 1)[0]
    assert "tok-123" in lines[1] and "/admin/jobs" in lines[-1] and "curl" in lines[-1]
    assert "/admin/registrations" in lines[2]
    async with aiohttp.ClientSession() as session, session.get(url + "/admin/stats") as r:
        assert r.status == 200
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientConnectionError):
            await session.get(url + "/admin/stats")


async def _form_bytes(form: aiohttp.FormData) -> tuple[bytes, str]:
    payload = form()
    chunks: list[bytes] = []

    class Sink:
        async def write(self, data: bytes) -> None:
            chunks.append(bytes(data))

    await payload.write(Sink())  # type: ignore[arg-type]
    boundary = payload.content_type.split("boundary=", 1)[1].strip('"')
    return b"".join(chunks), boundary


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(prompt=st.text(), image=st.binary())
async def test_multipart_parser_round_trips_aiohttp_forms(prompt: str, image: bytes) -> None:
    form = aiohttp.FormData()
    form.add_field("prompt", prompt, content_type="text/plain; charset=utf-8")
    form.add_field("image", image, filename="j.png", content_type="image/png")
    body, boundary = await _form_bytes(form)
    parts = parse_multipart(body, boundary)
    assert [p.name for p in parts] == ["prompt", "image"]
    assert parts[0].content.decode() == prompt and parts[1].content == image
    assert parts[1].filename == "j.png"


def test_multipart_parser_refuses_truncated_bodies() -> None:
    with pytest.raises(Rejected, match="truncated"):
        parse_multipart(b'--b\r\nContent-Disposition: form-data; name="x"\r\n\r\nabc', "b")
    with pytest.raises(Rejected, match="start with its boundary"):
        parse_multipart(b"nothing here", "b")
