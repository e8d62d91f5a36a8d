"""The built bundle, run for real: --version, the headless demo, the headless worker
(which must never load Kivy or SDL), the window offscreen, the tray menu and a desktop
notification on a small X desktop, the release tarball's installer, and a self-update
of the frozen executable."""

from __future__ import annotations

import asyncio
import io
import os
import re
import shutil
import signal
import subprocess
import tarfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.conftest import BOOTSTRAP
from workerlib import __version__
from workerlib.config import ConfigStore
from workerlib.updater import CHECKSUMS_ASSET, artefact_for, sha256sums_text

REPO = Path(__file__).resolve().parents[2]
GUI_LIBS = re.compile(r"libSDL2|/kivy/|libGL|libEGL")


def run(bundle: Path, *args: str, timeout: float = 120,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(bundle), *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (a one-file bundle runs its code in a child)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            with open(task) as f:
                todo += [int(c) for c in f.read().split()]
    return found


def mapped_files(pid: int) -> set[str]:
    files: set[str] = set()
    for member in process_tree(pid):
        try:
            with open(f"/proc/{member}/maps") as f:
                files |= {line.split()[-1] for line in f if "/" in line}
        except OSError:
            pass
    return files


def write_config(path: Path, studio_url: str, **extra: Any) -> Path:
    ConfigStore(path).update({
        "api_base_url": studio_url, "bootstrap_token": BOOTSTRAP,
        "heartbeat_interval_secs": 0.5, "claim_interval_secs": 0.2,
        "auto_update_enabled": False, **extra,
    })
    return path


async def stop(proc: asyncio.subprocess.Process, timeout: float = 20) -> tuple[int, str]:
    proc.send_signal(signal.SIGTERM)
    _, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, err.decode(errors="replace")


# -- one-shot commands ---------------------------------------------------------------------------
def test_version(bundle: Path) -> None:
    started = time.monotonic()
    result = run(bundle, "--version")
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"studio-worker {__version__}"
    print(f"--version took {elapsed:.2f} s")


def test_headless_demo_completes_jobs(bundle: Path) -> None:
    started = time.monotonic()
    result = run(bundle, "demo", "--headless", "--jobs", "5")
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stdout + result.stderr
    assert "5/5 jobs completed" in result.stdout
    assert "Traceback" not in result.stderr
    print(f"demo --headless --jobs 5 took {elapsed:.2f} s")


# -- the long-running modes ----------------------------------------------------------------------
async def test_headless_worker_never_loads_the_gui(bundle: Path, studio: Any,
                                                   tmp_path: Path) -> None:
    config = write_config(tmp_path / "config.toml", studio.url)
    for _ in range(3):
        studio.enqueue(model="synthetic", prompt="a lighthouse")
    proc = await asyncio.create_subprocess_exec(
        str(bundle), "--config", str(config), "--headless",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        await studio.wait_for(lambda: studio.counts().get("completed", 0) == 3, timeout=60)
        loaded = sorted(f for f in mapped_files(proc.pid) if GUI_LIBS.search(f))
        assert loaded == []
    finally:
        code, err = await stop(proc)
    assert code == 0, err
    assert "Traceback" not in err


async def test_window_starts_offscreen_and_quits_cleanly(bundle: Path, studio: Any,
                                                         tmp_path: Path) -> None:
    config = write_config(tmp_path / "config.toml", studio.url)
    studio.enqueue(model="synthetic", prompt="a window")
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env.update(SDL_VIDEODRIVER="offscreen", KIVY_HOME=str(tmp_path / "kivy"))
    proc = await asyncio.create_subprocess_exec(
        str(bundle), "--config", str(config), env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        await studio.wait_for(lambda: studio.counts().get("completed", 0) == 1, timeout=60)
        loaded = mapped_files(proc.pid)
        assert any("libSDL2" in f for f in loaded), "no window: SDL was never loaded"
        await asyncio.sleep(1.0)  # a few frames with the finished job on screen
        assert proc.returncode is None, "the window closed by itself"
    finally:
        code, err = await stop(proc)
    assert code == 0, err
    assert "without a window" not in err, err
    assert "Traceback" not in err, err


# -- the release tarball's installer --------------------------------------------------------------
def release_tarball() -> Path | None:
    artefact = artefact_for("linux")
    path = REPO / "dist" / "release" / artefact.name if artefact else None
    return path if path is not None and path.is_file() else None


@pytest.mark.skipif(release_tarball() is None, reason="no dist/release tarball")
def test_release_tarball_installs_and_uninstalls(tmp_path: Path) -> None:
    tarball = release_tarball()
    assert tarball is not None
    home = tmp_path / "home dir"
    home.mkdir()
    env = {"HOME": str(home), "PATH": os.environ["PATH"]}
    unpacked = tmp_path / "unpacked"
    unpacked.mkdir()
    with tarfile.open(tarball) as tar:
        tar.extractall(unpacked, filter="data")
    script = unpacked / "StudioWorker" / "install.sh"
    result = subprocess.run([str(script), "--autostart"], capture_output=True, text=True,
                            env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    link = home / ".local" / "bin" / "studio-worker"
    assert subprocess.run([str(link), "--version"], capture_output=True, text=True,
                          timeout=60).stdout.strip() == f"studio-worker {__version__}"
    uninstall = home / ".local" / "opt" / "studio-worker" / "uninstall.sh"
    result = subprocess.run([str(uninstall)], capture_output=True, text=True, env=env,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert not link.exists() and not (home / ".local" / "opt" / "studio-worker").exists()


# -- self-update of the frozen executable --------------------------------------------------------
FAKE_NEW = """\
#!/bin/sh
if [ "$1" = "--version" ]; then echo "studio-worker 99.0.0"; exit 0; fi
echo "NEW VERSION RUNNING: $*"
env | grep -E '^(_PYI_|PYINSTALLER_RESET_ENVIRONMENT)' | sort
"""


@pytest.fixture
async def feed(tmp_path: Path) -> AsyncIterator[str]:
    artefact = artefact_for("linux")
    assert artefact is not None
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("StudioWorker/StudioWorker")
        info.size, info.mode = len(FAKE_NEW), 0o755
        tar.addfile(info, io.BytesIO(FAKE_NEW.encode()))
    (tmp_path / "assets").mkdir()
    (tmp_path / "assets" / artefact.name).write_bytes(buf.getvalue())
    (tmp_path / "assets" / CHECKSUMS_ASSET).write_text(
        sha256sums_text([tmp_path / "assets" / artefact.name]))
    runner: web.AppRunner | None = None

    async def releases(request: web.Request) -> web.Response:
        base = f"http://127.0.0.1:{request.url.port}/dl"
        return web.json_response([{"tag_name": "v99.0.0", "assets": [
            {"name": n, "browser_download_url": f"{base}/{n}"}
            for n in (artefact.name, CHECKSUMS_ASSET)]}])

    app = web.Application()
    app.router.add_get("/releases", releases)
    app.router.add_static("/dl", tmp_path / "assets")
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}/releases"
    await runner.cleanup()


def installed_copy(bundle: Path, tmp_path: Path) -> Path:
    """A copy of the bundle to update (one-folder: the folder; one-file: the file)."""
    target = tmp_path / "opt" / "studio-worker"
    if (bundle.parent / "_internal").is_dir():
        shutil.copytree(bundle.parent, target, symlinks=True)
    else:
        target.mkdir(parents=True)
        shutil.copy2(bundle, target / bundle.name)
    return target / bundle.name


async def test_frozen_bundle_updates_and_restarts_itself(bundle: Path, feed: str,
                                                         tmp_path: Path) -> None:
    if "--apply" not in run(bundle, "check-update", "--help").stdout:
        pytest.skip("this build has no `check-update --apply` yet")
    exe = installed_copy(bundle, tmp_path)
    config = tmp_path / "config.toml"
    ConfigStore(config).update({"auto_update_feed": feed})
    proc = await asyncio.create_subprocess_exec(
        str(exe), "--config", str(config), "check-update", "--apply",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    text = out.decode() + err.decode()
    assert proc.returncode == 0, text
    assert f"updated {__version__} -> 99.0.0" in text
    # The new executable ran in place of the old process, with the same arguments and
    # a clean PyInstaller environment.
    lines = out.decode().splitlines()
    assert f"NEW VERSION RUNNING: --config {config} check-update --apply" in lines
    assert [line for line in lines if line.startswith("_PYI_")] == []
    assert "PYINSTALLER_RESET_ENVIRONMENT=1" in lines
    assert run(exe, "--version").stdout.strip() == "studio-worker 99.0.0"
    onedir = (bundle.parent / "_internal").is_dir()
    previous = exe.parent.with_name("studio-worker.old") if onedir else exe.with_name(
        "StudioWorker.old")
    assert (previous / "_internal").is_dir() if onedir else previous.is_file()


# -- the desktop: the tray menu and a notification, from the bundle ------------------------------
async def test_the_bundle_has_a_tray_menu_and_sends_notifications(
    bundle: Path, studio: Any, tmp_path: Path
) -> None:
    """On a small X desktop (Xvfb, a session bus, trayer as the tray host) the bundle's
    tray icon has the real gtk menu (Pause, Open Window, Quit clicked with xdotool) and
    a finished job reaches org.freedesktop.Notifications over D-Bus: what a bundle built
    without PyGObject or dbus-python silently loses."""
    from tests.gui import xdesktop

    reason = xdesktop.missing()
    if reason is not None:
        pytest.skip(reason)
    pytest.importorskip("dbus_fast", reason="the fake notification service needs dbus-fast")
    from app.tray import COLOURS
    from tests.gui.dbus_session import FakeNotificationService
    from tests.gui.test_app_desktop import ITEMS, OPEN, PAUSE, QUIT, launched

    desk = xdesktop.XDesktop(tmp_path / "desktop")
    notifications = FakeNotificationService(desk.bus.address)
    try:
        notifications.start()
        config = write_config(tmp_path / "config.toml", studio.url, notify_on_completion=True)
        env = {k: v for k, v in os.environ.items() if k not in (
            "DISPLAY", "WAYLAND_DISPLAY", "SDL_VIDEODRIVER", "PYSTRAY_BACKEND",
            "DBUS_SESSION_BUS_ADDRESS")}
        env.update(desk.env(), KIVY_HOME=str(tmp_path / "kivy"))
        log = tmp_path / "bundle.log"
        argv = [str(bundle), "--config", str(config), "ui", "--minimised"]
        async with launched(argv, env, log) as proc:
            await desk.drawn_icon(list(COLOURS.values()), 60)
            await desk.wait(lambda: "tray icon ready (gtk)" in log.read_text(), 10,
                            "the gtk tray icon")
            await studio.wait_for(lambda: len(studio.workers) == 1, timeout=30)
            # Pause claiming from the menu: the setting is saved.
            await desk.choose(PAUSE, ITEMS)
            await desk.wait(lambda: ConfigStore(config).load().auto_enabled is False, 10,
                            "the pause")
            await desk.choose(PAUSE, ITEMS)
            await desk.wait(lambda: ConfigStore(config).load().auto_enabled is True, 10,
                            "the resume")
            # A finished job: a desktop notification over D-Bus.
            job = studio.enqueue(model="synthetic", prompt="a lighthouse")
            await studio.wait_for(lambda: studio.jobs[job].status == "completed", timeout=30)
            await desk.wait(lambda: notifications.calls, 15, "the notification")
            call = notifications.calls[0]
            assert (call.app_name, call.summary) == ("Studio Worker", "Job completed")
            # Open Window shows it; Quit ends the program.
            window = await desk.wait(lambda: desk.window_named("Studio Worker"), 10,
                                     "the window")
            await desk.choose(OPEN, ITEMS)
            await desk.wait(lambda: desk.viewable(window), 10, "the window to open")
            await desk.choose(QUIT, ITEMS)
            assert await asyncio.wait_for(proc.wait(), 30) == 0
    finally:
        notifications.close()
        desk.close()
    text = log.read_text()
    for bad in ("Traceback", "Failed to dock", "No usable implementation",
                "could not show a desktop notification"):
        assert bad not in text, text[-5000:]
