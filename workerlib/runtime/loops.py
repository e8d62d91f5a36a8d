"""The worker loops: registration, the studio session (v1 or v2, chosen here), and the
side loops every protocol shares (engine health, config watch, update check).

Each loop is a small tick on a drift-free cadence and ends when the worker stops.
The loops get their collaborators passed in (a ``Host``); they never import the
service. Failures are logged once on the way down and once on recovery.
"""

from __future__ import annotations

import asyncio
import logging
import time

from workerlib.logs import get_logger
from workerlib.runtime.host import Host
from workerlib.runtime.job import SHUTDOWN_REASON, JobRunner
from workerlib.runtime.registration import Registrar
from workerlib.runtime.state import ProtocolInfo
from workerlib.runtime.timing import wait_event
from workerlib.runtime.transport import End, Transport, session_key
from workerlib.runtime.v1 import PollingTransport
from workerlib.runtime.v2 import (
    DELETED_MESSAGE,
    DUPLICATE_MESSAGE,
    UNAUTHORISED_MESSAGE,
    ChannelTransport,
    probe_v2,
)
from workerlib.updater import UpdateStatus

log = get_logger("worker")
log_claim = get_logger("claim")
log_update = get_logger("auto-update")

BACKEND_CHECK_SECS = 60.0
"""How often a healthy engine's backend (and its model list) is checked."""
CONFIG_WATCH_SECS = 1.0
UPDATE_TICK_SECS = 60.0
SHUTDOWN_GRACE_SECS = 3.0
"""After the drain: how long the job's fail report and the last logs may take."""
REPROBE_SECS = 3600.0
"""auto on a v1-only studio: how often to look for a v2 channel again."""
NO_V2_REASON = "studio has no v2 channel: polling"
_STOP_MESSAGES = {End.UNAUTHORISED: UNAUTHORISED_MESSAGE, End.DUPLICATE: DUPLICATE_MESSAGE,
                  End.DELETED: DELETED_MESSAGE,
                  End.GAVE_UP: "gave up reconnecting to the studio (ws_reconnect_attempts); "
                               "restart the worker to try again"}


