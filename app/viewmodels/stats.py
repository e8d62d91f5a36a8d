"""Stats tab: the work this PC did, from the stats store (24 hours and 7 days)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from workerlib.control.handle import WorkerHandle
from workerlib.stats import StatsSummary, StatsWindow

Bars = tuple[tuple[int, int], ...]
"""(completed, failed) per bucket, oldest first."""


@dataclass(frozen=True)
class BreakdownRow:
    title: str
    counts: str
    mean: str


@dataclass(frozen=True)
class StatsView:
    day_bars: Bars = ()
    day_labels: tuple[str, str, str] = ("", "", "")
    """Under the 24-hour chart: its start, middle and end."""
    day_summary: str = ""
    week_bars: Bars = ()
    week_labels: tuple[str, ...] = ("",) * 7
    """One per day, under the 7-day chart."""
    week_summary: str = ""
    peak: str = ""
    rows: tuple[BreakdownRow, ...] = ()
    breakdown: str = ""
    """The rows as lines, for one label."""
    empty: bool = True
    empty_text: str = "No jobs yet: finished jobs show up here, and stay across restarts."


def _mean(secs: float | None) -> str:
    return "-" if secs is None else f"{secs:.1f} s"


def window_summary(window: StatsWindow) -> str:
    return (f"{window.completed} completed · {window.failed} failed · "
            f"{window.jobs_per_hour:.1f} jobs/hour · mean {_mean(window.mean_secs)} per job")


class StatsViewModel:
    def __init__(self, service: WorkerHandle) -> None:
        self.service = service

    def view(self, now: float | None = None) -> StatsView:
        now = time.time() if now is None else now
        return self.render(self.service.stats_summary(now), now)

    @staticmethod
    def render(summary: StatsSummary, now: float) -> StatsView:
        day, week = summary.day, summary.week
        hours = [b.start for b in day.buckets]
        day_labels = (time.strftime("%H:00", time.localtime(hours[0])),
                      time.strftime("%H:00", time.localtime(hours[len(hours) // 2])),
                      "now") if hours else ("", "", "")
        peak = max((b.completed + b.failed for b in day.buckets), default=0)
        rows = tuple(BreakdownRow(title=f"{b.kind} · {b.model}",
                                  counts=f"{b.completed} completed · {b.failed} failed",
                                  mean=f"mean {_mean(b.mean_secs)}")
                     for b in summary.by_kind_model)
        return StatsView(
            day_bars=tuple((b.completed, b.failed) for b in day.buckets),
            day_labels=day_labels,
            day_summary=window_summary(day),
            week_bars=tuple((b.completed, b.failed) for b in week.buckets),
            week_labels=(*(time.strftime("%a", time.localtime(b.start))
                           for b in week.buckets[:-1]), "today"),
            week_summary=window_summary(week),
            peak=f"busiest hour: {peak} jobs" if peak else "",
            rows=rows,
            breakdown="\n".join(f"{r.title}   {r.counts}   {r.mean}" for r in rows),
            empty=summary.empty,
        )
