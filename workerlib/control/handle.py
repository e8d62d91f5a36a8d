"""The worker as the faces see it: one interface, two implementations.

``workerlib.service.WorkerService`` is the worker in this process; ``RemoteWorker``
(``workerlib.control.client``) is a worker in another process, reached through the
control API. The window's view-models, the tray and the CLI use only this interface.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from workerlib.api import Registration
from workerlib.config import Config
from workerlib.logs import LogLine
from workerlib.paths import Paths
from workerlib.policy.hold import Hold
from workerlib.runtime.link import Link
from workerlib.runtime.state import FinishedJob, Listener, StatusSnapshot, UpdateInfo
from workerlib.stats import StatsSummary


class WorkerHandle(Protocol):
    # -- what is there (synchronous: a remote answers from its mirror of the events) --
    @property
    def paths(self) -> Paths: ...

    @property
    def config(self) -> Config: ...

    def status(self) -> StatusSnapshot: ...

    def recent_jobs(self) -> list[FinishedJob]: ...

    def log_lines(self) -> list[LogLine]: ...

    def stats_summary(self, now: float | None = None) -> StatsSummary: ...

    def link(self) -> Link: ...

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` on the event loop for every change; returns unsubscribe."""

    # -- commands ----------------------------------------------------------------------
    def save_config(self, changes: dict[str, Any]) -> Config:
        """Validate and write ``changes`` (raises ConfigError naming the key)."""

    def set_paused(self, paused: bool) -> None: ...

    def snooze_preset(self, preset: str) -> Hold | None:
        """``1h``, ``4h`` or ``tomorrow``: no new job until then."""

    def resume(self) -> Hold | None:
        """End a snooze and a pause; returns a rule that still holds, if any."""

    async def start(self) -> object: ...

    async def register(self, bootstrap_token: str | None = None,
                       api_base_url: str | None = None) -> Registration: ...

    async def restart_loops(self, *, start_if_stopped: bool = True) -> None: ...

    async def check_update(self) -> UpdateInfo: ...
