"""The worker as one object the faces (window, tray, CLI, control API) talk to.

``core`` holds :class:`WorkerService` (lifecycle, config, commands, events);
``status`` what it says about itself (snapshot, ``status.json``, capabilities).
"""

from workerlib.service.core import DEFAULT_DRAIN_SECS, EngineFactory, WorkerService
from workerlib.service.status import machine_name, user_name

__all__ = ["DEFAULT_DRAIN_SECS", "EngineFactory", "WorkerService", "machine_name",
           "user_name"]
