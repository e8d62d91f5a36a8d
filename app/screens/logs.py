"""Logs tab screen."""

from __future__ import annotations

from typing import Any, ClassVar

from kivy.clock import Clock
from kivy.properties import ObjectProperty, StringProperty

from app.screens.base import TabScreen
from app.viewmodels.logs import LogsView, LogsViewModel


class LogsScreen(TabScreen):
    kv_file = "logs.kv"
    refresh_on: ClassVar[frozenset[str]] = frozenset({"log"})

    view: Any = ObjectProperty(LogsView(), rebind=True)
    notice = StringProperty("")

    def attach(self, controller: Any) -> None:
        self._vm = LogsViewModel(controller.service)
        super().attach(controller)

    @property
    def vm(self) -> LogsViewModel:
        return self._vm

    def on_view(self, _instance: Any, view: LogsView) -> None:
        rv = self.ids.log_list
        data = [row.as_data() for row in view.rows]
        if rv.data != data:
            rv.data = data
            if view.auto_scroll:
                # After the layout has the new height.
                Clock.schedule_once(lambda _dt: self.scroll_to_newest(), 0)

    def scroll_to_newest(self) -> None:
        rv = self.ids.log_list
        # scroll_y 0 shows the bottom (newest) line; a short list stays at the top.
        rv.scroll_y = 0 if rv.children and rv.children[0].height > rv.height else 1

    # -- commands (called from logs.kv) ------------------------------------------------------
    def set_level(self, level: str) -> None:
        self.vm.set_level(level)
        self.refresh()

    def set_search(self, text: str) -> None:
        if self.controller is None:
            return
        self.vm.set_search(text)
        self.refresh()

    def set_auto_scroll(self, value: bool) -> None:
        if self.controller is None or value == self.vm.auto_scroll:
            return
        self.vm.toggle_auto_scroll()
        self.refresh()

    def copy(self) -> None:
        text = self.vm.copy_text()
        count = len(self.view.rows)
        self.notice = (f"Copied {count} line{'s' if count != 1 else ''}"
                       if self.app.copy_to_clipboard(text) else "Could not use the clipboard")
        Clock.schedule_once(lambda _dt: setattr(self, "notice", ""), 4)
