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

FPS: dict[Mode, float] = {"active": 30.0, "idle": 10.0, "hidden": 2.0}
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
