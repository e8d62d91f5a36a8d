"""Logs tab: the newest lines of the worker's ring, filtered by level and text."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from app.viewmodels.tones import LEVEL_TONES, Tone
from workerlib.control.handle import WorkerHandle
from workerlib.format import clock
from workerlib.logs import LogLine

WINDOW = 500
"""Lines the tab shows at most: the newest ones (the ring holds 1000)."""
LEVELS: tuple[str, ...] = ("all", "info", "warn", "error")
LEVEL_LABELS = {"info": "INFO", "warn": "WARN", "error": "ERROR"}
SEVERITY = {"info": 1, "warn": 2, "error": 3}
"""A level filter shows that level and the more severe ones."""


@dataclass(frozen=True)
class LogRow:
    seq: int
    time: str
    level: str
    tone: Tone
    category: str
    message: str
    headline: str
    """The message's first line (a traceback follows on the next ones)."""
    job_id: str

    def as_data(self) -> dict[str, object]:
        return asdict(self)

    def as_text(self) -> str:
        job = f" [{self.job_id}]" if self.job_id else ""
        return f"{self.time} {self.level:<5} {self.category}: {self.message}{job}"


@dataclass(frozen=True)
class LogsView:
    rows: tuple[LogRow, ...] = ()
    level: str = "all"
    search: str = ""
    auto_scroll: bool = True
    summary: str = ""
    last_seq: int = 0


def row_for(line: LogLine) -> LogRow:
    return LogRow(
        seq=line.seq,
        time=clock(line.created),
        level=LEVEL_LABELS.get(line.level, line.level.upper()),
        tone=LEVEL_TONES.get(line.level, "muted"),
        category=line.category,
        message=line.message,
        headline=line.message.split("\n", 1)[0],
        job_id=line.job_id or "",
    )


class LogsViewModel:
    def __init__(self, service: WorkerHandle) -> None:
        self.service = service
        self.level = "all"
        self.search = ""
        self.auto_scroll = True
        self._rows: tuple[LogRow, ...] = ()

    def set_level(self, level: str) -> None:
        if level not in LEVELS:
            raise ValueError(f"level must be one of {', '.join(LEVELS)}")
        self.level = level

    def set_search(self, text: str) -> None:
        self.search = text

    def toggle_auto_scroll(self) -> None:
        self.auto_scroll = not self.auto_scroll

    def matches(self, line: LogLine) -> bool:
        if self.level != "all" and SEVERITY.get(line.level, 1) < SEVERITY[self.level]:
            return False
        needle = self.search.strip().casefold()
        if not needle:
            return True
        haystack = f"{line.category} {line.message} {line.job_id or ''}".casefold()
        return needle in haystack

    def view(self) -> LogsView:
        return self.render(self.service.log_lines())

    def render(self, lines: list[LogLine]) -> LogsView:
        """The last ``WINDOW`` lines (oldest at the top), then the filters on those."""
        window = lines[-WINDOW:]
        shown = [line for line in window if self.matches(line)]
        self._rows = tuple(row_for(line) for line in shown)
        filtered = self.level != "all" or bool(self.search.strip())
        if filtered:
            summary = f"{len(shown)} of the last {len(window)} lines match"
        else:
            summary = f"Showing the last {len(window)} of {len(lines)} lines"
        return LogsView(rows=self._rows, level=self.level, search=self.search,
                        auto_scroll=self.auto_scroll, summary=summary,
                        last_seq=window[-1].seq if window else 0)

    def copy_text(self) -> str:
        """The visible lines as plain text, for the clipboard."""
        return "\n".join(row.as_text() for row in self._rows)
