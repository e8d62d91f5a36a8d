"""Which finished jobs deserve a desktop notification, and what it says.

The delivery (plyer) lives in the app; the gate is here so it is tested without a
desktop. New jobs are found by identity, so a full recent-jobs ring still notifies.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from workerlib.config import Config
from workerlib.runtime.state import FinishedJob


@dataclass(frozen=True)
class Notice:
    title: str
    body: str


def notice_for(job: FinishedJob, config: Config) -> Notice | None:
    if job.outcome == "completed":
        if not config.notify_on_completion:
            return None
        return Notice("Job completed", f"{job.kind} · {job.model}")
    if not config.notify_on_failure:
        return None
    reason = f"\n{job.reason}" if job.reason else ""
    return Notice("Job failed", f"{job.kind} · {job.model}{reason}")


class NewJobs:
    """Remembers which finished jobs were seen, by (job id, finished at)."""

    def __init__(self, memory: int = 500) -> None:
        self._seen: deque[tuple[str, float]] = deque(maxlen=memory)
        self._seen_set: set[tuple[str, float]] = set()

    def prime(self, jobs: Iterable[FinishedJob]) -> None:
        """Mark jobs that were already there (no notification for them)."""
        for job in jobs:
            self._remember((job.job_id, job.finished_at))

    def _remember(self, key: tuple[str, float]) -> None:
        if len(self._seen) == self._seen.maxlen:
            self._seen_set.discard(self._seen[0])
        self._seen.append(key)
        self._seen_set.add(key)

    def new(self, jobs: Iterable[FinishedJob]) -> list[FinishedJob]:
        """Jobs not seen before, oldest first."""
        fresh = [job for job in jobs if (job.job_id, job.finished_at) not in self._seen_set]
        fresh.sort(key=lambda job: job.finished_at)
        for job in fresh:
            self._remember((job.job_id, job.finished_at))
        return fresh
