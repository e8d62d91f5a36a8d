"""The dev studio's v2 side: operator-approved registration and the WebSocket channel
(docs/PROTOCOL.md §3).

As strict as the v1 side: a frame that breaks the contract gets an ``error`` frame
(``protocol_violation``) and the socket is closed with 4002; the refusal is recorded
so a test can read why.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from workerlib.devstudio.records import FrameRecord, JobRecord, RegistrationRecord, WorkerRecord
from workerlib.devstudio.validate import (
    Rejected,
    bad,
    camel_task,
    parse_frame,
    parse_json_object,
    task_kind,
    validate_register_request,
)
from workerlib.wire import JSON_KINDS

if TYPE_CHECKING:
    from workerlib.devstudio.server import DevStudio

SUBPROTOCOL = "studio-worker-v1"
MAX_FRAME_BYTES = 4 * 1024 * 1024
CLOSE_CODES: dict[str, int] = {"auth_failed": 4001, "protocol_violation": 4002,
                               "duplicate_worker": 4003, "worker_deleted": 4004,
                               "internal_error": 1000}


@dataclass
class Session:
    worker: WorkerRecord
    ws: web.WebSocketResponse
    welcomed: bool = False
    offered: str | None = None
    in_flight: str | None = None
    # Jobs this worker rejected: not offered to it again before its next heartbeat.
    declined: set[str] = field(default_factory=set)

    @property
    def idle(self) -> bool:
        return self.welcomed and self.offered is None and self.in_flight is None \
            and self.worker.current_job_id is None


class Channel:
    """Registration requests, sessions and offers of one dev studio."""

    def __init__(self, studio: DevStudio) -> None:
        self.studio = studio
        self.registrations: dict[str, RegistrationRecord] = {}
        self.sessions: dict[str, Session] = {}
        self.frames: list[FrameRecord] = []
        self.silent = False
        """Accept sockets and read frames but never answer (a studio gone quiet)."""
        self.error_before_welcome: tuple[str, str] | None = None
        """(code, message): answer ``hello`` with this error frame instead of ``welcome``."""
        self.sessions_opened = 0
        self._dispatch_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()

    # ---- admin ---------------------------------------------------------------------------

    def pending(self) -> list[RegistrationRecord]:
        return [r for r in self.registrations.values() if r.status == "pending"]

    def approve(self, request_id: str) -> str:
        """Approve a pending request: a worker is created; returns its id."""
        record = self._registration(request_id)
        if record.status != "pending":
            raise ValueError(f"request {request_id} is {record.status}, not pending")
        worker_id = self.studio.new_worker_id()
        self.studio.workers[worker_id] = WorkerRecord(
            worker_id=worker_id, auth_token=secrets.token_urlsafe(24),
            capabilities=record.capabilities, last_seen=time.monotonic())
        record.status = "approved"
        record.worker_id = worker_id
        return worker_id

    def reject(self, request_id: str, reason: str | None = None) -> None:
        record = self._registration(request_id)
        if record.status != "pending":
            raise ValueError(f"request {request_id} is {record.status}, not pending")
        record.status = "rejected"
        record.reason = reason

    def forget(self, request_id: str) -> None:
        """Drop a request: its next poll is answered 404."""
        self._registration(request_id)
        del self.registrations[request_id]

    def _registration(self, request_id: str) -> RegistrationRecord:
        record = self.registrations.get(request_id)
        if record is None:
            raise KeyError(f"no registration request {request_id!r}")
        return record

    async def drop_session(self, worker_id: str, *, code: int = 1000,
                           error: str | None = None) -> bool:
        """Close a worker's socket (with an ``error`` frame first when ``error`` is a code)."""
        session = self.sessions.get(worker_id)
        if session is None:
            return False
        if error is not None:
            await self._send(session, {"type": "error", "code": error,
                                       "message": f"dropped by the studio ({error})"})
            code = CLOSE_CODES.get(error, code)
        await session.ws.close(code=code, message=b"dropped by the studio")
        return True

    async def force_offer(self, worker_id: str, job_id: str) -> None:
        """Offer a queued job to a worker whatever its state: what a real studio does when
        its view of the worker lags (tests of ``busy``)."""
        session = self.sessions[worker_id]
        job = self.studio.jobs[job_id]
        if job.status != "queued" or job.offered_to is not None:
            raise ValueError(f"job {job_id} is not free to offer")
        job.offered_to = worker_id
        session.offered = job_id
        await self._send(session, {"type": "offer", "claim": self._claim(job)})

    def schedule_dispatch(self) -> None:
        """Offer queued jobs soon (from sync code such as ``enqueue``)."""
        with contextlib.suppress(RuntimeError):  # no running loop: nothing is connected
            task = asyncio.get_running_loop().create_task(self.dispatch())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    # ---- registration requests -----------------------------------------------------------

    async def register_request(self, request: web.Request, body: bytes) -> web.StreamResponse:
        data = validate_register_request(parse_json_object(request.content_type, body))
        request_id = "r-" + secrets.token_hex(6)
        self.registrations[request_id] = RegistrationRecord(
            request_id=request_id, install_id=data["installId"],
            secret_hash=data["registrationSecretHash"], capabilities=data["capabilities"],
            user_agent=data["userAgent"])
        return _json({"requestId": request_id, "status": "pending"}, 201)

    async def poll(self, request: web.Request, token: str) -> web.StreamResponse:
        record = self.registrations.get(request.match_info["request_id"])
        if record is None:
            raise Rejected(404, "no such registration request")
        digest = hashlib.sha256(token.encode("utf-8")).hexdigest()
        if not secrets.compare_digest(digest, record.secret_hash):
            raise Rejected(401, "registration secret refused")
        record.polls += 1
        if record.status == "approved":
            assert record.worker_id is not None
            worker = self.studio.workers[record.worker_id]
            return _json({"status": "approved", "workerId": worker.worker_id,
                          "authToken": worker.auth_token})
        if record.status == "rejected":
            reply: dict[str, Any] = {"status": "rejected"}
            if record.reason:
                reply["reason"] = record.reason
            return _json(reply)
        return _json({"status": "pending"})

    # ---- the socket ----------------------------------------------------------------------

    async def connect(self, request: web.Request, worker: WorkerRecord) -> web.StreamResponse:
        ws = web.WebSocketResponse(protocols=(SUBPROTOCOL,), max_msg_size=MAX_FRAME_BYTES,
                                   autoping=True)
        offered = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",")]
        if SUBPROTOCOL not in offered:
            raise bad(f"connect: subprotocol {SUBPROTOCOL!r} is required")
        if not ws.can_prepare(request).ok:
            raise bad("connect: not a WebSocket upgrade")
        await ws.prepare(request)
        self.sessions_opened += 1
        old = self.sessions.get(worker.worker_id)
        session = Session(worker=worker, ws=ws)
        self.sessions[worker.worker_id] = session
        if old is not None:
            # The newer socket wins; the older one is told why it goes.
            await self._send(old, {"type": "error", "code": "duplicate_worker",
                                   "message": "another socket connected for this worker"})
            await old.ws.close(code=4003, message=b"duplicate_worker")
        try:
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    if not await self._frame(session, msg.data):
                        break
                elif msg.type is WSMsgType.BINARY:
                    await self._violation(session, "binary frames are not part of the protocol",
                                          f"<{len(msg.data)} binary bytes>")
                    break
        finally:
            if self.sessions.get(worker.worker_id) is session:
                del self.sessions[worker.worker_id]
            self._release_offer(session)
            self.schedule_dispatch()
        return ws

    async def _frame(self, session: Session, text: str) -> bool:
        """Handle one frame; False when the session is over."""
        worker = session.worker
        try:
            frame = parse_frame(text)
            if not session.welcomed and frame["type"] != "hello":
                raise bad(f"{frame['type']}: the first frame must be 'hello'")
            if session.welcomed and frame["type"] == "hello":
                raise bad("hello: sent twice")
        except Rejected as refusal:
            await self._violation(session, refusal.reason, text)
            return False
        self.frames.append(FrameRecord(direction="in", worker_id=worker.worker_id, text=text))
        kind = frame["type"]
        if kind == "hello":
            return await self._hello(session, frame)
        worker.last_seen = time.monotonic()
        try:
            if kind == "heartbeat":
                worker.capabilities = frame["capabilities"]
                worker.current_job_id = frame.get("currentJobId")
                worker.heartbeats += 1
                worker.last_heartbeat = time.monotonic()
                session.declined.clear()
                await self.dispatch()
                await self._send(session, {"type": "heartbeatAck"})
            elif kind == "accept":
                self._accept(session, frame["jobId"])
            elif kind == "reject":
                self._reject(session, frame)
                await self.dispatch()
            elif kind == "completeJson":
                self._complete_json(session, frame)
                await self._send(session, {"type": "completeAck", "jobId": frame["jobId"]})
                await self.dispatch()
            elif kind == "fail":
                self._fail(session, frame)
                await self._send(session, {"type": "failAck", "jobId": frame["jobId"]})
                await self.dispatch()
            elif kind == "logBatch":
                self.studio.logs.extend({**entry, "workerId": worker.worker_id}
                                        for entry in frame["entries"])
        except Rejected as refusal:
            self.frames[-1].refusal = refusal.reason
            await self._violation(session, refusal.reason, None)
            return False
        return True

    async def _hello(self, session: Session, frame: dict[str, Any]) -> bool:
        worker = session.worker
        if not secrets.compare_digest(frame["authToken"].encode(), worker.auth_token.encode()):
            await self._close_with(session, "auth_failed", "auth token refused")
            return False
        if self.error_before_welcome is not None:
            code, message = self.error_before_welcome
            await self._close_with(session, code, message)
            return False
        worker.capabilities = frame["capabilities"]
        worker.last_seen = time.monotonic()
        session.welcomed = True
        server_time = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
        await self._send(session, {"type": "welcome", "workerId": worker.worker_id,
                                   "serverTime": server_time.replace("+00:00", "Z")})
        await self.dispatch()
        return True

    async def _close_with(self, session: Session, code: str, message: str) -> None:
        await self._send(session, {"type": "error", "code": code, "message": message})
        await session.ws.close(code=CLOSE_CODES.get(code, 1000), message=code.encode())

    async def _violation(self, session: Session, reason: str, text: str | None) -> None:
        if text is not None:
            self.frames.append(FrameRecord(direction="in", worker_id=session.worker.worker_id,
                                           text=text, refusal=reason))
        await self._close_with(session, "protocol_violation", reason)

    def _owned(self, session: Session, job_id: str, where: str) -> JobRecord | None:
        job = self.studio.jobs.get(job_id)
        if job is None or job.status != "claimed" or job.worker_id != session.worker.worker_id:
            return None
        return job

    def _accept(self, session: Session, job_id: str) -> None:
        if session.offered != job_id:
            raise bad(f"accept: job {job_id} was not offered to this worker")
        job = self.studio.jobs[job_id]
        job.offered_to = None
        job.status = "claimed"
        job.attempts += 1
        job.worker_id = session.worker.worker_id
        job.claimed_at = time.time()
        session.offered = None
        session.in_flight = job_id

    def _reject(self, session: Session, frame: dict[str, Any]) -> None:
        job_id = frame["jobId"]
        if session.offered != job_id:
            raise bad(f"reject: job {job_id} was not offered to this worker")
        job = self.studio.jobs[job_id]
        job.offered_to = None
        job.rejects.append({"workerId": session.worker.worker_id, "reason": frame["reason"],
                            "code": frame.get("code"), "at": time.time()})
        session.offered = None
        session.declined.add(job_id)

    def _complete_json(self, session: Session, frame: dict[str, Any]) -> None:
        job_id = frame["jobId"]
        job = self._owned(session, job_id, "completeJson")
        if job is None:
            raise bad(f"completeJson: job {job_id} is not in flight on this worker")
        kind = task_kind(job.task)
        if kind not in JSON_KINDS:
            raise bad(f"completeJson: job {job_id} is a {kind} job; its result must be "
                      "uploaded as multipart to complete")
        self.studio.check_prompt(job, frame["prompt"], "completeJson")
        job.result_json = frame["result"]
        job.result_prompt = frame["prompt"]
        self.studio.finish(job, "completed")
        self._ended(session, job_id)

    def _fail(self, session: Session, frame: dict[str, Any]) -> None:
        job = self._owned(session, frame["jobId"], "fail")
        if job is not None:
            self.studio.release(job, error=frame["error"], retryable=frame["retryable"])
        self._ended(session, frame["jobId"])

    @staticmethod
    def _ended(session: Session, job_id: str) -> None:
        """The job is over: the session is free, and the worker is no longer running it
        whatever its last heartbeat said (the studio offers the next job without waiting
        for the next heartbeat: the Rust worker sends nothing more after a result)."""
        if session.in_flight == job_id:
            session.in_flight = None
        if session.worker.current_job_id == job_id:
            session.worker.current_job_id = None

    def job_done_over_http(self, job: JobRecord) -> None:
        """A binary result arrived through ``complete``: the session is free again."""
        for session in self.sessions.values():
            self._ended(session, job.job_id)
        self.schedule_dispatch()

    def _release_offer(self, session: Session) -> None:
        if session.offered is not None:
            job = self.studio.jobs.get(session.offered)
            if job is not None:
                job.offered_to = None
            session.offered = None

    # ---- offers --------------------------------------------------------------------------

    async def dispatch(self) -> None:
        """Offer queued jobs to idle workers that serve their kind and size (§3.3)."""
        if self.silent:
            return
        async with self._dispatch_lock:
            for job in list(self.studio.jobs.values()):
                if job.status != "queued" or job.offered_to is not None:
                    continue
                session = self._pick(job)
                if session is None:
                    continue
                job.offered_to = session.worker.worker_id
                session.offered = job.job_id
                await self._send(session, {"type": "offer", "claim": self._claim(job)})

    def _pick(self, job: JobRecord) -> Session | None:
        kind = task_kind(job.task)
        for session in self.sessions.values():
            caps = session.worker.capabilities
            if not session.idle or job.job_id in session.declined:
                continue
            if kind in caps.get("taskKinds", ()) and \
                    caps.get("vramThresholdGb", 0) >= job.vram_gb_estimate:
                return session
        return None

    @staticmethod
    def _claim(job: JobRecord) -> dict[str, Any]:
        claim: dict[str, Any] = {"jobId": job.job_id, "gameId": job.game_id,
                                 "assetName": job.asset_name, "model": job.model,
                                 "vramGbEstimate": job.vram_gb_estimate}
        if job.task is None:
            claim["prompt"] = job.prompt or ""
            claim["ext"] = job.ext or "webp"
        else:
            claim["task"] = camel_task(job.task)
        if job.model_source is not None:
            claim["modelSource"] = job.model_source
        return claim

    async def _send(self, session: Session, frame: dict[str, Any]) -> None:
        if session.ws.closed or (self.silent and frame["type"] != "error"):
            return
        text = json.dumps(frame)
        self.frames.append(FrameRecord(direction="out", worker_id=session.worker.worker_id,
                                       text=text))
        with contextlib.suppress(ConnectionError, RuntimeError):
            await session.ws.send_str(text)

    async def close_all(self) -> None:
        for session in list(self.sessions.values()):
            with contextlib.suppress(Exception):
                await session.ws.close(code=1001, message=b"studio stopping")
        for task in list(self._tasks):
            task.cancel()


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, text=json.dumps(data), content_type="application/json")
