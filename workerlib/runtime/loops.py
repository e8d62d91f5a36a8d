"""The worker loops: heartbeat, claim (and run), log shipping, config watch, update check.

Each loop is a small tick on a drift-free cadence and ends when the stop event is
set. Failures are logged once on the way down and once on recovery.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from typing import TYPE_CHECKING

from workerlib.engines.base import BinaryResult, EngineError, EngineResult
from workerlib.errors import BadClaim, StudioAuthError, StudioError, StudioHTTPError
from workerlib.logs import get_logger
from workerlib.runtime.journal import RESTARTED_REASON
from workerlib.runtime.timing import Backoff, Cadence, wait_event
from workerlib.updater import UpdateStatus
from workerlib.wire import JobClaim, task_prompt

if TYPE_CHECKING:
    from workerlib.service import WorkerService

log_hb = get_logger("heartbeat")
log_claim = get_logger("claim")
log_gen = get_logger("generate")
log_done = get_logger("complete")
log_update = get_logger("auto-update")
log_config = get_logger("config")
log_register = get_logger("register")

LOG_FLUSH_SECS = 1.0
SHIP_BATCH = 500
BACKEND_CHECK_SECS = 60.0
"""How often a healthy engine's backend (and its model list) is checked."""
FAILURES_BEFORE_COOLDOWN = 3
CONFIG_WATCH_SECS = 1.0
UPDATE_TICK_SECS = 60.0
UPLOAD_ATTEMPTS = 4
REPORT_ATTEMPTS = 3
RETRY_BASE_SECS = 1.0
"""First delay between upload / fail-report attempts; doubles each time."""
SHUTDOWN_REASON = "worker shutting down"


def _transient(exc: StudioError) -> bool:
    """Worth retrying: the studio was unreachable, busy or broken, not refusing."""
    if isinstance(exc, StudioHTTPError):
        return exc.status >= 500 or exc.status in (408, 425, 429)
    return True


