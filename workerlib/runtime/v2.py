"""Studio API v2: one WebSocket per worker (docs/PROTOCOL.md).

Every frame read is size-capped (``max_msg_size``) and validated with pydantic before
it is acted on; ids go through the same pattern as v1's. Binary results still go
over HTTP (v1 multipart ``complete``); JSON results and failures are frames.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import aiohttp
from pydantic import ValidationError

from workerlib.api import TASK_SHAPES_HINT, USER_AGENT, api_root, strict_json
from workerlib.engines.base import BinaryResult
from workerlib.errors import StudioError, StudioUnreachable
from workerlib.logs import get_logger
from workerlib.runtime.job import CONNECTION_LOST_REASON
from workerlib.runtime.timing import Backoff, Cadence, wait_any, wait_event
from workerlib.runtime.transport import End, LoopContext, upload_binary
from workerlib.wire import (
    FRAME_ADAPTER,
    CompleteAck,
    ErrorFrame,
    FailAck,
    HeartbeatAck,
    JobClaim,
    Offer,
    StudioFrame,
    Welcome,
    check_id,
)

log = get_logger("channel")
log_claim = get_logger("claim")

SUBPROTOCOL = "studio-worker-v1"
MAX_FRAME_BYTES = 4 * 1024 * 1024
"""An offer is a small JSON object; a larger frame closes the session (1009)."""
IDLE_TIMEOUT_SECS = 20.0
CONNECT_TIMEOUT_SECS = 15.0
ACK_TIMEOUT_SECS = 30.0
RECONNECT_CAP_SECS = 30.0
LOG_FLUSH_SECS = 1.0
LOG_BATCH = 500
NO_V2_STATUSES = frozenset({404, 405, 426})

CLOSE_AUTH_FAILED = 4001
CLOSE_PROTOCOL_VIOLATION = 4002
CLOSE_DUPLICATE = 4003
CLOSE_DELETED = 4004
PAUSED_REASON = "worker paused by operator"
BUSY_REASON = "worker already has an in-flight job"

DUPLICATE_MESSAGE = ("another worker connected to the studio with this worker's id "
                     "(duplicate_worker): is this config in use on another PC? Not "
                     "reconnecting; restart the worker once the other copy is stopped")
DELETED_MESSAGE = ("the studio deleted this worker (worker_deleted): register again "
                   "(`studio-worker register --reset`, or Start over in the window)")
UNAUTHORISED_MESSAGE = "the studio refused this worker's token: not authorised — register again"


def channel_url(base_url: str, worker_id: str) -> str:
    """``<base>/graphics/api/workers/{id}/connect`` with http→ws, https→wss."""
    root = api_root(base_url)
    if root.startswith("https://"):
        root = "wss://" + root[len("https://"):]
    elif root.startswith("http://"):
        root = "ws://" + root[len("http://"):]
    return f"{root}/workers/{worker_id}/connect"


class _SessionEnded(Exception):
    def __init__(self, end: End | None, message: str) -> None:
        super().__init__(message)
        self.end = end
        """None: reconnect with backoff."""


async def _connect(http: aiohttp.ClientSession, base_url: str, worker_id: str, token: str,
                   timeout: float) -> aiohttp.ClientWebSocketResponse:
    headers = {"Authorization": f"Bearer {token}", "User-Agent": USER_AGENT}
    return await asyncio.wait_for(
        http.ws_connect(channel_url(base_url, worker_id), protocols=(SUBPROTOCOL,),
                        headers=headers, max_msg_size=MAX_FRAME_BYTES, autoping=True,
                        autoclose=True),
        timeout)


async def probe_v2(http: aiohttp.ClientSession, base_url: str, worker_id: str, token: str,
                   timeout: float = CONNECT_TIMEOUT_SECS) -> bool:
    """True when the studio upgrades to the v2 channel (then closed at once, 1000)."""
    try:
        ws = await _connect(http, base_url, worker_id, token, timeout)
    except (aiohttp.ClientError, TimeoutError, OSError):
        return False
    await ws.close()
    return True


class ChannelTransport:
    """The v2 channel: connects, reconnects with backoff forever (or
    ``ws_reconnect_attempts``), and returns only for reasons that need the loops."""

    name = "v2"
    overlaps_uploads = False
    """The studio offers the next job only once it has the last result, and a worker with
    a job in flight must reject offers as busy (STUDIO_API_V2.md §2.4, §2.7)."""

    def __init__(
        self,
        ctx: LoopContext,
        *,
        allow_fallback: bool,
        idle_timeout_secs: float = IDLE_TIMEOUT_SECS,
        connect_timeout_secs: float = CONNECT_TIMEOUT_SECS,
        ack_timeout_secs: float = ACK_TIMEOUT_SECS,
        reconnect_base_secs: float = 1.0,
    ) -> None:
        self.ctx = ctx
        self.host = ctx.host
        self.allow_fallback = allow_fallback
        self.idle_timeout_secs = idle_timeout_secs
        self.connect_timeout_secs = connect_timeout_secs
        self.ack_timeout_secs = ack_timeout_secs
        self._backoff = Backoff(base=reconnect_base_secs, cap=RECONNECT_CAP_SECS)
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._send_lock = asyncio.Lock()
        self._acks: dict[tuple[str, str], asyncio.Future[None]] = {}
        self._offered_since_heartbeat = False
        self._heartbeat_pending = False
        self._welcomed = asyncio.Event()
        self._offers: set[asyncio.Task[None]] = set()
        self.sessions = 0
        """Sessions welcomed so far (tests wait on it)."""

    # -- Delivery --------------------------------------------------------------------------
    async def complete(self, job_id: str, prompt: str, result: BinaryResult) -> None:
        await upload_binary(self.host, job_id, prompt, result)

    async def complete_json(self, job_id: str, prompt: str, value: Any) -> None:
        await self._send_acked("completeAck", job_id, {
            "type": "completeJson", "jobId": job_id, "result": value, "prompt": prompt})

    async def fail(self, job_id: str, error: str, retryable: bool) -> None:
        await self._send_acked("failAck", job_id, {
            "type": "fail", "jobId": job_id, "error": error, "retryable": retryable})

    async def _send_acked(self, ack: str, job_id: str, frame: dict[str, Any]) -> None:
        operation = frame["type"]
        if self._ws is None or self._ws.closed or not self._welcomed.is_set():
            raise StudioUnreachable(operation, f"{operation} failed: the studio's channel is "
                                    "not connected")
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._acks[(ack, job_id)] = waiter
        try:
            await self._send(frame)
            await asyncio.wait_for(asyncio.shield(waiter), self.ack_timeout_secs)
        except TimeoutError:
            raise StudioUnreachable(operation, f"{operation} failed: the studio did not "
                                    f"acknowledge it within {self.ack_timeout_secs:g} s") from None
        finally:
            self._acks.pop((ack, job_id), None)

    # -- sessions --------------------------------------------------------------------------
    async def run(self) -> End:
        ctx = self.ctx
        failures = 0
        while True:
            if ctx.stop_claiming.is_set() or ctx.end_session.is_set():
                return End.STOPPED
            try:
                end = await self._session()
            except _SessionEnded as ended:
                if ended.end is End.NO_V2:
                    log.info("%s", ended)
                    return ended.end
                if ended.end is not None:
                    log.error("%s", ended)
                    return ended.end
                failures = 0 if self._welcomed.is_set() else failures + 1
                if self._welcomed.is_set():
                    self._backoff.reset()
                log.warning("%s", ended)
                self.host.state.heartbeat_failed(str(ended))
            else:
                return end
            finally:
                self._welcomed.clear()
            limit = self.host.config.ws_reconnect_attempts
            if limit and failures >= limit:
                log.error("gave up after %d failed reconnects in a row (ws_reconnect_attempts)",
                          failures)
                return End.GAVE_UP
            delay = self._backoff.next_delay()
            await wait_any((ctx.stop_claiming, ctx.end_session), delay)

    async def _session(self) -> End:
        config = self.host.config
        try:
            ws = await _connect(self.host.http, config.api_base_url, config.worker_id,
                                config.auth_token, self.connect_timeout_secs)
        except aiohttp.WSServerHandshakeError as exc:
            if exc.status in (401, 403):
                self.host.state.set_unauthorised(True)
                raise _SessionEnded(End.UNAUTHORISED, UNAUTHORISED_MESSAGE) from None
            if exc.status in NO_V2_STATUSES and self.allow_fallback:
                raise _SessionEnded(End.NO_V2, f"the studio has no v2 channel ({exc.status} "
                                    "on the upgrade): polling v1") from None
            raise _SessionEnded(None, f"could not open the studio's channel: {exc.status} "
                                f"{exc.message}") from None
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise _SessionEnded(None, f"the studio could not be reached at "
                                f"{config.api_base_url} ({type(exc).__name__}: {exc})") from None
        self._ws = ws
        tasks: list[asyncio.Task[Any]] = []
        try:
            await self._send({"type": "hello", "authToken": config.auth_token,
                              "capabilities": self.host.capabilities().to_wire(v2=True)})
            await self._welcome(ws)
            self.sessions += 1
            self.host.state.set_unauthorised(False)
            self.host.state.heartbeat_ok()
            self.host.state.set_error(None)
            log.info("connected to the studio's channel as worker %s", config.worker_id)
            tasks = [asyncio.create_task(self._heartbeats(), name="v2-heartbeat"),
                     asyncio.create_task(self._ship_loop(), name="v2-logs"),
                     asyncio.create_task(self.ctx.jobs.report_journal(self, now=True),
                                         name="v2-journal")]
            reader = asyncio.create_task(self._reader(ws), name="v2-reader")
            ender = asyncio.create_task(self._until_ended(), name="v2-end")
            done, _ = await asyncio.wait({reader, ender}, return_when=asyncio.FIRST_COMPLETED)
            if reader in done:
                ender.cancel()
                return reader.result()  # raises _SessionEnded for a drop
            # Stopping or told to end: the running job finishes (or is aborted by the
            # loops) on this session, then the socket closes normally.
            await self._drain_job()
            await self.flush_logs()
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, _SessionEnded):
                await reader
            return ender.result()
        finally:
            tasks.extend(self._offers)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._ws = None
            with contextlib.suppress(Exception):
                await ws.close()
            self._fail_acks()
            job = self.ctx.jobs.task
            if job is not None and not job.done():
                # The session died under a running job: its fail report cannot go out
                # now, so it stays in the journal and is sent on the next session.
                self.ctx.jobs.abort(CONNECTION_LOST_REASON)
                await asyncio.wait({job})

    async def _drain_job(self) -> None:
        task = self.ctx.jobs.task
        if task is not None and not task.done():
            await asyncio.wait({task})

    async def _until_ended(self) -> End:
        await wait_any((self.ctx.stop_claiming, self.ctx.end_session), None)
        return End.STOPPED

    async def _welcome(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        frame = await self._read(ws)
        if isinstance(frame, Welcome):
            self._welcomed.set()
            return
        if isinstance(frame, ErrorFrame):
            raise self._error_end(frame)
        raise _SessionEnded(None, f"the studio sent {frame.type!r} before 'welcome'")

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> StudioFrame:
        """The next valid frame; a dead, closed or broken channel ends the session."""
        while True:
            try:
                msg = await ws.receive(timeout=self.idle_timeout_secs)
            except TimeoutError:
                raise _SessionEnded(None, f"the studio sent nothing for "
                                    f"{self.idle_timeout_secs:g} s; reconnecting") from None
            if msg.type is aiohttp.WSMsgType.TEXT:
                try:
                    return FRAME_ADAPTER.validate_python(strict_json(msg.data))
                except (ValueError, RecursionError) as exc:
                    log.warning("ignoring a frame from the studio that breaks the contract: %s",
                                _first_error(exc))
                    continue
            if msg.type is aiohttp.WSMsgType.BINARY:
                await ws.close(code=CLOSE_PROTOCOL_VIOLATION, message=b"binary frame")
                raise _SessionEnded(None, "the studio sent a binary frame (a protocol error); "
                                    "reconnecting")
            if msg.type is aiohttp.WSMsgType.ERROR:
                raise _SessionEnded(None, f"the studio's channel failed: {ws.exception()}")
            code = msg.data if msg.type is aiohttp.WSMsgType.CLOSE else ws.close_code
            raise self._close_end(code if isinstance(code, int) else None)

    def _close_end(self, code: int | None) -> _SessionEnded:
        if code == CLOSE_AUTH_FAILED:
            self.host.state.set_unauthorised(True)
            return _SessionEnded(End.UNAUTHORISED, UNAUTHORISED_MESSAGE)
        if code == CLOSE_DUPLICATE:
            self.host.state.set_error(DUPLICATE_MESSAGE)
            return _SessionEnded(End.DUPLICATE, DUPLICATE_MESSAGE)
        if code == CLOSE_DELETED:
            self.host.state.set_error(DELETED_MESSAGE)
            return _SessionEnded(End.DELETED, DELETED_MESSAGE)
        what = "a protocol violation" if code == CLOSE_PROTOCOL_VIOLATION else f"code {code}"
        return _SessionEnded(None, f"the studio closed the channel ({what}); reconnecting")

    def _error_end(self, frame: ErrorFrame) -> _SessionEnded:
        codes = {"auth_failed": CLOSE_AUTH_FAILED, "duplicate_worker": CLOSE_DUPLICATE,
                 "worker_deleted": CLOSE_DELETED, "protocol_violation": CLOSE_PROTOCOL_VIOLATION}
        ended = self._close_end(codes.get(frame.code, 1000))
        if ended.end is None:
            return _SessionEnded(None, f"the studio reported {frame.code}: {frame.message}; "
                                 "reconnecting")
        return ended

    async def _reader(self, ws: aiohttp.ClientWebSocketResponse) -> End:
        while True:
            frame = await self._read(ws)
            if isinstance(frame, Offer):
                # In its own task: it may wait for the previous job's upload to return.
                self._offered_since_heartbeat = True
                task = asyncio.create_task(self._offer(frame), name="v2-offer")
                self._offers.add(task)
                task.add_done_callback(self._offers.discard)
            elif isinstance(frame, HeartbeatAck):
                self.host.state.heartbeat_ok()
                if not self.ctx.jobs.busy:
                    self.ctx.idle.set()
                if self._idle_after_ack():
                    return End.IDLE
            elif isinstance(frame, CompleteAck | FailAck):
                waiter = self._acks.get((frame.type, frame.job_id))
                if waiter is not None and not waiter.done():
                    waiter.set_result(None)
            elif isinstance(frame, ErrorFrame):
                raise self._error_end(frame)

    def _idle_after_ack(self) -> bool:
        """``until_idle``: an ack with no offer since its heartbeat and no job = idle (the
        studio offers before it acknowledges)."""
        idle = (self.ctx.until_idle and self._heartbeat_pending and not self.ctx.jobs.busy
                and not self._offered_since_heartbeat)
        self._heartbeat_pending = False
        return idle

    # -- offers ----------------------------------------------------------------------------
    async def _offer(self, frame: Offer) -> None:
        jobs = self.ctx.jobs
        if jobs.busy and jobs.delivering and jobs.task is not None:
            # The studio offers the next job as soon as it has the last result, which can
            # be before our upload call has returned: let that job end first.
            await asyncio.wait({jobs.task}, timeout=self.ack_timeout_secs)
        raw_id = frame.claim.get("jobId")
        try:
            claim = JobClaim.model_validate(frame.claim)
        except ValidationError as exc:
            if isinstance(raw_id, str) and _usable_id(raw_id):
                await self._reject(raw_id, f"invalid job: {_first_error(exc)}"
                                   f"{TASK_SHAPES_HINT}", None)
            else:
                log_claim.error("ignoring an offer with no usable jobId: %s", _first_error(exc))
            return
        if not _usable_id(claim.job_id):
            log_claim.error("ignoring an offer whose jobId is not usable: %.80r", claim.job_id)
            return
        ctx = self.ctx
        kind = claim.effective_task().kind
        if ctx.jobs.busy or ctx.stop_claiming.is_set() or ctx.end_session.is_set():
            await self._reject(claim.job_id, BUSY_REASON, "busy")
        elif ctx.holding_back():
            await self._reject(claim.job_id, PAUSED_REASON, "paused")
        elif not ctx.jobs.serves(kind, claim.model):
            await self._reject(claim.job_id, f"this worker does not serve {kind} jobs with "
                               f"model {claim.model!r}", None)
        else:
            self.ctx.idle.clear()
            await self._send({"type": "accept", "jobId": claim.job_id})
            ctx.jobs.start(claim, self)

    async def _reject(self, job_id: str, reason: str, code: str | None) -> None:
        frame: dict[str, Any] = {"type": "reject", "jobId": job_id, "reason": reason}
        if code is not None:
            frame["code"] = code
        log_claim.info("rejected job %s: %s", job_id, reason, extra={"job_id": job_id})
        await self._send(frame)

    # -- heartbeats and logs ---------------------------------------------------------------
    async def _heartbeats(self) -> None:
        ctx, host = self.ctx, self.host
        cadence = Cadence(asyncio.get_running_loop())
        while True:
            if not ctx.jobs.busy:
                await ctx.between_jobs()
            frame: dict[str, Any] = {"type": "heartbeat",
                                     "capabilities": host.capabilities().to_wire(v2=True)}
            if host.state.current_job_id is not None:
                frame["currentJobId"] = host.state.current_job_id
            self._offered_since_heartbeat = False
            self._heartbeat_pending = True
            await self._send(frame)
            host.publish_status_file(force=True)
            ctx.heartbeat_sent.set()
            ctx.heartbeat_now.clear()
            if await wait_event(ctx.heartbeat_now,
                                cadence.delay(host.config.heartbeat_interval_secs)):
                cadence.reset()

    async def _ship_loop(self) -> None:
        cadence = Cadence(asyncio.get_running_loop())
        while True:
            await self.flush_logs()
            await asyncio.sleep(cadence.delay(LOG_FLUSH_SECS))

    async def flush_logs(self) -> bool:
        queue = self.host.ship_queue
        for _ in range(queue.capacity // LOG_BATCH + 2):
            batch = queue.take(LOG_BATCH)
            if not batch:
                break
            try:
                await self._send({"type": "logBatch",
                                  "entries": [entry.to_wire() for entry in batch]})
            except StudioError:
                queue.put_back(batch)
                return False
        return True

    async def _send(self, frame: dict[str, Any]) -> None:
        ws = self._ws
        operation = str(frame.get("type"))
        if ws is None or ws.closed:
            raise StudioUnreachable(operation, f"{operation} failed: the channel is closed")
        try:
            async with self._send_lock:
                await ws.send_str(json.dumps(frame))
        except (aiohttp.ClientError, ConnectionError, RuntimeError) as exc:
            raise StudioUnreachable(operation, f"{operation} failed: {exc}") from None

    def _fail_acks(self) -> None:
        for (kind, job_id), waiter in list(self._acks.items()):
            if not waiter.done():
                waiter.set_exception(StudioUnreachable(
                    kind, f"the channel closed before the studio acknowledged job {job_id}"))


def _usable_id(value: str) -> bool:
    try:
        check_id(value)
    except ValueError:
        return False
    return True


def _first_error(exc: Exception) -> str:
    if not isinstance(exc, ValidationError):
        return f"not a JSON object without duplicate keys ({str(exc)[:200]})"
    error = exc.errors()[0]
    loc = ".".join(str(part) for part in error["loc"]) or "(frame)"
    return f"{loc}: {error['msg']}"
