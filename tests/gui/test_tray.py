"""The tray icon's rules without a desktop: which icon, which tooltip, which labels.

No kivy and no pystray here: these run without the 'ui' extra and are not marked gui.
"""

from __future__ import annotations

import logging
import sys
import threading
from typing import Any

import pytest

from app.tray import (
    COLOURS,
    OPEN_LABEL,
    QUIT_LABEL,
    TOOLTIP_LIMIT,
    PystrayTray,
    TrayCommands,
    draw_icon,
    icon_variant,
    missing_tray_host,
    pause_label,
    pick_backend,
    tooltip,
    tray_state,
)
from tests.gui.test_viewmodels import NOW, snapshot
from workerlib.runtime.state import Connection, CurrentJob, HeartbeatInfo


def job(progress: float | None = None) -> CurrentJob:
    return CurrentJob(job_id="j-1", kind="image", model="sdxl", prompt_preview="a golem",
                      started_at=NOW - 30, progress=progress)


@pytest.mark.parametrize(("changes", "variant"), [
    ({}, "idle"),
    ({"paused": True}, "idle"),
    ({"current_job": job(0.4), "busy": True}, "busy"),
    ({"current_job": job(0.4), "paused": True}, "busy"),
    # The last heartbeat failed, even a moment ago and with a job running.
    ({"last_heartbeat": HeartbeatInfo(ok=False, at=NOW - 1, error="503")}, "disconnected"),
    ({"last_heartbeat": HeartbeatInfo(ok=False, at=NOW - 1), "current_job": job()},
     "disconnected"),
    # Older than 3 intervals (5 s here) is stale; 3 intervals is not yet.
    ({"last_heartbeat": HeartbeatInfo(ok=True, at=NOW - 16), "last_ok_heartbeat_at": NOW - 16},
     "disconnected"),
    ({"last_heartbeat": HeartbeatInfo(ok=True, at=NOW - 15), "last_ok_heartbeat_at": NOW - 15},
     "idle"),
    ({"connection": Connection.UNAUTHORISED}, "disconnected"),
    ({"connection": Connection.NOT_REGISTERED, "registered": False}, "disconnected"),
    # Waiting for the first heartbeat: fine for 3 intervals after the start.
    ({"last_heartbeat": None, "last_ok_heartbeat_at": None, "started_at": NOW - 10}, "idle"),
    ({"last_heartbeat": None, "last_ok_heartbeat_at": None, "started_at": NOW - 20},
     "disconnected"),
])
def test_icon_variant(changes: dict[str, Any], variant: str) -> None:
    assert icon_variant(snapshot(**changes), NOW) == variant


def test_tooltip_names_the_state_the_job_and_its_progress() -> None:
    assert tooltip(snapshot(), NOW) == "Studio Worker: idle"
    assert tooltip(snapshot(paused=True), NOW) == "Studio Worker: idle, paused"
    busy = snapshot(current_job=job(0.426), busy=True)
    assert tooltip(busy, NOW) == "Studio Worker: busy\nimage · sdxl · 43%"
    assert tooltip(snapshot(current_job=job(), busy=True), NOW) == \
        "Studio Worker: busy\nimage · sdxl"
    failed = snapshot(last_heartbeat=HeartbeatInfo(ok=False, at=NOW - 1, error="503"))
    assert tooltip(failed, NOW) == "Studio Worker: disconnected (the last heartbeat failed)"
    refused = snapshot(connection=Connection.UNAUTHORISED, paused=True)
    assert tooltip(refused, NOW) == \
        "Studio Worker: disconnected (the studio refused the token), paused"
    long = snapshot(current_job=job(0.5).model_copy(update={"model": "m" * 300}), busy=True)
    text = tooltip(long, NOW)
    assert len(text) == TOOLTIP_LIMIT and text.endswith("…")


def test_menu_labels_follow_the_pause_state() -> None:
    assert pause_label(False) == "Pause claiming"
    assert pause_label(True) == "Resume claiming"
    assert tray_state(snapshot(paused=True), NOW).pause_label == "Resume claiming"
    assert (OPEN_LABEL, QUIT_LABEL) == ("Open Window", "Quit")


