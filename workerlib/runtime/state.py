"""The worker's shared state and the frozen snapshots the GUI, tray and CLI read."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

RECENT_JOBS = 50
PREVIEW_CHARS = 80


class Connection(StrEnum):
    NOT_REGISTERED = "not_registered"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    UNAUTHORISED = "unauthorised"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class CurrentJob(_Frozen):
    job_id: str
    kind: str
    model: str
    prompt_preview: str
    started_at: float
    progress: float | None = None


class FinishedJob(_Frozen):
    job_id: str
    kind: str
    model: str
    prompt_preview: str
    outcome: Literal["completed", "failed"]
    reason: str | None = None
    retryable: bool | None = None
    duration_secs: float
    finished_at: float


class HeartbeatInfo(_Frozen):
    ok: bool
    at: float
    error: str | None = None


class UpdateInfo(_Frozen):
    checked_at: float
    current: str
    latest: str | None = None
    available: bool = False
    error: str | None = None
    download_url: str | None = None

    def describe(self) -> str:
        if self.error:
            return f"update check failed: {self.error}"
        if self.available and self.latest:
            return f"update available: {self.current} -> {self.latest}"
        return f"up to date: {self.current}"


class StatusSnapshot(_Frozen):
    version: str
    worker_id: str
    api_base_url: str
    registered: bool
    connection: Connection
    label: str
    paused: bool
    busy: bool
    current_job: CurrentJob | None
    last_heartbeat: HeartbeatInfo | None
    last_ok_heartbeat_at: float | None
    vram_total_gb: float
    vram_threshold_gb: float
    engine: str
    last_error: str | None
    backend_problem: str | None
    cooldown_until: float | None
    last_update: UpdateInfo | None
    started_at: float
    jobs_completed: int
    jobs_failed: int
    heartbeat_interval_secs: float
    running: bool
    """The worker loops are started (False: the window's Start button is offered)."""
    restart_pending: bool
    """Engine settings changed; the engine is rebuilt after the running job."""
    pid: int
    config_path: str
    log_file: str
    vram_source: str = "detected"
    """How vram_total_gb was found: "detected" or "set by STUDIO_WORKER_VRAM_GB"."""


def preview(text: str, limit: int = PREVIEW_CHARS) -> str:
    """One display line; the full prompt is what goes to the studio."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


@dataclass(frozen=True)
class Event:
    """Something changed. ``kind``: status, job, finished, log, config."""

    kind: str
    data: Any = None


Listener = Callable[[Event], None]


class WorkerState:
    """Mutable state owned by the event loop; every change emits an event."""

    def __init__(self, emit: Callable[[Event], None]) -> None:
        self._emit = emit
        self.current_job: CurrentJob | None = None
        self.recent: deque[FinishedJob] = deque(maxlen=RECENT_JOBS)
        self.last_heartbeat: HeartbeatInfo | None = None
        self.last_ok_heartbeat_at: float | None = None
        self.heartbeat_failures = 0
        self.unauthorised = False
        self.last_error: str | None = None
        self.last_update: UpdateInfo | None = None
        self.started_at = time.time()
        self.jobs_completed = 0
        self.jobs_failed = 0
        self.vram_total_gb = 0.0
        self.vram_source = "detected"
        self.backend_problem: str | None = None
        self.consecutive_failures = 0
        self.cooldown_until: float | None = None

    # -- heartbeat / connection -----------------------------------------------------
    def heartbeat_ok(self) -> None:
        now = time.time()
        self.last_heartbeat = HeartbeatInfo(ok=True, at=now)
        self.last_ok_heartbeat_at = now
        self.heartbeat_failures = 0
        self.unauthorised = False
        self._emit(Event("status"))

    def heartbeat_failed(self, error: str, *, unauthorised: bool = False) -> None:
        self.last_heartbeat = HeartbeatInfo(ok=False, at=time.time(), error=error)
        self.heartbeat_failures += 1
        self.unauthorised = unauthorised
        self._emit(Event("status"))

    def set_unauthorised(self, value: bool) -> None:
        if self.unauthorised != value:
            self.unauthorised = value
            self._emit(Event("status"))

    def set_error(self, message: str | None) -> None:
        if self.last_error != message:
            self.last_error = message
            self._emit(Event("status"))

    def connection(self, *, registered: bool, heartbeat_interval: float) -> Connection:
        if not registered:
            return Connection.NOT_REGISTERED
        if self.unauthorised:
            return Connection.UNAUTHORISED
        stale_after = 3 * heartbeat_interval
        reference = self.last_ok_heartbeat_at or self.started_at
        if time.time() - reference > stale_after and self.heartbeat_failures > 0:
            return Connection.DISCONNECTED
        if self.last_ok_heartbeat_at is None:
            return Connection.CONNECTING
        return Connection.CONNECTED

    # -- jobs -----------------------------------------------------------------------
    def job_started(self, job_id: str, kind: str, model: str, prompt: str) -> None:
        self.current_job = CurrentJob(
            job_id=job_id, kind=kind, model=model, prompt_preview=preview(prompt),
            started_at=time.time(),
        )
        self._emit(Event("job", self.current_job))
        self._emit(Event("status"))

    def job_progress(self, job_id: str, fraction: float) -> None:
        job = self.current_job
        if job is None or job.job_id != job_id:
            return
        fraction = min(1.0, max(0.0, fraction))
        if job.progress is not None and abs(job.progress - fraction) < 0.005:
            return
        self.current_job = job.model_copy(update={"progress": fraction})
        self._emit(Event("job", self.current_job))

    def job_finished(
        self, job_id: str, outcome: Literal["completed", "failed"], reason: str | None = None,
        retryable: bool | None = None,
    ) -> FinishedJob | None:
        job = self.current_job
        if job is None or job.job_id != job_id:
            return None
        now = time.time()
        finished = FinishedJob(
            job_id=job.job_id, kind=job.kind, model=job.model, prompt_preview=job.prompt_preview,
            outcome=outcome, reason=reason, retryable=retryable,
            duration_secs=max(0.0, now - job.started_at), finished_at=now,
        )
        self.recent.append(finished)
        self.current_job = None
        if outcome == "completed":
            self.jobs_completed += 1
            self.consecutive_failures = 0
        else:
            self.jobs_failed += 1
            self.consecutive_failures += 1
        self._emit(Event("finished", finished))
        self._emit(Event("job", None))
        self._emit(Event("status"))
        return finished

    def recent_jobs(self) -> list[FinishedJob]:
        """Newest first."""
        return list(reversed(self.recent))

    def set_backend_problem(self, problem: str | None) -> None:
        if self.backend_problem != problem:
            self.backend_problem = problem
            self._emit(Event("status"))

    def start_cooldown(self, seconds: float) -> None:
        self.cooldown_until = time.time() + seconds
        self.consecutive_failures = 0
        self._emit(Event("status"))

    def cooling_down(self) -> bool:
        if self.cooldown_until is None:
            return False
        if time.time() >= self.cooldown_until:
            self.cooldown_until = None
            self._emit(Event("status"))
            return False
        return True

    def set_update(self, info: UpdateInfo) -> None:
        self.last_update = info
        self._emit(Event("status"))


def state_label(
    connection: Connection, *, paused: bool, busy: bool, backend_down: bool = False,
    cooling_down: bool = False,
) -> str:
    """The badge text: Idle / Busy / Paused / Disconnected / Not authorised / Not registered,
    and Engine offline / Cooling down when the worker holds back on its own."""
    if connection is Connection.NOT_REGISTERED:
        return "Not registered"
    if connection is Connection.UNAUTHORISED:
        return "Not authorised"
    if connection is Connection.DISCONNECTED:
        return "Disconnected"
    if busy:
        return "Busy"
    if paused:
        return "Paused"
    if backend_down:
        return "Engine offline"
    if cooling_down:
        return "Cooling down"
    return "Idle"
