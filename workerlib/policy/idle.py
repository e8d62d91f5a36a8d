"""How long since the person at this PC last used the keyboard or mouse.

One small interface, ``IdleSource.idle_seconds()``: seconds since the last input, or
``None`` when it cannot be told (then the user's presence is "unknown"). One source per
platform: X11 (the MIT-SCREEN-SAVER extension through libXss, by ctypes), Windows
(``GetLastInputInfo``), macOS (IOKit's ``HIDIdleTime``, read with ``ioreg``). Wayland
has no portable idle query: presence is unknown there rather than guessed.

Sources may block briefly; the policy monitor calls them through ``asyncio.to_thread``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import re
import subprocess
import sys
from collections.abc import Callable, Mapping
from typing import Any, Literal, Protocol

Presence = Literal["idle", "active"]
IOREG_TIMEOUT_SECS = 5.0


class IdleSource(Protocol):
    name: str
    """"x11", "windows", "macos", or "unknown"."""
    unknown_reason: str
    """Why presence cannot be told here ("" when it can)."""

    def idle_seconds(self) -> float | None: ...


def presence(idle: float | None, idle_minutes: float) -> Presence | None:
    if idle is None:
        return None
    return "idle" if idle >= idle_minutes * 60 else "active"


class UnknownIdleSource:
    """Wayland, no display, or a platform without a source: never guesses."""

    name = "unknown"

    def __init__(self, reason: str) -> None:
        self.unknown_reason = reason

    def idle_seconds(self) -> float | None:
        return None


# -- X11 -------------------------------------------------------------------------------------
class _XScreenSaverInfo(ctypes.Structure):
    _fields_ = [
        ("window", ctypes.c_ulong),
        ("state", ctypes.c_int),
        ("kind", ctypes.c_int),
        ("til_or_since", ctypes.c_ulong),
        ("idle", ctypes.c_ulong),
        ("eventMask", ctypes.c_ulong),
    ]


_IOExitHandler = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p)


def _io_exit(_display: Any, _data: Any) -> None:
    """A lost X connection would otherwise call exit() inside Xlib: ours must not end the
    worker. (libX11 ≥ 1.7 lets a display set this; older ones keep the default.)"""


_ignore_io_exit = _IOExitHandler(_io_exit)


class X11IdleSource:
    """``XScreenSaverQueryInfo`` on the root window: milliseconds since the last input.

    A fresh connection per sample: cheap on a local socket, and nothing goes stale when
    the X server restarts.
    """

    name = "x11"

    def __init__(self, display: str | None = None) -> None:
        self.display = display
        self.unknown_reason = ""
        xlib_name = ctypes.util.find_library("X11")
        xss_name = ctypes.util.find_library("Xss")
        if not xlib_name or not xss_name:
            missing = "libX11" if not xlib_name else "libXss (libxss1)"
            raise OSError(f"{missing} is not installed")
        self._x = ctypes.CDLL(xlib_name)
        self._xss = ctypes.CDLL(xss_name)
        x, xss = self._x, self._xss
        x.XOpenDisplay.restype = ctypes.c_void_p
        x.XOpenDisplay.argtypes = [ctypes.c_char_p]
        x.XCloseDisplay.argtypes = [ctypes.c_void_p]
        x.XDefaultRootWindow.restype = ctypes.c_ulong
        x.XDefaultRootWindow.argtypes = [ctypes.c_void_p]
        x.XFree.argtypes = [ctypes.c_void_p]
        self._exit_handler = getattr(x, "XSetIOErrorExitHandler", None)
        if self._exit_handler is not None:
            self._exit_handler.argtypes = [ctypes.c_void_p, _IOExitHandler, ctypes.c_void_p]
        xss.XScreenSaverQueryExtension.argtypes = [
            ctypes.c_void_p, ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_int)]
        xss.XScreenSaverAllocInfo.restype = ctypes.POINTER(_XScreenSaverInfo)
        xss.XScreenSaverQueryInfo.argtypes = [
            ctypes.c_void_p, ctypes.c_ulong, ctypes.POINTER(_XScreenSaverInfo)]

    def idle_seconds(self) -> float | None:
        name = self.display.encode() if self.display else None
        dpy = self._x.XOpenDisplay(name)
        if not dpy:
            self.unknown_reason = "cannot open the X display"
            return None
        try:
            if self._exit_handler is not None:
                self._exit_handler(dpy, _ignore_io_exit, None)
            event_base, error_base = ctypes.c_int(), ctypes.c_int()
            if not self._xss.XScreenSaverQueryExtension(dpy, ctypes.byref(event_base),
                                                        ctypes.byref(error_base)):
                self.unknown_reason = "the X server lacks the MIT-SCREEN-SAVER extension"
                return None
            info = self._xss.XScreenSaverAllocInfo()
            if not info:
                return None
            try:
                root = self._x.XDefaultRootWindow(dpy)
                if not self._xss.XScreenSaverQueryInfo(dpy, root, info):
                    self.unknown_reason = "XScreenSaverQueryInfo failed"
                    return None
                self.unknown_reason = ""
                return float(info.contents.idle) / 1000.0
            finally:
                self._x.XFree(info)
        finally:
            self._x.XCloseDisplay(dpy)


# -- Windows ---------------------------------------------------------------------------------
class WindowsIdleSource:
    """``GetTickCount() - GetLastInputInfo().dwTime``, both 32-bit milliseconds that wrap
    after 49.7 days (the subtraction is done modulo 2**32)."""

    name = "windows"

    def __init__(self, last_input_ms: Callable[[], int | None] | None = None,
                 tick_ms: Callable[[], int] | None = None) -> None:
        self.unknown_reason = ""
        if last_input_ms is None or tick_ms is None:
            last_input_ms, tick_ms = _win32_calls()
        self._last_input_ms = last_input_ms
        self._tick_ms = tick_ms

    def idle_seconds(self) -> float | None:
        last = self._last_input_ms()
        if last is None:
            self.unknown_reason = "GetLastInputInfo failed"
            return None
        self.unknown_reason = ""
        return ((self._tick_ms() - last) & 0xFFFFFFFF) / 1000.0


def _win32_calls() -> tuple[Callable[[], int | None], Callable[[], int]]:  # pragma: no cover
    class LastInputInfo(ctypes.Structure):
        _fields_ = [("cbSize", ctypes.c_uint), ("dwTime", ctypes.c_uint)]

    windll: Any = getattr(ctypes, "windll")  # noqa: B009  (only on Windows)
    user32, kernel32 = windll.user32, windll.kernel32
    kernel32.GetTickCount.restype = ctypes.c_uint

    def last_input() -> int | None:
        info = LastInputInfo()
        info.cbSize = ctypes.sizeof(LastInputInfo)
        if not user32.GetLastInputInfo(ctypes.byref(info)):
            return None
        return int(info.dwTime)

    def tick() -> int:
        return int(kernel32.GetTickCount())

    return last_input, tick


# -- macOS -----------------------------------------------------------------------------------
_HID_IDLE_RE = re.compile(r'"HIDIdleTime"\s*=\s*(\d+)')


def parse_ioreg_idle(output: str) -> float | None:
    """Seconds from ``ioreg -c IOHIDSystem`` output (``HIDIdleTime`` is nanoseconds)."""
    match = _HID_IDLE_RE.search(output)
    return int(match[1]) / 1e9 if match else None


def _run_ioreg() -> str:  # pragma: no cover  (macOS only)
    done = subprocess.run(["ioreg", "-c", "IOHIDSystem", "-r", "-d", "1", "-k", "HIDIdleTime"],
                          capture_output=True, text=True, timeout=IOREG_TIMEOUT_SECS, check=True)
    return done.stdout


class MacIdleSource:
    name = "macos"

    def __init__(self, run_ioreg: Callable[[], str] = _run_ioreg) -> None:
        self.unknown_reason = ""
        self._run = run_ioreg

    def idle_seconds(self) -> float | None:
        try:
            idle = parse_ioreg_idle(self._run())
        except (OSError, subprocess.SubprocessError) as exc:
            self.unknown_reason = f"ioreg failed: {exc}"
            return None
        self.unknown_reason = "" if idle is not None else "no HIDIdleTime in ioreg's output"
        return idle


# -- the factory -------------------------------------------------------------------------------
def detect_idle_source(environ: Mapping[str, str] | None = None,
                       platform: str | None = None) -> IdleSource:
    """The source for this session, or an ``UnknownIdleSource`` saying why there is none."""
    env = os.environ if environ is None else environ
    plat = sys.platform if platform is None else platform
    if plat == "win32":
        try:
            return WindowsIdleSource()
        except (OSError, AttributeError) as exc:
            return UnknownIdleSource(f"GetLastInputInfo is not available ({exc})")
    if plat == "darwin":
        return MacIdleSource()
    if env.get("XDG_SESSION_TYPE") == "wayland" or env.get("WAYLAND_DISPLAY"):
        return UnknownIdleSource("Wayland does not tell other programs about input")
    if not env.get("DISPLAY"):
        return UnknownIdleSource("no display (DISPLAY is not set)")
    try:
        return X11IdleSource(env.get("DISPLAY"))
    except OSError as exc:
        return UnknownIdleSource(f"X11 idle time unavailable: {exc}")
