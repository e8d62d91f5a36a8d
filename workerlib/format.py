"""Small display formatters shared by the CLI and the GUI."""

from __future__ import annotations

import time


def duration(seconds: float) -> str:
    """``12s``, ``3m 04s``, ``1h 12m``."""
    total = max(0, int(seconds))
    if total < 60:
        return f"{total}s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def ago(timestamp: float | None, now: float | None = None) -> str:
    if timestamp is None:
        return "never"
    delta = (now if now is not None else time.time()) - timestamp
    return f"{duration(delta)} ago"


def clock(timestamp: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(timestamp))
