"""A small X desktop for tests: Xvfb, a session bus, and trayer as the tray host.

There is no window manager: top-level windows are children of the root window,
the close button is replaced by the WM_DELETE_WINDOW message a window manager
would send, and input is xdotool at root coordinates.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.gui.dbus_session import SessionBus

TOOLS = ("Xvfb", "trayer", "xdotool", "dbus-daemon")
SCREEN = (1280, 800)


def missing() -> str | None:
    """Why the desktop cannot be built here, or None."""
    absent = [tool for tool in TOOLS if shutil.which(tool) is None]
    if absent:
        return f"needs {', '.join(absent)} (scripts/_gui_setup.sh installs them)"
    if importlib.util.find_spec("Xlib") is None:
        return "needs python-xlib (a pystray dependency on Linux)"
    return None


@dataclass(frozen=True)
class Box:
    x: int
    y: int
    width: int
    height: int

    @property
    def centre(self) -> tuple[int, int]:
        return self.x + self.width // 2, self.y + self.height // 2


class XDesktop:
    def __init__(self, directory: Path) -> None:
        self._procs: list[subprocess.Popen[Any]] = []
        read, write = os.pipe()
        self._procs.append(subprocess.Popen(
            ["Xvfb", "-displayfd", str(write), "-screen", "0", f"{SCREEN[0]}x{SCREEN[1]}x24",
             "-nolisten", "tcp"], pass_fds=(write,), stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL))
        os.close(write)
        with os.fdopen(read) as pipe:
            number = pipe.readline().strip()
        if not number:
            self.close()
            raise RuntimeError("Xvfb did not start")
        self.display = f":{number}"
        env = {**os.environ, "DISPLAY": self.display}
        self.bus = SessionBus(directory / "bus", env)
        self._procs.append(subprocess.Popen(
            ["trayer", "--edge", "top", "--align", "right", "--SetDockType", "true",
             "--widthtype", "request", "--height", "24", "--transparent", "false",
             "--tint", "0x303030"], env=env, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL))
        import Xlib.display

        self._tray = self._procs[-1]
        self.x = Xlib.display.Display(self.display)
        self.root = self.x.screen().root
        selection = self.x.intern_atom("_NET_SYSTEM_TRAY_S0")
        deadline = time.monotonic() + 10
        while self.x.get_selection_owner(selection) == 0:  # X.NONE
            if time.monotonic() > deadline:
                self.close()
                raise RuntimeError("trayer did not take the tray selection")
            time.sleep(0.05)

    def close_tray(self) -> None:
        """Stop the tray host (trayer): the desktop has no system tray from now on."""
        import Xlib.X

        self._tray.terminate()
        self._tray.wait(5)
        selection = self.x.intern_atom("_NET_SYSTEM_TRAY_S0")
        deadline = time.monotonic() + 10
        while self.x.get_selection_owner(selection) != Xlib.X.NONE:
            if time.monotonic() > deadline:
                raise RuntimeError("the tray selection outlived trayer")
            time.sleep(0.05)

    def env(self) -> dict[str, str]:
        """What a program started on this desktop gets."""
        return {"DISPLAY": self.display, "DBUS_SESSION_BUS_ADDRESS": self.bus.address}

    def close(self) -> None:
        for proc in reversed(self._procs):
            proc.terminate()
        for proc in self._procs:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
        if hasattr(self, "bus"):
            self.bus.close()

    # -- windows ------------------------------------------------------------------------------
    def _name(self, window: Any) -> str:
        net = window.get_full_property(self.x.intern_atom("_NET_WM_NAME"),
                                       self.x.intern_atom("UTF8_STRING"))
        if net is not None and net.value:
            value = net.value
            return value.decode() if isinstance(value, bytes) else str(value)
        name = window.get_wm_name()
        return name.decode() if isinstance(name, bytes) else (name or "")

    def _box(self, window: Any) -> Box:
        geometry = window.get_geometry()
        origin = window.translate_coords(self.root, 0, 0)
        return Box(-origin.x, -origin.y, geometry.width, geometry.height)

    def top_windows(self) -> list[tuple[Any, str, bool, bool, Box]]:
        """(window, name, viewable, override-redirect, box) for each top-level window."""
        import Xlib.error
        import Xlib.X

        found = []
        for window in self.root.query_tree().children:
            try:
                attrs = window.get_attributes()
                found.append((window, self._name(window),
                              attrs.map_state == Xlib.X.IsViewable,
                              bool(attrs.override_redirect), self._box(window)))
            except Xlib.error.XError:  # gone meanwhile (a closing menu)
                continue
        return found

    def window_named(self, name: str) -> Any | None:
        return next((w for w, n, *_ in self.top_windows() if n == name), None)

    def viewable(self, window: Any) -> bool:
        import Xlib.X

        return bool(window.get_attributes().map_state == Xlib.X.IsViewable)

    def box(self, window: Any) -> Box:
        return self._box(window)

    def tray_box(self) -> Box | None:
        """The tray panel; wider than its empty border once an icon is docked."""
        for window, name, viewable, _override, box in self.top_windows():
            if name == "panel" and viewable and window.get_wm_class() == ("panel", "trayer"):
                return box if box.width > 12 else None
        return None

    async def drawn_icon(self, colours: list[tuple[int, int, int]], timeout: float) -> Box:
        """The tray panel once an icon in one of ``colours`` is drawn in it (docking
        resizes and moves the panel: a click before that can miss the icon)."""
        def ready() -> Box | None:
            box = self.tray_box()
            if box is None:
                return None
            image = self.grab(box)
            return box if any(colour_share(image, c) > 0.2 for c in colours) else None

        return await self.wait(ready, timeout, "an icon drawn in the tray")

    def send_close(self, window: Any) -> None:
        """What a window manager sends when the close button is clicked."""
        import Xlib.protocol.event
        import Xlib.X

        protocols = self.x.intern_atom("WM_PROTOCOLS")
        delete = self.x.intern_atom("WM_DELETE_WINDOW")
        event = Xlib.protocol.event.ClientMessage(
            window=window, client_type=protocols,
            data=(32, [delete, Xlib.X.CurrentTime, 0, 0, 0]))
        window.send_event(event, event_mask=0)
        self.x.flush()

    def grab(self, box: Box) -> Any:
        from PIL import ImageGrab

        return ImageGrab.grab(bbox=(box.x, box.y, box.x + box.width, box.y + box.height),
                              xdisplay=self.display)

    # -- input --------------------------------------------------------------------------------
    async def click(self, x: int, y: int, button: int = 1) -> None:
        proc = await asyncio.create_subprocess_exec(
            "xdotool", "mousemove", str(x), str(y), "click", str(button),
            env={**os.environ, "DISPLAY": self.display})
        assert await proc.wait() == 0

    async def wait(self, predicate: Callable[[], Any], timeout: float, what: str) -> Any:
        from tests.gui.pilot import WAIT_FLOOR_SECS

        timeout = max(timeout, WAIT_FLOOR_SECS)
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}")
            await asyncio.sleep(0.05)

    async def menu(self, items: int) -> tuple[Box, list[tuple[int, int]]]:
        """Right-click the tray icon: the menu's box and the centres of its ``items``
        (a menu without separators)."""
        tray = self.tray_box()
        assert tray is not None, "no icon in the tray"
        before = {w.id for w, _n, viewable, *_ in self.top_windows() if viewable}
        await self.click(*tray.centre, button=3)

        def popup() -> Box | None:
            for window, _name, viewable, override, box in self.top_windows():
                if viewable and override and window.id not in before and box.height > 20 * items:
                    return box
            return None

        box = await self.wait(popup, 5, "the tray menu")
        # Items share the height evenly but for a few pixels of padding.
        return box, [(box.centre[0], box.y + box.height * (2 * i + 1) // (2 * items))
                     for i in range(items)]

    async def choose(self, index: int, items: int = 3) -> None:
        """Open the tray menu and click its item ``index``."""
        _box, centres = await self.menu(items)
        await self.click(*centres[index])


def colour_share(image: Any, colour: tuple[int, int, int], tolerance: int = 40) -> float:
    """The fraction of pixels close to ``colour``."""
    rgb = image.convert("RGB")
    pixels = [rgb.getpixel((x, y)) for x in range(rgb.width) for y in range(rgb.height)]
    near = sum(1 for pixel in pixels
               if all(abs(a - b) <= tolerance for a, b in zip(pixel, colour, strict=True)))
    return near / max(1, len(pixels))
