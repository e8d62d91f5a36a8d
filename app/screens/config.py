"""Config tab screen: rows are kv templates, built once from the schema."""

from __future__ import annotations

from typing import Any, ClassVar

from kivy.properties import ObjectProperty
from kivymd.uix.boxlayout import MDBoxLayout

from app.screens.base import TabScreen
from app.viewmodels.config import ConfigView, ConfigViewModel, FieldView, GroupView

_BLANK_FIELD = FieldView(name="", label="", help="", kind="text", text="", active=False,
                         error="", dirty=False, password=False)


class ConfigFieldRow(MDBoxLayout):  # type: ignore[misc]  # kivy ships no types
    """One setting; ``field`` is its FieldView, ``screen`` receives the edits."""

    field: Any = ObjectProperty(_BLANK_FIELD, rebind=True)
    screen: Any = ObjectProperty(None, allownone=True)


class ConfigTextRow(ConfigFieldRow):
    pass


class ConfigSwitchRow(ConfigFieldRow):
    pass


class ConfigGroupHeader(MDBoxLayout):  # type: ignore[misc]  # kivy ships no types
    group: Any = ObjectProperty(GroupView("", (), False), rebind=True)
    screen: Any = ObjectProperty(None, allownone=True)
    view: Any = ObjectProperty(ConfigView(), rebind=True)


class ConfigScreen(TabScreen):
    kv_file = "config.kv"
    refresh_on: ClassVar[frozenset[str]] = frozenset({"config", "status"})
    keep_when_left = False
    """About 390 widgets: built on each visit, dropped when left with nothing unsaved."""

    view: Any = ObjectProperty(ConfigView(), rebind=True)

    def __init__(self, **kwargs: Any) -> None:
        self.rows: dict[str, ConfigFieldRow] = {}
        self.headers: dict[str, ConfigGroupHeader] = {}
        super().__init__(**kwargs)

    def attach(self, controller: Any) -> None:
        self._vm = ConfigViewModel(controller.service)
        self._build_rows(self._vm.view())
        super().attach(controller)

    @property
    def vm(self) -> ConfigViewModel:
        return self._vm

    def releasable(self) -> bool:
        return not self.vm.dirty and not self.vm.restarting

    def detach(self) -> None:
        self.rows.clear()
        self.headers.clear()
        super().detach()

    def _build_rows(self, view: ConfigView) -> None:
        container = self.ids.fields
        container.clear_widgets()
        for group in view.groups:
            header = ConfigGroupHeader(group=group, screen=self, view=view)
            self.headers[group.name] = header
            container.add_widget(header)
            for field in group.fields:
                cls = ConfigSwitchRow if field.kind == "bool" else ConfigTextRow
                row = cls(field=field, screen=self)
                self.rows[field.name] = row
                container.add_widget(row)

    def on_event(self, kinds: set[str]) -> None:
        if "config" in kinds:
            self.vm.sync()

    def on_view(self, _instance: Any, view: ConfigView) -> None:
        for group in view.groups:
            header = self.headers.get(group.name)
            if header is not None:
                header.group = group
                header.view = view
            for field in group.fields:
                row = self.rows.get(field.name)
                if row is not None and row.field != field:
                    row.field = field

    # -- commands (called from config.kv) ----------------------------------------------------
    def edit_text(self, name: str, text: str) -> None:
        if not name or self.controller is None:
            return
        self.vm.set_text(name, text)
        self.refresh()

    def edit_flag(self, name: str, value: bool) -> None:
        if not name or self.controller is None:
            return
        self.vm.set_flag(name, value)
        self.refresh()

    def toggle_reveal(self, name: str) -> None:
        self.vm.toggle_reveal(name)
        self.refresh()

    def save(self) -> None:
        self.vm.save()
        self.refresh()

    def reset(self) -> None:
        self.vm.reset()
        self.refresh()

    def apply_and_restart(self) -> None:
        self.app.run_task(self.vm.apply_and_restart(), self.refresh)
        self.refresh()
