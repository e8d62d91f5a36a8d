"""A small driver for the real app: click, type, switch tabs, read what is on screen.

Clicks are synthetic touches at the widget's window position, so a hidden,
covered or disabled button does not react, as for a user.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from tests.fakes._server import WAIT_FLOOR_SECS

if TYPE_CHECKING:
    from app.gui import StudioWorkerApp
    from app.screens.base import TabScreen
    from app.tray import TrayCommands, TrayState


StartGui = Callable[..., Awaitable["Pilot"]]
"""The ``start_gui`` fixture: ``await start_gui(service) -> Pilot``."""


class Pilot:
    def __init__(self, holder: list[StudioWorkerApp], task: asyncio.Task[int]) -> None:
        self._holder = holder
        self.task = task

    @property
    def app(self) -> StudioWorkerApp:
        return self._holder[0]

    # -- waiting --------------------------------------------------------------------------
    async def wait_for(self, predicate: Callable[[], Any], timeout: float = 10.0,
                       what: str = "condition") -> None:
        timeout = max(timeout, WAIT_FLOOR_SECS)
        deadline = time.monotonic() + timeout
        while True:
            if self.task.done():
                self.task.result()  # re-raise what stopped the app
                raise AssertionError(f"the app stopped while waiting for {what}")
            try:
                if predicate():
                    return
            except (AttributeError, KeyError, IndexError):
                pass
            if time.monotonic() >= deadline:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}")
            await asyncio.sleep(0.02)

    async def started(self, timeout: float = 20.0) -> None:
        await self.wait_for(lambda: self._holder and self.app.root is not None
                            and self.app.current_tab == "status"
                            and self.app.root.get_root_window() is not None,
                            timeout, "the window")
        await self.frames(3)

    async def frames(self, count: int = 2) -> None:
        from kivy.clock import Clock

        target = Clock.frames_displayed + count
        await self.wait_for(lambda: Clock.frames_displayed >= target, 10, f"{count} frames")

    async def settle(self) -> None:
        """Let the pending coalesced refresh (0.5–2 s away: app.frames.PaintMeter) run,
        then the next frames: what has happened so far is on screen."""
        app = self.app
        if app._refresh_due is not None or app._pending:
            count = app.refresh_count
            await self.wait_for(lambda: app.refresh_count > count, 10, "the pending refresh")
        await self.frames(2)

    # -- reading ----------------------------------------------------------------------------
    def screen(self, name: str | None = None) -> TabScreen:
        return self.app.screens[name or self.app.current_tab]

    def ids(self, name: str | None = None) -> Any:
        return self.screen(name).ids

    @staticmethod
    def on_screen(widget: Any) -> bool:
        """In the window's tree (not a hidden tab, not inside a hidden Reveal)."""
        return widget.get_root_window() is not None

    def texts(self, widget: Any = None) -> list[str]:
        """Every text a user can read under ``widget`` (default: the whole window)."""
        from kivy.uix.label import Label
        from kivy.uix.textinput import TextInput

        root = widget if widget is not None else self.app.root
        found: list[str] = []

        def walk(node: Any) -> None:
            if getattr(node, "opacity", 1) == 0:
                return
            if isinstance(node, TextInput):
                found.append(node.password_mask * len(node.text) if node.password else node.text)
            elif isinstance(node, Label) and node.text:
                found.append(node.text)
            for child in node.children:
                walk(child)

        walk(root)
        return found

    def screen_text(self) -> str:
        return "\n".join(self.texts())

    # -- acting -----------------------------------------------------------------------------
    async def click(self, widget: Any) -> None:
        from kivy.tests.common import UnitTestTouch

        assert self.on_screen(widget), f"{widget!r} is not on screen"
        assert not widget.disabled, f"{widget!r} is disabled"
        await self.scroll_into_view(widget)
        x, y = widget.to_window(*widget.center)
        window = widget.get_root_window()
        assert 0 <= x < window.width and 0 <= y < window.height, f"{widget!r} is off screen"
        touch = UnitTestTouch(x, y)
        touch.touch_down()
        await self.frames(1)
        touch.touch_up()
        await self.frames(2)

    async def scroll_into_view(self, widget: Any) -> None:
        """Scroll every enclosing ScrollView so that ``widget`` is visible, as a user would."""
        from kivy.uix.scrollview import ScrollView

        node = widget.parent
        while node is not None and node is not node.parent:
            if isinstance(node, ScrollView) and not self._inside(widget, node):
                node.scroll_to(widget, padding=24, animate=False)
                await self.frames(2)
            node = node.parent

    @staticmethod
    def _inside(widget: Any, view: Any) -> bool:
        """Whether ``widget`` lies wholly within ``view`` on screen."""
        left, bottom = widget.to_window(widget.x, widget.y)
        right, top = widget.to_window(widget.right, widget.top)
        v_left, v_bottom = view.to_window(view.x, view.y)
        v_right, v_top = view.to_window(view.right, view.top)
        return v_left <= left and right <= v_right and v_bottom <= bottom and top <= v_top

    async def switch_tab(self, name: str) -> TabScreen:
        await self.click(self.app.tabs[name])
        await self.wait_for(lambda: self.app.root.ids.screens.current == name
                            and self.app.current_tab == name, 5, f"the {name} tab")
        await self.frames(2)
        return self.screen(name)

    async def type(self, field: Any, text: str) -> None:
        """Replace the field's text as a user would: focus, select all, type."""
        assert self.on_screen(field), f"{field!r} is not on screen"
        await self.scroll_into_view(field)
        field.focus = True
        field.select_all()
        field.delete_selection()
        field.insert_text(text)
        await self.frames(1)
        field.focus = False
        await self.frames(1)

    async def close(self, timeout: float = 20.0) -> int:
        if not self.task.done():
            self.app.request_stop()
        return await asyncio.wait_for(self.task, timeout)


