"""The politeness rules piece by piece: schedules, snoozes, program names, idle sources,
full-screen probes, GPU health and the heat/power hysteresis, and the rule order."""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.nvml import FakeGpu, FakeNvml
from tests.fakes.presence import FakeIdle
from workerlib.config import Config
from workerlib.policy import GpuSampler, Policy, PolicyProbes, SnoozeStore
from workerlib.policy.fullscreen import (
    NoFullscreenProbe,
    WindowsFullscreenProbe,
    detect_fullscreen_probe,
)
from workerlib.policy.gpu import GpuHealth, ThermalGuard
from workerlib.policy.idle import (
    MacIdleSource,
    UnknownIdleSource,
    WindowsIdleSource,
    detect_idle_source,
    parse_ioreg_idle,
    presence,
)
from workerlib.policy.processes import ProcessMatcher
from workerlib.policy.schedule import Schedule, ScheduleError
from workerlib.policy.snooze import parse_duration, tomorrow_morning

WED_NOON = datetime(2026, 11, 25, 12, 0)  # a Wednesday


# -- schedule ---------------------------------------------------------------------------------
def test_schedule_windows_and_overnight_spans() -> None:
    schedule = Schedule(["mon-fri 18:00-08:00", "sat-sun all"])
    assert not schedule.allows(WED_NOON)
    assert schedule.allows(datetime(2026, 11, 25, 18, 0))
    assert schedule.allows(datetime(2026, 11, 26, 7, 59))  # Wednesday's window, Thursday morning
    assert not schedule.allows(datetime(2026, 11, 26, 8, 0))
    assert schedule.allows(datetime(2026, 11, 28, 12, 0))  # Saturday
    # A window belongs to the day it starts: Sunday's "all" ends at midnight, and Monday's
    # evening window starts at 18:00, so Monday 07:00 is outside.
    assert not schedule.allows(datetime(2026, 11, 30, 7, 0))
    assert schedule.allows(datetime(2026, 11, 28, 7, 0))  # Friday's window runs into Saturday
    assert schedule.next_opening(WED_NOON) == datetime(2026, 11, 25, 18, 0)
    assert schedule.next_opening(datetime(2026, 11, 25, 19, 0)) is None


def test_schedule_day_lists_wrapping_ranges_and_daily() -> None:
    assert Schedule(["fri-mon 10:00-11:00"]).allows(datetime(2026, 11, 29, 10, 30))  # Sunday
    assert not Schedule(["fri-mon 10:00-11:00"]).allows(datetime(2026, 11, 25, 10, 30))
    assert Schedule(["tue,wed 00:00-24:00"]).allows(WED_NOON)
    assert Schedule(["daily 11:00-13:00"]).allows(WED_NOON)
    assert Schedule([]).allows(WED_NOON) and Schedule([]).always
    # From Sunday night the next opening is next week's Monday.
    sun = datetime(2026, 11, 29, 23, 0)
    assert Schedule(["mon 09:00-10:00"]).next_opening(sun) == datetime(2026, 11, 30, 9, 0)


@pytest.mark.parametrize(
    ("lines", "needle"),
    [
        (["mon-fri 18:00-08:00", "mon-fry 18:00-08:00"], "line 2 ('mon-fry 18:00-08:00'): "
                                                          "unknown day 'fry'"),
        (["mon 25:00-26:00"], "line 1 ('mon 25:00-26:00'): 25:00 is not a time of day"),
        (["weekends"], "line 1 ('weekends'): expected DAYS and TIME"),
        (["mon 9-17"], "'9-17' is not a time window"),
        (["mon 09:00-09:00"], "starts and ends at the same time"),
        (["mon--fri all"], "is not a day or a range"),
    ],
)
def test_schedule_errors_name_the_bad_line(lines: list[str], needle: str) -> None:
    with pytest.raises(ScheduleError) as err:
        Schedule(lines)
    assert needle in str(err.value)


