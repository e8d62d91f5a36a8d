"""The work this PC did: every finished job in a small SQLite file in the state folder.

WAL journal: a write is one transaction, so a worker killed mid-write (kill -9, power
cut) loses at most that transaction's rows and never the file. Rows recorded on an
event loop are written together at most ``FLUSH_SECS`` later (one transaction costs
about what a whole job costs the worker on loopback); reading the stats writes them
first. A file that is not a database any more is moved aside and a new one started.
Rows older than ``KEEP_DAYS`` are dropped.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

log = logging.getLogger("workerlib.stats")
KEEP_DAYS = 35
MAX_ROWS = 200_000
PRUNE_EVERY = 1000
FLUSH_SECS = 1.0
FLUSH_ROWS = 500
_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY,
    job_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    model TEXT NOT NULL,
    outcome TEXT NOT NULL CHECK (outcome IN ('completed', 'failed')),
    duration_secs REAL NOT NULL,
    finished_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_finished_at ON jobs (finished_at);
"""
_FIELD_CHARS = 200


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class Bucket(_Frozen):
    start: float
    completed: int = 0
    failed: int = 0


class Breakdown(_Frozen):
    kind: str
    model: str
    completed: int
    failed: int
    mean_secs: float | None
    """Mean time of the completed jobs."""


class StatsWindow(_Frozen):
    name: Literal["24h", "7d"]
    label: str
    bucket_secs: float
    buckets: list[Bucket]
    completed: int
    failed: int
    mean_secs: float | None
    jobs_per_hour: float
    """Completed jobs per hour over the whole window."""


class StatsSummary(_Frozen):
    generated_at: float
    day: StatsWindow
    week: StatsWindow
    by_kind_model: list[Breakdown]
    """The last 7 days, most jobs first."""

    @property
    def empty(self) -> bool:
        return self.week.completed + self.week.failed == 0


