"""The worker's shared state and the frozen snapshots the GUI, tray and CLI read.

Every string in a snapshot is made safe by the model itself (``_Frozen``): redacted,
control characters escaped, long values cut (workerlib.sanitize). Whatever reaches
``status``, ``status.json`` or the window went through that, whichever call site set it.

Intervals (cool-down, staleness, durations) use a monotonic clock, so a wall-clock step
never stops claiming for hours; wall-clock values are only for display.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, field_validator

from workerlib.policy.gpu import GpuHealth
from workerlib.policy.hold import Hold
from workerlib.sanitize import display

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

    @field_validator("*", mode="after")
    @classmethod
    def _safe_text(cls, value: Any) -> Any:
        return display(value) if isinstance(value, str) else value


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


class Approval(_Frozen):
    """Where a v2 registration request stands (docs/PROTOCOL.md §3.1)."""

    phase: Literal["waiting", "rejected"]
    request_id: str
    since: float
    """When this worker started waiting (wall clock)."""
    reason: str | None = None


class ProtocolInfo(_Frozen):
    """The protocol in use with the studio and why it was chosen."""

    name: Literal["v1", "v2"]
    reason: str

    def describe(self) -> str:
        what = "v1 polling" if self.name == "v1" else "v2 channel"
        return f"{what} ({self.reason})"


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
    hold: Hold | None = None
    """The politeness rule that holds claiming now (the first that holds), if any."""
    gpus: list[GpuHealth] = []
    """GPU health from NVML; empty without an NVIDIA GPU."""
    user_presence: Literal["idle", "active"] | None = None
    approval: Approval | None = None
    """Set while a v2 registration request waits for the studio or was rejected."""
    protocol: ProtocolInfo | None = None
    vram_source: str = "detected"
    """How vram_total_gb was found: "detected" or "set by STUDIO_WORKER_VRAM_GB"."""
    uploading: int = 0
    """Finished jobs whose result is still being uploaded while the next job runs (v1)."""


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

    def __init__(self, emit: Callable[[Event], None], *,
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self._emit = emit
        self._clock = clock
        self._wall = wall
        self.current_job: CurrentJob | None = None
        self.current_job_id: str | None = None
        """The running job's id as the studio sent it (CurrentJob.job_id is for display)."""
        self.uploading: dict[str, tuple[CurrentJob, float]] = {}
        """Jobs whose result is being handed to the studio while the next one runs (v1),
        by studio id, with the monotonic time each started."""
        self.recent: deque[FinishedJob] = deque(maxlen=RECENT_JOBS)
        self.last_heartbeat: HeartbeatInfo | None = None
        self.last_ok_heartbeat_at: float | None = None
        self.heartbeat_failures = 0
        self.unauthorised = False
        self.last_error: str | None = None
        self.last_update: UpdateInfo | None = None
        self.started_at = wall()
        self._started_mono = clock()
        self._last_ok_mono: float | None = None
        self._job_started_mono = 0.0
        self.jobs_completed = 0
        self.jobs_failed = 0
        self.vram_total_gb = 0.0
        self.vram_source = "detected"
        self.backend_problem: str | None = None
        self.consecutive_failures = 0
        self._cooldown_end: float | None = None
        """Monotonic deadline of the failure cool-down."""
        self.approval: Approval | None = None
        self.protocol: ProtocolInfo | None = None

    # -- heartbeat / connection -----------------------------------------------------
    def heartbeat_ok(self) -> None:
        now = self._wall()
        self.last_heartbeat = HeartbeatInfo(ok=True, at=now)
        self.last_ok_heartbeat_at = now
        self._last_ok_mono = self._clock()
        self.heartbeat_failures = 0
        self.unauthorised = False
        self._emit(Event("status"))

    def heartbeat_failed(self, error: str, *, unauthorised: bool = False) -> None:
        self.last_heartbeat = HeartbeatInfo(ok=False, at=self._wall(), error=error)
        self.heartbeat_failures += 1
        self.unauthorised = unauthorised
        self._emit(Event("status"))

    def set_unauthorised(self, value: bool) -> None:
        if self.unauthorised != value:
            self.unauthorised = value
            self._emit(Event("status"))

    def set_approval(self, approval: Approval | None) -> None:
        if self.approval != approval:
            self.approval = approval
            self._emit(Event("status"))

    def set_protocol(self, protocol: ProtocolInfo | None) -> None:
        if self.protocol != protocol:
            self.protocol = protocol
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
        reference = self._last_ok_mono if self._last_ok_mono is not None else \
            self._started_mono
        if self._clock() - reference > stale_after and self.heartbeat_failures > 0:
            return Connection.DISCONNECTED
        if self.last_ok_heartbeat_at is None:
            return Connection.CONNECTING
        return Connection.CONNECTED

    # -- jobs -----------------------------------------------------------------------
    def job_started(self, job_id: str, kind: str, model: str, prompt: str) -> None:
        self.current_job_id = job_id
        self._job_started_mono = self._clock()
        self.current_job = CurrentJob(
            job_id=job_id, kind=kind, model=model, prompt_preview=preview(prompt),
            started_at=self._wall(),
        )
        self._emit(Event("job", self.current_job))
        self._emit(Event("status"))

    def job_progress(self, job_id: str, fraction: float) -> None:
        job = self.current_job
        if job is None or self.current_job_id != job_id:
            return
        fraction = min(1.0, max(0.0, fraction))
        if job.progress is not None and abs(job.progress - fraction) < 0.005:
            return
        self.current_job = job.model_copy(update={"progress": fraction})
        self._emit(Event("job", self.current_job))

    def job_finished(
        self, job_id: str, outcome: Literal["completed", "failed"], reason: str | None = None,
        retryable: bool | None = None, *, streak: bool = True,
    ) -> FinishedJob | None:
        """``streak=False``: a failure that says nothing about this worker's health (a job
        it cannot serve) and so does not count towards the cool-down."""
        job = self.current_job
        started = self._job_started_mono
        current = job is not None and self.current_job_id == job_id
        if not current:
            if job_id not in self.uploading:
                return None
            job, started = self.uploading.pop(job_id)
        assert job is not None
        finished = FinishedJob(
            job_id=job.job_id, kind=job.kind, model=job.model, prompt_preview=job.prompt_preview,
            outcome=outcome, reason=reason, retryable=retryable,
            duration_secs=max(0.0, self._clock() - started),
            finished_at=self._wall(),
        )
        self.recent.append(finished)
        if current:
            self.current_job = None
            self.current_job_id = None
        if outcome == "completed":
            self.jobs_completed += 1
            self.consecutive_failures = 0
        else:
            self.jobs_failed += 1
            if streak:
                self.consecutive_failures += 1
        self._emit(Event("finished", finished))
        if current:
            self._emit(Event("job", None))
        self._emit(Event("status"))
        return finished

    def job_uploading(self, job_id: str) -> None:
        """The running job has its result, which is handed to the studio while the next
        job runs: it is no longer the current job, but counts as in flight until
        ``job_finished``."""
        job = self.current_job
        if job is None or self.current_job_id != job_id:
            return
        self.uploading[job_id] = (job.model_copy(update={"progress": 1.0}),
                                  self._job_started_mono)
        self.current_job = None
        self.current_job_id = None
        self._emit(Event("job", None))
        self._emit(Event("status"))

    @property
    def reported_job_id(self) -> str | None:
        """The job a heartbeat names: the running one, else one whose result is still being
        uploaded (the studio still holds it for this worker)."""
        if self.current_job_id is not None:
            return self.current_job_id
        return next(iter(self.uploading), None)

    def recent_jobs(self) -> list[FinishedJob]:
        """Newest first."""
        return list(reversed(self.recent))

    def set_backend_problem(self, problem: str | None) -> None:
        if self.backend_problem != problem:
            self.backend_problem = problem
            self._emit(Event("status"))

    def start_cooldown(self, seconds: float) -> None:
        self._cooldown_end = self._clock() + seconds
        self.consecutive_failures = 0
        self._emit(Event("status"))

    def cooling_down(self) -> bool:
        if self._cooldown_end is None:
            return False
        if self._clock() >= self._cooldown_end:
            self._cooldown_end = None
            self._emit(Event("status"))
            return False
        return True

    @property
    def cooldown_until(self) -> float | None:
        """When the cool-down ends, on the wall clock (for display only)."""
        if self._cooldown_end is None:
            return None
        return self._wall() + max(0.0, self._cooldown_end - self._clock())

    def set_update(self, info: UpdateInfo) -> None:
        self.last_update = info
        self._emit(Event("status"))


def state_label(
    connection: Connection, *, paused: bool, busy: bool, backend_down: bool = False,
    cooling_down: bool = False, held: bool = False, approval: Approval | None = None,
) -> str:
    """The badge text: Idle / Busy / Paused / Disconnected / Not authorised / Not registered
    (Waiting for approval / Rejected while a v2 request is open), and Engine offline /
    Cooling down when the worker holds back on its own."""
    if connection is Connection.NOT_REGISTERED:
        if approval is not None:
            return "Waiting for approval" if approval.phase == "waiting" else "Rejected"
        return "Not registered"
    if connection is Connection.UNAUTHORISED:
        return "Not authorised"
    if connection is Connection.DISCONNECTED:
        return "Disconnected"
    if busy:
        return "Busy"
    if paused or held:
        return "Paused"
    if backend_down:
        return "Engine offline"
    if cooling_down:
        return "Cooling down"
    return "Idle"
