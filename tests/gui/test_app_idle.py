"""What keeps a window nobody looks at cheap (app/calm.py, app/frames.py, lazy tabs):
the real app, in-process, SDL offscreen. The figures are in bench/gui.py; these check
the mechanisms, without timing anything."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import ServiceFactory
from tests.gui.pilot import Pilot, StartGui, fake_tray
from tests.gui.test_app_lifecycle import close_button

pytestmark = pytest.mark.gui

IMAGE = {"kind": "image", "prompt": "a stone golem", "width": 64, "height": 64}


def draws(pilot: Pilot) -> list[int]:
    """A counter of the window's repaints from now on."""
    from kivy.core.window import Window

    counter = [0]
    Window.fbind("on_draw", lambda *_a: counter.__setitem__(0, counter[0] + 1))
    return counter


async def heartbeats(studio: Any, count: int) -> None:
    start = sum(w.heartbeats for w in studio.workers.values())
    await studio.wait_for(lambda: sum(w.heartbeats for w in studio.workers.values())
                          >= start + count, timeout=20)


async def test_an_idle_window_does_not_repaint_between_heartbeats(
    studio: Any, make_service: ServiceFactory, start_gui: StartGui,
) -> None:
    service = await make_service()
    pilot = await start_gui(service, tray_factory=fake_tray())
    await pilot.wait_for(lambda: "Idle" in pilot.texts(pilot.ids().badge), 10, "Idle badge")
    await heartbeats(studio, 2)
    await pilot.settle()
    counter = draws(pilot)
    before = pilot.app.refresh_count
    await heartbeats(studio, 5)  # heartbeats and claims go on, every 0.2 and 0.1 s
    await pilot.frames(3)
    assert pilot.app.refresh_count > before, "the status events did arrive"
    assert counter[0] == 0, "nothing on screen changed, so nothing was drawn"


async def test_tabs_are_built_on_first_visit_and_config_is_dropped_when_left(
    studio: Any, make_service: ServiceFactory, start_gui: StartGui,
) -> None:
    service = await make_service()
    pilot = await start_gui(service, tray_factory=fake_tray())
    app = pilot.app
    assert set(app.screens) == {"status"}
    config = await pilot.switch_tab("config")
    assert set(app.screens) == {"status", "config"} and len(config.rows) > 20
    await pilot.switch_tab("jobs")
    await pilot.wait_for(lambda: "config" not in app.screens, 5, "Config dropped")
    assert config.parent is None and config.controller is None
    # Unsaved edits keep it.
    config = await pilot.switch_tab("config")
    config.edit_text("claim_interval_secs", "7")
    await pilot.switch_tab("status")
    await pilot.frames(3)
    assert app.screens["config"] is config and config.vm.dirty


async def test_nothing_is_drawn_for_transparent_backgrounds_or_shadows(
    studio: Any, make_service: ServiceFactory, start_gui: StartGui,
) -> None:
    from kivy.graphics import BoxShadow, RoundedRectangle
    from kivymd.uix.behaviors.backgroundcolor_behavior import BackgroundColorBehavior

    service = await make_service()
    pilot = await start_gui(service, tray_factory=fake_tray())
    for name in ("status", "config", "about"):
        screen = await pilot.switch_tab(name)
        transparent = painted = 0
        for widget in [pilot.app.root, *screen.walk()]:
            for instruction in widget.canvas.before.children + widget.canvas.children:
                assert not isinstance(instruction, BoxShadow), f"a shadow under {widget!r}"
            if not isinstance(widget, BackgroundColorBehavior):
                continue
            rectangles = widget.canvas.get_group("Background_instruction")
            if widget.background or widget._md_bg_color[3] > 0:
                painted += 1
                continue
            transparent += 1
            for rect in rectangles:
                if isinstance(rect, RoundedRectangle):
                    assert tuple(rect.size) == (0, 0), f"{widget!r} paints nothing"
        assert transparent > 5 and painted >= 1, name


async def test_a_button_makes_its_touch_ripple_on_its_first_touch_only(
    studio: Any, make_service: ServiceFactory, start_gui: StartGui,
) -> None:
    """KivyMD 2 gives each button an offscreen buffer and a shader for its ripple as it
    is built (~0.8 MB each in software GL); here they wait for the first touch."""
    service = await make_service()
    pilot = await start_gui(service, tray_factory=fake_tray())
    ids = pilot.ids()
    buttons = [ids.pause_button, ids.snooze_1h, ids.snooze_4h, ids.snooze_tomorrow]
    assert all(button.fbo is None for button in buttons)
    await pilot.click(ids.snooze_4h)
    await pilot.wait_for(lambda: ids.snooze_4h.fbo is not None, 10, "the ripple's buffer")
    await pilot.wait_for(lambda: ids.snooze_4h._anim_state == "off", 10, "the ripple ends")
    assert ids.pause_button.fbo is None
    await pilot.click(ids.resume_button)  # a second button still ripples and works
    await pilot.wait_for(lambda: not pilot.screen("status").view.snoozed, 10, "resumed")


async def test_hidden_the_window_draws_nothing_and_catches_up_when_shown(
    studio: Any, make_service: ServiceFactory, start_gui: StartGui,
) -> None:
    from kivy.clock import Clock

    from app.frames import FPS, clock_max_fps

    service = await make_service()
    pilot = await start_gui(service, tray_factory=fake_tray())
    tray = pilot.app.tray
    status = pilot.screen("status")
    await pilot.wait_for(lambda: status.view.jobs_summary.startswith("0 completed"), 10,
                         "the jobs line")
    close_button()
    await pilot.wait_for(lambda: pilot.app.window_state == "hidden", 5, "hidden")
    assert Clock._max_fps == pytest.approx(clock_max_fps(FPS["hidden"]))
    await pilot.frames(2)  # the frame that hid it may still repaint once
    counter = draws(pilot)
    job = studio.enqueue(model="synthetic", task=IMAGE)
    await studio.wait_for(lambda: studio.jobs[job].status == "completed", timeout=10)
    await heartbeats(studio, 3)
    await pilot.frames(2)
    assert counter[0] == 0 and status.view.jobs_summary.startswith("0 completed")
    assert "status" in pilot.app._stale
    tray.click("Open Window")  # type: ignore[attr-defined]
    await pilot.wait_for(lambda: pilot.app.window_state == "shown", 5, "shown")
    await pilot.wait_for(lambda: status.view.jobs_summary.startswith("1 completed"), 5,
                         "the Status tab caught up")
    assert Clock._max_fps > clock_max_fps(FPS["hidden"])
