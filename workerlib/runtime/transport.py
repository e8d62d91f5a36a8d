"""The small interface between the loops and a studio protocol (v1 polling, v2 channel).

A transport keeps the worker in touch with the studio (heartbeats, log shipping),
gets jobs (v1 claims them, v2 is offered them) and delivers their outcomes; running
a job is ``JobRunner``'s, the same for both. ``run`` returns why the session ended.
"""

from __future__ import annotations

import asyncio
from enum import Enum
from typing import Protocol

from workerlib.config import Config
from workerlib.runtime.host import Host
from workerlib.runtime.job import JobRunner


class End(Enum):
    STOPPED = "stopped"
    """The worker is stopping (or the session was asked to end: config changed)."""
    IDLE = "idle"
    """``until_idle``: the studio has nothing for us (tests, benchmarks)."""
    NO_V2 = "no_v2"
    """The studio answered the v2 upgrade with 404/405/426: it only speaks v1."""
    V2_APPEARED = "v2_appeared"
    """v1 fallback: the hourly probe found a v2 channel."""
    UNREGISTERED = "unregistered"
    UNAUTHORISED = "unauthorised"
    DUPLICATE = "duplicate"
    DELETED = "deleted"
    GAVE_UP = "gave_up"
    """``ws_reconnect_attempts`` reconnects in a row failed."""


class LoopContext(Protocol):
    """What a transport needs from the loops that run it (``WorkerLoops`` provides it)."""

    host: Host
    jobs: JobRunner
    until_idle: bool
    stop_claiming: asyncio.Event
    """Set on stop: take no new job; the running one may finish."""
    end_session: asyncio.Event
    """Set when the session must end after the running job (config changed, switching)."""
    wake: asyncio.Event
    """Something changed (resume, config, studio back): re-check at once."""
    heartbeat_now: asyncio.Event
    heartbeat_sent: asyncio.Event
    idle: asyncio.Event
    """Set each round with no job to run (held back, or nothing for us)."""

    def holding_back(self) -> bool:
        """True while the worker should take no job on its own account (paused, engine
        offline, cooling down, held by a rule)."""
        ...

    async def between_jobs(self) -> bool:
        """Updates and engine rebuilds happen here; True when the worker must stop."""
        ...


class Transport(Protocol):
    name: str

    async def run(self) -> End: ...

    async def flush_logs(self) -> bool: ...


def session_key(config: Config) -> tuple[str, ...]:
    """What a session is bound to: a change ends it so the next one uses the new values."""
    return (config.api_base_url, config.worker_id, config.auth_token, config.protocol)
