"""The politeness and stats parts of the view-models and the tray, without a window."""

from __future__ import annotations

from datetime import datetime

from app.tray import tooltip
from app.viewmodels.stats import StatsViewModel
from app.viewmodels.status import badge_text, gpu_text
from tests.gui.test_viewmodels import NOW, snapshot
from workerlib.policy import GpuHealth, Hold
from workerlib.stats import summarise

SNOOZE = Hold(rule="snooze", text="Snoozed until 21:30", until=NOW + 3600)
GAME = Hold(rule="program", text="Paused: a game is running (eldenring.exe)")


def test_the_badge_and_tooltip_name_the_rule_that_holds() -> None:
    held = snapshot(label="Paused", hold=GAME)
    assert badge_text(held) == "Paused: a game is running (eldenring.exe)"
    assert "Paused: a game is running (eldenring.exe)" in tooltip(held, NOW)
    # A pause by hand stays "Paused" (its button says how to undo it).
    assert badge_text(snapshot(label="Paused", paused=True, hold=SNOOZE)) == "Paused"
    assert badge_text(snapshot(label="Busy", busy=True, hold=SNOOZE)) == "Busy"
    assert "Snoozed" not in tooltip(snapshot(), NOW)


def test_gpu_health_lines_and_nothing_without_a_gpu() -> None:
    gpu = GpuHealth(index=0, name="RTX 4090", utilisation_pct=97, temperature_c=71,
                    memory_used_bytes=6 * 2**30, memory_total_bytes=24 * 2**30, power_w=312)
    assert gpu_text(snapshot(gpus=[gpu])) == "GPU 0 RTX 4090 · 97% · 71 °C · 6.0 / 24.0 GiB · 312 W"
    assert gpu_text(snapshot()) == ""


def test_stats_view_from_a_summary() -> None:
    now = datetime(2026, 11, 25, 12, 30).timestamp()
    rows = [("image", "sdxl", "completed", 4.0, now - 60), ("image", "sdxl", "failed", 1.0,
            now - 120), ("llm", "llama", "completed", 2.0, now - 2 * 86400)]
    view = StatsViewModel.render(summarise(rows, now), now)
    assert len(view.day_bars) == 24 and view.day_bars[-1] == (1, 1)
    assert len(view.week_bars) == 7 and view.week_bars[-3] == (1, 0)
    assert view.day_labels == ("13:00", "01:00", "now")
    assert view.week_labels[-1] == "today" and view.week_labels[0] == "Thu"
    assert view.day_summary.startswith("1 completed · 1 failed · 0.0 jobs/hour · mean 4.0 s")
    assert view.breakdown.splitlines()[0] == "image · sdxl   1 completed · 1 failed   mean 4.0 s"
    assert view.peak == "busiest hour: 2 jobs" and not view.empty
    empty = StatsViewModel.render(summarise([], now), now)
    assert empty.empty and empty.breakdown == "" and set(empty.day_bars) == {(0, 0)}
