"""Cadence and backoff helpers for the loops."""

from __future__ import annotations

import asyncio
import contextlib
import random


class Backoff:
    """Exponential backoff with jitter: 1 s doubling, capped (STUDIO_API.md §5)."""

    def __init__(self, base: float = 1.0, cap: float = 60.0, rng: random.Random | None = None):
        self.base = base
        self.cap = cap
        self.failures = 0
        self._rng = rng or random.Random()

    def next_delay(self) -> float:
        self.failures += 1
        ceiling = min(self.cap, self.base * 2 ** (self.failures - 1))
        # "Equal jitter": never less than half the ceiling, so a flapping studio is not hammered.
        return float(ceiling / 2 + self._rng.uniform(0, ceiling / 2))

    def reset(self) -> None:
        self.failures = 0

    @property
    def failing(self) -> bool:
        return self.failures > 0


async def wait_event(event: asyncio.Event, timeout: float) -> bool:
    """Wait for ``event`` at most ``timeout`` seconds; True when it was set."""
    if event.is_set():
        return True
    if timeout <= 0:
        return False
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), timeout)
        return True
    return False


async def wait_any(events: tuple[asyncio.Event, ...], timeout: float | None) -> bool:
    """Wait until one of ``events`` is set (or ``timeout`` s pass); True when one was set."""
    if any(event.is_set() for event in events):
        return True
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        done, _ = await asyncio.wait(waiters, timeout=timeout,
                                     return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
    return bool(done)


class Cadence:
    """Drift-free ticks: the n-th tick is due at start + n × interval.

    A tick that comes late (the loop was busy) does not cause a burst of catch-up
    ticks: missed slots are skipped.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._next: float | None = None

    def delay(self, interval: float) -> float:
        now = self._loop.time()
        if self._next is None:
            self._next = now
        self._next += interval
        if self._next < now:
            missed = int((now - self._next) // interval) + 1
            self._next += missed * interval
        return max(0.0, self._next - now)

    def reset(self) -> None:
        self._next = None
