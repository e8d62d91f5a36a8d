"""The app's life beside the worker: the tray's state and menu, closing to the tray,
quitting without dropping a job, start at login. In-process, SDL offscreen; the
tray is the app's seam (FakeTray) or, where no desktop exists, the real one failing.
The real tray on a real X server is in test_app_desktop.py.
"""

from __future__ import annotations

import asyncio
import ctypes
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ServiceFactory
from tests.gui.pilot import FakeTray, StartGui, fake_tray
from tests.gui.test_app import GatedEngine, claims
from workerlib.config import ConfigStore
from workerlib.engines.base import ProgressCallback
from workerlib.engines.synthetic import SyntheticEngine
from workerlib.instance import request_raise
from workerlib.wire import Task

pytestmark = pytest.mark.gui

SDL_QUIT = 0x100
IMAGE = {"kind": "image", "prompt": "a stone golem", "width": 64, "height": 64}


class SlowEngine(SyntheticEngine):
    def __init__(self, secs: float) -> None:
        super().__init__()
        self.secs = secs
        self.started = asyncio.Event()

    async def generate(self, model: str, task: Task, progress: ProgressCallback) -> Any:
        self.started.set()
        await asyncio.sleep(self.secs)
        return await super().generate(model, task, progress)


def close_button() -> None:
    """What the window manager's close button does: SDL turns the close request of its
    only window into SDL_QUIT, which Kivy's loop takes as a request to stop the app."""
    maps_file = Path("/proc/self/maps")
    maps = maps_file.read_text().splitlines() if maps_file.exists() else []
    library = next((line.split()[-1] for line in maps if "/libSDL2-2" in line), None)
    if library is None:
        pytest.skip("the SDL library Kivy loaded was not found")
    sdl = ctypes.CDLL(library)
    event = (ctypes.c_uint8 * 64)()  # SDL_Event is a 56-byte union
    ctypes.c_uint32.from_buffer(event).value = SDL_QUIT
    assert sdl.SDL_PushEvent(ctypes.byref(event)) == 1


def shipped(studio: Any, text: str) -> bool:
    return any(text in entry["message"] for entry in studio.logs)


async def test_the_tray_shows_the_worker_and_its_menu_drives_it(
    studio: Any, make_service: ServiceFactory, start_gui: StartGui
) -> None:
    engine = GatedEngine()
    # Heartbeats every 2 s: stale (red) after 6 s, so a busy moment of CI is not an outage.
    service = await make_service(engine=engine, heartbeat_interval_secs=2.0)
    pilot = await start_gui(service, tray_factory=fake_tray())
    tray: FakeTray = pilot.app.tray  # type: ignore[assignment]
    await pilot.wait_for(lambda: tray.available and service.status().last_heartbeat, 5,
                         "a heartbeat")
    await pilot.wait_for(lambda: tray.state.tooltip == "Studio Worker: idle", 3, "idle tooltip")
    assert tray.state.variant == "idle"
    assert tray.menu() == ["Open Window", "Pause claiming", "Quit"]

    # A running job: amber, named in the tooltip with its progress.
    job = studio.enqueue(model="synthetic", task=IMAGE)
    await asyncio.wait_for(engine.started.wait(), 10)
    await pilot.wait_for(lambda: tray.state.variant == "busy", 3, "the busy icon")
    await pilot.wait_for(lambda: "40%" in tray.state.tooltip, 3, "the progress")
    assert tray.state.tooltip == "Studio Worker: busy\nimage · synthetic · 40%"
    engine.gate.set()
    await studio.wait_for(lambda: studio.jobs[job].status == "completed", timeout=10)
    await pilot.wait_for(lambda: tray.state.variant == "idle", 3, "idle again")

    # Pause in the menu stops claims at the studio; the label and tooltip follow.
    tray.click("Pause claiming")
    await pilot.wait_for(lambda: tray.menu()[1] == "Resume claiming", 3, "the Resume label")
    assert tray.state.variant == "idle" and tray.state.tooltip == "Studio Worker: idle, paused"
    assert ConfigStore(service.paths.config_file).load().auto_enabled is False
    assert pilot.ids("status").pause_text.text == "Resume claiming"
    await asyncio.sleep(0.3)  # a claim already in flight may still land
    before = claims(studio)
    await asyncio.sleep(1.0)
    assert claims(studio) == before
    tray.click("Resume claiming")
    await studio.wait_for(lambda: claims(studio) >= before + 2, timeout=5)
    await pilot.wait_for(lambda: tray.menu()[1] == "Pause claiming", 3, "the Pause label")

    # A failed heartbeat turns the icon red until one gets through again.
    studio.inject_fault("heartbeat", status=503, count=1, body="studio restarting")
    await pilot.wait_for(lambda: tray.state.variant == "disconnected", 5, "the red icon")
    assert "the last heartbeat failed" in tray.state.tooltip
    await pilot.wait_for(lambda: tray.state.variant == "idle", 5, "green again")

    # Closing the window hides it; the worker keeps claiming; Open Window brings it back.
    close_button()
    await pilot.frames(3)
    assert pilot.app.window_state == "hidden" and not pilot.task.done()
    before = claims(studio)
    await studio.wait_for(lambda: claims(studio) >= before + 2, timeout=5)
    tray.click("Open Window")
    await pilot.wait_for(lambda: pilot.app.window_state == "shown", 3, "the window")

    # Quit exits 0 and takes the icon away.
    tray.click("Quit")
    assert await asyncio.wait_for(pilot.task, 60) == 0
    assert tray.stopped


