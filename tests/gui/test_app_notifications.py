"""Desktop notifications for finished jobs, delivered for real over D-Bus.

A private dbus-daemon and a fake org.freedesktop.Notifications service recording
the Notify calls stand in for the desktop; no X server is needed.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import ServiceFactory
from tests.gui.pilot import StartGui, fake_tray

pytestmark = [
    pytest.mark.gui,
    pytest.mark.skipif(shutil.which("dbus-daemon") is None, reason="needs dbus-daemon"),
]

IMAGE = {"kind": "image", "prompt": "a stone golem", "width": 64, "height": 64}
TOO_LARGE = {"kind": "image", "prompt": "a titan", "width": 8192, "height": 8192}


@pytest.fixture(scope="module")
def desktop_notifications(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The fake notification service on a private session bus, for this module.

    Module-wide because dbus-python keeps one session-bus connection per process.
    """
    # plyer reports delivery failures only through dbus-python.
    pytest.importorskip("dbus", reason="needs dbus-python")
    pytest.importorskip("dbus_fast", reason="needs dbus-fast")
    from tests.gui.dbus_session import FakeNotificationService, SessionBus

    bus = SessionBus(tmp_path_factory.mktemp("bus"))
    saved = os.environ.get("DBUS_SESSION_BUS_ADDRESS")
    os.environ["DBUS_SESSION_BUS_ADDRESS"] = bus.address
    service = FakeNotificationService(bus.address)
    try:
        service.start()
        yield service
    finally:
        service.close()
        bus.close()
        if saved is None:
            os.environ.pop("DBUS_SESSION_BUS_ADDRESS", None)
        else:
            os.environ["DBUS_SESSION_BUS_ADDRESS"] = saved


async def test_finished_jobs_notify_as_the_config_tab_says(
    studio: Any, make_service: ServiceFactory, start_gui: StartGui,
    desktop_notifications: Any,
) -> None:
    calls = desktop_notifications.calls
    calls.clear()
    service = await make_service()
    pilot = await start_gui(service, tray_factory=fake_tray())
    sender = pilot.app.notifications.sender  # type: ignore[union-attr]

    def finished(*jobs: str) -> bool:
        return all(studio.jobs[job].status in ("completed", "failed") for job in jobs)

    # Both off by default.
    first = studio.enqueue(model="synthetic", task=IMAGE)
    await studio.wait_for(lambda: finished(first), timeout=10)

    # Failures only, switched on in the Config tab.
    screen = await pilot.switch_tab("config")
    await pilot.click(screen.rows["notify_on_failure"].ids.input)
    await pilot.click(screen.ids.save_button)
    await pilot.wait_for(lambda: service.config.notify_on_failure, 3, "the saved toggle")
    ok = studio.enqueue(model="synthetic", task=IMAGE)
    bad = studio.enqueue(model="synthetic", task=TOO_LARGE)
    await studio.wait_for(lambda: finished(ok, bad), timeout=10)
    assert studio.jobs[bad].status == "failed"
    await pilot.wait_for(lambda: calls, 5, "a notification")
    await asyncio.to_thread(sender.wait_idle, 5)
    assert [call.summary for call in calls] == ["Job failed"]
    call = calls[0]
    assert call.app_name == "Studio Worker"
    body, reason = call.body.split("\n", 1)
    assert body == "image · synthetic"
    assert "is too large for the synthetic engine" in reason
    assert call.expire_timeout == 10_000

    # Completions too.
    await pilot.click(screen.rows["notify_on_completion"].ids.input)
    await pilot.click(screen.ids.save_button)
    await pilot.wait_for(lambda: service.config.notify_on_completion, 3, "the saved toggle")
    done = studio.enqueue(model="synthetic", task=IMAGE)
    await studio.wait_for(lambda: finished(done), timeout=10)
    await pilot.wait_for(lambda: len(calls) == 2, 5, "the second notification")
    assert (calls[1].summary, calls[1].body) == ("Job completed", "image · synthetic")

    # No notification service: one warning, and the worker carries on.
    desktop_notifications.stop()
    lost = [studio.enqueue(model="synthetic", task=IMAGE) for _ in range(2)]
    await studio.wait_for(lambda: finished(*lost), timeout=10)
    assert all(studio.jobs[job].status == "completed" for job in lost)
    await pilot.wait_for(lambda: sender.failed == 2, 5, "two failed deliveries")
    warnings = [line for line in service.log_lines()
                if line.category == "notify" and line.level == "warn"]
    assert len(warnings) == 1, warnings
    assert "could not show a desktop notification" in warnings[0].message
    assert "org.freedesktop.Notifications" in warnings[0].message
    assert len(calls) == 2

    # Back again: delivered, and the log says so.
    desktop_notifications.start()
    again = studio.enqueue(model="synthetic", task=IMAGE)
    await studio.wait_for(lambda: finished(again), timeout=10)
    await pilot.wait_for(lambda: len(calls) == 3, 5, "the notification after recovery")
    assert any(line.message == "desktop notifications work again"
               for line in service.log_lines())
    assert sender.delivered == 3
