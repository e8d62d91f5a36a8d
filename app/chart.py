"""A stacked bar chart drawn with Kivy graphics: completed (green) under failed (red).

It draws only when its data or its size change (``draw_count`` says how often, for the
tests): a refresh with the same numbers, or a clock tick, costs nothing.
"""

from __future__ import annotations

from typing import Any

from kivy.graphics import Color, Line, Rectangle
from kivy.metrics import dp
from kivy.properties import ColorProperty, ListProperty
from kivy.uix.widget import Widget

from app.widgets import tone_color


class BarChart(Widget):  # type: ignore[misc]  # kivy ships no types
    bars = ListProperty([])
    """[(completed, failed), ...], oldest first."""
    completed_color = ColorProperty(tone_color("ok"))
    failed_color = ColorProperty(tone_color("error"))
    axis_color = ColorProperty((0.56, 0.58, 0.62, 0.6))

    def __init__(self, **kwargs: Any) -> None:
        self.draw_count = 0
        super().__init__(**kwargs)
        self.bind(bars=self._redraw, size=self._redraw, pos=self._redraw)

    def _redraw(self, *_args: Any) -> None:
        self.draw_count += 1
        self.canvas.clear()
        bars = [(max(0, int(c)), max(0, int(f))) for c, f in self.bars]
        x, y = self.pos
        width, height = self.size
        with self.canvas:
            Color(*self.axis_color)
            Line(points=[x, y, x + width, y], width=1)
            if not bars or width <= 0 or height <= 0:
                return
            top = max((c + f for c, f in bars), default=0)
            slot = width / len(bars)
            gap = min(dp(6), slot * 0.25)
            scale = (height - dp(2)) / top if top else 0.0
            for i, (completed, failed) in enumerate(bars):
                left = x + i * slot + gap / 2
                done = completed * scale
                if completed:
                    Color(*self.completed_color)
                    Rectangle(pos=(left, y + 1), size=(slot - gap, done))
                if failed:
                    Color(*self.failed_color)
                    Rectangle(pos=(left, y + 1 + done), size=(slot - gap, failed * scale))