async def test_quit_while_idle_exits_promptly_and_flushes_the_logs(
    studio: Any, make_service: ServiceFactory, start_gui: StartGui
) -> None:
    # A drain budget far longer than any quit: an idle worker must not wait it out.
    service = await make_service(shutdown_drain_secs=120.0)
    pilot = await start_gui(service, tray_factory=fake_tray(), drain_secs=None)
    await studio.wait_for(lambda: claims(studio) >= 2, timeout=30)
    pilot.app.tray.click("Quit")  # type: ignore[attr-defined]
    # Ending at all before the 120 s budget is the point (capped at 110 s).
    assert await asyncio.wait_for(pilot.task, 110) == 0
    assert not shipped(studio, "for the running job to finish")
    assert service.loops is None
    # The last lines reached the studio before the exit.
    assert shipped(studio, "quitting (Quit in the tray menu)")


async def test_quit_waits_for_a_short_job_and_uploads_it(
    studio: Any, make_service: ServiceFactory, start_gui: StartGui
) -> None:
    engine = SlowEngine(2.0)
    # The budget is far longer than the job: Quit ends when the job is done, not at the budget.
    service = await make_service(engine=engine, shutdown_drain_secs=120.0)
    pilot = await start_gui(service, tray_factory=fake_tray(), drain_secs=None)
    job = studio.enqueue(model="synthetic", task=IMAGE)
    await asyncio.wait_for(engine.started.wait(), 30)
    pilot.app.tray.click("Quit")  # type: ignore[attr-defined]
    # Ends when the job is done, before the 120 s budget (capped at 110 s).
    assert await asyncio.wait_for(pilot.task, 110) == 0
    assert studio.jobs[job].status == "completed"
    assert studio.jobs[job].result_bytes
    assert studio.jobs[job].fail_history == []
    assert shipped(studio, "waiting up to 120 s for the running job to finish")


async def test_quit_hands_back_a_job_longer_than_the_drain_budget(
    studio: Any, make_service: ServiceFactory, start_gui: StartGui
) -> None:
    engine = GatedEngine()  # never released
    service = await make_service(engine=engine, shutdown_drain_secs=1.0)
    pilot = await start_gui(service, tray_factory=fake_tray(), drain_secs=None)
    job = studio.enqueue(model="synthetic", task=IMAGE)
    await asyncio.wait_for(engine.started.wait(), 10)
    started = time.monotonic()
    pilot.app.tray.click("Quit")  # type: ignore[attr-defined]
    assert await asyncio.wait_for(pilot.task, 60) == 0
    elapsed = time.monotonic() - started
    assert elapsed >= 1.0, elapsed  # the budget was given to the job; the job never ends
    record = studio.jobs[job]
    assert [(f["error"], f["retryable"]) for f in record.fail_history] == [
        ("worker shutting down", True)]
    assert record.status == "queued"  # another worker can take it


@pytest.mark.skipif(not sys.platform.startswith("linux"),
                    reason="elsewhere the real tray starts without a display")
