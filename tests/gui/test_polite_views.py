"""The politeness and stats parts of the view-models and the tray, without a window."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from app.tray import tooltip
from app.viewmodels.stats import StatsViewModel
from app.viewmodels.status import StatusViewModel, badge_text, gpu_text
from tests.gui.test_viewmodels import NOW, snapshot
from workerlib.config import ConfigStore
from workerlib.engines.synthetic import SyntheticEngine
from workerlib.paths import Paths
from workerlib.policy import GpuHealth, Hold
from workerlib.service import WorkerService
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


async def test_snooze_and_resume_from_the_status_tab(tmp_path: Path) -> None:
    paths = Paths(config_file=tmp_path / "config.toml", log_dir=tmp_path / "logs",
                  state_dir=tmp_path / "state", cache_dir=tmp_path / "cache")
    ConfigStore(paths.config_file).update({"api_base_url": "http://127.0.0.1:9",
                                           "auto_update_enabled": False})
    service = WorkerService(paths, engine_factory=lambda _c: SyntheticEngine(),
                            vram_probe=lambda: 24.0, file_logging=False)
    await service.open()
    try:
        vm = StatusViewModel(service)
        vm.snooze("4h")
        view = vm.view()
        assert view.snoozed and service.status().hold is not None
        assert paths.snooze_file.exists()  # state, not config: it survives a restart
        vm.snooze("tomorrow")
        until = service.status().hold.until  # type: ignore[union-attr]
        assert until is not None and datetime.fromtimestamp(until).hour == 8
        vm.resume_now()
        assert not vm.view().snoozed and service.status().hold is None
    finally:
        await service.close(drain_secs=0.1)
