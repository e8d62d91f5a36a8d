"""The window: a KivyMD app over one ``WorkerService``, sharing its asyncio loop.

Importing this module imports kivymd, which opens the window: call
``app.env.configure_kivy()`` first, and only where a display exists.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from kivy.clock import Clock, ClockEvent
from kivy.core.window import Window
from kivy.lang import Builder
from kivy.properties import StringProperty
from kivymd.app import MDApp
from kivymd.uix.boxlayout import MDBoxLayout
from kivymd.uix.tab import MDTabsItem

from app import widgets  # noqa: F401  (registers Reveal for the kv files)
from app.screens import SCREENS, TabScreen
from workerlib.instance import take_raise_request
from workerlib.paths import resource_dir
from workerlib.runtime.state import Event
from workerlib.service import WorkerService

log = logging.getLogger("workerlib.ui")

TITLE = "Studio Worker"
REFRESH_SECS = 0.25
"""Core events are coalesced into at most one UI refresh per this many seconds."""
TICK_SECS = 1.0
EVENT_KINDS = frozenset({"status", "job", "finished", "log", "config"})


def kv_dir() -> Path:
    """Frozen-safe: next to the package in a checkout, in the bundle when frozen."""
    return resource_dir() / "kv"


def load_kv() -> None:
    """Load the shell and every tab's kv file (again, if a previous app loaded them)."""
    files = [kv_dir() / screen.kv_file for screen in SCREENS] + [kv_dir() / "app.kv"]
    for path in files:
        Builder.unload_file(str(path))
        Builder.load_file(str(path))


class TabItem(MDTabsItem):  # type: ignore[misc]  # kivy ships no types
    name = StringProperty("")
    text = StringProperty("")
    icon = StringProperty("")


class AppShell(MDBoxLayout):  # type: ignore[misc]  # kivy ships no types
    pass


class StudioWorkerApp(MDApp):  # type: ignore[misc]  # kivy ships no types
    """Thin controller: routes core events to the tabs and runs their async commands."""

    def __init__(self, service: WorkerService, *, start_minimised: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.service = service
        self.start_minimised = start_minimised
        self.title = TITLE
        self.screens: dict[str, TabScreen] = {}
        self.tabs: dict[str, TabItem] = {}
        self.current_tab = "status"
        self.refresh_count = 0
        self.raised_count = 0
        self._pending: set[str] = set()
        self._stale: set[str] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._unsubscribe: Callable[[], None] | None = None
        self._ticker: ClockEvent | None = None
        self._trigger = Clock.create_trigger(self._refresh, REFRESH_SECS)

    # -- lifecycle --------------------------------------------------------------------------
    def build(self) -> AppShell:
        self.theme_cls.theme_style = "Dark"
        self.theme_cls.primary_palette = "Teal"
        load_kv()
        root = AppShell()
        self.tabs = {item.name: item for item in root.ids.tabs.get_tabs_list()}
        for screen in root.ids.screens.screens:
            self.screens[screen.name] = screen
            screen.attach(self)
        self._unsubscribe = self.service.subscribe(self._on_event)
        self._ticker = Clock.schedule_interval(self._tick, TICK_SECS)
        return root

    def on_start(self) -> None:
        Window.title = TITLE  # App only sets the native title; keep the property in step
        self.switch_tab("status")
        if self.start_minimised:
            Window.minimize()

    def on_stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
        self._trigger.cancel()
        for task in list(self._tasks):
            task.cancel()

    def request_stop(self) -> None:
        """The only way to stop the app: on the next frame, never from outside one."""
        Clock.schedule_once(lambda _dt: self.stop(), 0)

    # -- tabs -------------------------------------------------------------------------------
    def switch_tab(self, name: str) -> None:
        """Select a tab as a click on it would."""
        self.tabs[name].dispatch("on_release")

    def on_tab_switch(self, item: TabItem) -> None:
        name = item.name
        self.current_tab = name
        manager = self.root.ids.screens
        if manager.current != name:
            manager.current = name
        screen = self.screens[name]
        if name in self._stale:
            self._stale.discard(name)
            screen.on_event(set(EVENT_KINDS))
        screen.refresh()

    # -- core events → coalesced refreshes --------------------------------------------------
    def _on_event(self, event: Event) -> None:
        self._pending.add(event.kind)
        self._trigger()

    def _refresh(self, _dt: float = 0.0) -> None:
        kinds, self._pending = self._pending, set()
        self.refresh_count += 1
        for name, screen in self.screens.items():
            if not kinds & screen.refresh_on:
                continue
            if name != self.current_tab:
                # Hidden tabs catch up when shown; the log list is the costly one.
                self._stale.add(name)
                continue
            screen.on_event(kinds)
            screen.refresh()

    def _tick(self, _dt: float) -> None:
        screen = self.screens.get(self.current_tab)
        if screen is not None and screen.ticks:
            screen.refresh()
        if take_raise_request(self.service.paths.state_dir):
            self.bring_to_front()

    def bring_to_front(self) -> None:
        """A second launch asked for this window (it exits after asking)."""
        self.raised_count += 1
        Window.restore()
        Window.raise_window()

    # -- helpers for the screens ---------------------------------------------------------------
    def run_task(self, coro: Coroutine[Any, Any, Any],
                 then: Callable[[], None] | None = None) -> asyncio.Task[Any]:
        """Run a command on the shared loop; ``then`` runs on the next frame after it."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)

        def done(finished: asyncio.Task[Any]) -> None:
            self._tasks.discard(finished)
            if not finished.cancelled() and finished.exception() is not None:
                log.error("a window command failed", exc_info=finished.exception())
            if then is not None:
                Clock.schedule_once(lambda _dt: then(), 0)

        task.add_done_callback(done)
        return task

    def copy_to_clipboard(self, text: str) -> bool:
        try:
            from kivy.core.clipboard import Clipboard

            Clipboard.copy(text)
        except Exception:  # no clipboard provider on this system
            log.warning("the clipboard is not available here")
            return False
        return True
