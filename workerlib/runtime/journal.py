"""A tiny durable record of the job in flight and of fails not yet delivered.

Written before the engine starts and removed once the studio acknowledged the
result, so a worker killed mid-job can tell the studio on its next start.
"""

from __future__ import annotations

import json
import os
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

    It is written twice per job, so a write is cheap: the whole JSON document in one
    ``pwrite`` at offset 0, padded with blanks (which JSON allows) to the length the file
    had, and the file truncated once no job is left: no temp file, no rename, no
    directory update. One write of a few hundred bytes is never half-done when the
    process is killed, and that is what the journal is for: surviving the worker
    process being killed, which the OS page cache does. It is not fsynced; after a
    power cut the studio releases the job itself once the heartbeat is stale.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._entries: list[JournalEntry] | None = None
        self._size = 0
        """The file's length as this process last left it (blanks included)."""
        self._private = False

    def entries(self) -> list[JournalEntry]:
        if self._entries is None:
            self._entries = self._read()
        return list(self._entries)

    def _read(self) -> list[JournalEntry]:
        try:
            data = self.path.read_bytes()
        except OSError:
            return []
        self._size = len(data)
        try:
            raw = json.loads(data.decode("utf-8"))
        except ValueError:
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

    def _open(self) -> int:
        flags = os.O_WRONLY | os.O_CREAT | getattr(os, "O_BINARY", 0)
        try:
            fd = os.open(self.path, flags, 0o600)
        except FileNotFoundError:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, flags, 0o600)
        if not self._private and os.name == "posix":
            os.fchmod(fd, 0o600)  # a file left by someone else may be wider open
        self._private = True
        return fd

    def _write(self, entries: list[JournalEntry]) -> None:
        if entries == self._entries:
            return
        self._entries = list(entries)
        if not entries and self._size == 0:
            return
        data = json.dumps({"jobs": [asdict(e) for e in entries]}).encode() if entries else b""
        fd = self._open()
        try:
            if data:
                _write_at_start(fd, data.ljust(self._size))
                self._size = max(self._size, len(data))
            else:
                os.ftruncate(fd, 0)
                self._size = 0
        finally:
            os.close(fd)

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


def _write_at_start(fd: int, data: bytes) -> None:
    if hasattr(os, "pwrite"):
        written = os.pwrite(fd, data, 0)
    else:  # Windows
        os.lseek(fd, 0, os.SEEK_SET)
        written = os.write(fd, data)
    view = memoryview(data)[written:]
    while view:  # a short write: only on a full disk or an odd file system
        view = view[os.write(fd, view):]
