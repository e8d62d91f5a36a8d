"""The facade the GUI, tray and CLI talk to: commands, snapshots and events.

Everything crossing this seam is plain data (frozen pydantic models and
dataclasses), so a GUI could later attach to a worker in another process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import aiohttp

from workerlib import __version__
from workerlib.api import Registration, StudioClient
from workerlib.config import SECRET_KEYS, Config, ConfigStore
from workerlib.engines import EngineConfigError, build_engine
from workerlib.engines.base import Engine
from workerlib.errors import ConfigError
from workerlib.logs import (
    ROOT_LOGGER,
    LogLine,
    LogRing,
    Redactor,
    ShipQueue,
    WorkerLogHandler,
    get_logger,
    make_file_handler,
)
from workerlib.paths import Paths
from workerlib.policy import Hold, Policy, PolicyProbes, SnoozeStore
from workerlib.policy.snooze import SNOOZE_PRESETS, tomorrow_morning
from workerlib.runtime.events import Listeners
from workerlib.runtime.journal import Journal
from workerlib.runtime.link import Link
from workerlib.runtime.loops import SHUTDOWN_GRACE_SECS, WorkerLoops
from workerlib.runtime.registration import reset_changes
from workerlib.runtime.state import (
    Event,
    FinishedJob,
    Listener,
    StatusSnapshot,
    UpdateInfo,
    WorkerState,
)
from workerlib.service import studio
from workerlib.service.status import StatusFile, capabilities, status_snapshot
from workerlib.stats import StatsStore, StatsSummary
from workerlib.updater import (
    UpdateOutcome,
    detect_installation,
)
from workerlib.wire import Capabilities

log = get_logger("worker")
log_config = get_logger("config")
DEFAULT_DRAIN_SECS = 5.0
EngineFactory = Callable[[Config], Engine]
T = TypeVar("T")


def _default_engine_factory(config: Config) -> Engine:
    return build_engine(config)


def _opened(value: T | None) -> T:
    """What ``open()`` made; a clear error when a face asks before it ran."""
    if value is None:
        raise RuntimeError("the service is not open yet")
    return value


def _engine_settings(config: Config) -> tuple[Any, ...]:
    """What the engine is built from: a change rebuilds it after the running job."""
    return (config.engine, config.engines, config.gradio_endpoint_url, config.models_root,
            config.model_map, config.synthetic, config.gradio, config.a1111, config.comfyui,
            config.diffusers)


class WorkerService:
    """One worker: config, engine, studio client, loops and state."""

    def __init__(
        self,
        paths: Paths,
        *,
        engine_factory: EngineFactory | None = None,
        vram_probe: Callable[[], float] | None = None,
        console: logging.Handler | None = None,
        file_logging: bool = True,
        policy_probes: PolicyProbes | None = None,
        loop_options: Mapping[str, float] | None = None,
    ) -> None:
        self.paths = paths
        self.loop_options = dict(loop_options or {})
        """Knobs handed to every ``WorkerLoops`` (re-probe interval, idle limit...)."""
        self.store = ConfigStore(paths.config_file)
        self.journal = Journal(paths.journal_file)
        self._engine_factory = engine_factory or _default_engine_factory
        self._vram_probe = vram_probe
        self.ring = LogRing()
        self.ship_queue = ShipQueue()
        self.redactor = Redactor()
        self.state = WorkerState(self._emit)
        self._listeners = Listeners()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._session: aiohttp.ClientSession | None = None
        self._client: StudioClient | None = None
        self._engine: Engine | None = None
        self.loops: WorkerLoops | None = None
        self._config: Config | None = None
        self.restart_pending = False
        self.installation = detect_installation()
        self.restart_requested = asyncio.Event()
        """Set once an update is installed: stop, close, then updater.restart_if_pending."""
        self._handlers: list[logging.Handler] = [
            WorkerLogHandler(self.ring, self.ship_queue, self._on_log_line)
        ]
        if file_logging:
            self._handlers.append(make_file_handler(paths.log_file))
        if console is not None:
            self._handlers.append(console)
        self._opened = False
        self._bad_config_stamp: str | None = None
        self._status_file = StatusFile()
        self.policy = Policy(lambda: self.config, SnoozeStore(paths.snooze_file), policy_probes,
                             self._policy_changed)
        self.stats = StatsStore(paths.stats_file)
        self.subscribe(self._record_stats)

    # -- properties ---------------------------------------------------------------------
    @property
    def config(self) -> Config:
        return _opened(self._config)

    @property
    def client(self) -> StudioClient:
        return _opened(self._client)

    @property
    def http(self) -> aiohttp.ClientSession:
        return _opened(self._session)

    @property
    def engine(self) -> Engine:
        return _opened(self._engine)

    # -- lifecycle ----------------------------------------------------------------------
    def _install_logging(self) -> None:
        root = logging.getLogger(ROOT_LOGGER)
        root.setLevel(logging.INFO)
        for handler in self._handlers:
            handler.addFilter(self.redactor)
            root.addHandler(handler)

    def _remove_logging(self) -> None:
        root = logging.getLogger(ROOT_LOGGER)
        for handler in self._handlers:
            root.removeHandler(handler)
            if not isinstance(handler, WorkerLogHandler):
                with contextlib.suppress(Exception):
                    handler.close()

    async def open(self) -> None:
        """Load the config (creating it), detect VRAM, build the engine. Raises ConfigError."""
        if self._opened:
            return
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        vram = await asyncio.to_thread(self._detect_vram)
        config, created = self.store.load_or_create(detected_vram_gb=vram)
        self._set_config(config)
        self.state.vram_total_gb = vram
        self._install_logging()
        self._opened = True
        if created:
            log_config.info("created %s with default settings", self.paths.config_file)
        if self._vram_probe is None:
            from workerlib.vram import env_override_problem

            if (problem := env_override_problem()) is not None:
                log_config.warning("%s", problem)
        if self.store.ensure_private():
            log_config.warning("%s was readable by other users; made it owner-only",
                               self.paths.config_file)
        self._session = aiohttp.ClientSession()
        self._client = StudioClient(self._session, config.api_base_url)
        self._engine = self._build_engine(config)
        await self._engine.start()
        log.info("studio-worker %s (engine %s, %.1f GiB VRAM %s) for %s, protocol %s",
                 __version__, self._engine.name, vram, self.state.vram_source,
                 config.api_base_url, config.protocol)

    def _detect_vram(self) -> float:
        if self._vram_probe is not None:
            return self._vram_probe()
        from workerlib.vram import detect_vram_gb, vram_source

        self.state.vram_source = vram_source()
        return detect_vram_gb()

    async def start(self, *, until_idle: bool = False) -> WorkerLoops:
        await self.open()
        if self.loops is None:
            await self.policy.start()
            self.loops = self._new_loops(until_idle)
            self.loops.start()
        return self.loops

    def _new_loops(self, until_idle: bool) -> WorkerLoops:
        return WorkerLoops(self, until_idle=until_idle, **self.loop_options)

    async def stop(self, drain_secs: float = DEFAULT_DRAIN_SECS) -> None:
        loops, self.loops = self.loops, None
        if loops is not None:
            await loops.stop(drain_secs)
        await self.policy.stop()
        self.publish_status_file(running=False)

    async def close(self, drain_secs: float = DEFAULT_DRAIN_SECS) -> None:
        await self.stop(drain_secs)
        self.policy.close()
        self.stats.close()
        if self._engine is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._engine.close(), SHUTDOWN_GRACE_SECS)
            self._engine = None
        if self._session is not None:
            await self._session.close()
            self._session = None
        self._remove_logging()
        self._opened = False

    async def run_until_idle(self, timeout: float = 60.0) -> None:
        """Run the real loops until the studio has no job for us, then stop (tests)."""
        loops = await self.start(until_idle=True)
        await asyncio.wait_for(asyncio.shield(loops.claim_task()), timeout)
        await self.stop()

    async def restart_loops(self, *, start_if_stopped: bool = True) -> None:
        """Finish the running job, rebuild the engine, start fresh loops.

        With ``start_if_stopped=False`` stopped loops stay stopped (only the engine is
        rebuilt), for a window whose worker the user has not started.
        """
        loops = self.loops
        until_idle = loops.until_idle if loops else False
        if loops is not None:
            self.loops = None
            await loops.stop(drain_secs=float("inf"))
        await self.rebuild_engine()
        if loops is None and not start_if_stopped:
            return
        self.loops = self._new_loops(until_idle)
        self.loops.start()
        log.info("worker loops restarted (engine %s)", self.engine.name)

    def _build_engine(self, config: Config) -> Engine:
        try:
            return self._engine_factory(config)
        except EngineConfigError as exc:
            raise ConfigError(self.paths.config_file, str(exc), key=exc.key) from None

    async def rebuild_engine(self) -> None:
        self.restart_pending = False
        old = self._engine
        try:
            new = self._build_engine(self.config)
            await new.start()
        except Exception as exc:
            log.error("keeping the %s engine: the new engine settings do not work: %s",
                      old.name if old else "old", exc)
            self.state.set_error(f"engine settings: {exc}")
            return
        self._engine = new
        if old is not None:
            with contextlib.suppress(Exception):
                await old.close()
        self._emit(Event("status"))

    # -- config ------------------------------------------------------------------------
    def _set_config(self, config: Config) -> None:
        old = self._config
        self._config = config
        self.redactor.set_secrets(getattr(config, key) for key in SECRET_KEYS)
        if old is None:
            return
        if self._client is not None and old.api_base_url != config.api_base_url:
            assert self._session is not None
            self._client = StudioClient(self._session, config.api_base_url)
        if _engine_settings(old) != _engine_settings(config):
            self.restart_pending = True
            log_config.info("engine settings changed: the engine restarts after the current job")
        if self.loops is not None:
            self.loops.config_changed()
        self._emit(Event("config", config))
        self._emit(Event("status"))

    def reload_config_if_changed(self) -> bool:
        if not self.store.changed_on_disk():
            return False
        try:
            config = self.store.load()
        except ConfigError as exc:
            if self._bad_config_stamp != str(exc):
                log_config.error("ignoring the edited config (keeping the last good one): %s", exc)
                self._bad_config_stamp = str(exc)
            return False
        self._bad_config_stamp = None
        if config != self._config:
            log_config.info("config file changed on disk; applied")
            self._set_config(config)
        return True

    def save_config(self, changes: dict[str, Any]) -> Config:
        """Write ``changes`` through the store (validated, atomic) and apply them."""
        config = self.store.update(changes)
        self._set_config(config)
        return config

    def set_paused(self, paused: bool) -> None:
        self.save_config({"auto_enabled": not paused})
        log.info("claiming %s", "paused" if paused else "resumed")

    def snooze(self, seconds: float | None = None, *, until: float | None = None) -> Hold | None:
        """Stop claiming for ``seconds`` (or until ``until``); kept across restarts."""
        end = until if until is not None else self.policy.clock() + float(seconds or 0)
        hold = self.policy.snooze_until(end)
        log.info("snoozed: no new jobs until %s", time.strftime("%Y-%m-%d %H:%M",
                                                                time.localtime(end)))
        return hold

    def snooze_preset(self, preset: str) -> Hold | None:
        """The tray's and Status tab's choices: ``1h``, ``4h`` or ``tomorrow``."""
        if preset == "tomorrow":
            return self.snooze(until=tomorrow_morning(self.policy.clock()))
        return self.snooze(SNOOZE_PRESETS[preset])

    def stats_summary(self, now: float | None = None) -> StatsSummary:
        """Jobs per hour (24 h) and per day (7 days), by kind and model, from the store."""
        return self.stats.summary(now)

    def resume(self) -> Hold | None:
        """End a snooze and a manual pause; returns a rule that still holds, if any."""
        if not self.config.auto_enabled:
            self.set_paused(False)
        return self.policy.resume()

    def _policy_changed(self, major: bool) -> None:
        if major and self.loops is not None:
            # Claim as soon as a rule lifts; tell the studio at once (autoEnabled).
            self.loops.wake.set()
            self.loops.heartbeat_now.set()
        self._emit(Event("status"))
        if major:
            self.publish_status_file(force=True)

    def _record_stats(self, event: Event) -> None:
        if event.kind == "finished" and isinstance(event.data, FinishedJob):
            job = event.data
            self.stats.record(job.job_id, job.kind, job.model, job.outcome, job.duration_secs,
                              job.finished_at)

    # -- studio operations ---------------------------------------------------------------
    def capabilities(self) -> Capabilities:
        return capabilities(self)

    async def register(
        self, bootstrap_token: str | None = None, api_base_url: str | None = None
    ) -> Registration:
        """Register (or re-register) with the studio and save the credentials."""
        return await studio.register(self, bootstrap_token, api_base_url)

    def reset_registration(self) -> None:
        """Forget this worker's registration (``register --reset``, Start over)."""
        self.save_config(reset_changes())
        self.state.set_approval(None)
        self.state.set_unauthorised(False)
        self.state.set_error(None)
        get_logger("register").info("registration reset: this PC will ask the studio again")

    async def check_update(self) -> UpdateInfo:
        return await studio.check_update(self)

    async def apply_update(self, can_start: Callable[[], bool]) -> UpdateOutcome:
        """Install the newest release over this bundle when it is newer (see updater)."""
        return await studio.install_update(self, can_start)

    # -- snapshots ------------------------------------------------------------------------
    def status(self) -> StatusSnapshot:
        return status_snapshot(self, self._engine.name if self._engine else self.config.engine)

    def recent_jobs(self) -> list[FinishedJob]:
        return self.state.recent_jobs()

    def link(self) -> Link:
        """This worker runs in this process (see workerlib.control.handle)."""
        return Link(attached=False, connected=True, pid=os.getpid(), version=__version__)

    def log_lines(self) -> list[LogLine]:
        return self.ring.lines()

    def publish_status_file(self, *, running: bool = True, force: bool = False) -> None:
        """Write the live state for ``studio-worker status`` (at most twice a second
        unless forced)."""
        if self._config is not None:
            self._status_file.publish(self, running=running, force=force)

    # -- events -----------------------------------------------------------------------------
    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` (on the event loop) for every change; returns unsubscribe."""
        return self._listeners.subscribe(listener)

    def _emit(self, event: Event) -> None:
        loop = self._loop
        if loop is not None and threading.get_ident() != self._loop_thread:
            with contextlib.suppress(RuntimeError):  # loop closed during shutdown
                loop.call_soon_threadsafe(self._listeners.dispatch, event)
            return
        self._listeners.dispatch(event)

    def _on_log_line(self, line: LogLine) -> None:
        self._emit(Event("log", line))
