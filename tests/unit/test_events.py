"""The listener list shared by the in-process worker and an attached window's mirror."""

from __future__ import annotations

import logging

import pytest

from workerlib.runtime.events import Listeners
from workerlib.runtime.state import Event


def test_a_broken_listener_is_logged_and_the_others_still_hear(
    caplog: pytest.LogCaptureFixture,
) -> None:
    listeners = Listeners()
    heard: list[str] = []

    def broken(event: Event) -> None:
        raise RuntimeError("window gone")

    listeners.subscribe(broken)
    unsubscribe = listeners.subscribe(lambda event: heard.append(event.kind))
    caplog.set_level(logging.ERROR, logger="workerlib")
    listeners.dispatch(Event("status"))
    assert heard == ["status"]
    assert [r.getMessage() for r in caplog.records] == [
        "an event listener failed on a status event"]
    unsubscribe()
    unsubscribe()  # twice is harmless
    listeners.dispatch(Event("status"))
    assert heard == ["status"] and len(listeners) == 1


def test_a_listener_may_unsubscribe_while_being_called() -> None:
    listeners = Listeners()
    heard: list[int] = []
    unsubscribe = listeners.subscribe(lambda event: (heard.append(1), unsubscribe()))
    listeners.subscribe(lambda event: heard.append(2))
    listeners.dispatch(Event("status"))
    listeners.dispatch(Event("status"))
    assert heard == [1, 2, 2]
