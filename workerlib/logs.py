"""Logging: stdlib logging routed to the UI ring, the studio ship queue and a file.

Every handler goes through ``Redactor`` first, so a secret that somehow reaches a
log call (an exception text quoting a header, a URL with a token) is replaced
before any handler formats it.
"""

from __future__ import annotations

import logging
import logging.handlers
import math
import re
import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from workerlib.wire import LogEntry, LogLevel

ROOT_LOGGER = "workerlib"
UI_RING_SIZE = 1000
SHIP_QUEUE_SIZE = 5000
REDACTED = "[redacted]"
_BEARER = re.compile(r"(Bearer\s+)[^\s\"',;]+", re.IGNORECASE)


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
    """Replaces every known secret (and any bearer token) in a record, in place."""

    def __init__(self) -> None:
        super().__init__()
        self._secrets: frozenset[str] = frozenset()
        self._lock = threading.Lock()

    def set_secrets(self, secrets: Iterable[str]) -> None:
        # Very short values would redact ordinary words; real tokens are long.
        with self._lock:
            self._secrets = frozenset(s for s in secrets if s and len(s) >= 4)

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return _BEARER.sub(rf"\g<1>{REDACTED}", text)

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_redacted", False):
            return True
        message = record.getMessage()
        record.msg = self.redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
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

    def __init__(self, capacity: int = SHIP_QUEUE_SIZE) -> None:
        self.capacity = capacity
        self._items: deque[LogEntry] = deque()
        self._dropped = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    @property
    def dropped(self) -> int:
        return self._dropped

    def put(self, entry: LogEntry) -> None:
        with self._lock:
            if len(self._items) >= self.capacity:
                self._items.popleft()
                self._dropped += 1
            self._items.append(entry)

    def take(self, limit: int = 500) -> list[LogEntry]:
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
            while self._items and len(batch) < limit:
                batch.append(self._items.popleft())
            return batch

    def put_back(self, batch: list[LogEntry]) -> None:
        """Return a batch that failed to ship to the front, within the capacity."""
        with self._lock:
            room = self.capacity - len(self._items)
            keep = batch[-room:] if room > 0 else []
            self._dropped += len(batch) - len(keep)
            self._items.extendleft(reversed(keep))


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


def make_file_handler(log_file: Path) -> logging.Handler:
    log_file.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.handlers.RotatingFileHandler(
        log_file, maxBytes=5 * 1024 * 1024, backupCount=3, encoding="utf-8"
    )
    handler.setFormatter(logging.Formatter(FILE_FORMAT))
    handler.setLevel(logging.INFO)
    return handler
