"""Give memory back to the system after the big one-off allocations (start-up, a tab
dropped): Python frees objects, but glibc keeps the pages until asked to trim."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import sys


def trim() -> None:
    """Collect cycles (Kivy widgets hold many), then return free heap pages to the OS."""
    gc.collect()
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (musl): nothing to trim
        pass
