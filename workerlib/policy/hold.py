"""What a politeness rule reports while it holds claiming."""

from __future__ import annotations

import time
from typing import Literal

from pydantic import BaseModel, ConfigDict, field_validator

from workerlib.sanitize import display

Rule = Literal["snooze", "schedule", "program", "fullscreen", "idle", "heat", "power"]
RULE_ORDER: tuple[Rule, ...] = ("snooze", "schedule", "program", "fullscreen", "idle", "heat",
                                "power")
"""When several rules hold, the first in this order is the one named."""


class Hold(BaseModel):
    """A rule that holds claiming: ``text`` is shown as is (badge, tray, ``status``)."""

    model_config = ConfigDict(frozen=True)

    rule: Rule
    text: str
    """"Paused: a game is running (eldenring.exe)", "Snoozed until 21:30"."""
    until: float | None = None
    """When it lifts by itself (epoch seconds), when that is known."""

    @field_validator("text")
    @classmethod
    def _safe(cls, value: str) -> str:
        # Program and window names come from other programs: shown escaped and bounded.
        return display(value, 300)


def clock_text(at: float, now: float) -> str:
    """``21:30`` today, ``Mon 08:00`` within a week, else the date."""
    when = time.localtime(at)
    today = time.localtime(now)
    if (when.tm_year, when.tm_yday) == (today.tm_year, today.tm_yday):
        return time.strftime("%H:%M", when)
    if at - now < 6 * 86400:
        return time.strftime("%a %H:%M", when)
    return time.strftime("%Y-%m-%d %H:%M", when)
