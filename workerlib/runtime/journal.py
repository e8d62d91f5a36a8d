"""A tiny durable record of the job in flight and of fails not yet delivered.

Written before the engine starts and removed once the studio acknowledged the
result, so a worker killed mid-job can tell the studio on its next start.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

RESTARTED_REASON = "worker restarted"


@dataclass
class JournalEntry:
    job_id: str
    claimed_at: float
    error: str | None = None
    """Set when a fail report is pending: what to tell the studio."""
    retryable: bool = True


class Journal:
    """Only this process writes it (the instance lock sees to that), so the entries are
    kept in memory and the file is read once.

    Writes are atomic (temp file + rename) but not fsynced: what matters is surviving
    the worker process being killed, which the OS page cache does; after a power cut
    the studio releases the job itself once the heartbeat is stale.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._entries: list[JournalEntry] | None = None

    def entries(self) -> list[JournalEntry]:
        if self._entries is None:
            self._entries = self._read()
        return list(self._entries)

    def _read(self) -> list[JournalEntry]:
        try:
            raw = json.loads(self.path.read_text("utf-8"))
        except FileNotFoundError:
            return []
        except (OSError, ValueError):
            return []
        entries: list[JournalEntry] = []
        for item in raw.get("jobs", []) if isinstance(raw, dict) else []:
            try:
                entries.append(
                    JournalEntry(
                        job_id=str(item["job_id"]),
                        claimed_at=float(item.get("claimed_at", 0.0)),
                        error=item.get("error"),
                        retryable=bool(item.get("retryable", True)),
                    )
                )
            except (KeyError, TypeError, ValueError):
                continue
        return entries

    def _write(self, entries: list[JournalEntry]) -> None:
        if entries == self._entries:
            return
        self._entries = list(entries)
        if not entries:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = json.dumps({"jobs": [asdict(e) for e in entries]}).encode()
        fd, tmp = tempfile.mkstemp(prefix=".inflight.", dir=self.path.parent)
        try:
            if os.name == "posix":
                os.fchmod(fd, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def begin(self, job_id: str) -> None:
        entries = [e for e in self.entries() if e.job_id != job_id]
        entries.append(JournalEntry(job_id=job_id, claimed_at=time.time()))
        self._write(entries)

    def pending_fail(self, job_id: str, error: str, retryable: bool) -> None:
        entries = [e for e in self.entries() if e.job_id != job_id]
        entries.append(
            JournalEntry(job_id=job_id, claimed_at=time.time(), error=error, retryable=retryable)
        )
        self._write(entries)

    def done(self, job_id: str) -> None:
        self._write([e for e in self.entries() if e.job_id != job_id])
