"""How often the window's frame loop runs: one policy for the whole window.

Each Kivy frame polls input, runs the clock and (when a canvas changed) repaints, on
the asyncio loop the worker shares. The rate follows what the person can see:

- ``active``: someone is using the window (input within the last few seconds);
- ``idle``: the window is shown but nobody touches it; changes still appear within
  a tenth of a second, and input wakes it at once (it is read every frame);
- ``hidden``: hidden to the tray or minimised; the screens do not refresh at all
  (see ``StudioWorkerApp``), the loop only wakes for the clock's own events.

Kivy's default clock wakes early by 4/5 of its resolution, 1/(3 * maxfps): asked for
F frames a second it runs about F * 15 / 11 (30 becomes 41). ``clock_max_fps``
asks for less so that the rate is the one named here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Literal

Mode = Literal["active", "idle", "hidden"]

FPS: dict[Mode, float] = {"active": 30.0, "idle": 10.0, "hidden": 1.0}
"""Hidden: one frame a second is what a tray command (Open, Pause) waits for at most;
each idle Kivy frame still polls SDL and runs the clock, so this is the hidden cost."""
ACTIVE_SECS = 3.0
"""How long the window stays at the active rate after the last input."""
EARLY_WAKE = 4 / 5 * 1 / 3
"""Kivy's clock undershoot as a fraction of the frame time (see the module docstring)."""


def clock_max_fps(fps: float) -> float:
    """The ``maxfps`` that makes Kivy's default clock run ``fps`` frames a second."""
    return fps * (1 - EARLY_WAKE)


def mode_for(visible: bool, since_input: float) -> Mode:
    if not visible:
        return "hidden"
    return "active" if since_input < ACTIVE_SECS else "idle"


class FramePacer:
    """Sets the clock's frame rate from what is shown and when input last came.

    ``set_max_fps`` receives Kivy's ``maxfps`` value (tests pass a recorder);
    ``schedule`` is ``Clock.schedule_once``.
    """

    def __init__(self, set_max_fps: Callable[[float], None],
                 schedule: Callable[[Callable[[float], None], float], Any],
                 now: Callable[[], float] = time.monotonic) -> None:
        self._set_max_fps = set_max_fps
        self._schedule = schedule
        self._now = now
        self.visible = True
        self.last_input = now()
        self.mode: Mode | None = None
        self._check_pending = False
        self._apply()

    @property
    def fps(self) -> float:
        assert self.mode is not None
        return FPS[self.mode]

    def set_visible(self, visible: bool) -> None:
        if visible and not self.visible:
            self.last_input = self._now()  # shown on purpose: someone is about to look
        self.visible = visible
        self._apply()

    def poke(self, *_args: Any, **_kwargs: Any) -> None:
        """Input arrived (a Window event handler: it must not consume the event)."""
        self.last_input = self._now()
        if self.mode != "active":
            self._apply()

    def _apply(self) -> None:
        mode = mode_for(self.visible, self._now() - self.last_input)
        if mode != self.mode:
            self.mode = mode
            self._set_max_fps(clock_max_fps(FPS[mode]))
        if mode == "active" and not self._check_pending:
            # One check when the quiet period would end (not one per input event).
            self._check_pending = True
            remaining = ACTIVE_SECS - (self._now() - self.last_input)
            self._schedule(self._recheck, max(0.1, remaining))

    def _recheck(self, _dt: float) -> None:
        self._check_pending = False
        self._apply()


PAINT_SHARE = 0.05
"""Repaints for core events (a job finished, a heartbeat) may take at most this share of
the loop the worker shares: after a repaint that took C seconds, the next one for events
waits C / PAINT_SHARE. A GPU repaints in a millisecond, so nothing changes there; software
GL (no GPU driver, a remote desktop, CI) takes 0.1–0.25 s a repaint, so a stream of short
jobs shows every 2–4 s instead of every 0.5 s (and the worker keeps its pace)."""
MIN_GAP_SECS = 0.5
MAX_GAP_SECS = 4.0
"""The bounds of that wait: the window never lags what it shows by more than this."""


class PaintMeter:
    """How long the window's repainting frames take and when the last one ended: from
    ``frame_started`` (the frame's clock tick: the refresh, new label textures, layout)
    through drawing the canvas and swapping buffers (in software GL the swap is where the
    pixels are made).

    ``attach(window)`` times the real window; tests call ``started``/``ended``.
    """

    def __init__(self, now: Callable[[], float] = time.monotonic,
                 frame_started: Callable[[], float] | None = None) -> None:
        self._now = now
        self._frame_started = frame_started or now
        self.cost = 0.0
        """Seconds per repaint: the last one, or less after a sudden spike."""
        self.ended_at: float | None = None
        self._started_at: float | None = None
        self._detach: Callable[[], None] | None = None

    def started(self, *_args: Any) -> None:
        self._started_at = self._frame_started()

    def ended(self) -> None:
        if self._started_at is None:
            return
        now = self._now()
        sample = now - self._started_at
        self._started_at = None
        # Up at once, down gently: one cheap repaint does not open the gates.
        self.cost = sample if sample >= self.cost else 0.7 * self.cost + 0.3 * sample
        self.ended_at = now

    def gap(self) -> float:
        """How far apart event-driven repaints should be, from what they cost."""
        return min(MAX_GAP_SECS, max(MIN_GAP_SECS, self.cost / PAINT_SHARE))

    def wait(self) -> float:
        """How long from now until the next event-driven repaint (at least MIN_GAP_SECS)."""
        if self.ended_at is None:
            return MIN_GAP_SECS
        return max(MIN_GAP_SECS, self.ended_at + self.gap() - self._now())

    def attach(self, window: Any) -> None:
        """Time ``window``'s repaints: on_draw's handlers run before it draws; the swap is
        its ``flip`` (Kivy calls ``self.flip()`` from ``on_flip``)."""
        flip = window.flip

        def timed_flip() -> None:
            try:
                flip()
            finally:
                self.ended()

        own = window.__dict__.get("flip")  # None: the class's method
        window.fbind("on_draw", self.started)
        window.flip = timed_flip

        def detach() -> None:
            window.funbind("on_draw", self.started)
            if own is None:
                window.__dict__.pop("flip", None)
            else:
                window.flip = own

        self._detach = detach

    def detach(self) -> None:
        if self._detach is not None:
            self._detach()
            self._detach = None
