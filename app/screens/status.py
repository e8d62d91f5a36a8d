"""Status tab screen."""

from __future__ import annotations

from typing import Any, ClassVar

from kivy.properties import ObjectProperty

from app.screens.base import TabScreen
from app.viewmodels.status import StatusView, StatusViewModel


class StatusScreen(TabScreen):
    kv_file = "status.kv"
    refresh_on: ClassVar[frozenset[str]] = frozenset({"status", "job", "finished", "config"})
    ticks = True

    view: Any = ObjectProperty(StatusView(), rebind=True)

    def attach(self, controller: Any) -> None:
        self._vm = StatusViewModel(controller.service)
        super().attach(controller)
        self.ids.register_url.text = self._vm.default_url()

    @property
    def vm(self) -> StatusViewModel:
        return self._vm

    # -- commands (called from status.kv) ----------------------------------------------------
    def toggle_pause(self) -> None:
        self.vm.toggle_pause()
        self.refresh()

    def snooze(self, preset: str) -> None:
        self.vm.snooze(preset)
        self.refresh()

    def resume_now(self) -> None:
        self.vm.resume_now()
        self.refresh()

    def start_worker(self) -> None:
        self.app.run_task(self.vm.start(), self.refresh)

    def register(self) -> None:
        token = self.ids.register_token.text
        url = self.ids.register_url.text
        self.app.run_task(self._register(token, url))
        self.refresh()

    async def _register(self, token: str, url: str) -> None:
        if await self.vm.register(token, url):
            self.ids.register_token.text = ""
        self.refresh()