def test_a_bad_schedule_is_a_config_error_naming_the_key(tmp_path: Path) -> None:
    from workerlib.config import ConfigStore
    from workerlib.errors import ConfigError

    path = tmp_path / "config.toml"
    path.write_text('schedule = ["mon-fri 18:00-08:00", "funday all"]\n')
    with pytest.raises(ConfigError) as err:
        ConfigStore(path).load()
    assert err.value.key == "schedule" and "line 2" in str(err.value)
    assert "'funday'" in str(err.value) and err.value.line == 1


# -- snooze -----------------------------------------------------------------------------------
def test_durations() -> None:
    assert parse_duration("2h") == 7200
    assert parse_duration("90m") == 5400
    assert parse_duration("1h30m") == 5400
    assert parse_duration("45min") == 2700
    for bad in ("", "soon", "0h", "8d", "200h", "-1h"):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_tomorrow_means_eight_on_the_next_day() -> None:
    now = datetime(2026, 11, 25, 23, 50).timestamp()
    assert datetime.fromtimestamp(tomorrow_morning(now)) == datetime(2026, 11, 26, 8, 0)


def test_snooze_store_round_trip_and_odd_files(tmp_path: Path) -> None:
    store = SnoozeStore(tmp_path / "state" / "snooze.json")
    assert store.active_until(100.0) is None
    store.snooze_until(500.0)
    other = SnoozeStore(store.path)  # another process (the CLI) sees it
    assert other.active_until(100.0) == 500.0
    assert other.active_until(500.0) is None  # lifted by itself
    store.snooze_until(900.0)  # a second write right after the first is still seen
    assert other.active_until(100.0) == 900.0
    for junk in (b"", b"{", b"[]", b'{"until": "soon"}', b'{"until": true}', b"\xff" * 9000):
        store.path.write_bytes(junk)
        assert SnoozeStore(store.path).active_until(0.0) is None
    store.clear()
    assert other.active_until(0.0) is None


# -- programs ---------------------------------------------------------------------------------
def test_names_from_other_programs_are_shown_escaped() -> None:
    from workerlib.policy import Hold

    hold = Hold(rule="fullscreen", text="Paused: a full-screen app is in front (\x1b]0;pwned\x07)")
    assert "\x1b" not in hold.text and "\\x1b" in hold.text
    assert "\x07" not in GpuHealth(index=0, name="GPU\x07").name


def test_process_matcher_names_globs_and_exe_suffix() -> None:
    matcher = ProcessMatcher(["EldenRing.exe", "steam_app_*", " "])
    assert matcher.patterns == ["EldenRing.exe", "steam_app_*"]
    assert matcher.match(["bash", "eldenring.exe"]) == "eldenring.exe"
    assert matcher.match(["eldenring"]) == "eldenring"  # the same game under Proton
    assert matcher.match(["steam_app_1245620"]) == "steam_app_1245620"
    assert matcher.match(["bash", "python3", ""]) is None
    assert ProcessMatcher([]).match(["eldenring.exe"]) is None


# -- idle sources -----------------------------------------------------------------------------
def test_windows_idle_time_including_the_49_day_wrap() -> None:
    source = WindowsIdleSource(last_input_ms=lambda: 1_000, tick_ms=lambda: 61_000)
    assert source.idle_seconds() == 60.0
    wrapped = WindowsIdleSource(last_input_ms=lambda: 0xFFFFFF00, tick_ms=lambda: 0x100)
    assert wrapped.idle_seconds() == pytest.approx(0x200 / 1000)
    failing = WindowsIdleSource(last_input_ms=lambda: None, tick_ms=lambda: 5)
    assert failing.idle_seconds() is None and "GetLastInputInfo" in failing.unknown_reason


def test_macos_hid_idle_time_from_ioreg() -> None:
    out = ('+-o IOHIDSystem  <class IOHIDSystem>\n  {\n    "HIDIdleTime" = 2500000000\n  }\n')
    assert parse_ioreg_idle(out) == 2.5
    assert parse_ioreg_idle("nothing") is None
    assert MacIdleSource(lambda: out).idle_seconds() == 2.5
    empty = MacIdleSource(lambda: "")
    assert empty.idle_seconds() is None and "HIDIdleTime" in empty.unknown_reason

    def broken() -> str:
        raise OSError("no ioreg")

    gone = MacIdleSource(broken)
    assert gone.idle_seconds() is None and "no ioreg" in gone.unknown_reason


