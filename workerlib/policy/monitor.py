"""The politeness policy: one object the claim loop asks "may I claim?".

It samples its sources on a small tick (idle time every second while
``only_when_idle`` is on, the process list and GPU health every few seconds) and
evaluates the rules in ``RULE_ORDER``; the first that holds is the one named. A change
calls ``on_change`` (the service wakes the claim loop and sends a heartbeat at once).
Time comes from an injectable clock, so schedules and snoozes are tested without
waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, TypeVar

from workerlib.logs import get_logger
from workerlib.policy.fullscreen import FullscreenProbe, detect_fullscreen_probe
from workerlib.policy.gpu import GpuHealth, GpuSampler, ThermalGuard
from workerlib.policy.hold import Hold, clock_text
from workerlib.policy.idle import IdleSource, Presence, detect_idle_source, presence
from workerlib.policy.processes import ProcessLister, ProcessMatcher, running_programs
from workerlib.policy.schedule import Schedule
from workerlib.policy.snooze import SnoozeStore
from workerlib.runtime.timing import wait_event

if TYPE_CHECKING:
    from workerlib.config import Config

log = get_logger("policy")
TICK_SECS = 1.0
PROCESS_EVERY = 3
"""Ticks between process-list scans (and full-screen checks)."""
GPU_EVERY = 3
IDLE_EVERY_WHEN_OFF = 5
"""Presence is still advertised while ``only_when_idle`` is off, just sampled less often."""
T = TypeVar("T")


@dataclass
class PolicyProbes:
    """Where the policy's facts come from; every one can be replaced in tests."""

    idle: IdleSource | None = None
    processes: ProcessLister | None = None
    fullscreen: FullscreenProbe | None = None
    gpus: GpuSampler | None = None
    clock: Callable[[], float] = time.time
    tick_secs: float = TICK_SECS
    to_thread: bool = True
    """Run the probes in a worker thread (they may block); tests with fakes may not."""


