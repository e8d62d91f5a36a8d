"""Each politeness rule end to end: the real worker loops against the local studio, with
fakes only for what cannot run here (the person's input, the wall clock, an NVIDIA GPU).

Every wait is on something observable (a studio record, the status snapshot, the claim
loop's idle event) with a generous cap; nothing depends on how fast the machine is.
"""

from __future__ import annotations

import shutil
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any

from tests.conftest import ServiceFactory
from tests.fakes.nvml import FakeGpu, FakeNvml
from tests.fakes.presence import FakeClock, FakeIdle
from workerlib import cli
from workerlib.policy import GpuSampler, PolicyProbes
from workerlib.policy.fullscreen import NoFullscreenProbe
from workerlib.runtime.loops import WorkerLoops

WAIT = 30.0
IMAGE = {"kind": "image", "prompt": "a polite golem", "width": 32, "height": 32}


def probes(**overrides: Any) -> PolicyProbes:
    settings: dict[str, Any] = {
        "idle": FakeIdle(3600.0), "processes": lambda: [],
        "fullscreen": NoFullscreenProbe("test"), "gpus": GpuSampler(FakeNvml([])),
        "tick_secs": 0.02, "to_thread": False,
    }
    settings.update(overrides)
    return PolicyProbes(**settings)


async def a_held_round(studio: Any, loops: WorkerLoops) -> None:
    """Wait until the claim loop has been round once more (a held round sets ``idle``)."""
    loops.idle.clear()
    await studio.wait_for(loops.idle.is_set, WAIT)


async def start_held(studio: Any, make_service: ServiceFactory, policy_probes: PolicyProbes,
                     **config: Any) -> tuple[Any, WorkerLoops, str]:
    """A job queued, the worker started under a rule that holds: one held round done."""
    job = studio.enqueue(model="synthetic", task=IMAGE)
    service = await make_service(policy_probes=policy_probes, **config)
    loops = await service.start()
    await a_held_round(studio, loops)
    return service, loops, job


async def test_only_when_away_holds_until_the_person_leaves(
    studio: Any, make_service: ServiceFactory
) -> None:
    idle = FakeIdle(5.0)
    job = studio.enqueue(model="synthetic", task=IMAGE)
    service = await make_service(only_when_idle=True, idle_minutes=5,
                                 policy_probes=probes(idle=idle))
    loops = await service.start()
    worker = studio.workers[service.config.worker_id]
    await studio.wait_for(lambda: worker.heartbeats >= 1, WAIT)
    await a_held_round(studio, loops)
    assert worker.claims == 0 and studio.jobs[job].status == "queued"
    caps = worker.capabilities
    assert caps["autoEnabled"] is False and caps["onlyWhenIdle"] is True
    assert caps["userPresence"] == "active"
    status = service.status()
    assert status.hold is not None and status.hold.rule == "idle" and status.label == "Paused"
    assert status.user_presence == "active"

    idle.idle = 301.0  # five minutes without input: away
    await studio.wait_for(lambda: studio.jobs[job].status == "completed", WAIT)
    await studio.wait_for(lambda: worker.capabilities.get("userPresence") == "idle", WAIT)
    assert worker.capabilities["autoEnabled"] is True

    idle.idle = 0.2  # back at the keyboard: claiming stops at the next sample
    await studio.wait_for(lambda: service.status().hold is not None, WAIT)
    await a_held_round(studio, loops)
    second = studio.enqueue(model="synthetic", task=IMAGE)
    await a_held_round(studio, loops)
    assert studio.jobs[second].status == "queued"
    await studio.wait_for(lambda: worker.capabilities["autoEnabled"] is False, WAIT)


async def test_a_listed_program_holds_while_it_runs(
    studio: Any, make_service: ServiceFactory, tmp_path: Path
) -> None:
    game = tmp_path / "eldenring.exe"
    shutil.copy(shutil.which("sleep") or "/bin/sleep", game)
    child = subprocess.Popen([str(game), "600"])
    try:
        service, _loops, job = await start_held(
            studio, make_service, probes(processes=None),
            pause_while_running=["EldenRing.exe", "notepad*"])
        hold = service.status().hold
        assert hold is not None and hold.text == "Paused: a game is running (eldenring.exe)"
        assert studio.jobs[job].status == "queued"
        child.kill()
        child.wait()
        await studio.wait_for(lambda: studio.jobs[job].status == "completed", WAIT)
        assert service.status().hold is None
    finally:
        child.kill()
        child.wait()


class FakeFullscreen:
    unsupported_reason = ""

    def __init__(self) -> None:
        self.app: str | None = "ELDEN RING"

    def fullscreen_app(self) -> str | None:
        return self.app


