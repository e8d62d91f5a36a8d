"""The window over a background worker: a real headless worker process, the real app
attached to it through the control API (offscreen, and on an X desktop as a user sees it).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import BOOTSTRAP
from tests.gui.pilot import Pilot, fake_tray
from tests.gui.test_app_desktop import desktop, ui_command, ui_env
from workerlib.config import ConfigStore
from workerlib.control.client import ControlClient, RemoteWorker
from workerlib.paths import Paths, resolve_paths

pytestmark = pytest.mark.gui
__all__ = ["desktop"]  # the X desktop fixture, shared with the desktop tests

ROOT = Path(__file__).resolve().parents[2]
IMAGE = {"kind": "image", "prompt": "attached", "width": 32, "height": 32}


def write_config(tmp_path: Path, studio: Any, **extra: Any) -> Path:
    config = tmp_path / "config.toml"
    ConfigStore(config).update({
        "api_base_url": studio.url, "bootstrap_token": BOOTSTRAP, "auto_update_enabled": False,
        "heartbeat_interval_secs": 0.3, "claim_interval_secs": 0.2,
        "autostart_on_login": False, **extra,
    })
    return config


async def start_worker(config: Path, log: Path) -> asyncio.subprocess.Process:
    env = {**os.environ, "STUDIO_WORKER_VRAM_GB": "8"}
    with log.open("ab") as out:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "app", "--config", str(config), "run", cwd=ROOT, env=env,
            stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out)


async def wait_for_api(paths: Paths, pid: int | None = None, timeout: float = 60) -> ControlClient:
    """The worker's control API answers (from ``pid`` when given)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        client = await asyncio.to_thread(ControlClient.find, paths.state_dir)
        if client is not None and (pid is None or client.endpoint.pid == pid):
            return client
        if loop.time() > deadline:
            raise AssertionError("the worker's control API did not answer")
        await asyncio.sleep(0.1)


@pytest.fixture
async def attach() -> AsyncIterator[Callable[[RemoteWorker], Any]]:
    """Open the real window over a RemoteWorker; closed (exit 0) at teardown."""
    from app.runner import run_attached

    pilots: list[Pilot] = []

    async def start(remote: RemoteWorker) -> Pilot:
        holder: list[Any] = []
        task = asyncio.create_task(run_attached(remote, on_app=holder.append,
                                                tray_factory=fake_tray()))
        pilot = Pilot(holder, task)
        pilots.append(pilot)
        await pilot.started()
        return pilot

    yield start
    for pilot in pilots:
        assert await pilot.close() == 0


@pytest.mark.timeout(360)  # three processes start: slow on a busy machine
async def test_the_window_drives_the_background_worker_and_restarts_it(
    studio: Any, tmp_path: Path, attach: Any
) -> None:
    from kivy.core.window import Window

    config = write_config(tmp_path, studio)
    paths = resolve_paths(config)
    worker = await start_worker(config, tmp_path / "worker.log")
    spawned: int | None = None
    try:
        await wait_for_api(paths, worker.pid)
        remote = await asyncio.to_thread(RemoteWorker.attach, paths)
        assert remote is not None
        pilot = await attach(remote)
        app = pilot.app
        shell = app.root.ids
        expected = f"connected to the background worker (pid {worker.pid})"
        assert Window.title == f"Studio Worker — {expected}"
        await pilot.wait_for(lambda: pilot.on_screen(shell.link_text), 5, "the link banner")
        assert f"Connected to the background worker (pid {worker.pid})." in shell.link_text.text
        assert not pilot.on_screen(shell.link_action)  # same version: nothing to offer
        await pilot.wait_for(lambda: "Idle" in pilot.texts(pilot.ids("status").badge), 30,
                             "the worker's Idle badge")

        # A job the worker runs shows in the Jobs tab, through the event stream.
        job = studio.enqueue(model="synthetic", task=IMAGE)
        await studio.wait_for(lambda: studio.jobs[job].status == "completed", timeout=30)
        await pilot.switch_tab("jobs")
        await pilot.wait_for(lambda: job in pilot.screen_text(), 10, "the finished job")
        await pilot.switch_tab("status")

        # Pause in the window pauses the worker (its own config, applied there).
        await pilot.click(pilot.ids("status").pause_button)
        client = await wait_for_api(paths, worker.pid)
        assert (await asyncio.to_thread(client.status)).paused
        await pilot.wait_for(lambda: app.tray.state.paused, 5, "the tray to say paused")
        await pilot.click(pilot.ids("status").pause_button)
        assert not (await asyncio.to_thread(client.status)).paused

        # The tray offers to stop the worker; the window stays and says so.
        assert "Stop background worker" in app.tray.menu()
        await asyncio.to_thread(app.tray.click, "Stop background worker")
        assert await asyncio.wait_for(worker.wait(), 30) == 0
        await pilot.wait_for(lambda: "stopped" in Window.title, 10, "the title to change")
        await pilot.wait_for(lambda: pilot.on_screen(shell.link_action), 5, "the offer")
        assert "The background worker stopped" in shell.link_text.text
        assert "Start background worker" in pilot.texts(shell.link_action)

        # ... and starts it again: a new process the window attaches to by itself.
        await pilot.click(shell.link_action)
        await pilot.wait_for(lambda: remote.link().connected, 60, "the new worker")
        spawned = remote.link().pid
        assert spawned != worker.pid
        await pilot.wait_for(lambda: f"(pid {spawned})" in Window.title, 10, "the new pid")
        assert not pilot.on_screen(shell.link_action)
    finally:
        if worker.returncode is None:
            worker.kill()
            await worker.wait()
        if spawned is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(spawned, signal.SIGTERM)
    assert "Traceback" not in (tmp_path / "worker.log").read_text()


