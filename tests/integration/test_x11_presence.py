"""The X11 sources for real: a private Xvfb (its own display number), xdotool input, and
a window carrying the window manager's full-screen state."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.nvml import FakeNvml
from workerlib.config import Config
from workerlib.policy import GpuSampler, Policy, PolicyProbes, SnoozeStore
from workerlib.policy.fullscreen import X11FullscreenProbe, detect_fullscreen_probe
from workerlib.policy.idle import X11IdleSource, detect_idle_source

pytestmark = pytest.mark.skipif(
    not (shutil.which("Xvfb") and shutil.which("xdotool")),
    reason="needs Xvfb and xdotool (scripts/_gui_setup.sh installs them)")


@pytest.fixture
def display() -> Iterator[str]:
    yield from _xvfb("640x480")


@pytest.fixture
def wide_display() -> Iterator[str]:
    yield from _xvfb("1280x480")


def _xvfb(size: str) -> Iterator[str]:
    read, write = os.pipe()
    # -noreset: an X server without clients resets itself, and its idle timer with it (a
    # desktop always has clients; this one has only our short-lived connections).
    server = subprocess.Popen(["Xvfb", "-displayfd", str(write), "-screen", "0", f"{size}x24",
                               "-nolisten", "tcp", "-noreset"], pass_fds=(write,),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write)
    with os.fdopen(read) as pipe:
        number = pipe.readline().strip()
    try:
        assert number, "Xvfb did not start"
        yield f":{number}"
    finally:
        server.terminate()
        server.wait()


def xdotool(display: str, *args: str) -> None:
    subprocess.run(["xdotool", *args], check=True, env={**os.environ, "DISPLAY": display})


def until(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met"
        time.sleep(0.02)


def test_x11_idle_time_follows_real_input(display: str) -> None:
    source = detect_idle_source({"DISPLAY": display}, "linux")
    assert isinstance(source, X11IdleSource), source.unknown_reason
    until(lambda: (source.idle_seconds() or 0) >= 0.5)
    xdotool(display, "mousemove", "100", "100")
    until(lambda: (source.idle_seconds() or 99) < 0.5)
    xdotool(display, "key", "space")
    assert source.idle_seconds() is not None


def test_no_x_server_means_presence_unknown(tmp_path: Path) -> None:
    source = X11IdleSource(":9999")  # never a server here: the socket does not exist
    if Path("/tmp/.X11-unix/X9999").exists():
        pytest.skip("a display :9999 exists on this machine")
    assert source.idle_seconds() is None
    assert "cannot open" in source.unknown_reason


async def test_input_holds_claiming_through_the_policy(display: str, tmp_path: Path) -> None:
    config = Config(only_when_idle=True, idle_minutes=0.5)
    changes: list[bool] = []
    probes = PolicyProbes(idle=X11IdleSource(display), processes=lambda: [],
                          gpus=GpuSampler(FakeNvml([])))
    policy = Policy(lambda: config, SnoozeStore(tmp_path / "snooze.json"), probes,
                    changes.append)
    xdotool(display, "mousemove", "5", "5")
    await policy.sample()
    hold = policy.hold_reason()
    assert hold is not None and hold.rule == "idle" and "using this PC" in hold.text
    assert policy.user_presence() == "active"


def test_full_screen_window_in_front(display: str) -> None:
    from Xlib import X, Xatom
    from Xlib import display as xdisplay

    probe = detect_fullscreen_probe({"DISPLAY": display}, "linux")
    assert isinstance(probe, X11FullscreenProbe)
    assert probe.fullscreen_app() is None  # no active window at all
    dpy = xdisplay.Display(display)
    try:
        root = dpy.screen().root
        window = root.create_window(0, 0, 640, 480, 0, X.CopyFromParent)
        utf8 = dpy.intern_atom("UTF8_STRING")
        window.change_property(dpy.intern_atom("_NET_WM_NAME"), utf8, 8, b"ELDEN RING")
        state = dpy.intern_atom("_NET_WM_STATE")
        window.change_property(state, Xatom.ATOM, 32,
                               [dpy.intern_atom("_NET_WM_STATE_FULLSCREEN")])
        active = dpy.intern_atom("_NET_ACTIVE_WINDOW")
        root.change_property(active, Xatom.WINDOW, 32, [window.id])
        dpy.sync()
        assert probe.fullscreen_app() == "ELDEN RING"
        window.change_property(state, Xatom.ATOM, 32, [])  # back to a normal window
        dpy.sync()
        assert probe.fullscreen_app() is None
        window.change_property(state, Xatom.ATOM, 32,
                               [dpy.intern_atom("_NET_WM_STATE_FULLSCREEN")])
        window.destroy()  # the property still names it: the probe must not fall over
        dpy.sync()
        assert probe.fullscreen_app() is None
    finally:
        dpy.close()


def _set_monitor(dpy: Any, name: str, x: int, *, primary: bool) -> None:
    """Define a 640×480 RandR 1.5 monitor at ``x`` (what ``xrandr --setmonitor`` does;
    python-xlib's own SetMonitor cannot pack its monitor field)."""
    from Xlib.ext import randr
    from Xlib.protocol import rq

    class MonitorField(rq.ValueField):
        structcode = None

        def pack_value(self, val: Any) -> tuple[bytes, None, None]:
            return randr.MonitorInfo.to_binary(**val), None, None

    class SetMonitor(rq.Request):
        _request = rq.Struct(rq.Card8("opcode"), rq.Opcode(43), rq.RequestLength(),
                             rq.Window("window"), MonitorField("monitor_info"))

    root = dpy.screen().root
    SetMonitor(display=dpy.display, opcode=dpy.display.get_extension_major(randr.extname),
               window=root, monitor_info={
                   "name": dpy.intern_atom(name), "primary": primary, "automatic": False,
                   "x": x, "y": 0, "width_in_pixels": 640, "height_in_pixels": 480,
                   "width_in_millimeters": 340, "height_in_millimeters": 255, "crtcs": []})
    dpy.sync()


def test_a_full_screen_window_counts_only_on_the_primary_monitor(wide_display: str) -> None:
    from Xlib import X, Xatom
    from Xlib import display as xdisplay

    probe = detect_fullscreen_probe({"DISPLAY": wide_display}, "linux")
    dpy = xdisplay.Display(wide_display)
    try:
        _set_monitor(dpy, "DESK", 0, primary=True)
        _set_monitor(dpy, "TV", 640, primary=False)
        root = dpy.screen().root
        # A film full screen on the second monitor while the person works on the first.
        window = root.create_window(640, 0, 640, 480, 0, X.CopyFromParent)
        window.change_property(dpy.intern_atom("WM_NAME"), Xatom.STRING, 8, b"film")
        window.change_property(dpy.intern_atom("_NET_WM_STATE"), Xatom.ATOM, 32,
                               [dpy.intern_atom("_NET_WM_STATE_FULLSCREEN")])
        root.change_property(dpy.intern_atom("_NET_ACTIVE_WINDOW"), Xatom.WINDOW, 32,
                             [window.id])
        dpy.sync()
        assert probe.fullscreen_app() is None
        window.configure(x=0)  # the same window moved to the primary monitor
        dpy.sync()
        assert probe.fullscreen_app() == "film"
    finally:
        dpy.close()
