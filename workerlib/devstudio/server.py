"""A local, strict stand-in for the minis.gg studio (the studio side of docs/PROTOCOL.md).

Used by the integration tests, ``studio-worker demo`` and ``studio-worker dev-studio``.
Every request a worker makes is checked against the contract and refused with a
plain-text reason naming the field when it is wrong, so wire mistakes fail loudly.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import secrets
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from aiohttp import web

from workerlib.devstudio.channel import Channel
from workerlib.devstudio.records import (
    JOB_STATUSES,
    JobRecord,
    RequestRecord,
    WorkerRecord,
)
from workerlib.devstudio.validate import (
    Part,
    Rejected,
    bad,
    check_keys,
    expected_prompt,
    media_type,
    multipart_boundary,
    parse_json_object,
    parse_multipart,
    part_names,
    require_str,
    snake_task,
    task_kind,
    text_part,
    validate_capabilities,
    validate_log_entries,
)
from workerlib.wire import CONTENT_TYPES, JSON_KINDS

API_PREFIX = "/graphics/api"
MAX_REQUEST_BYTES = 64 * 1024 * 1024
BODY_RECORD_CAP = 1024 * 1024
ENDPOINTS: frozenset[str] = frozenset(
    {"register", "heartbeat", "claim", "complete", "complete-json", "fail", "logs",
     "register-request", "register-poll", "connect"}
)
V1_ONLY: frozenset[str] = frozenset(
    {"register", "heartbeat", "claim", "complete-json", "fail", "logs"})
V2_ONLY: frozenset[str] = frozenset({"register-request", "register-poll", "connect"})
Protocol = Literal["v1", "v2", "both"]
_ADMIN_JOB_KEYS: tuple[str, ...] = (
    "model", "task", "vramGbEstimate", "gameId", "assetName", "prompt", "ext", "count",
)

Handler = Callable[["_Call"], Awaitable[web.StreamResponse]]
RouteHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class _Fault:
    status: int
    remaining: int
    body: str
    delay: float
    gate: asyncio.Event | None = None


@dataclass
class _RawClaim:
    body: bytes
    status: int
    content_type: str


@dataclass
class _Call:
    request: web.Request
    body: bytes
    record: RequestRecord


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, text=json.dumps(data), content_type="application/json")


def _text(status: int, text: str) -> web.Response:
    if status in (204, 304):
        return web.Response(status=status)
    return web.Response(status=status, text=text)


class DevStudio:
    """The studio's HTTP API on loopback, with in-process admin for tests and the demo."""

    wait_floor_secs: float = 0.0
    """The least :meth:`wait_for` waits (test suites raise it)."""

    def __init__(
        self,
        bootstrap_token: str = "dev-bootstrap-token",
        *,
        stale_after_secs: float = 30.0,
        max_attempts: int = 5,
        protocol: Protocol = "both",
    ) -> None:
        if not bootstrap_token:
            raise ValueError("bootstrap_token must not be empty")
        self.bootstrap_token = bootstrap_token
        self.protocol: Protocol = protocol
        """Which API this studio serves; the other one's routes answer 404 (settable)."""
        self.channel = Channel(self)
        self.stale_after_secs = stale_after_secs
        self.max_attempts = max_attempts
        self.jobs: dict[str, JobRecord] = {}
        self.workers: dict[str, WorkerRecord] = {}
        self.held: list[RequestRecord] = []
        """Requests waiting behind an ``inject_fault`` gate (requests lists them once answered)."""
        self.logs: list[dict[str, Any]] = []
        self.requests: list[RequestRecord] = []
        self.url = ""
        self._raw_claims: deque[_RawClaim] = deque()
        # Job ids handed out through enqueue_raw, so fail/complete for them are accepted.
        self._raw_owners: dict[str, str] = {}
        self._faults: dict[str, deque[_Fault]] = {name: deque() for name in ENDPOINTS}
        self._runner: web.AppRunner | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self.app = web.Application(client_max_size=MAX_REQUEST_BYTES)
        self._add_routes()

    # ---- lifecycle -------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        if self._runner is not None:
            raise RuntimeError("the dev studio is already running")
        runner = web.AppRunner(self.app, access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        bound_port = runner.addresses[0][1]
        self.url = f"http://{_url_host(host)}:{bound_port}"
        self._sweeper = asyncio.create_task(self._sweep_stale(), name="devstudio-stale-sweeper")
        return self.url

    async def stop(self) -> None:
        await self.channel.close_all()
        sweeper, self._sweeper = self._sweeper, None
        if sweeper is not None:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    # ---- in-process admin --------------------------------------------------------------

    def enqueue(
        self,
        *,
        model: str = "synthetic",
        task: dict[str, Any] | None = None,
        vram_gb_estimate: float = 1.0,
        game_id: str = "demo-game",
        asset_name: str = "demo/asset",
        prompt: str | None = None,
        ext: str | None = None,
        job_id: str | None = None,
        model_source: dict[str, Any] | None = None,
    ) -> str:
        """Queue a job; with ``task=None`` it is claimed the legacy way (``prompt``/``ext``).

        ``task`` keys may be snake_case or camelCase: v1 claims carry them snake_case,
        v2 offers camelCase, as the real studio does.
        """
        if job_id is None:
            job_id = self._new_job_id()
        elif not job_id or job_id in self.jobs or job_id in self._raw_owners:
            raise ValueError(f"job id {job_id!r} is empty or already used")
        if task is None:
            prompt = "" if prompt is None else prompt
            ext = "webp" if ext is None else ext
        self.jobs[job_id] = JobRecord(
            job_id=job_id, game_id=game_id, asset_name=asset_name, model=model,
            vram_gb_estimate=vram_gb_estimate,
            task=None if task is None else snake_task(task), prompt=prompt, ext=ext,
            model_source=model_source,
        )
        self.channel.schedule_dispatch()
        return job_id

    def enqueue_raw(
        self,
        payload: bytes | dict[str, Any],
        *,
        status: int = 200,
        content_type: str = "application/json",
    ) -> None:
        """The next claim, from any worker, gets exactly this reply instead of a job."""
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self._raw_claims.append(_RawClaim(body=body, status=status, content_type=content_type))

    def inject_fault(
        self,
        endpoint: str,
        *,
        status: int = 500,
        count: int = 1,
        body: str = "injected fault",
        delay: float = 0.0,
        gate: asyncio.Event | None = None,
    ) -> None:
        """The next ``count`` requests to ``endpoint`` answer ``status`` after ``delay`` s
        (and, with ``gate``, once the test has set it: a request held for as long as a
        test needs, without a timer).

        ``status=0`` only delays; the request is then handled normally.
        """
        if endpoint not in ENDPOINTS:
            raise ValueError(f"unknown endpoint {endpoint!r}; one of {sorted(ENDPOINTS)}")
        if count < 1:
            raise ValueError("count must be at least 1")
        if status != 0 and not 100 <= status <= 599:
            raise ValueError(f"status {status} is not an HTTP status")
        self._faults[endpoint].append(_Fault(status=status, remaining=count, body=body,
                                             delay=delay, gate=gate))

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        """Poll ``predicate`` until it holds; TimeoutError with the studio's state if not.

        ``timeout`` is raised to :attr:`wait_floor_secs` (test suites set a floor so a
        loaded machine is never mistaken for a broken worker)."""
        timeout = max(timeout, self.wait_floor_secs)
        deadline = time.monotonic() + timeout
        last_error: BaseException | None = None
        while True:
            try:
                if predicate():
                    return
                last_error = None
            except Exception as exc:  # e.g. a KeyError before the worker registered
                last_error = exc
            if time.monotonic() >= deadline:
                raise TimeoutError(self._describe_timeout(timeout, last_error))
            await asyncio.sleep(0.02)

    def counts(self) -> dict[str, int]:
        counter = Counter(job.status for job in self.jobs.values())
        return {status: counter.get(status, 0) for status in JOB_STATUSES}

    def _describe_timeout(self, timeout: float, error: BaseException | None) -> str:
        recent = ", ".join(f"{r.endpoint}:{r.status}" for r in self.requests[-15:]) or "none"
        raised = f"; the predicate last raised {error!r}" if error is not None else ""
        return (f"condition not met within {timeout} s{raised}; jobs {self.counts()}; "
                f"workers {sorted(self.workers)}; last requests: {recent}")

    # v2 admin: see Channel for the details.
    def approve(self, request_id: str) -> str:
        """Approve a pending v2 registration request; returns the new worker's id."""
        return self.channel.approve(request_id)

    def reject_registration(self, request_id: str, reason: str | None = None) -> None:
        self.channel.reject(request_id, reason)

    async def drop_session(self, worker_id: str, *, code: int = 1000,
                           error: str | None = None) -> bool:
        return await self.channel.drop_session(worker_id, code=code, error=error)

    def _new_job_id(self) -> str:
        while True:
            job_id = f"job-{len(self.jobs) + 1:04d}-{secrets.token_hex(3)}"
            if job_id not in self.jobs and job_id not in self._raw_owners:
                return job_id

    # ---- routing -----------------------------------------------------------------------

    def _add_routes(self) -> None:
        api = API_PREFIX
        wire: list[tuple[str, str, Handler]] = [
            ("register", "/workers/register", self._register),
            ("heartbeat", "/workers/{worker_id}/heartbeat", self._heartbeat),
            ("claim", "/workers/{worker_id}/claim", self._claim),
            ("complete", "/workers/{worker_id}/jobs/{job_id}/complete", self._complete),
            ("complete-json", "/workers/{worker_id}/jobs/{job_id}/complete-json",
             self._complete_json),
            ("fail", "/workers/{worker_id}/jobs/{job_id}/fail", self._fail),
            ("logs", "/workers/{worker_id}/logs", self._logs),
            ("register-request", "/workers/register-request", self._register_request),
            ("register-poll", "/workers/register-requests/{request_id}", self._register_poll),
            ("connect", "/workers/{worker_id}/connect", self._connect),
        ]
        for name, path, handler in wire:
            self.app.router.add_route("*", api + path, self._wire(name, handler))
        self.app.router.add_route("*", api + "/{tail:.*}", self._wire("unknown", self._unknown))
        self.app.router.add_post("/admin/jobs", self._admin_enqueue)
        self.app.router.add_get("/admin/jobs", self._admin_jobs)
        self.app.router.add_get("/admin/jobs/{job_id}", self._admin_job)
        self.app.router.add_get("/admin/jobs/{job_id}/result", self._admin_result)
        self.app.router.add_get("/admin/workers", self._admin_workers)
        self.app.router.add_get("/admin/logs", self._admin_logs)
        self.app.router.add_get("/admin/stats", self._admin_stats)
        self.app.router.add_get("/admin/registrations", self._admin_registrations)
        self.app.router.add_post("/admin/registrations/{request_id}/{decision}",
                                 self._admin_decide)
        self.app.router.add_post("/admin/workers/{worker_id}/drop-session", self._admin_drop)

    def _wire(self, endpoint: str, handler: Handler) -> RouteHandler:
        async def wrapped(request: web.Request) -> web.StreamResponse:
            record = RequestRecord(
                endpoint=endpoint, method=request.method, path=request.path, status=0,
                time=time.time(), worker_id=request.match_info.get("worker_id"),
                job_id=request.match_info.get("job_id"),
            )
            try:
                response = await self._serve(endpoint, handler, request, record)
            except Rejected as refusal:
                record.reason = refusal.reason
                response = _text(refusal.status, refusal.reason)
            record.status = response.status
            self.requests.append(record)
            return response

        return wrapped

    async def _serve(
        self, endpoint: str, handler: Handler, request: web.Request, record: RequestRecord
    ) -> web.StreamResponse:
        if (self.protocol == "v2" and endpoint in V1_ONLY) or \
                (self.protocol == "v1" and endpoint in V2_ONLY):
            raise Rejected(404, f"no such studio endpoint: {request.path} (this studio "
                           f"speaks {self.protocol} only)")
        method = "GET" if endpoint in ("register-poll", "connect") else "POST"
        if request.method != method:
            raise Rejected(405, f"{endpoint} must be {method}, got {request.method}")
        try:
            body = await request.read()
        except web.HTTPException as exc:  # 413 from client_max_size
            raise Rejected(exc.status, exc.text or exc.reason) from None
        record.body = body[:BODY_RECORD_CAP]
        fault = self._take_fault(endpoint)
        if fault is not None:
            if fault.delay > 0 or fault.gate is not None:
                await asyncio.sleep(fault.delay)
                if fault.gate is not None:
                    self.held.append(record)
                    try:
                        await fault.gate.wait()
                    finally:
                        self.held.remove(record)
                # Handling a request the worker gave up on would e.g. claim a job nobody runs.
                if request.transport is None or request.transport.is_closing():
                    raise Rejected(499, "client went away during the injected delay")
            if fault.status:
                raise Rejected(fault.status, fault.body)
        # Strict about the contract, not about who we are: any User-Agent, or none (the
        # Rust 0.1.x worker sends none), is fine.
        record.user_agent = request.headers.get("User-Agent")
        return await handler(_Call(request=request, body=body, record=record))

    def _take_fault(self, endpoint: str) -> _Fault | None:
        if endpoint not in self._faults:
            return None
        queue = self._faults[endpoint]
        if not queue:
            return None
        fault = queue[0]
        fault.remaining -= 1
        if fault.remaining <= 0:
            queue.popleft()
        return fault

    # ---- auth --------------------------------------------------------------------------

    @staticmethod
    def _bearer(request: web.Request) -> str:
        header = request.headers.get("Authorization")
        if header is None:
            raise Rejected(401, "missing Authorization header (expected 'Bearer <token>')")
        scheme, _, token = header.partition(" ")
        if scheme != "Bearer" or not token or token != token.strip():
            raise Rejected(401, "Authorization header must be exactly 'Bearer <token>'")
        return token

    def _authorise(self, call: _Call) -> WorkerRecord:
        token = self._bearer(call.request)
        worker_id = call.request.match_info["worker_id"]
        worker = self.workers.get(worker_id)
        if worker is None:
            raise Rejected(401, f"unknown worker {worker_id!r}; register first")
        if not secrets.compare_digest(token.encode(), worker.auth_token.encode()):
            raise Rejected(401, f"auth token refused for worker {worker_id!r}")
        return worker

    def _owned_job(self, call: _Call, worker: WorkerRecord) -> JobRecord | None:
        """The job in the path, claimed by ``worker``; None for a job from enqueue_raw."""
        job_id = call.request.match_info["job_id"]
        if self._raw_owners.get(job_id) == worker.worker_id:
            return None
        job = self.jobs.get(job_id)
        if job is None or job.status != "claimed" or job.worker_id != worker.worker_id:
            raise Rejected(409, f"job {job_id} is not claimed by this worker")
        return job

    # ---- worker API --------------------------------------------------------------------

    async def _unknown(self, call: _Call) -> web.StreamResponse:
        raise Rejected(404, f"no such studio endpoint: {call.request.path}")

    async def _register(self, call: _Call) -> web.StreamResponse:
        token = self._bearer(call.request)
        if not secrets.compare_digest(token.encode(), self.bootstrap_token.encode()):
            raise Rejected(401, "bootstrap token refused")
        body = parse_json_object(call.request.content_type, call.body)
        check_keys(body, ("bootstrapToken", "capabilities"), ("workerId",), "register")
        if require_str(body, "bootstrapToken", "register") != token:
            raise bad("register: 'bootstrapToken' must equal the Bearer token")
        caps = validate_capabilities(body["capabilities"])
        worker_id = require_str(body, "workerId", "register") if "workerId" in body else None
        now = time.monotonic()
        if worker_id is not None and worker_id in self.workers:
            worker = self.workers[worker_id]
            worker.capabilities = caps
            worker.last_seen = now
        else:
            worker_id = worker_id or self.new_worker_id()
            worker = WorkerRecord(worker_id=worker_id, auth_token=secrets.token_urlsafe(24),
                                  capabilities=caps, last_seen=now)
            self.workers[worker_id] = worker
        call.record.worker_id = worker_id
        return _json({"workerId": worker.worker_id, "authToken": worker.auth_token}, 201)

    def new_worker_id(self) -> str:
        while True:
            worker_id = "w-" + secrets.token_hex(4)
            if worker_id not in self.workers:
                return worker_id

    async def _heartbeat(self, call: _Call) -> web.StreamResponse:
        worker = self._authorise(call)
        body = parse_json_object(call.request.content_type, call.body)
        check_keys(body, ("capabilities",), ("currentJobId",), "heartbeat")
        caps = validate_capabilities(body["capabilities"])
        current = require_str(body, "currentJobId", "heartbeat") if "currentJobId" in body else None
        worker.capabilities = caps
        worker.current_job_id = current
        worker.heartbeats += 1
        worker.last_heartbeat = worker.last_seen = time.monotonic()
        return _json({"ok": True})

    async def _claim(self, call: _Call) -> web.StreamResponse:
        worker = self._authorise(call)
        length = call.request.content_length
        if call.body or (length is not None and length > 0):
            raise bad("claim must have no request body")
        worker.claims += 1
        if worker.capabilities.get("autoEnabled") is False:
            worker.claims_while_paused += 1
        if self._raw_claims:
            raw = self._raw_claims.popleft()
            self._remember_raw_owner(raw, worker)
            if raw.status in (204, 304):
                return web.Response(status=raw.status)
            return web.Response(status=raw.status, body=raw.body, content_type=raw.content_type)
        threshold = worker.capabilities["vramThresholdGb"]
        models = worker.capabilities["supportedModels"]
        for job in self.jobs.values():
            if job.status == "queued" and job.offered_to is None \
                    and job.vram_gb_estimate <= threshold and job.model in models:
                job.status = "claimed"
                job.attempts += 1
                job.worker_id = worker.worker_id
                job.claimed_at = time.time()
                call.record.job_id = job.job_id
                return _json(self._claim_payload(job))
        return web.Response(status=204)

    def _remember_raw_owner(self, raw: _RawClaim, worker: WorkerRecord) -> None:
        try:
            payload = json.loads(raw.body)
        except ValueError:
            return
        if isinstance(payload, dict) and isinstance(payload.get("jobId"), str):
            self._raw_owners[payload["jobId"]] = worker.worker_id

    @staticmethod
    def _claim_payload(job: JobRecord) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "jobId": job.job_id,
            "gameId": job.game_id,
            "assetName": job.asset_name,
            "model": job.model,
            "vramGbEstimate": job.vram_gb_estimate,
        }
        if job.task is None or job.prompt is not None:
            payload["prompt"] = job.prompt
        if job.task is None or job.ext is not None:
            payload["ext"] = job.ext
        if job.task is not None:
            payload["task"] = job.task
        return payload

    async def _complete(self, call: _Call) -> web.StreamResponse:
        worker = self._authorise(call)
        job_id = call.request.match_info["job_id"]
        boundary = multipart_boundary(call.request.headers.get("Content-Type", ""))
        parts = parse_multipart(call.body, boundary)
        if part_names(parts) != ["prompt", "ext", "image"]:
            raise bad("complete: multipart parts must be exactly 'prompt', 'ext', 'image' in "
                      f"that order; got {part_names(parts)}")
        prompt = text_part(parts[0])
        ext = text_part(parts[1])
        image = parts[2]
        self._check_image_part(image, job_id, ext)
        job = self._owned_job(call, worker)
        if job is not None:
            kind = self._job_kind(job)
            if kind in JSON_KINDS:
                raise bad(f"complete: job {job_id} is a {kind} job; its result must go to "
                          "complete-json")
            self.check_prompt(job, prompt, "complete")
            job.result_bytes = image.content
            job.result_ext = ext
            job.result_content_type = media_type(image.content_type)
            job.result_filename = image.filename
            job.result_prompt = prompt
            self.finish(job, "completed")
            self.channel.job_done_over_http(job)
        return _json({"ok": True})

    @staticmethod
    def _check_image_part(image: Part, job_id: str, ext: str) -> None:
        if not ext or ext != ext.strip() or "." in ext or "/" in ext:
            raise bad(f"complete: part 'ext' must be a file extension without the dot, got {ext!r}")
        if image.filename != f"{job_id}.{ext}":
            raise bad(f"complete: part 'image' filename must be {job_id}.{ext!s}, "
                      f"got {image.filename!r}")
        wanted = CONTENT_TYPES.get(ext.lower(), "application/octet-stream")
        if media_type(image.content_type) != wanted:
            raise bad(f"complete: part 'image' content type for .{ext} must be {wanted}, "
                      f"got {image.content_type!r}")
        if not image.content:
            raise bad("complete: part 'image' is empty")

    async def _complete_json(self, call: _Call) -> web.StreamResponse:
        worker = self._authorise(call)
        job_id = call.request.match_info["job_id"]
        body = parse_json_object(call.request.content_type, call.body)
        where = "complete-json"
        check_keys(body, ("jobId", "prompt", "result", "resultKind"), (), where)
        if require_str(body, "jobId", where) != job_id:
            raise bad(f"{where}: 'jobId' {body['jobId']!r} does not match the path's {job_id!r}")
        prompt = require_str(body, "prompt", where, non_empty=False)
        if body["resultKind"] != "json":
            raise bad(f"{where}: 'resultKind' must be \"json\", got {body['resultKind']!r}")
        job = self._owned_job(call, worker)
        if job is not None:
            kind = self._job_kind(job)
            if kind not in JSON_KINDS:
                raise bad(f"{where}: job {job_id} is a {kind} job; its result must be uploaded "
                          "as multipart to complete")
            self.check_prompt(job, prompt, where)
            job.result_json = body["result"]
            job.result_prompt = prompt
            self.finish(job, "completed")
        return _json({"ok": True})

    @staticmethod
    def _job_kind(job: JobRecord) -> str:
        kind = task_kind(job.task)
        if kind is None:
            raise bad(f"job {job.job_id} has an invalid task; it should have been failed "
                      "(retryable: false), not completed")
        return kind

    @staticmethod
    def check_prompt(job: JobRecord, prompt: str, where: str) -> None:
        wanted = expected_prompt(job.task, job.prompt)
        if wanted is None:
            raise bad(f"job {job.job_id} has an invalid task; it should have been failed "
                      "(retryable: false), not completed")
        if prompt != wanted:
            raise bad(f"{where}: 'prompt' must be the task's full prompt ({len(wanted)} chars), "
                      f"got {len(prompt)} chars — never a truncated preview")

    async def _fail(self, call: _Call) -> web.StreamResponse:
        worker = self._authorise(call)
        body = parse_json_object(call.request.content_type, call.body)
        check_keys(body, ("error", "retryable"), (), "fail")
        error = require_str(body, "error", "fail")
        retryable = body["retryable"]
        if not isinstance(retryable, bool):
            raise bad(f"fail: 'retryable' must be a boolean, got {retryable!r}")
        job = self._owned_job(call, worker)
        if job is not None:
            self.release(job, error=error, retryable=retryable)
        return _json({"ok": True})

    async def _register_request(self, call: _Call) -> web.StreamResponse:
        if "Authorization" in call.request.headers:
            raise bad("register-request takes no Authorization header")
        return await self.channel.register_request(call.request, call.body)

    async def _register_poll(self, call: _Call) -> web.StreamResponse:
        return await self.channel.poll(call.request, self._bearer(call.request))

    async def _connect(self, call: _Call) -> web.StreamResponse:
        worker = self._authorise(call)
        return await self.channel.connect(call.request, worker)

    async def _logs(self, call: _Call) -> web.StreamResponse:
        worker = self._authorise(call)
        body = parse_json_object(call.request.content_type, call.body)
        entries = validate_log_entries(body)
        self.logs.extend({**entry, "workerId": worker.worker_id} for entry in entries)
        return _json({"ok": True, "accepted": len(entries)})

    # ---- job state ---------------------------------------------------------------------

    @staticmethod
    def finish(job: JobRecord, status: Literal["completed", "failed"]) -> None:
        job.status = status
        job.finished_at = time.time()
        if status == "completed":
            job.error = None
            job.retryable = None

    def release(self, job: JobRecord, *, error: str, retryable: bool) -> None:
        job.fail_history.append({
            "error": error, "retryable": retryable, "workerId": job.worker_id,
            "attempt": job.attempts, "at": time.time(),
        })
        if retryable and job.attempts < self.max_attempts:
            job.status = "queued"
            job.worker_id = None
            job.claimed_at = None
            return
        job.error = error
        job.retryable = retryable
        self.finish(job, "failed")

    async def _sweep_stale(self) -> None:
        interval = min(1.0, max(0.05, self.stale_after_secs / 4))
        while True:
            await asyncio.sleep(interval)
            self.requeue_stale()

    def requeue_stale(self) -> list[str]:
        """Release jobs whose worker has not been seen for ``stale_after_secs``."""
        now = time.monotonic()
        released: list[str] = []
        for job in self.jobs.values():
            if job.status != "claimed" or job.worker_id is None:
                continue
            worker = self.workers.get(job.worker_id)
            if worker is None or now - worker.last_seen > self.stale_after_secs:
                self.release(job, error="worker heartbeat stale", retryable=True)
                released.append(job.job_id)
        return released

    # ---- admin HTTP API ----------------------------------------------------------------

    async def _admin_enqueue(self, request: web.Request) -> web.StreamResponse:
        try:
            body = parse_json_object(request.content_type, await request.read())
            check_keys(body, (), _ADMIN_JOB_KEYS, "admin job")
            kwargs: dict[str, Any] = {}
            for key, name in (("model", "model"), ("gameId", "game_id"),
                              ("assetName", "asset_name"), ("prompt", "prompt"), ("ext", "ext")):
                if key in body:
                    kwargs[name] = require_str(body, key, "admin job", non_empty=key != "prompt")
            if "task" in body:
                if not isinstance(body["task"], dict):
                    raise bad("admin job: 'task' must be an object")
                kwargs["task"] = body["task"]
            if "vramGbEstimate" in body:
                vram = body["vramGbEstimate"]
                if isinstance(vram, bool) or not isinstance(vram, int | float) or vram < 0:
                    raise bad("admin job: 'vramGbEstimate' must be a number >= 0")
                kwargs["vram_gb_estimate"] = vram
            count = body.get("count", 1)
            if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 1000:
                raise bad("admin job: 'count' must be an integer from 1 to 1000")
        except Rejected as refusal:
            return _text(refusal.status, refusal.reason)
        job_ids = [self.enqueue(**kwargs) for _ in range(count)]
        return _json({"jobIds": job_ids}, 201)

    async def _admin_jobs(self, request: web.Request) -> web.StreamResponse:
        return _json([job.summary() for job in self.jobs.values()])

    def _admin_find(self, request: web.Request) -> JobRecord:
        job = self.jobs.get(request.match_info["job_id"])
        if job is None:
            raise web.HTTPNotFound(text=f"no job {request.match_info['job_id']!r}")
        return job

    async def _admin_job(self, request: web.Request) -> web.StreamResponse:
        return _json(self._admin_find(request).summary())

    async def _admin_result(self, request: web.Request) -> web.StreamResponse:
        job = self._admin_find(request)
        if job.result_bytes is not None:
            return web.Response(body=job.result_bytes,
                                content_type=job.result_content_type or "application/octet-stream")
        if job.status == "completed" and job.task is not None and \
                task_kind(job.task) in JSON_KINDS:
            return _json(job.result_json)
        raise web.HTTPNotFound(text=f"job {job.job_id} has no result")

    async def _admin_workers(self, request: web.Request) -> web.StreamResponse:
        return _json([worker.summary() for worker in self.workers.values()])

    async def _admin_logs(self, request: web.Request) -> web.StreamResponse:
        return _json(self.logs)

    async def _admin_registrations(self, request: web.Request) -> web.StreamResponse:
        return _json([r.summary() for r in self.channel.registrations.values()])

    async def _admin_decide(self, request: web.Request) -> web.StreamResponse:
        request_id = request.match_info["request_id"]
        decision = request.match_info["decision"]
        try:
            if decision == "approve":
                return _json({"workerId": self.approve(request_id)})
            if decision == "reject":
                body = await request.read()
                reason = None
                if body:
                    data = parse_json_object(request.content_type, body)
                    check_keys(data, (), ("reason",), "admin reject")
                    reason = require_str(data, "reason", "admin reject") if "reason" in data \
                        else None
                self.reject_registration(request_id, reason)
                return _json({"ok": True})
        except KeyError as exc:
            return _text(404, str(exc.args[0]))
        except (ValueError, Rejected) as exc:
            return _text(409 if isinstance(exc, ValueError) else 400, str(exc))
        return _text(404, f"unknown decision {decision!r}: approve or reject")

    async def _admin_drop(self, request: web.Request) -> web.StreamResponse:
        code = request.query.get("code", "1000")
        error = request.query.get("error")
        if not code.isdigit():
            return _text(400, "code must be a number")
        dropped = await self.drop_session(request.match_info["worker_id"], code=int(code),
                                          error=error)
        return _json({"dropped": dropped}, 200 if dropped else 404)

    async def _admin_stats(self, request: web.Request) -> web.StreamResponse:
        return _json({
            "jobs": self.counts(),
            "workers": len(self.workers),
            "logEntries": len(self.logs),
            "requests": dict(Counter(r.endpoint for r in self.requests)),
            "sessions": sorted(self.channel.sessions),
            "pendingRegistrations": [r.request_id for r in self.channel.pending()],
        })


