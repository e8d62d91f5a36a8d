"""The window's frame-rate policy (app/frames.py): pure, no kivy."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from app.frames import (
    ACTIVE_SECS,
    FPS,
    MAX_GAP_SECS,
    MIN_GAP_SECS,
    PAINT_SHARE,
    FramePacer,
    PaintMeter,
    clock_max_fps,
    mode_for,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.max_fps: list[float] = []
        self.scheduled: list[tuple[float, Callable[[float], None]]] = []

    def schedule(self, callback: Callable[[float], None], delay: float) -> Any:
        self.scheduled.append((self.now + delay, callback))

    def advance(self, secs: float) -> None:
        self.now += secs
        due = [item for item in self.scheduled if item[0] <= self.now]
        self.scheduled = [item for item in self.scheduled if item[0] > self.now]
        for _at, callback in due:
            callback(0.0)


def rate(clock: FakeClock) -> float:
    return round(clock.max_fps[-1] / clock_max_fps(1.0), 6)


def test_kivy_clock_setting_gives_the_named_rate() -> None:
    # Kivy's default clock wakes 4/5 of 1/(3 * maxfps) early: 30 asked runs at ~41.
    for fps in (2.0, 10.0, 30.0):
        maxfps = clock_max_fps(fps)
        period = 1 / maxfps - 4 / 5 * (1 / (3 * maxfps))
        assert abs(1 / period - fps) < 1e-9


def test_modes() -> None:
    assert mode_for(False, 0.0) == "hidden"
    assert mode_for(True, 0.0) == "active"
    assert mode_for(True, ACTIVE_SECS + 0.1) == "idle"
    assert FPS["hidden"] < FPS["idle"] < FPS["active"]


def test_input_raises_the_rate_and_quiet_lowers_it_hiding_drops_it() -> None:
    clock = FakeClock()
    pacer = FramePacer(clock.max_fps.append, clock.schedule, now=lambda: clock.now)
    assert pacer.mode == "active" and rate(clock) == FPS["active"]  # just opened
    clock.advance(ACTIVE_SECS + 0.01)
    assert pacer.mode == "idle" and rate(clock) == FPS["idle"]
    for _ in range(50):  # a burst of mouse motion: one check scheduled, not fifty
        pacer.poke()
    assert pacer.mode == "active" and len(clock.scheduled) == 1
    clock.advance(1.0)
    pacer.poke()  # more input later: the quiet period starts again
    clock.advance(ACTIVE_SECS - 0.5)
    assert pacer.mode == "active"
    clock.advance(1.0)
    assert pacer.mode == "idle"
    pacer.set_visible(False)
    assert pacer.mode == "hidden" and rate(clock) == FPS["hidden"]
    pacer.poke()  # input cannot reach a hidden window; the rate stays down anyway
    assert pacer.mode == "hidden"
    pacer.set_visible(True)  # shown on purpose: someone is about to look
    assert pacer.mode == "active"
    changes = len(clock.max_fps)
    pacer.set_visible(True)
    assert len(clock.max_fps) == changes, "the clock is only touched on a change"


def test_paint_meter_spaces_event_repaints_by_what_they_cost() -> None:
    clock = FakeClock()
    meter = PaintMeter(now=lambda: clock.now)
    assert meter.wait() == MIN_GAP_SECS  # nothing drawn yet
    meter.ended()  # a swap without a draw is not a repaint
    assert meter.ended_at is None
    meter.started()
    clock.now += 0.001  # a GPU
    meter.ended()
    assert meter.gap() == MIN_GAP_SECS and meter.wait() == MIN_GAP_SECS
    meter.started()
    clock.now += 0.05
    meter.ended()
    assert meter.gap() == pytest.approx(0.05 / PAINT_SHARE)
    meter.started()
    clock.now += 0.25  # software GL, the Status tab under load
    meter.ended()
    assert meter.gap() == MAX_GAP_SECS
    assert meter.wait() == pytest.approx(MAX_GAP_SECS)
    clock.now += 1.0
    assert meter.wait() == pytest.approx(MAX_GAP_SECS - 1.0)
    clock.now += 10
    assert meter.wait() == MIN_GAP_SECS
    # One cheap repaint lowers the estimate only gently.
    meter.started()
    clock.now += 0.001
    meter.ended()
    assert meter.cost > 0.08


def test_paint_meter_times_a_window_and_lets_it_go() -> None:
    class Window:
        def __init__(self) -> None:
            self.handlers: list[Callable[..., Any]] = []
            self.flips = 0

        def fbind(self, _event: str, handler: Callable[..., Any]) -> None:
            self.handlers.append(handler)

        def funbind(self, _event: str, handler: Callable[..., Any]) -> None:
            self.handlers.remove(handler)

        def flip(self) -> None:
            clock.now += 0.1
            self.flips += 1

    clock = FakeClock()
    window = Window()
    meter = PaintMeter(now=lambda: clock.now)
    meter.attach(window)
    for handler in window.handlers:
        handler(window)
    window.flip()
    assert window.flips == 1 and meter.cost == pytest.approx(0.1)
    meter.detach()
    assert window.handlers == [] and "flip" not in window.__dict__
    window.flip()
    assert window.flips == 2 and meter.ended_at == clock.now - 0.1