async def test_without_a_tray_the_window_minimises_and_stays_usable(
    studio: Any, make_service: ServiceFactory, start_gui: StartGui
) -> None:
    service = await make_service()
    # Started at login, with the real tray: no desktop in this process, so no icon.
    pilot = await start_gui(service, start_minimised=True)
    await pilot.wait_for(lambda: pilot.app.tray.failed, 10, "the tray to give up")
    # A hidden window could only come back by launching again: it is minimised instead.
    await pilot.wait_for(lambda: pilot.app.window_state == "minimised", 3, "the window")
    warnings = [line for line in service.log_lines() if line.category == "tray"]
    assert [line.level for line in warnings] == ["warn"], warnings
    assert "no tray icon" in warnings[0].message
    request_raise(service.paths.state_dir)
    await pilot.wait_for(lambda: pilot.app.window_state == "shown", 2.5, "the raised window")
    close_button()
    await pilot.frames(3)
    assert pilot.app.window_state == "minimised" and not pilot.task.done()
    before = claims(studio)
    await studio.wait_for(lambda: claims(studio) >= before + 2, timeout=5)
    # Still the whole window: a tab switch works.
    await pilot.switch_tab("jobs")


async def test_started_at_login_it_waits_in_the_tray_until_raised(
    studio: Any, make_service: ServiceFactory, start_gui: StartGui
) -> None:
    service = await make_service()
    pilot = await start_gui(service, tray_factory=fake_tray(), start_minimised=True)
    assert pilot.app.window_state == "hidden"
    await studio.wait_for(lambda: claims(studio) >= 1, timeout=10)  # working meanwhile
    # A second launch asks for the window; the app polls once a second.
    request_raise(service.paths.state_dir)
    await pilot.wait_for(lambda: pilot.app.window_state == "shown", 2.5, "the raised window")
    assert pilot.app.raised_count == 1
    assert not (service.paths.state_dir / "raise-request").exists()


async def test_start_at_login_is_switched_in_the_config_tab(
    studio: Any, make_service: ServiceFactory, start_gui: StartGui, login_entries: Path
) -> None:
    entry = login_entries / "autostart" / "studio-worker.desktop"
    entry.parent.mkdir(parents=True)
    entry.write_text("[Desktop Entry]\nExec=/old/place/studio-worker ui --autostart\n")
    service = await make_service(autostart_on_login=True)
    config = service.paths.config_file
    pilot = await start_gui(service, tray_factory=fake_tray())

    def exec_line() -> list[str]:
        line = next(x for x in entry.read_text().splitlines() if x.startswith("Exec="))
        return shlex.split(line.removeprefix("Exec="))

    # Each start points the entry at the running program.
    expected = [sys.executable, "-m", "workerlib", "--config", str(config), "ui", "--autostart"]
    await pilot.wait_for(lambda: exec_line() == expected, 3, "the entry rewritten")

    screen = await pilot.switch_tab("config")
    switch = screen.rows["autostart_on_login"].ids.input
    assert switch.active
    await pilot.click(switch)
    await pilot.click(screen.ids.save_button)
    await pilot.wait_for(lambda: not entry.exists(), 3, "the entry removed")
    assert ConfigStore(config).load().autostart_on_login is False
    await pilot.click(switch)
    await pilot.click(screen.ids.save_button)
    await pilot.wait_for(entry.exists, 3, "the entry created")
    assert exec_line() == expected
    assert "Type=Application" in entry.read_text()


async def test_a_window_on_another_config_leaves_the_users_login_entry_alone(
    make_service: ServiceFactory, login_entries: Path
) -> None:
    from app.runner import sync_login_entry

    service = await make_service(register=False)  # autostart_on_login: off
    entry = login_entries / "autostart" / "studio-worker.desktop"
    entry.parent.mkdir(parents=True)
    theirs = "[Desktop Entry]\nExec=/usr/bin/studio-worker --config /home/me/w.toml ui\n"
    entry.write_text(theirs)
    # `studio-worker demo`, or a window on a second config file.
    assert sync_login_entry(False, service) == "unchanged"
    assert entry.read_text() == theirs
    # This config's own entry goes when its setting is off.
    assert sync_login_entry(True, service) == "updated"
    assert str(service.paths.config_file) in entry.read_text()
    assert sync_login_entry(False, service) == "removed"
    assert not entry.exists()