async def test_a_full_screen_app_in_front_holds(
    studio: Any, make_service: ServiceFactory
) -> None:
    front = FakeFullscreen()
    service, _loops, job = await start_held(studio, make_service, probes(fullscreen=front),
                                            pause_while_fullscreen=True)
    hold = service.status().hold
    assert hold is not None and hold.text == "Paused: a full-screen app is in front (ELDEN RING)"
    assert studio.jobs[job].status == "queued"
    front.app = None  # back to the desktop
    await studio.wait_for(lambda: studio.jobs[job].status == "completed", WAIT)


async def test_a_snooze_survives_a_restart_and_the_cli_reaches_a_running_worker(
    studio: Any, make_service: ServiceFactory
) -> None:
    first = await make_service()
    await first.start()
    hold = first.snooze(3600)
    assert hold is not None and hold.rule == "snooze" and hold.text.startswith("Snoozed until ")
    paths = first.paths
    await first.close()

    job = studio.enqueue(model="synthetic", task=IMAGE)
    again = await make_service(register=False, policy_probes=probes())
    loops = await again.start()
    await a_held_round(studio, loops)
    status = again.status()
    assert status.hold is not None and status.hold.rule == "snooze"
    assert studio.jobs[job].status == "queued"
    assert cli.cmd_resume(paths) == 0  # what `studio-worker resume` runs
    await studio.wait_for(lambda: studio.jobs[job].status == "completed", WAIT)

    assert cli.cmd_pause(paths, "2h", until_tomorrow=False) == 0
    await studio.wait_for(lambda: again.status().hold is not None, WAIT)
    assert again.status().hold.rule == "snooze"  # type: ignore[union-attr]
    assert cli.cmd_pause(paths, "soon", until_tomorrow=False) == 2


async def test_a_schedule_holds_outside_its_windows(
    studio: Any, make_service: ServiceFactory
) -> None:
    clock = FakeClock(datetime(2026, 11, 25, 12, 0).timestamp())  # a Wednesday, local time
    service, _loops, job = await start_held(studio, make_service, probes(clock=clock),
                                            schedule=["mon-fri 18:00-08:00", "sat-sun all"])
    hold = service.status().hold
    assert hold is not None and hold.text == "Outside the schedule until 18:00"
    assert hold.until == datetime(2026, 11, 25, 18, 0).timestamp()
    assert studio.jobs[job].status == "queued"
    clock.now = datetime(2026, 11, 25, 18, 0).timestamp()
    await studio.wait_for(lambda: studio.jobs[job].status == "completed", WAIT)


async def test_heat_and_power_limits_with_hysteresis(
    studio: Any, make_service: ServiceFactory
) -> None:
    gpu = FakeGpu(temperature=90, power_mw=200_000)
    service, loops, job = await start_held(studio, make_service,
                                           probes(gpus=GpuSampler(FakeNvml([gpu]))),
                                           max_gpu_temp_c=80, max_gpu_power_w=300)
    hold = service.status().hold
    assert hold is not None and hold.rule == "heat" and "90 °C" in hold.text
    gpu.temperature = 78  # below the limit, not yet 5 °C below: still held

    def sampled(temp: float) -> bool:
        gpus = service.status().gpus
        return bool(gpus) and gpus[0].temperature_c == temp

    await studio.wait_for(lambda: sampled(78), WAIT)
    await a_held_round(studio, loops)
    assert service.status().hold is not None and studio.jobs[job].status == "queued"
    gpu.temperature = 74
    await studio.wait_for(lambda: studio.jobs[job].status == "completed", WAIT)

    gpu.power_mw = 350_000
    await studio.wait_for(lambda: service.status().hold is not None, WAIT)
    hold = service.status().hold
    assert hold is not None and hold.rule == "power" and "350 W" in hold.text
    gpu.power_mw = 260_000
    await studio.wait_for(lambda: service.status().hold is None, WAIT)
    status = service.status()
    assert status.gpus[0].power_w == 260 and status.gpus[0].name == "NVIDIA GeForce RTX 4090"


async def test_a_v2_offer_while_a_rule_holds_is_rejected_as_paused(
    studio: Any, make_service: ServiceFactory
) -> None:
    clock = FakeClock(datetime(2026, 11, 25, 12, 0).timestamp())  # Wednesday noon
    service = await make_service(protocol="v2", schedule=["mon-fri 18:00-08:00"],
                                 policy_probes=probes(clock=clock))
    await service.start()
    job = studio.enqueue(model="synthetic", task=IMAGE)
    await studio.wait_for(lambda: studio.jobs[job].rejects, WAIT)
    reject = studio.jobs[job].rejects[0]
    assert reject["code"] == "paused" and studio.jobs[job].status == "queued"
    caps = studio.workers[service.config.worker_id].capabilities
    assert caps["autoEnabled"] is False and caps["onlyWhenIdle"] is False
    clock.now = datetime(2026, 11, 25, 18, 0).timestamp()  # the evening window opens
    await studio.wait_for(lambda: studio.jobs[job].status == "completed", WAIT)
