"""A job's whole life, the same under both protocols: engine, journal, upload retry,
fail reports, cool-down and progress.

Every outcome ends in one of two places: ``_finish_completed`` or ``report_fail``.
How a result or a failure reaches the studio is the transport's business, behind
the small ``Delivery`` protocol (v1: HTTP calls; v2: the multipart upload over HTTP
and frames on the channel).
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any, Protocol

from workerlib.engines.base import (
    BinaryResult,
    CannotServe,
    DeferredResult,
    EngineError,
    EngineResult,
    JsonResult,
)
from workerlib.errors import StudioError, StudioHTTPError
from workerlib.logs import get_logger
from workerlib.runtime.host import Host
from workerlib.runtime.journal import RESTARTED_REASON, studio_has_it
from workerlib.runtime.timing import Backoff
from workerlib.wire import JobClaim, task_prompt

log = get_logger("worker")
log_claim = get_logger("claim")
log_gen = get_logger("generate")
log_done = get_logger("complete")
log_fail = get_logger("fail")

FAILURES_BEFORE_COOLDOWN = 3
UPLOAD_ATTEMPTS = 4
REPORT_ATTEMPTS = 3
RETRY_BASE_SECS = 1.0
"""First delay between upload / fail-report attempts; doubles each time."""
SHUTDOWN_REASON = "worker shutting down"
CONNECTION_LOST_REASON = "the worker lost its connection to the studio mid-job"


class Delivery(Protocol):
    """How results and failures reach the studio. Raise ``StudioError`` when they do not."""

    overlaps_uploads: bool
    """True when the protocol lets the worker take its next job while the last result is
    still being uploaded (v1: claiming is ours to time; v2: the studio offers the next job
    only once it has the result, and a worker with a job in flight must reject offers)."""

    async def complete(self, job_id: str, prompt: str, result: BinaryResult) -> None: ...

    async def complete_json(self, job_id: str, prompt: str, value: Any) -> None: ...

    async def fail(self, job_id: str, error: str, retryable: bool) -> None: ...


class JobRunner:
    """Runs claimed jobs for a host; one generates at a time (the transports see to that).

    Where the protocol allows it (``Delivery.overlaps_uploads``), a generated result is
    uploaded in a task of its own while the transport takes the next job, so the engine
    does not wait for the network between two jobs. At most one upload runs beside the
    generating job: a job whose result is ready waits for the previous upload to end
    before it starts its own (results go out in order, and memory stays bounded). Every
    job stays in the journal until the studio has its result or its fail, whichever
    task that happens in; stopping waits for (or aborts) both.
    """

    def __init__(
        self,
        host: Host,
        *,
        upload_attempts: int = UPLOAD_ATTEMPTS,
        report_attempts: int = REPORT_ATTEMPTS,
        retry_base_secs: float | None = None,
        failures_before_cooldown: int = FAILURES_BEFORE_COOLDOWN,
    ) -> None:
        self.host = host
        self.upload_attempts = upload_attempts
        self.report_attempts = report_attempts
        self.retry_base_secs = RETRY_BASE_SECS if retry_base_secs is None else retry_base_secs
        self.failures_before_cooldown = failures_before_cooldown
        self.task: asyncio.Task[None] | None = None
        self._journal_retry_at = 0.0
        self._journal_backoff = Backoff(base=self.retry_base_secs)
        self.delivering = False
        """The running job has its result and is handing it to the studio: a studio may
        offer the next job before that call returns (v2 waits for it then)."""
        self._abort_reason: str | None = None
        self.upload: asyncio.Task[None] | None = None
        """The upload running beside the next job (``overlaps_uploads``), if any."""
        self._uploading: set[str] = set()

    # -- the slot -----------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return self.task is not None and not self.task.done()

    def start(self, claim: JobClaim, delivery: Delivery) -> asyncio.Task[None]:
        """Run ``claim`` in its own task (awaited through ``asyncio.wait`` by the caller, so
        that stopping can cancel the job without cancelling the caller)."""
        self._abort_reason = None
        self.delivering = False
        self.task = asyncio.create_task(self.run(claim, delivery), name=f"job-{claim.job_id}")
        return self.task

    @property
    def uploading(self) -> bool:
        return self.upload is not None and not self.upload.done()

    def in_flight(self) -> set[asyncio.Task[None]]:
        """The running job and the upload beside it: what stopping waits for."""
        return {t for t in (self.task, self.upload) if t is not None and not t.done()}

    async def wait_upload(self) -> None:
        """Until the upload running beside the jobs (if any) has ended."""
        upload = self.upload
        if upload is not None and not upload.done():
            await asyncio.wait({upload})

    def abort(self, reason: str) -> None:
        """Stop the running job and the upload beside it; each is reported as failed
        (retryable) with ``reason``."""
        for task in self.in_flight():
            self._abort_reason = reason
            task.cancel()

    def serves(self, kind: str, model: str) -> bool:
        """Whether this worker advertises ``model`` for ``kind`` (what it can really run)."""
        return model in self.host.capabilities().supported_models_per_kind.get(kind, ())

    # -- one job --------------------------------------------------------------------------
    async def run(self, claim: JobClaim, delivery: Delivery) -> None:
        host = self.host
        task = claim.effective_task()
        prompt = task_prompt(task)
        job_id = claim.job_id
        extra = {"job_id": job_id}
        threshold = host.config.vram_threshold_gb
        if claim.vram_gb_estimate > threshold:
            reason = (f"cannot serve: the job needs {claim.vram_gb_estimate:g} GiB of VRAM, this "
                      f"worker accepts up to {threshold:g} GiB")
            log_claim.error("job %s refused: %s", job_id, reason, extra=extra)
            await self.report_fail(job_id, reason, retryable=False, delivery=delivery)
            return
        if not host.journal.begin(job_id):
            # A local fault, not the job's: hand it back (not counted as a failure) and
            # stop claiming until the journal can be written (WorkerLoops._local_fault).
            log_claim.error("job %s handed back: %s", job_id, host.journal.fault, extra=extra)
            await self.report_fail(job_id, f"worker cannot run it: {host.journal.fault}",
                                   retryable=True, delivery=delivery)
            return
        host.state.job_started(job_id, task.kind, claim.model, prompt)
        host.publish_status_file()
        log_claim.info("claimed job %s (%s · %s, %.1f GiB)", job_id, task.kind, claim.model,
                       claim.vram_gb_estimate, extra=extra)
        loop = asyncio.get_running_loop()
        loop_thread = threading.get_ident()

        def progress(fraction: float) -> None:
            # Engines report from their worker threads or from the loop itself.
            if threading.get_ident() == loop_thread:
                host.state.job_progress(job_id, fraction)
            else:
                loop.call_soon_threadsafe(host.state.job_progress, job_id, fraction)

        started = time.monotonic()
        limit = host.config.job_timeout_secs
        try:
            result = await asyncio.wait_for(host.engine.generate(claim.model, task, progress),
                                            limit)
        except TimeoutError:
            reason = f"timed out after {limit:g} s"
            log_gen.error("job %s %s; stopping it", job_id, reason, extra=extra)
            try:
                await host.engine.interrupt()
            except Exception as exc:
                log_gen.warning("could not interrupt the engine: %s", exc, extra=extra)
            await self.report_fail(job_id, reason, retryable=True, delivery=delivery)
            return
        except asyncio.CancelledError:
            reason = self._abort_reason or SHUTDOWN_REASON
            log_gen.warning("job %s interrupted: %s", job_id, reason, extra=extra)
            await self.report_fail(job_id, reason, retryable=True, delivery=delivery)
            raise
        except CannotServe as exc:
            # Says nothing about this worker's health: no cool-down for it.
            log_gen.error("job %s: %s", job_id, exc, extra=extra)
            await self.report_fail(job_id, str(exc), retryable=False, delivery=delivery,
                                   streak=False)
            return
        except EngineError as exc:
            log_gen.error("job %s failed: %s", job_id, exc, extra=extra)
            await self.report_fail(job_id, str(exc), retryable=exc.retryable, delivery=delivery)
            return
        except Exception as exc:
            log_gen.exception("job %s: the engine crashed", job_id, extra=extra)
            await self.report_fail(job_id, f"engine crashed: {type(exc).__name__}: {exc}",
                                   retryable=True, delivery=delivery)
            return
        log_gen.info("job %s generated in %.2f s", job_id, time.monotonic() - started,
                     extra=extra)
        if delivery.overlaps_uploads:
            try:
                await self.wait_upload()  # one upload at a time, in order
            except asyncio.CancelledError:
                reason = self._abort_reason or SHUTDOWN_REASON
                await self.report_fail(job_id, reason, retryable=True, delivery=delivery)
                raise
            self._uploading.add(job_id)
            host.state.job_uploading(job_id)
            self.upload = asyncio.create_task(self._deliver(job_id, prompt, result, delivery),
                                              name=f"upload-{job_id}")
            return
        self.delivering = True
        await self._deliver(job_id, prompt, result, delivery)

    async def _deliver(self, job_id: str, prompt: str, result: EngineResult,
                       delivery: Delivery) -> None:
        try:
            if isinstance(result, DeferredResult):
                try:
                    result = await asyncio.to_thread(result.encode)
                except Exception as exc:
                    log_gen.error("job %s: its result could not be encoded: %s", job_id, exc,
                                  extra={"job_id": job_id})
                    await self.report_fail(job_id, f"the result could not be encoded: "
                                           f"{type(exc).__name__}: {exc}", retryable=True,
                                           delivery=delivery)
                    return
            await self._upload(job_id, prompt, result, delivery)
        except asyncio.CancelledError:
            reason = self._abort_reason or SHUTDOWN_REASON
            await self.report_fail(job_id, reason, retryable=True, delivery=delivery)
            raise
        finally:
            self._uploading.discard(job_id)

    async def _upload(self, job_id: str, prompt: str, result: BinaryResult | JsonResult,
                      delivery: Delivery) -> None:
        extra = {"job_id": job_id}
        backoff = Backoff(base=self.retry_base_secs, cap=8 * self.retry_base_secs)
        last: StudioError | None = None
        for attempt in range(1, self.upload_attempts + 1):
            try:
                if isinstance(result, BinaryResult):
                    await delivery.complete(job_id, prompt, result)
                else:
                    await delivery.complete_json(job_id, prompt, result.value)
            except StudioError as exc:
                last = exc
                if not exc.transient:
                    break
                log_done.warning("upload of job %s failed (attempt %d/%d): %s", job_id, attempt,
                                 self.upload_attempts, exc, extra=extra)
                if attempt < self.upload_attempts:
                    await asyncio.sleep(backoff.next_delay())
                continue
            size = f"{len(result.data)} bytes .{result.ext}" if isinstance(
                result, BinaryResult) else "JSON"
            log_done.info("job %s completed (%s)", job_id, size, extra=extra)
            self.host.journal.done(job_id)
            self.host.state.job_finished(job_id, "completed")
            return
        assert last is not None
        if isinstance(last, StudioHTTPError) and last.status == 409:
            # The studio no longer considers the job ours; a fail would be refused too.
            log_done.error("job %s was taken back by the studio: %s", job_id, last, extra=extra)
            self.host.journal.done(job_id)
            self.host.state.job_finished(job_id, "failed", str(last), retryable=None)
            return
        await self.report_fail(job_id, f"upload failed: {last}", retryable=True,
                               delivery=delivery)

    # -- failures -------------------------------------------------------------------------
    async def report_fail(self, job_id: str, error: str, *, retryable: bool,
                          delivery: Delivery, streak: bool = True) -> None:
        """Tell the studio a job failed; kept in the journal until the studio has it
        (a 2xx, or 404/409/410: see journal.studio_has_it)."""
        host = self.host
        error = host.redactor.redact(error)[:2000]
        host.journal.pending_fail(job_id, error, retryable)
        backoff = Backoff(base=self.retry_base_secs, cap=4 * self.retry_base_secs)
        extra = {"job_id": job_id}
        for attempt in range(1, self.report_attempts + 1):
            try:
                await delivery.fail(job_id, error, retryable)
            except StudioError as exc:
                if studio_has_it(exc):
                    log_fail.error("the studio refused the fail report of job %s: %s", job_id,
                                   exc, extra=extra)
                    host.journal.done(job_id)
                    break
                if attempt == self.report_attempts or not exc.transient:
                    log_fail.warning("could not report job %s as failed yet (%s); kept to send "
                                     "later", job_id, exc, extra=extra)
                    break
                await asyncio.sleep(backoff.next_delay())
            else:
                log_fail.info("job %s reported as failed (%s): %s", job_id,
                              "retryable" if retryable else "not retryable", error, extra=extra)
                host.journal.done(job_id)
                break
        finished = host.state.job_finished(job_id, "failed", error, retryable, streak=streak)
        cooldown = host.config.failure_cooldown_secs
        if finished is not None and cooldown > 0 and \
                host.state.consecutive_failures >= self.failures_before_cooldown:
            log.warning("%d jobs failed in a row: not claiming for %g s",
                        host.state.consecutive_failures, cooldown)
            host.state.start_cooldown(cooldown)

    async def report_journal(self, delivery: Delivery, *, now: bool = False) -> None:
        """Report jobs left in the journal (a crash, or a fail not yet delivered).

        After a failed attempt the next one waits (1 s doubling, capped at 60 s), so a
        studio that keeps refusing is not asked before every claim; ``now``: a new
        session, try at once."""
        host = self.host
        current = host.state.current_job_id
        if not host.config.is_registered() or \
                (not now and time.monotonic() < self._journal_retry_at):
            return
        for entry in host.journal.entries():
            if entry.job_id == current or entry.job_id in self._uploading:
                continue
            error = entry.error or RESTARTED_REASON
            try:
                await delivery.fail(entry.job_id, error, entry.retryable)
            except StudioError as exc:
                if studio_has_it(exc):
                    log_fail.warning("dropping journaled job %s: %s", entry.job_id, exc)
                    host.journal.done(entry.job_id)
                    continue
                self._journal_retry_at = time.monotonic() + self._journal_backoff.next_delay()
                return
            log_fail.info("reported job %s as failed: %s", entry.job_id, error,
                          extra={"job_id": entry.job_id})
            host.journal.done(entry.job_id)
        self._journal_backoff.reset()

    # -- the engine's backend -------------------------------------------------------------
    async def check_backend(self) -> str | None:
        """Ask the engine whether its backend answers; claiming waits while it does not."""
        engine = self.host.engine
        try:
            problem = await engine.check()
        except Exception as exc:  # a broken check must not stop the worker
            problem = f"the {engine.name} engine could not be checked: {exc}"
        state = self.host.state
        if problem != state.backend_problem:
            if problem is not None:
                log.warning("not claiming: %s", problem)
            else:
                log.info("the %s engine answers again; claiming resumes", engine.name)
        state.set_backend_problem(problem)
        return problem
