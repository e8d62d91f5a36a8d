"""The real app: the Stats tab's chart over real jobs, snoozing from the Status tab and
from the tray, and GPU health on the Status tab."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import ServiceFactory
from tests.fakes.nvml import FakeGpu, FakeNvml
from tests.fakes.presence import FakeIdle
from tests.gui.pilot import StartGui, fake_tray
from workerlib.policy import GpuSampler, PolicyProbes
from workerlib.policy.fullscreen import NoFullscreenProbe

pytestmark = pytest.mark.gui
IMAGE = {"kind": "image", "prompt": "a chart golem", "width": 32, "height": 32}


def probes() -> PolicyProbes:
    return PolicyProbes(idle=FakeIdle(3600.0), processes=lambda: [],
                        fullscreen=NoFullscreenProbe("test"),
                        gpus=GpuSampler(FakeNvml([FakeGpu(temperature=66)])), tick_secs=0.05,
                        to_thread=False)


async def test_stats_tab_charts_real_jobs_and_redraws_only_on_new_data(
    studio: Any, make_service: ServiceFactory, start_gui: StartGui
) -> None:
    for _ in range(3):
        studio.enqueue(model="synthetic", task=IMAGE)
    studio.enqueue(model="synthetic-llm", task={"kind": "llm", "messages": [
        {"role": "user", "content": "lore"}]})
    service = await make_service(policy_probes=probes())
    pilot = await start_gui(service)
    await pilot.wait_for(lambda: service.status().jobs_completed == 4, 30, "four jobs")
    screen = await pilot.switch_tab("stats")
    await pilot.settle()
    text = pilot.screen_text()
    assert "4 completed · 0 failed" in text
    assert "image · synthetic   3 completed · 0 failed" in text
    assert "llm · synthetic-llm   1 completed · 0 failed" in text
    chart = screen.ids.day_chart
    assert sum(c for c, _f in chart.bars) == 4
    drawn = chart.draw_count
    for _ in range(3):  # refreshes and clock ticks with the same numbers draw nothing
        screen.refresh()
        pilot.app._tick(1.0)
        await pilot.frames(2)
    assert chart.draw_count == drawn
    studio.enqueue(model="synthetic", task=IMAGE)
    await pilot.wait_for(lambda: sum(c for c, _f in chart.bars) == 5, 30, "the fifth job")
    assert chart.draw_count > drawn


async def test_snooze_from_the_status_tab_and_the_tray(
    studio: Any, make_service: ServiceFactory, start_gui: StartGui
) -> None:
    service = await make_service(policy_probes=probes())
    pilot = await start_gui(service, tray_factory=fake_tray())
    ids = pilot.ids("status")
    await pilot.wait_for(lambda: "GPU 0 NVIDIA GeForce RTX 4090" in pilot.screen_text(), 10,
                         "GPU health")
    assert "66 °C" in pilot.screen_text()
    await pilot.click(ids.snooze_1h)
    await pilot.wait_for(lambda: "Snoozed until" in pilot.texts(ids.badge)[0], 10, "the badge")
    assert "Snoozed until" in pilot.app.tray.state.tooltip
    job = studio.enqueue(model="synthetic", task=IMAGE)
    await pilot.click(ids.resume_button)
    await studio.wait_for(lambda: studio.jobs[job].status == "completed", 30)
    pilot.app.tray.snooze("tomorrow")
    await pilot.wait_for(lambda: service.status().hold is not None, 10, "the tray's snooze")
    assert service.status().hold.rule == "snooze"  # type: ignore[union-attr]
    pilot.app.tray.snooze("resume")
    await pilot.wait_for(lambda: service.status().hold is None, 10, "resume from the tray")
