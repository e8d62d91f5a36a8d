"""Logging: stdlib logging routed to the UI ring, the studio ship queue and a file.

Every handler goes through ``Redactor`` first, so a secret that somehow reaches a
log call (an exception text quoting a header, a URL with a token) is replaced
before any handler formats it. The same filter escapes control characters in the
values logged (a job id cannot clear the terminal or forge a line) and caps their
length, so one record is at most MAX_ENTRY_CHARS; the ship queue is capped in entries
and in bytes.
"""

from __future__ import annotations

import logging
import logging.handlers
import math
import os
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from workerlib.sanitize import (
    REDACTED,
    display,
    escape_controls,
    redact,
    remember_secrets,
    truncate,
)
from workerlib.wire import MAX_ID_CHARS, LogEntry, LogLevel

ROOT_LOGGER = "workerlib"
UI_RING_SIZE = 1000
SHIP_QUEUE_SIZE = 5000
__all__ = ["REDACTED", "LogLine", "LogRing", "Redactor", "ShipQueue", "WorkerLogHandler",
           "get_logger", "iso_millis", "level_name", "make_file_handler"]
SHIP_QUEUE_BYTES = 8 * 1024 * 1024
"""The ship queue holds at most this much text (oldest dropped, counted)."""
SHIP_BATCH_BYTES = 1024 * 1024
MAX_ARG_CHARS = 1000
"""One value in a log call (a job id, a studio error): longer ones are cut."""
MAX_ENTRY_CHARS = 8000
"""One whole entry (message plus traceback)."""


def get_logger(category: str) -> logging.Logger:
    """A logger whose last name part is the shipped ``category``."""
    return logging.getLogger(f"{ROOT_LOGGER}.{category}")


_iso_second: tuple[int, str] = (-1, "")


def iso_millis(timestamp: float) -> str:
    """UTC RFC 3339 with exactly millisecond precision and a ``Z`` (§2.7)."""
    global _iso_second
    # Split as datetime.fromtimestamp does: microseconds rounded half to even.
    part, whole = math.modf(timestamp)
    second, micros = int(whole), round(part * 1e6)
    if micros >= 1_000_000:
        second, micros = second + 1, micros - 1_000_000
    elif micros < 0:
        second, micros = second - 1, micros + 1_000_000
    fraction = micros // 1000
    cached, text = _iso_second  # one read: another thread may replace it meanwhile
    if cached != second:
        # Formatting the date is most of a log record's cost; records come in bursts.
        text = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S.")
        _iso_second = (second, text)
    return f"{text}{fraction:03d}Z"


def level_name(levelno: int) -> LogLevel:
    if levelno >= logging.ERROR:
        return "error"
    if levelno >= logging.WARNING:
        return "warn"
    return "info"


class Redactor(logging.Filter):
    """Makes a record safe before any handler formats it: secrets (and any bearer token)
    redacted, control characters in the logged values escaped, lengths capped."""

    def __init__(self) -> None:
        super().__init__()
        self._secrets: frozenset[str] = frozenset()
        self._lock = threading.Lock()

    def set_secrets(self, secrets: Iterable[str]) -> None:
        values = list(secrets)
        remember_secrets(values)
        with self._lock:
            self._secrets = frozenset(s for s in values if s and len(s) >= 4)

    def redact(self, text: str) -> str:
        return redact(text, self._secrets)

    @staticmethod
    def _arg(value: Any) -> Any:
        if isinstance(value, str | BaseException):
            return truncate(escape_controls(str(value)), MAX_ARG_CHARS)
        return value

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_redacted", False):
            return True
        args = record.args
        if isinstance(args, tuple):
            record.args = tuple(self._arg(a) for a in args)
        elif args is not None and not isinstance(args, Mapping):
            record.args = (self._arg(args),)
        message = record.getMessage()
        record.msg = truncate(escape_controls(self.redact(message), keep_newlines=True),
                              MAX_ENTRY_CHARS)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = truncate(escape_controls(self.redact(record.exc_text),
                                                       keep_newlines=True), MAX_ENTRY_CHARS)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        job_id = getattr(record, "job_id", None)
        if isinstance(job_id, str):
            record.job_id = display(job_id, MAX_ID_CHARS)
        record._redacted = True
        return True


@dataclass(frozen=True)
class LogLine:
    """One entry of the UI ring (and the source of a shipped entry)."""

    seq: int
    created: float
    level: LogLevel
    category: str
    message: str
    job_id: str | None

    def to_entry(self) -> LogEntry:
        return LogEntry(
            ts=iso_millis(self.created),
            level=self.level,
            category=self.category,
            message=self.message,
            job_id=self.job_id,
        )