class StatsStore:
    """Open lazily; safe to use from one thread at a time (the event loop)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._inserts = 0
        self._pending: list[tuple[str, str, str, str, float, float]] = []

    def _open(self) -> sqlite3.Connection:
        if self._db is not None:
            return self._db
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            db = self._connect()
        except sqlite3.DatabaseError as exc:
            aside = self.path.with_name(f"{self.path.name}.broken-{int(time.time())}")
            log.warning("%s is damaged (%s); moved it to %s and started a new one",
                        self.path, exc, aside.name)
            with contextlib.suppress(OSError):
                self.path.rename(aside)
            for suffix in ("-wal", "-shm"):
                with contextlib.suppress(OSError):
                    Path(f"{self.path}{suffix}").unlink()
            db = self._connect()
        self._db = db
        return db

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=5.0, isolation_level=None,
                             check_same_thread=False)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(_SCHEMA)
            db.execute("SELECT count(*) FROM jobs").fetchone()
        except sqlite3.DatabaseError:
            db.close()
            raise
        return db

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            db = self._open()
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def record(self, job_id: str, kind: str, model: str, outcome: str, duration_secs: float,
               finished_at: float) -> None:
        """Add one finished job; a failure is logged, never raised (stats are a nicety).

        On an event loop the row is written with the others of the next ``FLUSH_SECS``;
        elsewhere at once."""
        try:
            row = (job_id[:_FIELD_CHARS], kind[:_FIELD_CHARS], model[:_FIELD_CHARS], outcome,
                   max(0.0, float(duration_secs)), float(finished_at))
        except (TypeError, ValueError) as exc:
            log.warning("could not record job %s in %s: %s", job_id, self.path.name, exc)
            return
        with self._lock:
            self._pending.append(row)
            first, full = len(self._pending) == 1, len(self._pending) >= FLUSH_ROWS
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is None or full:
            self.flush()
        elif first:
            loop.call_later(FLUSH_SECS, self.flush)

    def flush(self) -> None:
        """Write the rows recorded so far."""
        with self._lock:
            rows, self._pending = self._pending, []
        if not rows:
            return
        try:
            with self._transaction() as db:
                db.executemany(
                    "INSERT INTO jobs (job_id, kind, model, outcome, duration_secs, finished_at)"
                    " VALUES (?, ?, ?, ?, ?, ?)", rows)
                before, self._inserts = self._inserts, self._inserts + len(rows)
                if before // PRUNE_EVERY != self._inserts // PRUNE_EVERY or before == 0:
                    self._prune(db, rows[-1][5])
        except (sqlite3.Error, OSError, ValueError) as exc:
            log.warning("could not record %d job(s) in %s: %s", len(rows), self.path.name, exc)

    @staticmethod
    def _prune(db: sqlite3.Connection, now: float) -> None:
        db.execute("DELETE FROM jobs WHERE finished_at < ?", (now - KEEP_DAYS * 86400,))
        db.execute("DELETE FROM jobs WHERE id <= (SELECT max(id) FROM jobs) - ?", (MAX_ROWS,))

    def count(self) -> int:
        self.flush()
        with self._lock:
            return int(self._open().execute("SELECT count(*) FROM jobs").fetchone()[0])

    def summary(self, now: float | None = None) -> StatsSummary:
        now = time.time() if now is None else now
        self.flush()
        with self._lock:
            rows = self._open().execute(
                "SELECT kind, model, outcome, duration_secs, finished_at FROM jobs "
                "WHERE finished_at >= ? AND finished_at <= ?",
                (now - 8 * 86400, now + 60)).fetchall()
        return summarise(rows, now)

    def close(self) -> None:
        self.flush()
        with self._lock:
            db, self._db = self._db, None
            if db is not None:
                db.close()


Row = tuple[str, str, str, float, float]


def _window(rows: list[Row], name: Literal["24h", "7d"], label: str, starts: list[float],
            bucket_secs: float, span_start: float, now: float) -> StatsWindow:
    buckets = [{"completed": 0, "failed": 0} for _ in starts]
    durations: list[float] = []
    for _kind, _model, outcome, secs, at in rows:
        if at < span_start or at > now + 60:
            continue
        index = max(0, bisect.bisect_right(starts, at) - 1)
        buckets[index][outcome] += 1
        if outcome == "completed":
            durations.append(secs)
    completed = sum(b["completed"] for b in buckets)
    failed = sum(b["failed"] for b in buckets)
    hours = max(1e-9, (now - span_start) / 3600)
    return StatsWindow(
        name=name, label=label, bucket_secs=bucket_secs,
        buckets=[Bucket(start=s, **b) for s, b in zip(starts, buckets, strict=True)],
        completed=completed, failed=failed,
        mean_secs=sum(durations) / len(durations) if durations else None,
        jobs_per_hour=completed / hours,
    )


def summarise(rows: list[Row], now: float) -> StatsSummary:
    """Pure: rows (kind, model, outcome, duration, finished_at) → the summary."""
    local = datetime.fromtimestamp(now)
    this_hour = local.replace(minute=0, second=0, microsecond=0)
    hour_starts = [(this_hour - timedelta(hours=23 - i)).timestamp() for i in range(24)]
    today = local.replace(hour=0, minute=0, second=0, microsecond=0)
    day_starts = [(today - timedelta(days=6 - i)).timestamp() for i in range(7)]
    day = _window(rows, "24h", "last 24 hours", hour_starts, 3600, now - 86400, now)
    week = _window(rows, "7d", "last 7 days", day_starts, 86400, day_starts[0], now)
    groups: dict[tuple[str, str], list[Row]] = {}
    for row in rows:
        if row[4] >= day_starts[0]:
            groups.setdefault((row[0], row[1]), []).append(row)
    breakdown = []
    for (kind, model), members in groups.items():
        done = [r[3] for r in members if r[2] == "completed"]
        breakdown.append(Breakdown(kind=kind, model=model, completed=len(done),
                                   failed=len(members) - len(done),
                                   mean_secs=sum(done) / len(done) if done else None))
    breakdown.sort(key=lambda b: (-(b.completed + b.failed), b.kind, b.model))
    return StatsSummary(generated_at=now, day=day, week=week, by_kind_model=breakdown)


def _secs(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s"


def text_report(summary: StatsSummary) -> str:
    """What ``studio-worker stats`` prints."""
    lines: list[str] = []
    for window in (summary.day, summary.week):
        lines.append(f"{window.label}: {window.completed} completed, {window.failed} failed, "
                     f"{window.jobs_per_hour:.2f} jobs/hour, mean {_secs(window.mean_secs)} "
                     "per job")
    if summary.empty:
        lines.append("no jobs in the last 7 days")
        return "\n".join(lines)
    lines.append("")
    lines.append("jobs per hour, last 24 hours (completed/failed):")
    shown = [b for b in summary.day.buckets if b.completed or b.failed]
    for bucket in shown:
        hour = time.strftime("%a %H:00", time.localtime(bucket.start))
        lines.append(f"  {hour}  {bucket.completed:>5} / {bucket.failed}")
    if not shown:
        lines.append("  (none)")
    lines.append("jobs per day, last 7 days (completed/failed):")
    for bucket in summary.week.buckets:
        day = time.strftime("%a %d %b", time.localtime(bucket.start))
        lines.append(f"  {day}  {bucket.completed:>5} / {bucket.failed}")
    lines.append("")
    lines.append("by kind and model, last 7 days:")
    width = max(len(f"{b.kind} · {b.model}") for b in summary.by_kind_model)
    for b in summary.by_kind_model:
        name = f"{b.kind} · {b.model}"
        lines.append(f"  {name:<{width}}  {b.completed:>5} completed  {b.failed:>4} failed  "
                     f"mean {_secs(b.mean_secs)}")
    return "\n".join(lines)