class FakeTray:
    """The app's tray seam without a desktop: records what the icon would show, and
    clicks menu items from another thread, as pystray does."""

    def __init__(self, commands: TrayCommands, *, works: bool = True) -> None:
        self.commands = commands
        self.works = works
        self.started = False
        self.stopped = False
        self.states: list[TrayState] = []

    @property
    def available(self) -> bool:
        return self.started and self.works and not self.stopped

    @property
    def failed(self) -> bool:
        return self.started and not self.works

    def start(self) -> None:
        self.started = True

    def show(self, state: TrayState) -> None:
        if not self.states or self.states[-1] != state:
            self.states.append(state)

    def stop(self) -> None:
        self.stopped = True

    @property
    def state(self) -> TrayState:
        return self.states[-1]

    def menu(self) -> list[str]:
        from app.tray import OPEN_LABEL, QUIT_LABEL, STOP_WORKER_LABEL

        stop = [STOP_WORKER_LABEL] if self.commands.stop_worker is not None else []
        return [OPEN_LABEL, self.state.pause_label, *stop, QUIT_LABEL]

    def click(self, label: str) -> None:
        """Activate a menu item by its label, on a thread of its own."""
        from app.tray import OPEN_LABEL, QUIT_LABEL, STOP_WORKER_LABEL

        assert label in self.menu(), f"{label!r} is not in the menu {self.menu()}"
        actions = {OPEN_LABEL: self.commands.open_window, QUIT_LABEL: self.commands.quit,
                   STOP_WORKER_LABEL: self.commands.stop_worker}
        action = actions.get(label) or self.commands.toggle_pause
        thread = threading.Thread(target=action)
        thread.start()
        thread.join()


    def snooze(self, choice: str) -> None:
        """The Snooze submenu's items (``1h``, ``4h``, ``tomorrow``, ``resume``)."""
        thread = threading.Thread(target=self.commands.snooze, args=(choice,))
        thread.start()
        thread.join()


def fake_tray(works: bool = True) -> Callable[[TrayCommands], FakeTray]:
    """A ``tray_factory`` for ``start_gui``; the app's tray is then ``pilot.app.tray``."""
    return lambda commands: FakeTray(commands, works=works)
