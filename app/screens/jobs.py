"""Jobs tab screen."""

from __future__ import annotations

from typing import Any, ClassVar

from kivy.properties import ObjectProperty

from app.screens.base import TabScreen
from app.viewmodels.jobs import JobsView, JobsViewModel


class JobsScreen(TabScreen):
    kv_file = "jobs.kv"
    refresh_on: ClassVar[frozenset[str]] = frozenset({"job", "finished"})
    ticks = True

    view: Any = ObjectProperty(JobsView(), rebind=True)

    def attach(self, controller: Any) -> None:
        self._vm = JobsViewModel(controller.service)
        super().attach(controller)

    @property
    def vm(self) -> JobsViewModel:
        return self._vm

    def on_view(self, _instance: Any, view: JobsView) -> None:
        data = [row.as_data() for row in view.rows]
        if self.ids.job_list.data != data:
            self.ids.job_list.data = data
