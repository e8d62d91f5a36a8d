"""Who hears about a worker's changes: one list of listeners, shared by the worker in
this process (:class:`workerlib.service.WorkerService`) and its mirror in a window
attached over the control API (:class:`workerlib.control.client.RemoteWorker`)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from workerlib.logs import get_logger
from workerlib.runtime.state import Event, Listener

log = get_logger("worker")


class Listeners:
    """Subscribe, unsubscribe and dispatch; a listener that raises is logged once per
    failure and never stops the others (nor the worker)."""

    def __init__(self) -> None:
        self._listeners: list[Listener] = []
        self._in_error = False

    def __len__(self) -> int:
        return len(self._listeners)

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` for every event; returns the function that unsubscribes."""
        self._listeners.append(listener)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self._listeners.remove(listener)

        return unsubscribe

    def dispatch(self, event: Event) -> None:
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:  # a broken listener must not stop the worker
                if not self._in_error:  # (the log line is itself an event)
                    self._in_error = True
                    try:
                        log.exception("an event listener failed on a %s event", event.kind)
                    finally:
                        self._in_error = False
