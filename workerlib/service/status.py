"""What a worker says about itself: the status snapshot (window, CLI, control API),
the ``status.json`` file for ``studio-worker status`` when no worker answers, and the
capabilities every heartbeat sends."""

from __future__ import annotations

import getpass
import json
import os
import socket
import tempfile
import time
from typing import TYPE_CHECKING

from workerlib import __version__
from workerlib.logs import get_logger
from workerlib.runtime.state import StatusSnapshot, state_label
from workerlib.wire import Capabilities, build_capabilities

if TYPE_CHECKING:
    from workerlib.service.core import WorkerService

log = get_logger("worker")
STATUS_FILE_MIN_SECS = 0.5
"""``status.json`` is rewritten at most this often unless forced (a busy worker finishes
many jobs a second)."""


def machine_name() -> str:
    try:
        return socket.gethostname() or "unknown-host"
    except OSError:
        return "unknown-host"


def user_name() -> str:
    try:
        return getpass.getuser() or "unknown-user"
    except Exception:  # getpass raises assorted errors when no user can be found
        return "unknown-user"


def capabilities(service: WorkerService) -> Capabilities:
    config = service.config
    return build_capabilities(
        machine_name=machine_name(),
        username=user_name(),
        agent_version=__version__,
        engine=config.engine,
        vram_total_gb=service.state.vram_total_gb,
        vram_threshold_gb=config.vram_threshold_gb,
        # A politeness rule that holds claiming reads as "not enabled" to the studio.
        auto_enabled=config.auto_enabled and service.policy.hold_reason() is None,
        auto_start=config.auto_start,
        models_per_kind=service.engine.models_per_kind(),
        override=config.supported_models_override,
        auto_update=config.auto_update_enabled,
        start_minimised=config.start_minimised,
        only_when_idle=config.only_when_idle,
        user_presence=service.policy.user_presence(),
    )


def status_snapshot(service: WorkerService, engine_name: str) -> StatusSnapshot:
    config = service.config
    state = service.state
    connection = state.connection(registered=config.is_registered(),
                                  heartbeat_interval=config.heartbeat_interval_secs)
    busy = state.current_job is not None or bool(state.uploading)
    paused = not config.auto_enabled
    hold = service.policy.hold_reason()
    return StatusSnapshot(
        version=__version__,
        worker_id=config.worker_id,
        api_base_url=config.api_base_url,
        registered=config.is_registered(),
        connection=connection,
        label=state_label(connection, paused=paused, busy=busy,
                          backend_down=state.backend_problem is not None,
                          cooling_down=state.cooldown_until is not None,
                          held=hold is not None, approval=state.approval),
        paused=paused,
        busy=busy,
        current_job=state.current_job,
        uploading=len(state.uploading),
        last_heartbeat=state.last_heartbeat,
        last_ok_heartbeat_at=state.last_ok_heartbeat_at,
        vram_total_gb=state.vram_total_gb,
        vram_threshold_gb=config.vram_threshold_gb,
        engine=engine_name,
        last_error=state.last_error,
        backend_problem=state.backend_problem,
        cooldown_until=state.cooldown_until,
        last_update=state.last_update,
        started_at=state.started_at,
        jobs_completed=state.jobs_completed,
        jobs_failed=state.jobs_failed,
        heartbeat_interval_secs=config.heartbeat_interval_secs,
        running=service.loops is not None,
        restart_pending=service.restart_pending,
        pid=os.getpid(),
        config_path=str(service.paths.config_file),
        log_file=str(service.paths.log_file),
        hold=hold,
        gpus=service.policy.gpus(),
        user_presence=service.policy.user_presence(),
        approval=state.approval,
        protocol=state.protocol,
        vram_source=state.vram_source,
    )


class StatusFile:
    """Writes the live state for ``studio-worker status`` (no secrets in it: the
    snapshot model escapes and redacts every text), atomically, throttled."""

    def __init__(self) -> None:
        self._published = 0.0

    def publish(self, service: WorkerService, *, running: bool, force: bool) -> None:
        now = time.monotonic()
        if not force and running and now - self._published < STATUS_FILE_MIN_SECS:
            return
        self._published = now
        data = service.status().model_dump(mode="json")
        data["running"] = running
        data["updated_at"] = time.time()
        path = service.paths.status_file
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".status.", dir=path.parent)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(data, handle)
            os.replace(tmp, path)
        except OSError as exc:
            log.debug("could not write %s: %s", path, exc)
