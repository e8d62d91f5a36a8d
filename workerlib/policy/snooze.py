"""Snooze: "pause for 1 h / 4 h / until tomorrow", kept in the state folder (not the
config) so that it survives a restart and a CLI ``pause`` reaches a running worker."""

from __future__ import annotations

import contextlib
import json
import re
from datetime import datetime, timedelta
from pathlib import Path

from workerlib.atomic import write_atomic

TOMORROW_HOUR = 8
""""Until tomorrow" means until 08:00 on the next calendar day, local time."""
MAX_SNOOZE_SECS = 7 * 86400
SNOOZE_PRESETS: dict[str, float] = {"1h": 3600.0, "4h": 4 * 3600.0}
"""The tray's and Status tab's snoozes, besides "until tomorrow"."""
MAX_FILE_BYTES = 4096
_DURATION_RE = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)\s*h)?\s*(?:(\d+(?:\.\d+)?)\s*m(?:in)?)?\s*$")


def parse_duration(text: str) -> float:
    """``2h``, ``90m``, ``1h30m``, ``45min`` → seconds. Raises ValueError."""
    match = _DURATION_RE.match(text.lower())
    if match is None or not (match[1] or match[2]):
        raise ValueError(f"{text!r} is not a duration (like 2h, 90m or 1h30m)")
    seconds = float(match[1] or 0) * 3600 + float(match[2] or 0) * 60
    if not 0 < seconds <= MAX_SNOOZE_SECS:
        raise ValueError(f"{text!r}: snooze for more than 0 and at most 7 days")
    return seconds


def tomorrow_morning(now: float) -> float:
    day = datetime.fromtimestamp(now).date() + timedelta(days=1)
    return datetime(day.year, day.month, day.day, TOMORROW_HOUR).timestamp()


class SnoozeStore:
    """``snooze.json`` in the state folder: ``{"until": <epoch seconds>}``.

    Written atomically; a missing, unreadable or odd file means "not snoozed".
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int, int] | None = None
        self._until: float | None = None

    def _file_stamp(self) -> tuple[int, int, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        # Every write is a new file (rename): the inode tells two quick writes apart.
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def until(self) -> float | None:
        """The snooze's end as saved (re-read only when the file changed)."""
        stamp = self._file_stamp()
        if stamp != self._stamp:
            self._stamp = stamp
            self._until = self._read() if stamp is not None else None
        return self._until

    def active_until(self, now: float) -> float | None:
        until = self.until()
        return until if until is not None and until > now else None

    def _read(self) -> float | None:
        try:
            with self.path.open("rb") as handle:
                data = json.loads(handle.read(MAX_FILE_BYTES))
            until = data["until"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if isinstance(until, bool) or not isinstance(until, int | float) or until != until:
            return None
        return float(until)

    def snooze_until(self, until: float) -> None:
        self._write({"until": until})

    def clear(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self._stamp, self._until = None, None

    def _write(self, data: dict[str, float]) -> None:
        write_atomic(self.path, json.dumps(data).encode("utf-8"))
