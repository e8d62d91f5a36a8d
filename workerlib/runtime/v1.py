"""Studio API v1: HTTP polling (heartbeat, claim, log shipping; docs/PROTOCOL.md)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from workerlib.engines.base import BinaryResult
from workerlib.errors import BadClaim, StudioAuthError, StudioError
from workerlib.logs import get_logger
from workerlib.runtime.timing import Backoff, Cadence, wait_any, wait_event
from workerlib.runtime.transport import End, LoopContext, upload_binary

log_hb = get_logger("heartbeat")
log_claim = get_logger("claim")

LOG_FLUSH_SECS = 1.0
SHIP_BATCH = 500


class PollingTransport:
    """One v1 session: runs until stopped, idle (``until_idle``) or told to end."""

    name = "v1"
    overlaps_uploads = True
    """Claiming is the worker's to time: the next job is claimed and runs while the last
    result is still being uploaded (STUDIO_API.md only says to claim again at once after
    a job; the studio keeps a claimed job for the worker while its heartbeat is fresh)."""

    def __init__(
        self,
        ctx: LoopContext,
        *,
        reprobe: Callable[[], Awaitable[bool]] | None = None,
        reprobe_secs: float = 3600.0,
    ) -> None:
        self.ctx = ctx
        self.host = ctx.host
        self._reprobe = reprobe
        self._reprobe_secs = reprobe_secs
        self._last_probe = time.monotonic()
        self._done = asyncio.Event()
        self._hb_failures = 0
        self._hb_unauthorised = False
        self._claim_errors = 0
        self._claim_backoff = Backoff()
        self._ship_backoff = Backoff()

    # -- Delivery ---------------------------------------------------------------------------
    async def complete(self, job_id: str, prompt: str, result: BinaryResult) -> None:
        await upload_binary(self.host, job_id, prompt, result)

    async def complete_json(self, job_id: str, prompt: str, value: Any) -> None:
        config = self.host.config
        await self.host.client.complete_json(config.worker_id, config.auth_token, job_id,
                                             prompt, value)

    async def fail(self, job_id: str, error: str, retryable: bool) -> None:
        config = self.host.config
        await self.host.client.fail(config.worker_id, config.auth_token, job_id, error,
                                    retryable)

    # -- the session ------------------------------------------------------------------------
    async def run(self) -> End:
        tasks = [asyncio.create_task(self._heartbeat_loop(), name="v1-heartbeat"),
                 asyncio.create_task(self._ship_loop(), name="v1-logs")]
        try:
            return await self._claim_loop()
        finally:
            try:
                # The last result's upload ends on this session, heartbeats going on.
                await self.ctx.jobs.wait_upload()
            finally:
                self._done.set()
                await asyncio.gather(*tasks, return_exceptions=True)
                await self.flush_logs()

    async def _heartbeat_loop(self) -> None:
        """The heartbeat keeps its cadence even while the studio is down: it is the cheap
        probe (one small request per interval) that tells the backed-off claim loop when
        to try again, so work resumes within one interval of the studio coming back."""
        ctx, host = self.ctx, self.host
        cadence = Cadence(asyncio.get_running_loop())
        while not self._done.is_set():
            config = host.config
            try:
                await host.client.heartbeat(config.worker_id, config.auth_token,
                                            host.capabilities(), host.state.reported_job_id)
            except StudioError as exc:
                unauthorised = isinstance(exc, StudioAuthError)
                # Logged once going down, and again when the kind of failure changes
                # (an outage that ends in a 401 must say the token was refused).
                if not self._hb_failures or unauthorised != self._hb_unauthorised:
                    self._hb_unauthorised = unauthorised
                    if unauthorised:
                        log_hb.error("heartbeat refused: not authorised — register again (%s)",
                                     exc)
                    else:
                        log_hb.warning("%s", exc)
                self._hb_failures += 1
                host.state.heartbeat_failed(str(exc), unauthorised=unauthorised)
            else:
                if self._hb_failures:
                    log_hb.info("heartbeat ok again after %d failures", self._hb_failures)
                    self._hb_failures = 0
                    self._hb_unauthorised = False
                    # The studio is back: retry claims and logs now, not after their backoff.
                    self._claim_backoff.reset()
                    self._ship_backoff.reset()
                    ctx.wake.set()
                host.state.heartbeat_ok()
            host.publish_status_file(force=True)
            ctx.heartbeat_sent.set()
            ctx.heartbeat_now.clear()
            delay = cadence.delay(config.heartbeat_interval_secs)
            if await wait_any((ctx.heartbeat_now, self._done), delay):
                cadence.reset()

    async def _claim_loop(self) -> End:
        ctx, host, jobs = self.ctx, self.host, self.ctx.jobs
        await jobs.report_journal(self)
        while not ctx.stop_claiming.is_set():
            if ctx.end_session.is_set():
                return End.STOPPED
            if not host.config.is_registered():
                return End.UNREGISTERED
            if await ctx.between_jobs():
                return End.STOPPED
            if await self._v2_appeared():
                return End.V2_APPEARED
            config = host.config
            if ctx.holding_back() or host.state.unauthorised:
                ctx.idle.set()
                if ctx.until_idle and not config.auto_enabled:
                    return End.IDLE
                ctx.wake.clear()
                await wait_event(ctx.wake, config.claim_interval_secs)
                continue
            await jobs.report_journal(self)
            try:
                claim = await host.client.claim(config.worker_id, config.auth_token)
            except BadClaim as exc:
                await self._bad_claim(exc)
                await wait_event(ctx.stop_claiming, config.claim_interval_secs)
                continue
            except StudioError as exc:
                if isinstance(exc, StudioAuthError):
                    host.state.set_unauthorised(True)
                if not self._claim_errors:
                    log_claim.warning("%s", exc)
                self._claim_errors += 1
                # Woken early by a successful heartbeat (or stop, resume, a config change).
                ctx.wake.clear()
                await wait_event(ctx.wake, self._claim_backoff.next_delay())
                continue
            if self._claim_errors:
                log_claim.info("claiming works again after %d failures", self._claim_errors)
                self._claim_errors = 0
                self._claim_backoff.reset()
                if self._hb_failures:
                    # The studio answered a claim: heartbeat now so the Status tab stops
                    # saying "Disconnected" at once, not one heartbeat interval later.
                    ctx.heartbeat_now.set()
            if claim is None:
                ctx.idle.set()
                if ctx.until_idle:
                    return End.IDLE
                ctx.wake.clear()
                await wait_event(ctx.wake, config.claim_interval_secs)
                continue
            ctx.idle.clear()
            # A model the engine cannot run for this kind (a studio matching on the flat
            # model list) ends in CannotServe: failed, not retryable, and no cool-down.
            await asyncio.wait({jobs.start(claim, self)})
            host.publish_status_file()
        return End.STOPPED

    async def _v2_appeared(self) -> bool:
        if self._reprobe is None or time.monotonic() - self._last_probe < self._reprobe_secs:
            return False
        self._last_probe = time.monotonic()
        return await self._reprobe()

    async def _bad_claim(self, exc: BadClaim) -> None:
        if exc.job_id is None:
            log_claim.error("the studio sent an unusable claim reply: %s", exc)
            return
        log_claim.error("job %s from the studio is unusable: %s", exc.job_id, exc,
                        extra={"job_id": exc.job_id})
        await self.ctx.jobs.report_fail(exc.job_id, str(exc), retryable=exc.retryable,
                                        delivery=self)

    # -- log shipping -----------------------------------------------------------------------
    async def _ship_loop(self) -> None:
        cadence = Cadence(asyncio.get_running_loop())
        while not self._done.is_set():
            delay = cadence.delay(LOG_FLUSH_SECS)
            ok = await self.flush_logs()
            if not ok:
                delay = max(delay, self._ship_backoff.next_delay())
                cadence.reset()
            await wait_event(self._done, delay)

    async def flush_logs(self) -> bool:
        """Ship everything queued, in batches; False when the studio refused a batch."""
        config = self.host.config
        queue = self.host.ship_queue
        if not config.is_registered():
            return True
        # Bounded: entries logged while shipping wait for the next tick.
        for _ in range(queue.capacity // SHIP_BATCH + 2):
            batch = queue.take(SHIP_BATCH)
            if not batch:
                break
            try:
                await self.host.client.ship_logs(config.worker_id, config.auth_token, batch)
            except StudioError as exc:
                queue.put_back(batch)
                if not self._ship_backoff.failing:
                    get_logger("logs").warning("log shipping failed: %s", exc,
                                               extra={"local_only": True})
                return False
        self._ship_backoff.reset()
        return True