def _url_host(host: str) -> str:
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    with contextlib.suppress(ValueError):
        if ipaddress.ip_address(host).version == 6:
            return f"[{host}]"
    return host


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def run_dev_studio(
    host: str,
    port: int,
    bootstrap_token: str,
    *,
    protocol: Protocol = "both",
    print_fn: Callable[[str], None] = print,
) -> None:
    """Serve a dev studio until cancelled, then stop it cleanly."""
    studio = DevStudio(bootstrap_token=bootstrap_token, protocol=protocol)
    url = await studio.start(host, port)
    try:
        print_fn(f"dev studio ({protocol}) listening at {url} — point workers at "
                 f"api_base_url = {url}")
        if protocol != "v2":
            print_fn(f"v1: register with bootstrap_token = {bootstrap_token}")
        if protocol != "v1":
            print_fn(f"v2: a worker without a token asks for approval; see {url}/admin/"
                     f"registrations, then curl -X POST {url}/admin/registrations/REQUEST_ID/"
                     "approve (or .../reject with -d '{\"reason\": \"...\"}')")
        if not _is_loopback(host):
            print_fn(f"warning: {host} is not loopback; the /admin API has no authentication")
        print_fn("enqueue a job: curl -X POST -H 'Content-Type: application/json' "
                 f"-d '{{\"model\": \"synthetic\", \"task\": {{\"kind\": \"image\", "
                 f"\"prompt\": \"a stone golem\"}}}}' {url}/admin/jobs "
                 f"(then see {url}/admin/jobs and {url}/admin/stats)")
        await asyncio.Event().wait()
    finally:
        await studio.stop()
