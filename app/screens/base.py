"""The thin screen every tab derives from: one view property, one view-model."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from pathlib import PurePath
from typing import Any, ClassVar, Protocol

from kivy.properties import ObjectProperty
from kivymd.uix.screen import MDScreen

from workerlib.control.handle import WorkerHandle


class ViewModel(Protocol):
    def view(self) -> Any: ...


class Controller(Protocol):
    """What a tab needs from the app (``app.gui.StudioWorkerApp``): the worker, and a
    way to run its commands. Tabs never import the app: attributes down, calls up."""

    @property
    def service(self) -> WorkerHandle: ...

    def run_task(self, coro: Coroutine[Any, Any, Any],
                 then: Callable[[], None] | None = None) -> asyncio.Task[Any]: ...

    def copy_to_clipboard(self, text: str) -> bool: ...


class TabScreen(MDScreen):  # type: ignore[misc]  # kivy ships no types
    """Copies ``vm.view()`` into ``view``; the kv rules read only ``root.view``."""

    kv_file: ClassVar[str] = ""
    refresh_on: ClassVar[frozenset[str]] = frozenset()
    """Event kinds (status, job, finished, log, config) that change this tab."""
    ticks: ClassVar[bool] = False
    """Refresh once a second while shown (a running job's elapsed time). Each change
    repaints the whole window: show what changes rarely (a clock time, a coarse age)."""
    keep_when_left: ClassVar[bool] = True
    """False: the app drops this tab's widgets when another tab is chosen (unless
    ``releasable()`` says no) and builds it again on the next visit. For heavy tabs."""

    view: Any = ObjectProperty(None, rebind=True)
    """Subclasses give it a default ``*View()`` so kv rules evaluate before attach()."""

    def __init__(self, **kwargs: Any) -> None:
        self.controller: Controller | None = None
        super().__init__(**kwargs)

    @classmethod
    def tab_name(cls) -> str:
        """The tab's name (its screen name and kv file's stem): ``status.kv`` -> status."""
        return PurePath(cls.kv_file).stem

    def attach(self, controller: Controller) -> None:
        self.controller = controller
        self.refresh()

    def releasable(self) -> bool:
        """Whether the app may drop this screen now that it is not shown."""
        return not self.keep_when_left

    def detach(self) -> None:
        """The app dropped this screen; it is not used again."""
        self.controller = None

    @property
    def vm(self) -> ViewModel:
        raise NotImplementedError

    def on_event(self, kinds: set[str]) -> None:
        """Core events arrived (coalesced), just before refresh(); the default does nothing."""

    def refresh(self) -> None:
        new = self.vm.view()
        if new != self.view:
            self.view = new

    @property
    def app(self) -> Controller:
        assert self.controller is not None, "the screen is not attached to the app"
        return self.controller
