"""Weekly windows when the worker may claim: ``["mon-fri 18:00-08:00", "sat-sun all"]``.

Each line is ``DAYS TIME`` in local time. DAYS: a day (``mon``), a range (``mon-fri``,
``fri-mon`` wraps), a list (``sat,sun``), or ``daily``. TIME: ``HH:MM-HH:MM`` (a window
that ends before it starts runs past midnight into the next day) or ``all``. An empty
schedule means "any time".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

DAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
WEEK_MINUTES = 7 * 24 * 60
MAX_LINES = 50
_TIME_RE = re.compile(r"^(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})$")


class ScheduleError(ValueError):
    """A schedule line that cannot be read; the message names the line."""


@dataclass(frozen=True)
class Window:
    start: int
    """Minute of the week (Monday 00:00 = 0)."""
    length: int
    """Minutes; a full week at most."""

    def contains(self, minute: int) -> bool:
        return (minute - self.start) % WEEK_MINUTES < self.length or self.length >= WEEK_MINUTES


def _days(spec: str, where: str) -> list[int]:
    if spec in ("daily", "all", "every"):
        return list(range(7))
    out: list[int] = []
    for part in spec.split(","):
        ends = part.split("-")
        if len(ends) > 2 or not all(ends):
            raise ScheduleError(f"{where}: {part!r} is not a day or a range of days")
        for end in ends:
            if end not in DAYS:
                raise ScheduleError(f"{where}: unknown day {end!r} (use {', '.join(DAYS)} or "
                                    "daily)")
        first, last = DAYS.index(ends[0]), DAYS.index(ends[-1])
        span = (last - first) % 7
        out.extend((first + i) % 7 for i in range(span + 1))
    return sorted(set(out))


def _clock(hours: str, minutes: str, where: str) -> int:
    h, m = int(hours), int(minutes)
    if h == 24 and m == 0:
        return 24 * 60
    if h > 23 or m > 59:
        raise ScheduleError(f"{where}: {hours}:{minutes} is not a time of day (00:00-24:00)")
    return h * 60 + m


def parse_line(line: str, number: int = 1) -> list[Window]:
    where = f"schedule line {number} ({line.strip()!r})"
    words = line.strip().lower().split()
    if len(words) != 2:
        raise ScheduleError(f"{where}: expected DAYS and TIME, like 'mon-fri 18:00-08:00' or "
                            "'sat-sun all'")
    days, span = words
    if span == "all":
        start, end = 0, 24 * 60
    else:
        match = _TIME_RE.match(span)
        if match is None:
            raise ScheduleError(f"{where}: {span!r} is not a time window (HH:MM-HH:MM or all)")
        start = _clock(match[1], match[2], where)
        end = _clock(match[3], match[4], where)
        if start == end:
            raise ScheduleError(f"{where}: the window starts and ends at the same time "
                                "(use 'all' for the whole day)")
    length = end - start if end > start else end + 24 * 60 - start
    return [Window(day * 24 * 60 + start, length) for day in _days(days, where)]


class Schedule:
    """Parsed weekly windows; ``allows(dt)`` with a naive local datetime."""

    def __init__(self, lines: list[str]) -> None:
        if len(lines) > MAX_LINES:
            raise ScheduleError(f"at most {MAX_LINES} schedule lines, got {len(lines)}")
        self.lines = list(lines)
        self.windows = [w for i, line in enumerate(lines, 1) for w in parse_line(line, i)]

    @property
    def always(self) -> bool:
        return not self.windows

    @staticmethod
    def _minute(dt: datetime) -> int:
        return dt.weekday() * 24 * 60 + dt.hour * 60 + dt.minute

    def allows(self, dt: datetime) -> bool:
        if self.always:
            return True
        minute = self._minute(dt)
        return any(w.contains(minute) for w in self.windows)

    def next_opening(self, dt: datetime) -> datetime | None:
        """The next time claiming is allowed again (None: never, or already allowed)."""
        if self.allows(dt):
            return None
        minute = self._minute(dt)
        waits = [(w.start - minute) % WEEK_MINUTES for w in self.windows]
        if not waits:
            return None
        base = dt.replace(second=0, microsecond=0)
        return base + timedelta(minutes=min(waits))


def validate_schedule(lines: list[str]) -> list[str]:
    """For the config schema: raises ScheduleError (a ValueError) naming the bad line."""
    Schedule(lines)
    return lines
