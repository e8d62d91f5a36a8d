"""What the loops need from the worker around them, as a narrow protocol.

``WorkerService`` provides it; the runtime never imports the service. Everything a
loop changes goes through these members, so a test can hand the loops any object
that has them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import aiohttp

from workerlib.api import StudioClient
from workerlib.config import Config
from workerlib.engines.base import Engine
from workerlib.logs import Redactor, ShipQueue
from workerlib.runtime.journal import Journal
from workerlib.runtime.state import UpdateInfo, WorkerState
from workerlib.updater import UpdateOutcome
from workerlib.wire import Capabilities


class Holds(Protocol):
    def hold_reason(self) -> object | None:
        """The politeness rule holding claiming now, if any (workerlib.policy)."""
        ...


class Host(Protocol):
    state: WorkerState
    journal: Journal
    ship_queue: ShipQueue
    redactor: Redactor
    restart_pending: bool

    @property
    def config(self) -> Config: ...

    @property
    def policy(self) -> Holds: ...

    @property
    def engine(self) -> Engine: ...

    @property
    def client(self) -> StudioClient: ...

    @property
    def http(self) -> aiohttp.ClientSession:
        """The one HTTP session (the v2 channel's WebSocket opens on it too)."""
        ...

    def capabilities(self) -> Capabilities: ...

    def save_config(self, changes: dict[str, Any]) -> Config: ...

    def reload_config_if_changed(self) -> bool: ...

    def publish_status_file(self, *, running: bool = True, force: bool = False) -> None: ...

    async def rebuild_engine(self) -> None: ...

    async def check_update(self) -> UpdateInfo: ...

    async def apply_update(self, can_start: Callable[[], bool]) -> UpdateOutcome: ...