@pytest.mark.timeout(360)  # three processes start: slow on a busy machine
async def test_quitting_the_window_leaves_the_worker_and_its_job_running(
    studio: Any, tmp_path: Path, attach: Any
) -> None:
    config = write_config(tmp_path, studio, synthetic={"delay_secs": 5.0})
    paths = resolve_paths(config)
    worker = await start_worker(config, tmp_path / "worker.log")
    try:
        client = await wait_for_api(paths, worker.pid)
        remote = await asyncio.to_thread(RemoteWorker.attach, paths)
        assert remote is not None
        pilot = await attach(remote)
        job = studio.enqueue(model="synthetic", task=IMAGE)
        await pilot.wait_for(lambda: remote.status().current_job is not None, 30,
                             "the job in the window")
        await asyncio.to_thread(pilot.app.tray.click, "Quit")
        assert await asyncio.wait_for(pilot.task, 60) == 0
        # The window is gone; the job it showed runs to its end in the worker.
        await studio.wait_for(lambda: studio.jobs[job].status == "completed", timeout=60)
        assert worker.returncode is None
        assert (await asyncio.to_thread(client.status)).jobs_completed == 1
        await asyncio.to_thread(client.quit, 1.0)
        assert await asyncio.wait_for(worker.wait(), 30) == 0
    finally:
        if worker.returncode is None:
            worker.kill()
            await worker.wait()


async def test_the_windows_own_worker_serves_the_cli(make_service: Any, start_gui: Any) -> None:
    service = await make_service()
    pilot = await start_gui(service, tray_factory=fake_tray())
    assert "connected" not in pilot.app.title  # its own worker: no banner, no pid
    assert not pilot.on_screen(pilot.app.root.ids.link_text)
    client = await asyncio.to_thread(ControlClient.find, service.paths.state_dir)
    assert client is not None and client.endpoint.pid == os.getpid()
    await asyncio.to_thread(client.set_paused, True)
    await pilot.wait_for(lambda: pilot.app.tray.state.paused, 5, "the pause to show")
    # Quit through the API closes the window, as the tray's Quit does.
    await asyncio.to_thread(client.quit, 0.2)
    assert await asyncio.wait_for(pilot.task, 20) == 0
    assert not (service.paths.state_dir / "control.json").exists()


# -- as a user sees it: processes on an X desktop ------------------------------------------------
@pytest.mark.timeout(360)  # three processes start: slow on a busy machine
async def test_ui_attaches_to_the_service_on_a_real_desktop(
    studio: Any, tmp_path: Path, desktop: Any
) -> None:
    desk = desktop
    config = write_config(tmp_path, studio)
    paths = resolve_paths(config)
    worker = await start_worker(config, tmp_path / "worker.log")
    ui_log = tmp_path / "ui.log"
    process: asyncio.subprocess.Process | None = None
    try:
        await wait_for_api(paths, worker.pid)
        await studio.wait_for(lambda: any(w.heartbeats >= 1 for w in studio.workers.values()),
                              timeout=30)
        with ui_log.open("wb") as err:
            process = await asyncio.create_subprocess_exec(
                *ui_command(config), cwd=ROOT, env=ui_env(tmp_path, desk),
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=err)
        title = f"Studio Worker — connected to the background worker (pid {worker.pid})"
        window = await desk.wait(lambda: desk.window_named(title), 60, "the attached window")
        await desk.wait(lambda: desk.viewable(window), 10, "the window to show")
        await desk.wait(lambda: len(desk.grab(desk.box(window)).getcolors(1 << 16) or ()) > 50,
                        10, "the window's contents")
        await desk.wait(lambda: "following the background worker's events" in ui_log.read_text(),
                        30, "the window to follow the worker's events")
        out = os.environ.get("STUDIO_WORKER_SCREENSHOTS")
        if out:
            await asyncio.sleep(2.0)  # a settled frame for the picture only
            desk.grab(desk.box(window)).save(Path(out) / "attached.png")
        assert len(studio.workers) == 1  # the window started no worker of its own

        # Closing the window (SIGTERM, as a session ending does) leaves the worker running.
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 30) == 0
        assert worker.returncode is None
        await wait_for_api(paths, worker.pid)
    finally:
        if process is not None and process.returncode is None:
            process.kill()
            await process.wait()
        if worker.returncode is None:
            worker.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(worker.wait(), 30) == 0
    text = ui_log.read_text()
    assert "Traceback" not in text, text[-5000:]
    assert f"attached to the background worker (pid {worker.pid}" in text
