"""Stats tab screen."""

from __future__ import annotations

from typing import Any, ClassVar

from kivy.properties import ObjectProperty

from app import chart  # noqa: F401  (registers BarChart for stats.kv)
from app.screens.base import TabScreen
from app.viewmodels.stats import StatsView, StatsViewModel


class StatsScreen(TabScreen):
    kv_file = "stats.kv"
    refresh_on: ClassVar[frozenset[str]] = frozenset({"finished"})

    view: Any = ObjectProperty(StatsView(), rebind=True)

    def attach(self, controller: Any) -> None:
        self._vm = StatsViewModel(controller.service)
        super().attach(controller)

    @property
    def vm(self) -> StatsViewModel:
        return self._vm
