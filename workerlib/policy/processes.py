"""``pause_while_running``: names or globs matched against the running programs."""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Callable, Iterable

ProcessLister = Callable[[], Iterable[str]]


def _comparable(name: str) -> str:
    return name.lower()


class ProcessMatcher:
    """Case-insensitive; ``eldenring.exe`` also matches ``eldenring`` (and the other way
    round), so a list written on Windows works for the same game under Proton."""

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns = [p.strip() for p in patterns if p.strip()]
        self._compiled = [_comparable(p) for p in self.patterns]

    def match(self, names: Iterable[str]) -> str | None:
        """The first running program a pattern matches (its own spelling), or None."""
        if not self._compiled:
            return None
        for name in names:
            if not name:
                continue
            low = _comparable(name)
            stem = low[:-4] if low.endswith(".exe") else low + ".exe"
            for pattern in self._compiled:
                if fnmatch.fnmatchcase(low, pattern) or fnmatch.fnmatchcase(stem, pattern):
                    return name
        return None


def running_programs() -> list[str]:
    """Names of the running processes (psutil: the full name where the kernel's is
    truncated to 15 characters), without this process."""
    import psutil

    own = os.getpid()
    names: list[str] = []
    for proc in psutil.process_iter(["name"]):
        if proc.pid == own:
            continue
        name = proc.info.get("name")
        if isinstance(name, str) and name:
            names.append(name)
    return names
