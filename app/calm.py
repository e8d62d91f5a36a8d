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
  costliest pixels there are in software GL, and each shadow holds an offscreen buffer
  (~0.5 MB) for as long as the widget lives; KivyMD's elevation rule is replaced by one
  without the shadow, so none is ever made (flat design);
- ripples made on first touch: KivyMD 2 gives every button, card and switch an
  offscreen buffer and its own compiled shader for the touch ripple as it is built
  (~0.8 MB each in software GL, about 20 MB for the Status tab and the tab bar);
  ``lazy_ripples`` defers both to the first touch, which most buttons never get.

Imports kivymd: only from ``app.gui``'s side of the house.
"""

from __future__ import annotations

import logging
from typing import Any

from kivy.lang import Builder

log = logging.getLogger("workerlib.ui")

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


ELEVATION_RULE = "<CommonElevationBehavior>"
"""KivyMD's rule (kivymd 2.0.0, loaded without a file name) that draws the shadow."""

FLAT_ELEVATION = """
<CommonElevationBehavior>
    # KivyMD's rule without its BoxShadow: the scale/rotate transforms stay.
    canvas.before:
        PushMatrix
        Scale:
            x: self.scale_value_x
            y: self.scale_value_y
            z: self.scale_value_x
            origin: self.center if not self.scale_value_center else self.scale_value_center
        Rotate:
            angle: self.rotate_value_angle
            axis: tuple(self.rotate_value_axis)
            origin: self.center
    canvas.after:
        PopMatrix
"""


def paints(rgba: Any) -> bool:
    """Whether a colour leaves a mark: it exists and is not fully transparent."""
    return bool(rgba) and len(rgba) == 4 and rgba[3] > 0


_replaced: list[bool] = []


def no_shadows() -> bool:
    """Replace KivyMD's elevation rule with the flat one (once per process); False if it
    was not found (another KivyMD: shadows stay, and the GUI tests say so)."""
    if not _replaced:
        kept = [rule for rule in Builder.rules
                if rule[1].name != ELEVATION_RULE or rule[1].ctx.filename is not None]
        _replaced.append(len(kept) < len(Builder.rules))
        Builder.rules = kept
        Builder._clear_matchcache()
        Builder.load_string(FLAT_ELEVATION, filename="app-calm-elevation.kv")
    return _replaced[0]


def lazy_ripples() -> None:
    """KivyMD's M3 ripple builds its offscreen buffer and shader on the first touch."""
    from kivymd.uix.behaviors.ripple_behavior import M3CommonRipple

    if getattr(M3CommonRipple, "_calm_lazy", False):
        return
    build = M3CommonRipple.init_fbos
    lay = M3CommonRipple.lay_canvas_instructions

    def init_fbos(self: Any) -> None:
        self._phase = 0.0
        self.ripple_pos = (0, 0)
        self.fbo = None  # KivyMD's _update_uniforms skips a ripple without one

    def lay_canvas_instructions(self: Any) -> None:
        if self.fbo is None and self.ripple_effect:
            build(self)
        lay(self)

    M3CommonRipple.init_fbos = init_fbos
    M3CommonRipple.lay_canvas_instructions = lay_canvas_instructions
    M3CommonRipple._calm_lazy = True


def calm_down(theme_cls: Any) -> None:
    """Apply the policy; call once the MDApp exists, before the root widget is built."""
    theme_cls.theme_style_switch_animation = False
    Builder.unload_file(KIVYMD_BACKGROUND_RULE)
    Builder.unload_file("app-calm-background.kv")
    Builder.load_string(FLAT_BACKGROUND, filename="app-calm-background.kv")
    Builder.unload_file("app-calm-scrollbars.kv")
    Builder.load_string(STEADY_SCROLL_BARS, filename="app-calm-scrollbars.kv")
    if not no_shadows():
        log.warning("KivyMD's elevation rule was not found: widgets keep their shadows")
    lazy_ripples()
