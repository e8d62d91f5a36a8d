"""Stand-ins for what a politeness test cannot run here: the person's input idle time and
the wall clock."""

from __future__ import annotations


class FakeIdle:
    """An ``IdleSource`` whose idle time a test sets (None: presence unknown)."""

    name = "fake"

    def __init__(self, idle: float | None) -> None:
        self.idle = idle

    @property
    def unknown_reason(self) -> str:
        return "" if self.idle is not None else "fake: unknown"

    def idle_seconds(self) -> float | None:
        return self.idle


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
