"""A tiny durable record of the job in flight and of fails not yet delivered.

Written before the engine starts and removed once the studio acknowledged the
result, so a worker killed mid-job can tell the studio on its next start. A job
leaves the journal only when the studio took its ``complete`` or ``fail``, or said
the job is gone or not ours (404, 409, 410): :func:`studio_has_it`. A 401/403 during
a token rotation keeps it here until the fail can be delivered.

A write that fails (a full disk) never raises into the job: the entries stay in
memory, :attr:`Journal.fault` says what is wrong ("disk full: …"), and the worker
stops claiming until :meth:`Journal.retry` succeeds.
"""

from __future__ import annotations

import errno
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from workerlib.errors import StudioError, StudioHTTPError

RESTARTED_REASON = "worker restarted"
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
GONE_STATUSES = (404, 409, 410)
MAX_FILE_BYTES = 1024 * 1024
"""A journal file larger than this is not one we wrote: it is read as empty."""
MAX_PADDING = 64 * 1024


def studio_has_it(error: StudioError | None) -> bool:
    """True when a complete/fail needs no more sending: it was taken (``error`` None) or
    the studio said the job is gone or no longer ours."""
    return error is None or (isinstance(error, StudioHTTPError)
                             and error.status in GONE_STATUSES)


def describe_write_error(path: Path, exc: OSError) -> str:
    reason = exc.strerror or str(exc)
    if exc.errno in _DISK_FULL:
        return f"disk full: cannot write {path} ({reason})"
    return f"cannot write {path} ({reason})"


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
    power cut the studio releases the job itself once the heartbeat is stale. A write
    cut short by a full disk may leave the file unreadable: the entries stay in memory
    and the worker claims nothing until :meth:`retry` has written them again.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._entries: list[JournalEntry] | None = None
        self._size = 0
        """The file's length as this process last left it (blanks included)."""
        self._private = False
        self.fault: str | None = None
        """Why the last write failed (``disk full: …``); None once writing works."""

    def entries(self) -> list[JournalEntry]:
        if self._entries is None:
            self._entries = self._read()
        return list(self._entries)

    def _read(self) -> list[JournalEntry]:
        try:
            with self.path.open("rb") as handle:
                data = handle.read(MAX_FILE_BYTES + 1)
                self._size = handle.seek(0, os.SEEK_END)
        except OSError:
            return []
        if len(data) > MAX_FILE_BYTES:
            return []  # not ours: a few jobs take a few hundred bytes
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

    def _write(self, entries: list[JournalEntry]) -> bool:
        """Keep ``entries`` (in memory always, on disk when possible). False on a write
        error, which is recorded in :attr:`fault` rather than raised."""
        if entries == self._entries and self.fault is None:
            return True
        self._entries = list(entries)
        try:
            self._store(entries)
        except OSError as exc:
            self.fault = describe_write_error(self.path, exc)
            return False
        if entries:  # removing the file proves nothing about a full disk
            self.fault = None
        return self.fault is None

    def _store(self, entries: list[JournalEntry]) -> None:
        if not entries and self._size == 0:
            return
            return
        data = json.dumps({"jobs": [asdict(e) for e in entries]}).encode() if entries else b""
        fd = self._open()
        try:
            if data:
                if self._size > len(data) + MAX_PADDING:
                    # Once, after a journal that grew large (many undelivered fails).
                    os.ftruncate(fd, len(data))
                    self._size = len(data)
                _write_at_start(fd, data.ljust(self._size))
                self._size = max(self._size, len(data))
            else:
                os.ftruncate(fd, 0)
                self._size = 0
        finally:
            os.close(fd)

    def retry(self) -> bool:
        """After a fault: try to write again. True when the journal can be written."""
        if self.fault is None:
            return True
        entries = self.entries()
        if entries:
            return self._write(entries)
        try:  # nothing to keep: prove a journal-sized write works, then clean up
            self._store([JournalEntry(job_id="probe", claimed_at=time.time(),
                                      error="x" * 2048)])
            self._store([])
        except OSError as exc:
            self.fault = describe_write_error(self.path, exc)
            return False
        self.fault = None
        return True

    def begin(self, job_id: str) -> bool:
        """Record the job before it runs; False when that could not be written."""
        entries = [e for e in self.entries() if e.job_id != job_id]
        entries.append(JournalEntry(job_id=job_id, claimed_at=time.time()))
        return self._write(entries)

    def pending_fail(self, job_id: str, error: str, retryable: bool) -> bool:
        entries = [e for e in self.entries() if e.job_id != job_id]
        entries.append(
            JournalEntry(job_id=job_id, claimed_at=time.time(), error=error, retryable=retryable)
        )
        return self._write(entries)

    def done(self, job_id: str) -> bool:
        return self._write([e for e in self.entries() if e.job_id != job_id])


def _write_at_start(fd: int, data: bytes) -> None:
    if hasattr(os, "pwrite"):
        written = os.pwrite(fd, data, 0)
    else:  # Windows
        os.lseek(fd, 0, os.SEEK_SET)
        written = os.write(fd, data)
    view = memoryview(data)[written:]
    while view:  # a short write: only on a full disk or an odd file system
        view = view[os.write(fd, view):]