def test_wayland_and_no_display_say_presence_unknown() -> None:
    wayland = detect_idle_source({"XDG_SESSION_TYPE": "wayland", "DISPLAY": ":0"}, "linux")
    assert isinstance(wayland, UnknownIdleSource) and "Wayland" in wayland.unknown_reason
    assert wayland.idle_seconds() is None
    headless = detect_idle_source({}, "linux")
    assert isinstance(headless, UnknownIdleSource) and "DISPLAY" in headless.unknown_reason
    assert isinstance(detect_idle_source({}, "darwin"), MacIdleSource)
    assert isinstance(detect_idle_source({}, "win32"), UnknownIdleSource)  # no windll here
    assert isinstance(detect_idle_source({}, "sunos5"), UnknownIdleSource)
    assert presence(None, 5) is None
    assert presence(299, 5) == "active" and presence(300, 5) == "idle"


def test_fullscreen_probes_per_platform() -> None:
    assert WindowsFullscreenProbe(lambda: 3).fullscreen_app() == "a full-screen game"
    assert WindowsFullscreenProbe(lambda: 4).fullscreen_app() == "a presentation"
    assert WindowsFullscreenProbe(lambda: 5).fullscreen_app() is None  # QUNS_ACCEPTS_NOTIFICATIONS
    assert WindowsFullscreenProbe(lambda: None).fullscreen_app() is None
    for env, plat in (({}, "darwin"), ({"WAYLAND_DISPLAY": "wayland-0"}, "linux"),
                      ({}, "linux")):
        probe = detect_fullscreen_probe(env, plat)
        assert isinstance(probe, NoFullscreenProbe) and probe.unsupported_reason
        assert probe.fullscreen_app() is None


# -- GPU health and heat/power ------------------------------------------------------------------
def test_gpu_sampler_reads_every_gpu_and_tolerates_missing_readings() -> None:
    nvml = FakeNvml([FakeGpu(), FakeGpu(name="Tesla T4", temperature=71, broken={"power"})])
    sampler = GpuSampler(nvml)
    first, second = sampler.sample()
    assert first == GpuHealth(index=0, name="NVIDIA GeForce RTX 4090", utilisation_pct=40,
                              temperature_c=60, memory_used_bytes=2 * 10**9,
                              memory_total_bytes=24 * 10**9, power_w=150, power_limit_w=450)
    assert second.name == "Tesla T4" and second.power_w is None and second.temperature_c == 71
    assert "71 °C" in second.describe() and "W" not in second.describe().split("·")[-1]
    sampler.sample()
    assert nvml.inits == 1  # kept open between samples
    sampler.close()
    assert nvml.shutdowns == 1


def test_no_nvidia_gpu_shows_nothing_and_logs_once(caplog: pytest.LogCaptureFixture) -> None:
    clock = [0.0]
    nvml = FakeNvml(init_error=True)
    sampler = GpuSampler(nvml, clock=lambda: clock[0])
    with caplog.at_level(logging.DEBUG, logger="workerlib.gpu"):
        for _ in range(5):
            assert sampler.sample() == []
        clock[0] += 1000
        assert sampler.sample() == []
    assert nvml.inits == 2  # tried again only after a few minutes
    assert len([r for r in caplog.records if r.name == "workerlib.gpu"]) == 1
    assert all(r.levelno <= logging.DEBUG for r in caplog.records if r.name == "workerlib.gpu")


def _gpu(temp: float | None = None, power: float | None = None) -> GpuHealth:
    return GpuHealth(index=0, name="g", temperature_c=temp, power_w=power)