class Policy:
    def __init__(self, config: Callable[[], Config], snooze: SnoozeStore,
                 probes: PolicyProbes | None = None,
                 on_change: Callable[[bool], None] | None = None) -> None:
        """``on_change(hold_or_presence_changed)``: False when only GPU health changed."""
        self._config = config
        self.snooze_store = snooze
        self.probes = probes or PolicyProbes()
        self._on_change = on_change or (lambda _major: None)
        self._idle_source = self.probes.idle
        self._fullscreen_probe = self.probes.fullscreen
        self._processes = self.probes.processes or running_programs
        self._gpu_sampler = self.probes.gpus or GpuSampler()
        self._thermal = ThermalGuard()
        self._schedule_key: tuple[str, ...] | None = None
        self._schedule = Schedule([])
        self._idle: float | None = None
        self._program: str | None = None
        self._fullscreen: str | None = None
        self._gpus: list[GpuHealth] = []
        self._thermal_hold: Hold | None = None
        self._last: tuple[Hold | None, Presence | None] | None = None
        self._ticks = 0
        self._failed: set[str] = set()
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    # -- what the worker asks ----------------------------------------------------------------
    @property
    def clock(self) -> Callable[[], float]:
        return self.probes.clock

    def hold_reason(self, now: float | None = None) -> Hold | None:
        """The first rule that holds claiming now, or None: claim away."""
        return self.evaluate(self.clock() if now is None else now)

    def user_presence(self) -> Presence | None:
        return presence(self._idle, self._config().idle_minutes)

    def gpus(self) -> list[GpuHealth]:
        return list(self._gpus)

    def presence_unknown_reason(self) -> str:
        source = self._idle_source
        return source.unknown_reason if source is not None else ""

    def evaluate(self, now: float) -> Hold | None:
        config = self._config()
        until = self.snooze_store.active_until(now)
        if until is not None:
            return Hold(rule="snooze", text=f"Snoozed until {clock_text(until, now)}", until=until)
        schedule = self._schedule_for(config.schedule)
        if not schedule.always:
            local = datetime.fromtimestamp(now)
            if not schedule.allows(local):
                opening = schedule.next_opening(local)
                at = opening.timestamp() if opening is not None else None
                text = "Outside the schedule" + (f" until {clock_text(at, now)}" if at else "")
                return Hold(rule="schedule", text=text, until=at)
        if config.pause_while_running and self._program:
            return Hold(rule="program", text=f"Paused: a game is running ({self._program})")
        if config.pause_while_fullscreen and self._fullscreen:
            return Hold(rule="fullscreen",
                        text=f"Paused: a full-screen app is in front ({self._fullscreen})")
        if config.only_when_idle:
            if self._idle is None:
                why = self.presence_unknown_reason() or "no idle-time source"
                return Hold(rule="idle", text="Paused: only while you are away, but whether "
                            f"you are here is unknown ({why})")
            if self._idle < config.idle_minutes * 60:
                return Hold(rule="idle", text="Paused: you are using this PC; resumes after "
                            f"{config.idle_minutes:g} min without input")
        return self._thermal_hold

    def _schedule_for(self, lines: list[str]) -> Schedule:
        key = tuple(lines)
        if key != self._schedule_key:
            self._schedule = Schedule(list(lines))  # validated with the config
            self._schedule_key = key
        return self._schedule

    # -- commands ------------------------------------------------------------------------------
    def snooze_until(self, until: float) -> Hold | None:
        self.snooze_store.snooze_until(until)
        return self.check()

    def resume(self) -> Hold | None:
        """End a snooze now (the other rules still hold while their reason lasts)."""
        self.snooze_store.clear()
        return self.check()

    # -- sampling --------------------------------------------------------------------------
    async def _call(self, name: str, fn: Callable[[], T], default: T) -> T:
        try:
            if self.probes.to_thread:
                return await asyncio.to_thread(fn)
            return fn()
        except Exception as exc:  # a broken probe must not stop the worker, nor spam
            if name not in self._failed:
                self._failed.add(name)
                log.warning("cannot read %s: %s", name, exc)
            return default

    async def sample(self) -> None:
        """One round: every probe that is due, then the rules."""
        config = self._config()
        first = self._ticks == 0
        tick = self._ticks
        self._ticks += 1
        idle_every = 1 if config.only_when_idle else IDLE_EVERY_WHEN_OFF
        if first or tick % idle_every == 0:
            if self._idle_source is None:
                self._idle_source = detect_idle_source()
            self._idle = await self._call("the input idle time", self._idle_source.idle_seconds,
                                          None)
        if config.pause_while_running and (first or tick % PROCESS_EVERY == 0):
            matcher = ProcessMatcher(config.pause_while_running)
            empty: list[str] = []
            names = await self._call("the process list", lambda: list(self._processes()),
                                     empty)
            self._program = matcher.match(names)
        elif not config.pause_while_running:
            self._program = None
        if config.pause_while_fullscreen and (first or tick % PROCESS_EVERY == 0):
            if self._fullscreen_probe is None:
                self._fullscreen_probe = detect_fullscreen_probe()
                if self._fullscreen_probe.unsupported_reason:
                    log.info("pause_while_fullscreen cannot work here: %s",
                             self._fullscreen_probe.unsupported_reason)
            self._fullscreen = await self._call(
                "the full-screen window", self._fullscreen_probe.fullscreen_app, None)
        elif not config.pause_while_fullscreen:
            self._fullscreen = None
        gpus_changed = False
        if first or tick % GPU_EVERY == 0:
            none: list[GpuHealth] = []
            gpus = await self._call("GPU health", self._gpu_sampler.sample, none)
            gpus_changed = gpus != self._gpus
            self._gpus = gpus
            self._thermal_hold = self._thermal.update(gpus, config.max_gpu_temp_c,
                                                      config.max_gpu_power_w)
        self.check()
        if gpus_changed and not first:
            self._on_change(False)

    def check(self) -> Hold | None:
        """Evaluate now; log and report a change of the hold or of the presence."""
        hold = self.hold_reason()
        current = (hold, self.user_presence())
        if current != self._last:
            before = self._last[0] if self._last is not None else None
            self._last = current
            if hold is not None and (before is None or before.text != hold.text):
                log.info("not claiming: %s", hold.text)
            elif hold is None and before is not None:
                log.info("claiming allowed again (%s rule lifted)", before.rule)
            self._on_change(True)
        return hold

    # -- lifecycle --------------------------------------------------------------------------
    async def start(self) -> None:
        """Sample once (so the first claim already obeys the rules), then keep sampling."""
        if self._task is not None:
            return
        self._stop = asyncio.Event()
        self._ticks = 0  # a restart samples every source again before the first claim
        await self.sample()
        self._task = asyncio.create_task(self._run(), name="policy")

    async def _run(self) -> None:
        while not self._stop.is_set():
            await wait_event(self._stop, self.probes.tick_secs)
            if self._stop.is_set():
                return
            await self.sample()

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        self._stop.set()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    def close(self) -> None:
        self._gpu_sampler.close()
