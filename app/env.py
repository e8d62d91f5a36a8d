"""Display detection and Kivy settings; safe to import on a headless machine.

Nothing here imports kivymd (which creates the window as an import side effect).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Mapping

WINDOW_SIZE = (980, 700)
MIN_WINDOW_SIZE = (720, 520)
MAX_FPS = 30
GUI_PACKAGES = ("kivy", "kivymd")
"""What the window cannot open without (the ``ui`` extra; the tray and notifications
are best effort)."""
# SDL drivers that give a real GL context without an X or Wayland server.
_SERVERLESS_DRIVERS = frozenset({"offscreen", "kmsdrm", "windows", "cocoa"})


def headless_reason(
    environ: Mapping[str, str] | None = None, platform: str | None = None
) -> str | None:
    """Why no window can be opened here, or None when a display looks usable."""
    env = os.environ if environ is None else environ
    plat = sys.platform if platform is None else platform
    if plat in ("win32", "darwin"):
        return None
    if env.get("SDL_VIDEODRIVER", "").lower() in _SERVERLESS_DRIVERS:
        return None
    if env.get("DISPLAY") or env.get("WAYLAND_DISPLAY"):
        return None
    return "no display (neither DISPLAY nor WAYLAND_DISPLAY is set)"


def missing_gui_packages() -> list[str]:
    """The GUI packages this Python cannot import (a plain ``pip install .``)."""
    missing = []
    for name in GUI_PACKAGES:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):  # blocked, or a broken half-install
            found = False
        if not found:
            missing.append(name)
    return missing


def configure_kivy(*, hidden: bool = False) -> None:
    """Settings that must be in place before kivy.core.window or kivymd is imported."""
    # Kivy must not parse the worker's command line, nor take over its logging.
    os.environ.setdefault("KIVY_NO_ARGS", "1")
    os.environ.setdefault("KIVY_LOG_MODE", "PYTHON")
    os.environ.setdefault("KIVY_NO_FILELOG", "1")
    from kivy.config import Config

    Config.set("graphics", "maxfps", str(MAX_FPS))
    Config.set("graphics", "width", str(WINDOW_SIZE[0]))
    Config.set("graphics", "height", str(WINDOW_SIZE[1]))
    Config.set("graphics", "minimum_width", str(MIN_WINDOW_SIZE[0]))
    Config.set("graphics", "minimum_height", str(MIN_WINDOW_SIZE[1]))
    Config.set("kivy", "exit_on_escape", "0")
    Config.set("input", "mouse", "mouse,disable_multitouch")
    Config.set("graphics", "window_state", "hidden" if hidden else "visible")
