"""Reading a local file the config names (the config itself, a ComfyUI workflow): bounded.

A 10 MB config once made ``status`` take 24 s and 2.6 GB; every file read on the
config's word is capped before a byte of it is parsed.
"""

from __future__ import annotations

from pathlib import Path


class FileTooLarge(OSError):
    """A file over its cap; ``str()`` says how large it is and what the cap is."""


def read_bounded(path: Path, limit: int) -> bytes:
    """The whole file, or FileTooLarge when it holds more than ``limit`` bytes (checked on
    the open file, so a file that grows meanwhile is still cut off)."""
    with path.open("rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise FileTooLarge(f"is larger than {_size(limit)}, the most it may be")
    return data


def _size(n: int) -> str:
    return f"{n // (1024 * 1024)} MiB" if n >= 1024 * 1024 else f"{n // 1024} KiB"