class WorkerLoops:
    """One run of the loops. A restart makes a new instance; state lives in the service."""

    def __init__(self, service: WorkerService, *, until_idle: bool = False) -> None:
        self.svc = service
        self.until_idle = until_idle
        self.stop_event = asyncio.Event()
        self.stop_claiming = asyncio.Event()
        self.wake = asyncio.Event()
        self.heartbeat_now = asyncio.Event()
        """Set to send a heartbeat at once (the advertised models changed)."""
        self.heartbeat_sent = asyncio.Event()
        self.idle = asyncio.Event()
        self.job_task: asyncio.Task[None] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._hb_failures = 0
        self._claim_errors = 0
        self._advertised_models: dict[str, list[str]] | None = None
        self._claim_backoff = Backoff()
        self._ship_backoff = Backoff()
        self._register_backoff = Backoff()
        self._register_refused = False
        self._last_update_check = 0.0
        self._update_ready = False

    # -- lifecycle ----------------------------------------------------------------------
    def start(self) -> None:
        loop_fns = [self._heartbeat_loop, self._claim_loop, self._ship_loop, self._config_loop,
                    self._update_loop, self._backend_loop]
        self._tasks = [asyncio.create_task(fn(), name=fn.__name__) for fn in loop_fns]

    async def stop(self, drain_secs: float) -> None:
        """Stop claiming, let a running job finish within ``drain_secs``, then stop."""
        self.stop_claiming.set()
        self.wake.set()
        claim_loop = self.claim_task()
        if not claim_loop.done():
            if self.job_task is not None and not self.job_task.done():
                log_claim.info("waiting up to %g s for the running job to finish", drain_secs)
            # The claim loop ends by itself once the job it may be running is done.
            done, _ = await asyncio.wait({claim_loop}, timeout=drain_secs)
            if not done:
                job = self.job_task
                if job is not None and not job.done():
                    job.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await job
                claim_loop.cancel()
        self.stop_event.set()
        self.heartbeat_now.set()
        for task in self._tasks:
            if task.get_name() != "_ship_loop":
                task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.flush_logs()

    def claim_task(self) -> asyncio.Task[None]:
        return next(t for t in self._tasks if t.get_name() == "_claim_loop")

    # -- heartbeat ------------------------------------------------------------------------
    async def _heartbeat_loop(self) -> None:
        """The heartbeat keeps its cadence even while the studio is down: it is the cheap
        probe (one small request per interval) that tells the backed-off claim loop when
        to try again, so work resumes within one interval of the studio coming back."""
        cadence = Cadence(asyncio.get_running_loop())
        while not self.stop_event.is_set():
            config = self.svc.config
            if not config.is_registered():
                await self._try_register()
            else:
                try:
                    await self.svc.client.heartbeat(
                        config.worker_id, config.auth_token, self.svc.capabilities(),
                        self.svc.state.current_job.job_id if self.svc.state.current_job else None,
                    )
                except StudioError as exc:
                    unauthorised = isinstance(exc, StudioAuthError)
                    if not self._hb_failures:
                        if unauthorised:
                            log_hb.error("heartbeat refused: not authorised — register again (%s)",
                                         exc)
                        else:
                            log_hb.warning("%s", exc)
                    self._hb_failures += 1
                    self.svc.state.heartbeat_failed(str(exc), unauthorised=unauthorised)
                else:
                    if self._hb_failures:
                        log_hb.info("heartbeat ok again after %d failures", self._hb_failures)
                        self._hb_failures = 0
                        # The studio is back: retry claims and logs now, not after their backoff.
                        self._claim_backoff.reset()
                        self._ship_backoff.reset()
                        self.wake.set()
                    self.svc.state.heartbeat_ok()
                self.svc.publish_status_file(force=True)
            self.heartbeat_sent.set()
            self.heartbeat_now.clear()
            delay = cadence.delay(config.heartbeat_interval_secs)
            if await wait_event(self.heartbeat_now, delay):
                cadence.reset()

    async def _try_register(self) -> None:
        if self._register_refused:
            return  # until the config changes; the refusal is already shown
        if not self.svc.config.bootstrap_token:
            self.svc.state.set_error(
                "not registered: set bootstrap_token in the config or use Register")
            return
        try:
            await self.svc.register()
        except StudioAuthError as exc:
            self._register_refused = True
            self.svc.state.set_error(str(exc))
            log_register.error("%s", exc)
        except StudioError as exc:
            if not self._register_backoff.failing:
                log_register.warning("registration failed, will retry: %s", exc)
            await wait_event(self.stop_event, self._register_backoff.next_delay())
        else:
            self._register_backoff.reset()

    def config_changed(self) -> None:
        self._register_refused = False
        self.wake.set()

    # -- claim and run --------------------------------------------------------------------
    def _holding_back(self) -> bool:
        """True while the worker should not claim on its own account."""
        config = self.svc.config
        state = self.svc.state
        return (not config.is_registered() or not config.auto_enabled or state.unauthorised
                or state.backend_problem is not None or state.cooling_down())

    async def _claim_loop(self) -> None:
        await self.svc.check_backend()
        await self._advertise_models_if_changed()
        await self.svc.report_journal()
        while not self.stop_claiming.is_set():
            config = self.svc.config
            # Updates are applied here, between jobs: nothing is claimed meanwhile.
            if self._update_ready and await self._apply_update():
                return
            if self.svc.restart_pending:
                await self.svc.rebuild_engine()
                await self.svc.check_backend()
            await self._advertise_models_if_changed()
            if self._holding_back():
                self.idle.set()
                if self.until_idle and not config.auto_enabled:
                    return
                self.wake.clear()
                await wait_event(self.wake, config.claim_interval_secs)
                continue
            await self.svc.report_journal()
            try:
                claim = await self.svc.client.claim(config.worker_id, config.auth_token)
            except BadClaim as exc:
                await self._bad_claim(exc)
                await wait_event(self.stop_claiming, config.claim_interval_secs)
                continue
            except StudioError as exc:
                if isinstance(exc, StudioAuthError):
                    self.svc.state.set_unauthorised(True)
                if not self._claim_errors:
                    log_claim.warning("%s", exc)
                self._claim_errors += 1
                # Woken early by a successful heartbeat (or stop, resume, a config change).
                self.wake.clear()
                await wait_event(self.wake, self._claim_backoff.next_delay())
                continue
            if self._claim_errors:
                log_claim.info("claiming works again after %d failures", self._claim_errors)
                self._claim_errors = 0
                self._claim_backoff.reset()
            if claim is None:
                self.idle.set()
                if self.until_idle:
                    return
                self.wake.clear()
                await wait_event(self.wake, config.claim_interval_secs)
                continue
            self.idle.clear()
            self.job_task = asyncio.create_task(self._run_job(claim), name=f"job-{claim.job_id}")
            # The job task is awaited through wait() so that stop() can cancel it on its
            # own after the drain budget without cancelling this loop first.
            await asyncio.wait({self.job_task})
            self.job_task = None
            self.svc.publish_status_file()

    async def _advertise_models_if_changed(self) -> None:
        """The studio matches jobs against the last heartbeat's capabilities: when the
        engine's models changed (a backend came up, a model was installed), tell it
        before claiming rather than up to one interval later."""
        models = self.svc.engine.models_per_kind()
        if models != self._advertised_models and self._advertised_models is not None:
            self.heartbeat_sent.clear()
            self.heartbeat_now.set()
            await wait_event(self.heartbeat_sent, 5.0)
        self._advertised_models = models

    async def _bad_claim(self, exc: BadClaim) -> None:
        if exc.job_id is None:
            log_claim.error("the studio sent an unusable claim reply: %s", exc)
            return
        log_claim.error("job %s from the studio is unusable: %s", exc.job_id, exc,
                        extra={"job_id": exc.job_id})
        await self.svc.report_fail(exc.job_id, str(exc), retryable=exc.retryable)

    async def _run_job(self, claim: JobClaim) -> None:
        svc = self.svc
        task = claim.effective_task()
        prompt = task_prompt(task)
        job_id = claim.job_id
        extra = {"job_id": job_id}
        svc.journal.begin(job_id)
        svc.state.job_started(job_id, task.kind, claim.model, prompt)
        svc.publish_status_file()
        log_claim.info("claimed job %s (%s · %s, %.1f GiB)", job_id, task.kind, claim.model,
                       claim.vram_gb_estimate, extra=extra)
        loop = asyncio.get_running_loop()
        loop_thread = threading.get_ident()

        def progress(fraction: float) -> None:
            # Engines report from their worker threads or from the loop itself.
            if threading.get_ident() == loop_thread:
                svc.state.job_progress(job_id, fraction)
            else:
                loop.call_soon_threadsafe(svc.state.job_progress, job_id, fraction)

        started = time.monotonic()
        limit = svc.config.job_timeout_secs
        try:
            result = await asyncio.wait_for(svc.engine.generate(claim.model, task, progress),
                                            limit)
        except TimeoutError:
            reason = f"timed out after {limit:g} s"
            log_gen.error("job %s %s; stopping it", job_id, reason, extra=extra)
            try:
                await svc.engine.interrupt()
            except Exception as exc:
                log_gen.warning("could not interrupt the engine: %s", exc, extra=extra)
            await svc.report_fail(job_id, reason, retryable=True)
            return
        except asyncio.CancelledError:
            log_gen.warning("job %s interrupted: %s", job_id, SHUTDOWN_REASON, extra=extra)
            await svc.report_fail(job_id, SHUTDOWN_REASON, retryable=True)
            raise
        except EngineError as exc:
            log_gen.error("job %s failed: %s", job_id, exc, extra=extra)
            await svc.report_fail(job_id, str(exc), retryable=exc.retryable)
            return
        except Exception as exc:
            log_gen.exception("job %s: the engine crashed", job_id, extra=extra)
            await svc.report_fail(job_id, f"engine crashed: {type(exc).__name__}: {exc}",
                                  retryable=True)
            return
        log_gen.info("job %s generated in %.2f s", job_id, time.monotonic() - started,
                     extra=extra)
        try:
            await self._upload(claim, prompt, result)
        except asyncio.CancelledError:
            await svc.report_fail(job_id, SHUTDOWN_REASON, retryable=True)
            raise

    async def _upload(self, claim: JobClaim, prompt: str, result: EngineResult) -> None:
        svc = self.svc
        job_id = claim.job_id
        extra = {"job_id": job_id}
        backoff = Backoff(base=RETRY_BASE_SECS, cap=8 * RETRY_BASE_SECS)
        last: StudioError | None = None
        for attempt in range(1, UPLOAD_ATTEMPTS + 1):
            config = svc.config
            try:
                if isinstance(result, BinaryResult):
                    await svc.client.complete(config.worker_id, config.auth_token, job_id,
                                              prompt, result.data, result.ext)
                else:
                    await svc.client.complete_json(config.worker_id, config.auth_token, job_id,
                                                   prompt, result.value)
            except StudioError as exc:
                last = exc
                if not _transient(exc):
                    break
                log_done.warning("upload of job %s failed (attempt %d/%d): %s", job_id, attempt,
                                 UPLOAD_ATTEMPTS, exc, extra=extra)
                if attempt < UPLOAD_ATTEMPTS:
                    await asyncio.sleep(backoff.next_delay())
                continue
            size = f"{len(result.data)} bytes .{result.ext}" if isinstance(
                result, BinaryResult) else "JSON"
            log_done.info("job %s completed (%s)", job_id, size, extra=extra)
            svc.journal.done(job_id)
            svc.state.job_finished(job_id, "completed")
            return
        assert last is not None
        if isinstance(last, StudioHTTPError) and last.status == 409:
            # The studio no longer considers the job ours; a fail would be refused too.
            log_done.error("job %s was taken back by the studio: %s", job_id, last, extra=extra)
            svc.journal.done(job_id)
            svc.state.job_finished(job_id, "failed", str(last), retryable=None)
            return
        await svc.report_fail(job_id, f"upload failed: {last}", retryable=True)

    # -- backend health -------------------------------------------------------------------
    async def _backend_loop(self) -> None:
        while not self.stop_event.is_set():
            down = self.svc.state.backend_problem is not None
            interval = self.svc.config.claim_interval_secs if down else BACKEND_CHECK_SECS
            await wait_event(self.stop_event, interval)
            if self.stop_event.is_set():
                return
            idle = self.job_task is None or self.job_task.done()
            if idle and await self.svc.check_backend() is None and down:
                self.wake.set()

    # -- log shipping ---------------------------------------------------------------------
    async def _ship_loop(self) -> None:
        cadence = Cadence(asyncio.get_running_loop())
        while not self.stop_event.is_set():
            delay = cadence.delay(LOG_FLUSH_SECS)
            ok = await self.flush_logs()
            if not ok:
                delay = max(delay, self._ship_backoff.next_delay())
                cadence.reset()
            await wait_event(self.stop_event, delay)

    async def flush_logs(self) -> bool:
        """Ship everything queued, in batches; False when the studio refused a batch."""
        config = self.svc.config
        queue = self.svc.ship_queue
        if not config.is_registered():
            return True
        # Bounded: entries logged while shipping wait for the next tick.
        for _ in range(queue.capacity // SHIP_BATCH + 2):
            batch = queue.take(SHIP_BATCH)
            if not batch:
                break
            try:
                await self.svc.client.ship_logs(config.worker_id, config.auth_token, batch)
            except StudioError as exc:
                queue.put_back(batch)
                if not self._ship_backoff.failing:
                    get_logger("logs").warning("log shipping failed: %s", exc,
                                               extra={"local_only": True})
                return False
        self._ship_backoff.reset()
        return True

    # -- config watch -----------------------------------------------------------------------
    async def _config_loop(self) -> None:
        while not self.stop_event.is_set():
            await wait_event(self.stop_event, CONFIG_WATCH_SECS)
            self.svc.reload_config_if_changed()

    # -- update check ------------------------------------------------------------------------
    async def _update_loop(self) -> None:
        while not self.stop_event.is_set():
            config = self.svc.config
            due = time.time() - self._last_update_check >= config.auto_update_interval_secs
            if config.auto_update_enabled and due:
                self._last_update_check = time.time()
                info = await self.svc.check_update()
                level = logging.WARNING if info.error else logging.INFO
                log_update.log(level, "%s", info.describe())
                if info.available and not info.error:
                    self._update_ready = True
                    self.wake.set()
            await wait_event(self.stop_event, UPDATE_TICK_SECS)

    async def _apply_update(self) -> bool:
        """Install the available update; True when the worker must restart into it."""
        self._update_ready = False
        outcome = await self.svc.apply_update(lambda: not self.stop_claiming.is_set())
        level = {UpdateStatus.FAILED: logging.WARNING,
                 UpdateStatus.UP_TO_DATE: logging.DEBUG}.get(outcome.status, logging.INFO)
        log_update.log(level, "%s", outcome.message)
        return outcome.restart


__all__ = ["RESTARTED_REASON", "SHUTDOWN_REASON", "WorkerLoops"]
