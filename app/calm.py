"""Repaint less, and more cheaply: settings every tab inherits without doing anything.

Kivy redraws the whole window whenever any canvas changes, and in software GL (no GPU
driver, a remote desktop, these CI machines) one full repaint of this window costs tens
of milliseconds of the loop the worker shares. So:

- no colour animations: KivyMD animates every label and background colour change
  (6-25 repaints for one change) and Kivy fades scroll bars after each layout change;
- no invisible painting: KivyMD draws a background and an outline for every MD widget,
  even fully transparent ones (the Status tab painted 11x the window's area a frame);
  here a transparent background or outline has no area, so nothing is rasterised;
- no shadows: a KivyMD card or button blurs a shadow under itself on every frame, the
  costliest pixels there are in software GL; ``flatten`` removes them (flat design).

Imports kivymd: only from ``app.gui``'s side of the house.
"""

from __future__ import annotations

from typing import Any

from kivy.lang import Builder

KIVYMD_BACKGROUND_RULE = "BackgroundColorBehavior.kv"
"""The file name KivyMD loads its background/outline rule under (kivymd 2.0.0)."""

FLAT_BACKGROUND = """
#:import RelativeLayout kivy.uix.relativelayout.RelativeLayout
#:import paints app.calm.paints

<BackgroundColorBehavior>
    canvas:
        PushMatrix
        Rotate:
            angle: self.angle
            origin: self._background_origin
        Color:
            group: "backgroundcolor-behavior-bg-color"
            rgba: self._md_bg_color
        RoundedRectangle:
            group: "Background_instruction"
            # Transparent and without an image: no area, nothing rasterised.
            size: self.size if root.background or paints(self._md_bg_color) else (0, 0)
            pos: self.pos if not isinstance(self, RelativeLayout) else (0, 0)
            radius: root.radius if root.radius else [0, 0, 0, 0]
            source: root.background
        Color:
            rgba: self.line_color if self.line_color else (0, 0, 0, 0)
        SmoothLine:
            width: root.line_width
            # A transparent outline is an empty (zero-size) line.
            rounded_rectangle: \
                ([0, 0, self.width, self.height, *self.radius] \
                if isinstance(self, RelativeLayout) else \
                [self.x, self.y, self.width, self.height, *self.radius]) \
                if paints(self.line_color) else [0, 0, 0, 0, 0, 0, 0, 0]
        PopMatrix
"""

STEADY_SCROLL_BARS = """
<ScrollView>:
    # One colour: Kivy otherwise animates the bar from active to inactive for half a
    # second after every scroll or content change (15 repaints at 30 fps).
    bar_color: 0.7, 0.7, 0.7, 0.45
    bar_inactive_color: 0.7, 0.7, 0.7, 0.45
"""


def paints(rgba: Any) -> bool:
    """Whether a colour leaves a mark: it exists and is not fully transparent."""
    return bool(rgba) and len(rgba) == 4 and rgba[3] > 0


def flatten(root: Any) -> int:
    """Remove the shadow instructions under ``root`` (call on each newly built tree:
    the root, a tab's screen). Returns how many were removed."""
    from kivy.graphics import BoxShadow
    from kivymd.uix.behaviors.elevation import CommonElevationBehavior

    removed = 0
    for widget in root.walk(restrict=True):
        if not isinstance(widget, CommonElevationBehavior):
            continue
        before = widget.canvas.before
        for instruction in [i for i in before.children if isinstance(i, BoxShadow)]:
            before.remove(instruction)
            removed += 1
    return removed


def calm_down(theme_cls: Any) -> None:
    """Apply the policy; call once the MDApp exists, before the root widget is built."""
    theme_cls.theme_style_switch_animation = False
    Builder.unload_file(KIVYMD_BACKGROUND_RULE)
    Builder.unload_file("app-calm-background.kv")
    Builder.load_string(FLAT_BACKGROUND, filename="app-calm-background.kv")
    Builder.unload_file("app-calm-scrollbars.kv")
    Builder.load_string(STEADY_SCROLL_BARS, filename="app-calm-scrollbars.kv")
