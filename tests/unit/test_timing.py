import asyncio
import random

from workerlib.runtime.timing import Backoff, Cadence, wait_event


def test_backoff_doubles_with_jitter_and_caps() -> None:
    backoff = Backoff(rng=random.Random(1))
    delays = [backoff.next_delay() for _ in range(10)]
    ceilings = [min(60.0, 2.0**i) for i in range(10)]
    for delay, ceiling in zip(delays, ceilings, strict=True):
        assert ceiling / 2 <= delay <= ceiling
    assert max(delays) <= 60.0
    backoff.reset()
    assert not backoff.failing and backoff.next_delay() <= 1.0


class FakeLoop:
    def __init__(self) -> None:
        self.now = 100.0

    def time(self) -> float:
        return self.now


def test_cadence_is_drift_free_and_skips_missed_slots() -> None:
    loop = FakeLoop()
    cadence = Cadence(loop)  # type: ignore[arg-type]
    assert cadence.delay(5) == 5
    loop.now = 105.3  # the tick ran 0.3 s late
    assert abs(cadence.delay(5) - 4.7) < 1e-9
    loop.now = 127.0  # missed several slots: no burst, next slot on the grid
    assert abs(cadence.delay(5) - 3.0) < 1e-9


async def test_wait_event_returns_early_when_set() -> None:
    event = asyncio.Event()
    asyncio.get_running_loop().call_later(0.05, event.set)
    assert await wait_event(event, 5.0) is True
    assert await wait_event(asyncio.Event(), 0.01) is False