class WorkerLoops:
    """One run of the loops. A restart makes a new instance; state lives in the host."""

    def __init__(
        self,
        host: Host,
        *,
        until_idle: bool = False,
        reprobe_secs: float = REPROBE_SECS,
        idle_timeout_secs: float | None = None,
        registration_poll_secs: float | None = None,
    ) -> None:
        self.host = host
        self.until_idle = until_idle
        self.reprobe_secs = reprobe_secs
        self.idle_timeout_secs = idle_timeout_secs
        self.jobs = JobRunner(host)
        self.registrar = Registrar(host) if registration_poll_secs is None else \
            Registrar(host, poll_secs=registration_poll_secs)
        self.stop_event = asyncio.Event()
        self.stop_claiming = asyncio.Event()
        self.end_session = asyncio.Event()
        self.wake = asyncio.Event()
        self.heartbeat_now = asyncio.Event()
        """Set to send a heartbeat at once (the advertised models changed)."""
        self.heartbeat_sent = asyncio.Event()
        self.idle = asyncio.Event()
        """Set each round the worker had no job to run (held back, or none offered)."""
        self.transport: Transport | None = None
        self.session_changed = asyncio.Event()
        """Set whenever a session starts or ends (tests wait on it)."""
        self._tasks: list[asyncio.Task[None]] = []
        self._v2_missing = False
        self._advertised_models: dict[str, list[str]] | None = None
        self._last_update_check = -float("inf")
        self._update_ready = False
        self._session_key: tuple[str, ...] | None = None

    @property
    def job_task(self) -> asyncio.Task[None] | None:
        task = self.jobs.task
        return task if task is not None and not task.done() else None

    # -- lifecycle ----------------------------------------------------------------------
    def start(self) -> None:
        loop_fns = [self._claim_loop, self._config_loop, self._update_loop, self._backend_loop]
        self._tasks = [asyncio.create_task(fn(), name=fn.__name__) for fn in loop_fns]

    async def stop(self, drain_secs: float) -> None:
        """Stop taking jobs, let a running job finish within ``drain_secs``, then stop.

        Bounded whatever the network does: after the drain, the job's fail report and
        the session's last log batch share SHUTDOWN_GRACE_SECS, then everything is
        cancelled. A fail that could not be sent stays in the journal (written before
        sending) and is reported at the next start.
        """
        self.stop_claiming.set()
        self.wake.set()
        main = self.claim_task()
        if not main.done():
            if self.jobs.in_flight():
                log_claim.info("waiting up to %g s for the running job to finish", drain_secs)
            done, _ = await asyncio.wait({main}, timeout=drain_secs)
            if not done:
                # The running job and the upload beside it (v1), each reports itself failed.
                jobs = self.jobs.in_flight()
                if jobs:
                    self.jobs.abort(SHUTDOWN_REASON)
                    await asyncio.wait(jobs, timeout=SHUTDOWN_GRACE_SECS)
                    stuck = {job for job in jobs if not job.done()}
                    if stuck:
                        for job in stuck:  # the studio does not answer: the journal keeps it
                            job.cancel()
                        await asyncio.wait(stuck, timeout=SHUTDOWN_GRACE_SECS)
                # The session ends by itself (after its last logs) once no job runs.
                done, _ = await asyncio.wait({main}, timeout=SHUTDOWN_GRACE_SECS)
                if not done:
                    get_logger("logs").warning("the last %d log entries could not be shipped",
                                               len(self.host.ship_queue),
                                               extra={"local_only": True})
        self.stop_event.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.wait(self._tasks, timeout=SHUTDOWN_GRACE_SECS)

    def claim_task(self) -> asyncio.Task[None]:
        """The task that talks to the studio and runs jobs (it ends when idle in
        ``until_idle`` mode)."""
        return self._tasks[0]

    def config_changed(self) -> None:
        self.registrar.config_changed()
        key = session_key(self.host.config)
        if self.transport is not None and key != self._session_key:
            self.end_session.set()  # the next session uses the new address or token
        self.wake.set()

    # -- LoopContext ------------------------------------------------------------------------
    def holding_back(self) -> bool:
        config = self.host.config
        state = self.host.state
        return (not config.auto_enabled or state.backend_problem is not None
                or state.cooling_down() or self.host.policy.hold_reason() is not None
                or self._local_fault())

    def _local_fault(self) -> bool:
        """The journal cannot be written (a full disk): take nothing until it can, or
        every job would be handed straight back and the studio's queue drained."""
        journal, state = self.host.journal, self.host.state
        if journal.fault is None:
            return False
        if journal.retry():
            log_claim.info("the journal can be written again; claiming resumes")
            state.set_error(None)
            return False
        if state.last_error != journal.fault:
            log_claim.error("not claiming: %s", journal.fault)
            state.set_error(journal.fault)
        return True

    async def between_jobs(self) -> bool:
        """Updates are applied and a changed engine rebuilt here, between jobs."""
        if self._update_ready:
            await self.jobs.wait_upload()  # a restart must not cut the last upload off
        if self._update_ready and await self._apply_update():
            self.stop_claiming.set()
            return True
        if self.host.restart_pending:
            await self.host.rebuild_engine()
            await self.jobs.check_backend()
        await self._advertise_models_if_changed()
        return False

    # -- registration and the session ----------------------------------------------------------
    async def _claim_loop(self) -> None:
        await self.jobs.check_backend()
        while not self.stop_claiming.is_set():
            if not self.host.config.is_registered():
                delay = await self.registrar.step()
                if delay > 0:
                    self.wake.clear()
                    await wait_event(self.wake, delay)
                continue
            transport = self._choose()
            self._session_key = session_key(self.host.config)
            self.end_session.clear()
            self.transport = transport
            self.session_changed.set()
            try:
                end = await transport.run()
            finally:
                self.transport = None
                self.session_changed.set()
            if end is End.IDLE or self.stop_claiming.is_set():
                return
            if end is End.NO_V2:
                self._v2_missing = True
            elif end is End.V2_APPEARED:
                self._v2_missing = False
                log.info("the studio has a v2 channel now: switching from polling")
            elif end in _STOP_MESSAGES:
                self.host.state.set_error(_STOP_MESSAGES[end])
                self.wake.clear()
                while not self.stop_claiming.is_set() and \
                        session_key(self.host.config) == self._session_key:
                    await wait_event(self.wake, 3600.0)
                    self.wake.clear()

    def _choose(self) -> Transport:
        """``protocol`` decides; ``auto`` tries the v2 channel and falls back to polling
        when the studio has none, looking again every ``reprobe_secs``."""
        config = self.host.config
        if config.protocol == "v1":
            info = ProtocolInfo(name="v1", reason="protocol = v1 in the config")
        elif config.protocol == "v2":
            info = ProtocolInfo(name="v2", reason="protocol = v2 in the config")
        elif self._v2_missing:
            info = ProtocolInfo(name="v1", reason=NO_V2_REASON)
        else:
            info = ProtocolInfo(name="v2", reason="auto: the studio has a v2 channel")
        if self.host.state.protocol != info:
            log.info("talking to %s over %s", config.api_base_url, info.describe())
        self.host.state.set_protocol(info)
        if info.name == "v2":
            kwargs = {} if self.idle_timeout_secs is None else \
                {"idle_timeout_secs": self.idle_timeout_secs}
            return ChannelTransport(self, allow_fallback=config.protocol == "auto", **kwargs)
        reprobe = self._probe if config.protocol == "auto" else None
        return PollingTransport(self, reprobe=reprobe, reprobe_secs=self.reprobe_secs)

    async def _probe(self) -> bool:
        config = self.host.config
        return await probe_v2(self.host.http, config.api_base_url, config.worker_id,
                              config.auth_token)

    async def flush_logs(self) -> bool:
        transport = self.transport
        return await transport.flush_logs() if transport is not None else True

    async def _advertise_models_if_changed(self) -> None:
        """The studio matches jobs against the last heartbeat's capabilities: when the
        engine's models changed (a backend came up, a model was installed), tell it
        before taking a job rather than up to one interval later."""
        models = self.host.engine.models_per_kind()
        if models != self._advertised_models and self._advertised_models is not None \
                and self.transport is not None:
            self.heartbeat_sent.clear()
            self.heartbeat_now.set()
            await wait_event(self.heartbeat_sent, 5.0)
        self._advertised_models = models

    # -- backend health -------------------------------------------------------------------
    async def _backend_loop(self) -> None:
        while not self.stop_event.is_set():
            down = self.host.state.backend_problem is not None
            interval = self.host.config.claim_interval_secs if down else BACKEND_CHECK_SECS
            await wait_event(self.stop_event, interval)
            if self.stop_event.is_set():
                return
            if self.job_task is None and await self.jobs.check_backend() is None and down:
                self.wake.set()

    # -- config watch -----------------------------------------------------------------------
    async def _config_loop(self) -> None:
        while not self.stop_event.is_set():
            await wait_event(self.stop_event, CONFIG_WATCH_SECS)
            self.host.reload_config_if_changed()

    # -- update check ------------------------------------------------------------------------
    async def _update_loop(self) -> None:
        while not self.stop_event.is_set():
            config = self.host.config
            due = time.monotonic() - self._last_update_check >= config.auto_update_interval_secs
            if config.auto_update_enabled and due:
                self._last_update_check = time.monotonic()
                info = await self.host.check_update()
                level = logging.WARNING if info.error else logging.INFO
                log_update.log(level, "%s", info.describe())
                if info.available and not info.error:
                    self._update_ready = True
                    self.wake.set()
            await wait_event(self.stop_event, UPDATE_TICK_SECS)

    async def _apply_update(self) -> bool:
        """Install the available update; True when the worker must restart into it."""
        self._update_ready = False
        outcome = await self.host.apply_update(lambda: not self.stop_claiming.is_set())
        level = {UpdateStatus.FAILED: logging.WARNING,
                 UpdateStatus.UP_TO_DATE: logging.DEBUG}.get(outcome.status, logging.INFO)
        log_update.log(level, "%s", outcome.message)
        return outcome.restart

__all__ = ["SHUTDOWN_REASON", "WorkerLoops"]
