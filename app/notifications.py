"""Desktop notifications for finished jobs: which ones (workerlib.notify) and delivery.

Delivery runs on one daemon thread: the D-Bus call behind a notification is
blocking and can hang on a stuck notification service, and neither may stall the
worker's loop nor keep the process from exiting.
"""

from __future__ import annotations

import queue
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable

from workerlib.control.handle import WorkerHandle
from workerlib.logs import get_logger
from workerlib.notify import NewJobs, Notice, notice_for
from workerlib.runtime.state import Event

log = get_logger("notify")
APP_NAME = "Studio Worker"
SHOW_SECS = 10


class Notifier(ABC):
    """Shows one notification; raises when it could not be delivered."""

    name = "none"

    @abstractmethod
    def deliver(self, notice: Notice) -> None: ...


class PlyerNotifier(Notifier):
    """plyer: D-Bus (org.freedesktop.Notifications) on Linux, balloons on Windows.

    On Linux plyer needs dbus-python to report failures: without it, it shells out to
    notify-send and ignores its exit status.
    """

    name = "plyer"

    def deliver(self, notice: Notice) -> None:
        from plyer import notification

        notification.notify(title=notice.title, message=notice.body, app_name=APP_NAME,
                            timeout=SHOW_SECS)


class NotificationSender:
    """Delivers notices in order on a daemon thread; a failure logs one warning until a
    delivery works again, and never reaches the worker."""

    def __init__(self, notifier: Notifier) -> None:
        self.notifier = notifier
        self.delivered = 0
        self.failed = 0
        self._queue: queue.Queue[Notice | None] = queue.Queue()
        self._pending = 0
        self._done = threading.Condition()
        self._failing = False
        self._thread: threading.Thread | None = None

    def send(self, notice: Notice) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="notify", daemon=True)
            self._thread.start()
        with self._done:
            self._pending += 1
        self._queue.put(notice)

    def wait_idle(self, timeout: float) -> bool:
        """True once everything sent so far was delivered or failed."""
        with self._done:
            return self._done.wait_for(lambda: self._pending == 0, timeout)

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put(None)

    def _work(self) -> None:
        while (notice := self._queue.get()) is not None:
            self._deliver(notice)
            with self._done:
                self._pending -= 1
                self._done.notify_all()

    def _deliver(self, notice: Notice) -> None:
        try:
            self.notifier.deliver(notice)
        except Exception as exc:  # whatever the platform backend raises
            self.failed += 1
            if not self._failing:
                self._failing = True
                log.warning("could not show a desktop notification (%s): %s",
                            type(exc).__name__, exc)
            return
        self.delivered += 1
        if self._failing:
            self._failing = False
            log.info("desktop notifications work again")


class JobNotifications:
    """Watches the service for finished jobs and sends the notices the config asks for."""

    def __init__(self, service: WorkerHandle, sender: NotificationSender) -> None:
        self.service = service
        self.sender = sender
        self._seen = NewJobs()
        self._unsubscribe: Callable[[], None] | None = None

    def start(self) -> None:
        # Jobs finished before the window opened were not "just now".
        self._seen.prime(self.service.recent_jobs())
        self._unsubscribe = self.service.subscribe(self._on_event)

    def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self.sender.close()

    def _on_event(self, event: Event) -> None:
        if event.kind != "finished":
            return
        config = self.service.config
        for job in self._seen.new(self.service.recent_jobs()):
            notice = notice_for(job, config)
            if notice is not None:
                self.sender.send(notice)