def test_heat_limit_with_hysteresis() -> None:
    guard = ThermalGuard()
    assert guard.update([_gpu(80)], 80, 0) is None  # at the limit, not above
    hold = guard.update([_gpu(84)], 80, 0)
    assert hold is not None and hold.rule == "heat" and "84 °C" in hold.text
    assert "below 75 °C" in hold.text
    assert guard.update([_gpu(78)], 80, 0) is not None  # cooler, not cool enough
    assert guard.update([_gpu(75)], 80, 0) is None
    assert guard.update([_gpu(79)], 80, 0) is None  # below the limit again: keeps claiming
    assert guard.update([_gpu(99)], 0, 0) is None  # no limit set
    assert guard.update([_gpu(None)], 80, 0) is None  # cannot tell


def test_power_limit_with_hysteresis() -> None:
    guard = ThermalGuard()
    hold = guard.update([_gpu(power=320)], 0, 300)
    assert hold is not None and hold.rule == "power" and "320 W" in hold.text
    assert guard.update([_gpu(power=280)], 0, 300) is not None
    assert guard.update([_gpu(power=270)], 0, 300) is None


# -- the policy: rule order and texts ---------------------------------------------------
def make_policy(tmp_path: Path, config: Config, *, idle: float | None = 3600,
                programs: list[str] | None = None, gpus: Any = None,
                now: float = WED_NOON.timestamp()) -> tuple[Policy, list[bool]]:
    changes: list[bool] = []
    probes = PolicyProbes(idle=FakeIdle(idle), processes=lambda: programs or [],
                          fullscreen=NoFullscreenProbe("test"),
                          gpus=GpuSampler(gpus or FakeNvml([])), clock=lambda: now,
                          to_thread=False)
    policy = Policy(lambda: config, SnoozeStore(tmp_path / "snooze.json"), probes,
                    changes.append)
    return policy, changes


async def test_rules_are_named_in_order(tmp_path: Path) -> None:
    config = Config(schedule=["mon-fri 18:00-08:00"], pause_while_running=["eldenring.exe"],
                    only_when_idle=True, max_gpu_temp_c=80)
    nvml = FakeNvml([FakeGpu(temperature=90)])
    policy, changes = make_policy(tmp_path, config, idle=10, programs=["eldenring.exe"],
                                  gpus=nvml)
    await policy.sample()
    now = WED_NOON.timestamp()
    policy.snooze_until(now + 3600)
    hold = policy.hold_reason()
    assert hold is not None and hold.text == "Snoozed until 13:00" and hold.until == now + 3600
    policy.resume()
    hold = policy.hold_reason()
    assert hold is not None and hold.rule == "schedule"
    assert hold.text == "Outside the schedule until 18:00"
    config.schedule = []
    hold = policy.hold_reason()
    assert hold is not None and hold.text == "Paused: a game is running (eldenring.exe)"
    config.pause_while_running = []
    hold = policy.hold_reason()
    assert hold is not None and hold.rule == "idle" and "using this PC" in hold.text
    config.only_when_idle = False
    hold = policy.hold_reason()
    assert hold is not None and hold.rule == "heat"
    assert policy.user_presence() == "active"
    assert changes and changes[0] is True


async def test_only_when_idle_with_unknown_presence_holds_and_says_why(tmp_path: Path) -> None:
    policy, _ = make_policy(tmp_path, Config(only_when_idle=True), idle=None)
    await policy.sample()
    hold = policy.hold_reason()
    assert hold is not None and "unknown (fake: unknown)" in hold.text
    assert policy.user_presence() is None
    relaxed, _ = make_policy(tmp_path, Config(), idle=None)
    await relaxed.sample()
    assert relaxed.hold_reason() is None


async def test_a_broken_probe_is_logged_once_and_never_raises(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def boom() -> list[str]:
        raise PermissionError("no /proc")

    config = Config(pause_while_running=["x"])
    changes: list[bool] = []
    probes = PolicyProbes(idle=FakeIdle(1), processes=boom, gpus=GpuSampler(FakeNvml([])),
                          to_thread=False)
    policy = Policy(lambda: config, SnoozeStore(tmp_path / "s.json"), probes, changes.append)
    with caplog.at_level(logging.WARNING):
        for _ in range(7):
            await policy.sample()
    assert policy.hold_reason() is None
    assert sum("no /proc" in r.getMessage() for r in caplog.records) == 1
