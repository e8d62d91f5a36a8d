"""Jobs tab: the running job and the last finished ones, newest first."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

from app.viewmodels.tones import Tone
from workerlib.control.handle import WorkerHandle
from workerlib.format import duration
from workerlib.runtime.state import RECENT_JOBS, CurrentJob, FinishedJob


@dataclass(frozen=True)
class CurrentJobView:
    visible: bool = False
    title: str = "No job running"
    job_id: str = ""
    prompt: str = ""
    elapsed: str = ""
    has_progress: bool = False
    progress: float = 0.0
    """0–100, for a progress bar."""
    progress_text: str = ""


@dataclass(frozen=True)
class JobRow:
    job_id: str
    icon: str
    tone: Tone
    title: str
    duration: str
    finished_at: str
    reason: str

    def as_data(self) -> dict[str, str]:
        """One RecycleView data item."""
        return asdict(self)


@dataclass(frozen=True)
class JobsView:
    current: CurrentJobView = CurrentJobView()
    rows: tuple[JobRow, ...] = ()
    heading: str = "Finished jobs"
    empty_text: str = "No finished jobs yet."


def finished_at_text(timestamp: float, now: float) -> str:
    moment = time.localtime(timestamp)
    if time.localtime(now)[:3] == moment[:3]:
        return time.strftime("%H:%M:%S", moment)
    return time.strftime("%d %b %H:%M", moment)


def current_view(job: CurrentJob | None, now: float) -> CurrentJobView:
    if job is None:
        return CurrentJobView()
    progress = job.progress
    return CurrentJobView(
        visible=True,
        title=f"{job.kind} · {job.model}",
        job_id=job.job_id,
        prompt=job.prompt_preview or "(no prompt)",
        elapsed=duration(now - job.started_at),
        has_progress=progress is not None,
        progress=0.0 if progress is None else round(progress * 100, 1),
        progress_text="" if progress is None else f"{progress * 100:.0f}%",
    )


def job_row(job: FinishedJob, now: float) -> JobRow:
    ok = job.outcome == "completed"
    reason = ""
    if not ok:
        reason = job.reason or "failed"
        if job.retryable is True:
            reason += " (will be retried)"
    return JobRow(
        job_id=job.job_id,
        icon="check-circle" if ok else "alert-circle",
        tone="ok" if ok else "error",
        title=f"{job.kind} · {job.model}",
        duration=duration(job.duration_secs),
        finished_at=finished_at_text(job.finished_at, now),
        reason=reason,
    )


class JobsViewModel:
    def __init__(self, service: WorkerHandle) -> None:
        self.service = service

    def view(self, now: float | None = None) -> JobsView:
        now = time.time() if now is None else now
        return self.render(self.service.status().current_job, self.service.recent_jobs(), now)

    @staticmethod
    def render(current: CurrentJob | None, recent: list[FinishedJob], now: float) -> JobsView:
        # recent_jobs() is newest first already; sort anyway so the order never depends on it.
        newest = sorted(recent, key=lambda job: job.finished_at, reverse=True)[:RECENT_JOBS]
        rows = tuple(job_row(job, now) for job in newest)
        completed = sum(1 for job in newest if job.outcome == "completed")
        heading = "Finished jobs"
        if rows:
            heading = (f"Last {len(rows)} finished jobs · {completed} completed · "
                       f"{len(rows) - completed} failed")
        return JobsView(current=current_view(current, now), rows=rows, heading=heading)
