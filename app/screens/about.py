"""About tab screen."""

from __future__ import annotations

from typing import Any, ClassVar

from kivy.clock import Clock
from kivy.properties import ObjectProperty, StringProperty

from app.screens.base import TabScreen
from app.viewmodels.about import AboutView, AboutViewModel


class AboutScreen(TabScreen):
    kv_file = "about.kv"
    refresh_on: ClassVar[frozenset[str]] = frozenset({"status", "config"})

    view: Any = ObjectProperty(AboutView(), rebind=True)
    notice = StringProperty("")

    def attach(self, controller: Any) -> None:
        self._vm = AboutViewModel(controller.service)
        super().attach(controller)

    @property
    def vm(self) -> AboutViewModel:
        return self._vm

    def check_update(self) -> None:
        self.app.run_task(self.vm.check_update(), self.refresh)
        self.refresh()

    def copy(self, what: str, text: str) -> None:
        ok = self.app.copy_to_clipboard(text)
        self.notice = f"{what} copied" if ok else "Could not use the clipboard"
        Clock.schedule_once(lambda _dt: setattr(self, "notice", ""), 4)
