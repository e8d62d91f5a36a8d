"""The window: a KivyMD app over one worker (a ``WorkerHandle``), sharing its asyncio loop.

Importing this module imports kivymd, which opens the window: call
``app.env.configure_kivy()`` first, and only where a display exists.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from kivy.clock import Clock, ClockEvent
from kivy.core.window import Window
from kivy.lang import Builder
from kivy.properties import ObjectProperty, StringProperty
from kivymd.app import MDApp
from kivymd.uix.boxlayout import MDBoxLayout
from kivymd.uix.tab import MDTabsItem

from app import widgets  # noqa: F401  (registers Reveal for the kv files)
from app.attach import Background
from app.calm import calm_down
from app.frames import FramePacer
from app.memory import trim
from app.screens import SCREENS, StatusScreen, TabScreen
from app.tray import Tray, TrayCommands, TrayState, default_tray, tray_state
from app.viewmodels.link import TITLE, LinkView, render_link, window_title
from workerlib import __version__
from workerlib.control.handle import WorkerHandle
from workerlib.instance import take_raise_request
from workerlib.paths import resource_dir
from workerlib.runtime.state import Event

if TYPE_CHECKING:
    from app.notifications import JobNotifications

__all__ = ["TITLE", "Background", "StudioWorkerApp"]

log = logging.getLogger("workerlib.ui")

REFRESH_SECS = 0.5
"""Core events are coalesced into at most one UI refresh (one repaint) per this many
seconds: during a burst of short jobs each repaint holds the shared loop."""
TICK_SECS = 1.0
"""Elapsed times, a stale heartbeat (the red tray icon) and raise requests."""
TRAY_WAIT_SECS = 20.0
"""A window started hidden comes back (minimised) if the tray is not up by then. Where
no tray host exists the tray says so at once; this is for a host that never answers."""
SETTLED_SECS = 3.0
"""After start-up (the window built and drawn, the worker started), the heap's one-off
allocations are given back to the system (app.memory.trim) once, this long after start."""
TRAY_MIN_SECS = 0.1
"""The tray icon follows status changes at once, at most this often (it draws nothing
in the window, and a short red spell must not be coalesced away)."""
EVENT_KINDS = frozenset({"status", "job", "finished", "log", "config"})
WindowState = Literal["shown", "hidden", "minimised"]
TrayFactory = Callable[[TrayCommands], Tray]


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
    link: Any = ObjectProperty(LinkView(), rebind=True)
    """Which worker the window shows (see app.viewmodels.link)."""



class StudioWorkerApp(MDApp):  # type: ignore[misc]  # kivy ships no types
    """Thin controller: routes core events to the tabs and runs their async commands."""

    def __init__(self, service: WorkerHandle, *, start_minimised: bool = False,
                 tray_factory: TrayFactory | None = None, background: Background | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.service = service
        self.background = background
        """Set when the worker runs in another process: the window is only a face."""
        self.start_minimised = start_minimised
        self.window_state: WindowState = "shown"
        self.quit_reason: str | None = None
        self.notifications: JobNotifications | None = None
        """Set by the runner, which keeps them going until the worker has drained."""
        self.tray = (tray_factory or default_tray)(TrayCommands(
            open_window=self._from_tray(self.bring_to_front),
            toggle_pause=self._from_tray(self.toggle_pause),
            quit=self._from_tray(lambda: self.request_quit("Quit in the tray menu")),
            snooze=lambda choice: self._from_tray(lambda: self.snooze(choice))(),
            stop_worker=self._from_tray(self.stop_background_worker)
            if background is not None else None,
        ))
        self._tray_waiting: ClockEvent | None = None
        self._told_hidden = False
        self._tray_wait_until = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self.title = window_title(service.link())
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
        self.pacer: FramePacer | None = None
        self._minimised_by_user = False
        self.shell: AppShell | None = None
        self._tray_updated = 0.0

    # -- lifecycle --------------------------------------------------------------------------
    def build(self) -> AppShell:
        self.theme_cls.theme_style = "Dark"
        self.theme_cls.primary_palette = "Teal"
        calm_down(self.theme_cls)
        load_kv()
        root = AppShell()
        self.tabs = {item.name: item for item in root.ids.tabs.get_tabs_list()}
        # Tabs are built on first visit (see screen()); Status is the first one shown.
        self.shell = root
        self.screen("status")
        self._unsubscribe = self.service.subscribe(self._on_event)
        self._ticker = Clock.schedule_interval(self._tick, TICK_SECS)
        return root

    def on_start(self) -> None:
        Window.title = self.title  # App only sets the native title; keep the property in step
        self._update_link()
        self._loop = asyncio.get_running_loop()
        Window.bind(on_request_close=self._on_request_close)
        self.pacer = FramePacer(lambda fps: setattr(Clock, "_max_fps", fps), Clock.schedule_once)
        Window.bind(on_motion=self.pacer.poke, on_key_down=self.pacer.poke,
                    on_textinput=self.pacer.poke, on_minimize=self._on_minimize,
                    on_restore=self._on_restore)
        self.switch_tab("status")
        self.tray.start()
        self._update_tray()
        if self.start_minimised:
            # Hidden at once (no flash); _wait_for_tray brings it back if the tray fails.
            Window.hide()
            self._set_window_state("hidden")
        self._tray_wait_until = time.monotonic() + TRAY_WAIT_SECS
        self._tray_waiting = Clock.schedule_interval(self._wait_for_tray, 0.1)
        Clock.schedule_once(lambda _dt: trim(), SETTLED_SECS)

    def on_stop(self) -> None:
        Window.unbind(on_request_close=self._on_request_close)
        if self.pacer is not None:
            Window.unbind(on_motion=self.pacer.poke, on_key_down=self.pacer.poke,
                          on_textinput=self.pacer.poke, on_minimize=self._on_minimize,
                          on_restore=self._on_restore)
        if self._tray_waiting is not None:
            self._tray_waiting.cancel()
            self._tray_waiting = None
        self.tray.stop()
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

    def request_quit(self, reason: str) -> None:
        """Quit in the tray, SIGTERM, SIGINT (Ctrl-C): all end here. The window closes;
        the runner then stops claiming and gives a running job the drain budget."""
        if self.quit_reason is not None:
            return
        self.quit_reason = reason
        log.info("quitting (%s)", reason)
        self.request_stop()

    # -- window and tray --------------------------------------------------------------------
    def _from_tray(self, command: Callable[[], None]) -> Callable[[], None]:
        """A tray menu action, called on the tray's thread: run it in a Kivy frame."""

        def hop() -> None:
            loop = self._loop
            if loop is None:
                return
            with contextlib.suppress(RuntimeError):  # the loop already closed: we are exiting
                loop.call_soon_threadsafe(Clock.schedule_once, lambda _dt: command(), 0)

        return hop

    def _on_request_close(self, *_args: Any, **_kwargs: Any) -> bool:
        """The window's close button: the worker keeps running, in the tray."""
        self._hide()
        return True  # handled: do not stop the app

    def _hide(self) -> None:
        if self.tray.available:
            Window.hide()
            self._set_window_state("hidden")
            if not self._told_hidden:
                self._told_hidden = True
                log.info("the window is hidden; the worker keeps running in the tray "
                         "(Quit is in the tray menu)")
        else:
            # Without a tray icon a hidden window could only come back by launching again.
            Window.minimize()
            self._set_window_state("minimised")

    def _wait_for_tray(self, _dt: float) -> bool:
        """A window hidden before the tray was up: bring it back if the tray fails."""
        settled = self.tray.available or self.tray.failed
        if not settled and time.monotonic() < self._tray_wait_until:
            return True
        if self.window_state == "hidden" and not self.tray.available:
            log.info("no tray icon: the window starts minimised instead of hidden")
            Window.show()
            Window.minimize()
            self._set_window_state("minimised")
        self._tray_waiting = None
        return False

    def _update_tray(self) -> None:
        self.tray.show(self.tray_state())

    def tray_state(self) -> TrayState:
        return tray_state(self.service.status(), time.time())

    def toggle_pause(self) -> None:
        """Pause or resume claiming, exactly as the Status tab's button does."""
        screen = self.screens["status"]
        assert isinstance(screen, StatusScreen)
        screen.toggle_pause()

    # -- the background worker --------------------------------------------------------------
    def _update_link(self) -> None:
        link = self.service.link()
        title = window_title(link)
        if title != self.title:
            self.title = title
            Window.title = title
        if self.root is not None:
            view = render_link(link, __version__)
            if view != self.root.link:
                self.root.link = view

    def link_action(self) -> None:
        """The banner's button: start the stopped worker, or restart it into this version."""
        background = self.background
        if background is None:
            return
        action = render_link(self.service.link(), __version__).action
        if action == "start":
            self.run_task(background.start(), self._update_link)
        elif action == "restart":
            self.run_task(background.restart(), self._update_link)

    def stop_background_worker(self) -> None:
        """The tray's "Stop background worker": the window stays, and says it stopped."""
        if self.background is not None and self.service.link().connected:
            log.info("stopping the background worker (pid %s)", self.service.link().pid)
            self.run_task(self.background.stop())

    def snooze(self, choice: str) -> None:
        """The tray's Snooze menu: ``1h``, ``4h``, ``tomorrow`` or ``resume``."""
        screen = self.screens["status"]
        assert isinstance(screen, StatusScreen)
        if choice == "resume":
            screen.resume_now()
        else:
            screen.snooze(choice)

    # -- tabs -------------------------------------------------------------------------------
    def switch_tab(self, name: str) -> None:
        """Select a tab as a click on it would."""
        self.tabs[name].dispatch("on_release")

    def screen(self, name: str) -> TabScreen:
        """The tab's screen, built now if this is its first visit (or it was released)."""
        screen = self.screens.get(name)
        if screen is None:
            cls = next(c for c in SCREENS if c.tab_name() == name)
            screen = cls()
            self.screens[name] = screen
            self._stale.discard(name)  # attach() renders the current state
            screen.attach(self)
            assert self.shell is not None, "screens are built from build() on"
            self.shell.ids.screens.add_widget(screen)
        return screen

    def on_tab_switch(self, item: TabItem) -> None:
        name = item.name
        left = self.current_tab
        self.current_tab = name
        screen = self.screen(name)
        manager = self.root.ids.screens
        if manager.current != name:
            manager.current = name
        self._catch_up(name)
        screen.refresh()
        if left != name:
            Clock.schedule_once(lambda _dt: self._release(left), 0)

    def _catch_up(self, name: str) -> None:
        """A tab that missed events while not shown renders them now."""
        screen = self.screens.get(name)
        if screen is not None and name in self._stale:
            self._stale.discard(name)
            screen.on_event(set(EVENT_KINDS))
            screen.refresh()

    def _release(self, name: str) -> None:
        """Drop a heavy tab's widgets once left (it is built again on the next visit)."""
        screen = self.screens.get(name)
        if screen is None or name == self.current_tab or not screen.releasable():
            return
        del self.screens[name]
        self._stale.discard(name)
        screen.detach()
        self.root.ids.screens.remove_widget(screen)
        trim()

    # -- core events → coalesced refreshes --------------------------------------------------
    def _on_event(self, event: Event) -> None:
        self._pending.add(event.kind)
        self._trigger()
        if event.kind == "status":
            now = time.monotonic()
            if now - self._tray_updated >= TRAY_MIN_SECS:
                self._tray_updated = now
                self._update_tray()

    def _refresh(self, _dt: float = 0.0) -> None:
        kinds, self._pending = self._pending, set()
        self.refresh_count += 1
        self._update_tray()
        self._update_link()
        for name, screen in self.screens.items():
            if not kinds & screen.refresh_on:
                continue
            if name != self.current_tab or not self.visible:
                # Tabs nobody sees catch up when shown: nothing is drawn for nobody.
                self._stale.add(name)
                continue
            screen.on_event(kinds)
            screen.refresh()

    def _tick(self, _dt: float) -> None:
        screen = self.screens.get(self.current_tab)
        if screen is not None and screen.ticks and self.visible:
            screen.refresh()
        self._update_tray()  # a heartbeat going stale changes nothing else
        if take_raise_request(self.service.paths.state_dir):
            self.bring_to_front()

    def bring_to_front(self) -> None:
        """Open Window in the tray, or a second launch (which exits after asking)."""
        self.raised_count += 1
        Window.show()
        Window.restore()
        Window.raise_window()
        Window.canvas.ask_update()  # an unmapped window lost its pixels
        self._set_window_state("shown")

    # -- what is visible decides what is drawn ---------------------------------------------------
    @property
    def visible(self) -> bool:
        """Someone can see the window: only then do the screens refresh and repaint."""
        return self.window_state == "shown" and not self._minimised_by_user

    def _set_window_state(self, state: WindowState) -> None:
        self.window_state = state
        if state == "shown":
            self._minimised_by_user = False
        self._visibility_changed()

    def _on_minimize(self, *_args: Any) -> None:
        self._minimised_by_user = True
        self._visibility_changed()

    def _on_restore(self, *_args: Any) -> None:
        self._minimised_by_user = False
        if self.window_state == "minimised":
            self.window_state = "shown"
        self._visibility_changed()

    def _visibility_changed(self) -> None:
        if self.pacer is not None:
            self.pacer.set_visible(self.visible)
        if self.visible:
            self._catch_up(self.current_tab)

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
