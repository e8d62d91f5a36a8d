"""``pause_while_fullscreen``: is a full-screen app in front where the platform can tell.

X11: the window manager's ``_NET_ACTIVE_WINDOW`` carries ``_NET_WM_STATE_FULLSCREEN``
and its centre lies on the primary monitor (RandR 1.5 monitors; without RandR, or with
no monitor list, the whole screen is the primary display). Read with python-xlib, whose
X errors are exceptions: a window that closes mid-query cannot end the worker the way
Xlib's default error handler would. Windows:
``SHQueryUserNotificationState`` says a full-screen Direct3D app or a presentation runs.
Elsewhere (Wayland, macOS) it cannot be told: the rule then never holds, and says so.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any, Protocol

_QUNS_BUSY = 2
_QUNS_RUNNING_D3D_FULL_SCREEN = 3
_QUNS_PRESENTATION_MODE = 4
_FULLSCREEN_STATES = {_QUNS_BUSY: "a full-screen app", _QUNS_RUNNING_D3D_FULL_SCREEN:
                      "a full-screen game", _QUNS_PRESENTATION_MODE: "a presentation"}


class FullscreenProbe(Protocol):
    unsupported_reason: str
    """Why it cannot be told here ("" when it can)."""

    def fullscreen_app(self) -> str | None:
        """A name for the full-screen app in front, or None."""


class NoFullscreenProbe:
    def __init__(self, reason: str) -> None:
        self.unsupported_reason = reason

    def fullscreen_app(self) -> str | None:
        return None


class X11FullscreenProbe:
    def __init__(self, display: str | None = None) -> None:
        from Xlib import display as xdisplay  # python-xlib

        self._open: Callable[[], Any] = lambda: xdisplay.Display(display)
        self.unsupported_reason = ""

    def fullscreen_app(self) -> str | None:
        from Xlib import X
        from Xlib.error import DisplayError, XError

        try:
            dpy = self._open()
        except (DisplayError, OSError) as exc:
            self.unsupported_reason = f"cannot open the X display: {exc}"
            return None
        try:
            root = dpy.screen().root
            active_atom = dpy.intern_atom("_NET_ACTIVE_WINDOW")
            active = root.get_full_property(active_atom, X.AnyPropertyType)
            if active is None or not active.value or not active.value[0]:
                return None
            window = dpy.create_resource_object("window", int(active.value[0]))
            state = window.get_full_property(dpy.intern_atom("_NET_WM_STATE"), X.AnyPropertyType)
            fullscreen = dpy.intern_atom("_NET_WM_STATE_FULLSCREEN")
            if state is None or fullscreen not in list(state.value):
                return None
            if not _centre_on(_window_rect(root, window), _primary_monitor(dpy, root)):
                return None  # full screen on another monitor: the person may be working here
            return _window_name(dpy, window) or "a full-screen app"
        except (XError, OSError, ValueError):
            return None  # the window went away meanwhile
        finally:
            dpy.close()


Rect = tuple[int, int, int, int]
"""x, y, width, height in root-window pixels."""


def _primary_monitor(dpy: Any, root: Any) -> Rect | None:
    """The primary monitor (the first one listed when none is marked); None when the
    server cannot list monitors (then the whole screen counts as the primary display)."""
    if not dpy.has_extension("RANDR"):
        return None
    try:
        monitors = list(root.xrandr_get_monitors().monitors)
    except Exception:  # RandR < 1.5, or a server that refuses the request
        return None
    if not monitors:
        return None
    chosen = next((m for m in monitors if m.primary), monitors[0])
    return (int(chosen.x), int(chosen.y), int(chosen.width_in_pixels),
            int(chosen.height_in_pixels))


def _window_rect(root: Any, window: Any) -> Rect:
    geometry = window.get_geometry()
    origin = root.translate_coords(window, 0, 0)
    return int(origin.x), int(origin.y), int(geometry.width), int(geometry.height)


def _centre_on(window: Rect, monitor: Rect | None) -> bool:
    if monitor is None:
        return True
    x, y, width, height = window
    cx, cy = x + width / 2, y + height / 2
    mx, my, mwidth, mheight = monitor
    return mx <= cx < mx + mwidth and my <= cy < my + mheight


def _window_name(dpy: Any, window: Any) -> str:
    for prop in ("_NET_WM_NAME", "WM_NAME"):
        value = window.get_full_property(dpy.intern_atom(prop), 0)
        if value is not None and value.value:
            raw = value.value
            text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
            return text.strip()[:80]
    return ""


class WindowsFullscreenProbe:
    def __init__(self, query: Callable[[], int | None] | None = None) -> None:
        self._query = query or _quns_query()
        self.unsupported_reason = ""

    def fullscreen_app(self) -> str | None:
        return _FULLSCREEN_STATES.get(self._query() or 0)


def _quns_query() -> Callable[[], int | None]:  # pragma: no cover  (Windows only)
    windll: Any = getattr(ctypes, "windll")  # noqa: B009

    def query() -> int | None:
        state = ctypes.c_int()
        if windll.shell32.SHQueryUserNotificationState(ctypes.byref(state)) != 0:
            return None
        return int(state.value)

    return query


def detect_fullscreen_probe(environ: Mapping[str, str] | None = None,
                            platform: str | None = None) -> FullscreenProbe:
    env = os.environ if environ is None else environ
    plat = sys.platform if platform is None else platform
    if plat == "win32":
        try:
            return WindowsFullscreenProbe()
        except (OSError, AttributeError) as exc:
            return NoFullscreenProbe(f"SHQueryUserNotificationState unavailable ({exc})")
    if plat == "darwin":
        return NoFullscreenProbe("macOS does not tell other programs about full-screen apps")
    if env.get("XDG_SESSION_TYPE") == "wayland" or env.get("WAYLAND_DISPLAY"):
        return NoFullscreenProbe("Wayland does not tell other programs which window is in front")
    if not env.get("DISPLAY"):
        return NoFullscreenProbe("no display (DISPLAY is not set)")
    try:
        return X11FullscreenProbe(env.get("DISPLAY"))
    except ImportError:
        return NoFullscreenProbe("python-xlib is not installed")