class ShipQueue:
    """Bounded queue of entries waiting to be shipped; oldest dropped, counted."""

    def __init__(self, capacity: int = SHIP_QUEUE_SIZE, max_bytes: int = SHIP_QUEUE_BYTES
                 ) -> None:
        self.capacity = capacity
        self.max_bytes = max_bytes
        self._items: deque[LogEntry] = deque()
        self._bytes = 0
        self._dropped = 0
        self._lock = threading.Lock()

    @staticmethod
    def _size(entry: LogEntry) -> int:
        # What the entry costs on the wire, near enough (no re-encoding on the hot path).
        return 80 + len(entry.message) + len(entry.category) + len(entry.job_id or "")

    @property
    def bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)

    @property
    def dropped(self) -> int:
        return self._dropped

    def put(self, entry: LogEntry) -> None:
        size = self._size(entry)
        with self._lock:
            while self._items and (len(self._items) >= self.capacity or
                                   self._bytes + size > self.max_bytes):
                self._bytes -= self._size(self._items.popleft())
                self._dropped += 1
            self._items.append(entry)
            self._bytes += size

    def take(self, limit: int = 500, max_bytes: int = SHIP_BATCH_BYTES) -> list[LogEntry]:
        with self._lock:
            batch: list[LogEntry] = []
            if self._dropped:
                batch.append(
                    LogEntry(
                        ts=iso_millis(datetime.now(UTC).timestamp()),
                        level="warn",
                        category="logs",
                        message=f"{self._dropped} log entries were dropped (queue full)",
                    )
                )
                self._dropped = 0
            taken = 0
            while self._items and len(batch) < limit:
                size = self._size(self._items[0])
                if batch and taken + size > max_bytes:
                    break
                batch.append(self._items.popleft())
                self._bytes -= size
                taken += size
            return batch

    def put_back(self, batch: list[LogEntry]) -> None:
        """Return a batch that failed to ship to the front, within the capacity."""
        with self._lock:
            room = self.capacity - len(self._items)
            keep = batch[-room:] if room > 0 else []
            budget = self.max_bytes - self._bytes
            kept: list[LogEntry] = []
            for entry in reversed(keep):
                size = self._size(entry)
                if size > budget:
                    break
                budget -= size
                kept.append(entry)
            self._dropped += len(batch) - len(kept)
            self._items.extendleft(kept)
            self._bytes += sum(self._size(e) for e in kept)


class LogRing:
    """The last N lines for the UI, with a monotonically increasing sequence."""

    def __init__(self, capacity: int = UI_RING_SIZE) -> None:
        self._lines: deque[LogLine] = deque(maxlen=capacity)
        self._seq = 0
        self._lock = threading.Lock()

    def append(
        self, created: float, level: LogLevel, category: str, message: str, job_id: str | None
    ) -> LogLine:
        with self._lock:
            self._seq += 1
            line = LogLine(self._seq, created, level, category, message, job_id)
            self._lines.append(line)
            return line

    def lines(self) -> list[LogLine]:
        with self._lock:
            return list(self._lines)

    def __len__(self) -> int:
        return len(self._lines)


class WorkerLogHandler(logging.Handler):
    """Feeds the UI ring and the ship queue, then tells a listener."""

    def __init__(
        self,
        ring: LogRing,
        queue: ShipQueue,
        on_line: Callable[[LogLine], None] | None = None,
    ) -> None:
        super().__init__(level=logging.INFO)
        self.ring = ring
        self.queue = queue
        self.on_line = on_line

    def emit(self, record: logging.LogRecord) -> None:
        try:
            category = getattr(record, "category", None) or record.name.rsplit(".", 1)[-1]
            job_id = getattr(record, "job_id", None)
            message = record.getMessage()
            if record.exc_text:
                message = f"{message}\n{record.exc_text}"
            line = self.ring.append(
                record.created, level_name(record.levelno), category, message, job_id
            )
            if not getattr(record, "local_only", False):
                self.queue.put(line.to_entry())
            if self.on_line is not None:
                self.on_line(line)
        except Exception:  # a logging handler must never raise into the caller
            self.handleError(record)


FILE_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


class PrivateRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """A rotating log file readable by its owner only (it names jobs, hosts, paths)."""

    def _open(self) -> Any:
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        if os.name == "posix":
            os.fchmod(fd, 0o600)  # also a file an older version left group-readable
        return os.fdopen(fd, "a", encoding=self.encoding, errors=self.errors)

    def handleError(self, record: logging.LogRecord) -> None:
        # A full disk: one line on stderr, not a traceback per record.
        error = sys.exc_info()[1]
        if isinstance(error, OSError):
            if not self._reported:
                self._reported = True
                sys.stderr.write(f"studio-worker: cannot write the log file {self.baseFilename} "
                                 f"({error.strerror or error}); lines are lost until it can "
                                 "be written again\n")
            return
        super().handleError(record)

    _reported = False


def make_file_handler(log_file: Path) -> logging.Handler:
    log_file.parent.mkdir(parents=True, exist_ok=True)
    handler = PrivateRotatingFileHandler(
        log_file, maxBytes=5 * 1024 * 1024, backupCount=3, encoding="utf-8"
    )
    handler.setFormatter(logging.Formatter(FILE_FORMAT))
    handler.setLevel(logging.INFO)
    return handler
