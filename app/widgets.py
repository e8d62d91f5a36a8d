"""Small widgets and helpers shared by the kv files."""

from __future__ import annotations

from typing import Any

from kivy.properties import BooleanProperty
from kivy.uix.widget import Widget
from kivymd.uix.boxlayout import MDBoxLayout
from kivymd.uix.label import MDLabel

TONE_COLORS: dict[str, tuple[float, float, float, float]] = {
    "ok": (0.30, 0.69, 0.47, 1),
    "busy": (0.33, 0.58, 0.96, 1),
    "paused": (0.93, 0.66, 0.20, 1),
    "warn": (0.93, 0.66, 0.20, 1),
    "error": (0.94, 0.36, 0.36, 1),
    "muted": (0.56, 0.58, 0.62, 1),
}


def tone_color(tone: str) -> tuple[float, float, float, float]:
    return TONE_COLORS.get(tone, TONE_COLORS["muted"])


def tone_fill(tone: str, alpha: float = 0.22) -> tuple[float, float, float, float]:
    r, g, b, _ = tone_color(tone)
    return (r, g, b, alpha)


class Reveal(MDBoxLayout):  # type: ignore[misc]  # kivy ships no types
    """A box whose children are only in the tree while ``shown`` is true.

    Removing them (rather than zero height or opacity) keeps hidden buttons and
    fields from receiving touches and from taking room.
    """

    shown = BooleanProperty(True)

    def __init__(self, **kwargs: Any) -> None:
        self._stash: list[Widget] = []
        super().__init__(**kwargs)

    def add_widget(self, widget: Widget, *args: Any, **kwargs: Any) -> None:
        if not self.shown:
            self._stash.append(widget)
            return
        super().add_widget(widget, *args, **kwargs)

    def on_shown(self, _instance: Any, shown: bool) -> None:
        if shown:
            stash, self._stash = self._stash, []
            for widget in stash:
                super().add_widget(widget)
        else:
            self._stash = list(reversed(self.children)) + self._stash
            self.clear_widgets()


class FitLabel(MDLabel):  # type: ignore[misc]  # kivy ships no types
    """A label exactly as tall as its (wrapped) text, 0 when empty.

    ``adaptive_height`` leaves an empty label at the default 100 px, because an
    empty text never changes ``texture_size``.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.size_hint_y = None
        self.height = self.texture_size[1]
        self.bind(texture_size=self._fit)

    def _fit(self, _instance: Any, size: list[float]) -> None:
        self.height = size[1]