def test_three_icons_in_three_colours_with_different_marks() -> None:
    images = {variant: draw_icon(variant) for variant in COLOURS}
    for variant, image in images.items():
        assert image.size == (64, 64) and image.mode == "RGBA"
        pixels = [image.getpixel((x, y)) for x in range(64) for y in range(64)]
        assert pixels[0][3] == 0, "the corners are transparent"
        # Most of the disc is the variant's colour; the mark in the middle is white.
        near = sum(1 for pixel in pixels if pixel[3] == 255 and
                   all(abs(a - b) <= 8 for a, b in zip(pixel[:3], COLOURS[variant],
                                                       strict=True)))
        assert near > 64 * 64 // 3, variant
        whites = [pixel for pixel in pixels if pixel[:3] == (255, 255, 255)]
        assert len(whites) > 20, variant
    marks = {variant: image.convert("L").point(lambda v: 255 if v > 240 else 0).tobytes()
             for variant, image in images.items()}
    assert len(set(marks.values())) == 3, "the marks differ, not only the colours"


def test_appindicator_only_with_a_status_notifier_host() -> None:
    def host(answer: bool) -> Any:
        return lambda: answer

    assert pick_backend("appindicator", None, host(True)) == "appindicator"
    # An XEmbed tray (XFCE, MATE, trayer): gtk's icon has a tooltip and a left click.
    assert pick_backend("appindicator", None, host(False)) == "gtk"
    assert pick_backend("appindicator", "appindicator", host(False)) == "appindicator"
    for other in ("gtk", "xorg", "win32", "darwin"):
        assert pick_backend(other, None, host(True)) == other


def test_no_tray_host_is_detected_and_named() -> None:
    def host(answer: bool) -> Any:
        return lambda: answer

    # Stock GNOME: neither a StatusNotifier watcher nor an XEmbed tray.
    reason = missing_tray_host("linux", host(False), host(False))
    assert reason is not None and "no tray host" in reason
    assert missing_tray_host("linux", host(True), host(False)) is None  # KDE, AppIndicator
    assert missing_tray_host("linux", host(False), host(True)) is None  # XFCE, trayer
    assert missing_tray_host("win32", host(False), host(False)) is None
    assert missing_tray_host("darwin", host(False), host(False)) is None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="X11")
def test_the_xembed_tray_is_seen_only_where_one_runs(tmp_path: Any) -> None:
    from app.tray import xembed_tray_host
    from tests.gui import xdesktop

    reason = xdesktop.missing()
    if reason is not None:
        pytest.skip(reason)
    desk = xdesktop.XDesktop(tmp_path / "desktop")  # Xvfb + trayer
    try:
        assert xembed_tray_host(desk.display)
        desk.close_tray()
        assert not xembed_tray_host(desk.display)
    finally:
        desk.close()
    assert not xembed_tray_host(":65000")  # no such display: no tray either


@pytest.mark.skipif(not sys.platform.startswith("linux"),
                    reason="elsewhere pystray needs no display to start")
def test_a_tray_that_cannot_start_logs_one_warning_and_says_so(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No display in this process: every pystray backend fails to load.
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    called: list[str] = []
    tray = PystrayTray(TrayCommands(lambda: called.append("open"),
                                    lambda: called.append("pause"), lambda: called.append("q")))
    caplog.set_level(logging.INFO, logger="workerlib")
    tray.start()
    assert tray.wait(30) is False  # it gives up rather than waiting for a display
    assert tray.failed and not tray.available
    tray.show(tray_state(snapshot(), NOW))  # harmless
    tray.stop()
    warnings = [r for r in caplog.records if r.name == "workerlib.tray"]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
    assert "no tray icon" in warnings[0].getMessage()
    assert "minimise" in warnings[0].getMessage()
    assert called == []
    assert not [t for t in threading.enumerate() if t.name.startswith("tray") and
                not t.daemon], "no thread of the tray may keep the process alive"
