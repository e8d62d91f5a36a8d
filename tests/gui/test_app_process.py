"""`studio-worker ui` as a process: signals, and no display at all."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import BOOTSTRAP
from workerlib.config import ConfigStore
from workerlib.paths import resolve_paths

pytestmark = pytest.mark.gui

ROOT = Path(__file__).resolve().parents[2]


async def start_ui(tmp_path: Path, studio: Any, env_changes: dict[str, str | None]
                   ) -> tuple[asyncio.subprocess.Process, Path]:
    config = tmp_path / "config.toml"
    ConfigStore(config).update({"api_base_url": studio.url, "bootstrap_token": BOOTSTRAP,
                                "heartbeat_interval_secs": 0.2, "claim_interval_secs": 0.2,
                                "auto_update_enabled": False})
    env = {k: v for k, v in os.environ.items()
           if k not in ("DISPLAY", "WAYLAND_DISPLAY", "SDL_VIDEODRIVER")}
    env["STUDIO_WORKER_HOME"] = str(tmp_path / "home")
    env["STUDIO_WORKER_VRAM_GB"] = "8"
    for key, value in env_changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "app", "--config", str(config), "ui", cwd=ROOT, env=env,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    return process, config


async def stop(process: asyncio.subprocess.Process, sig: int) -> tuple[int, str]:
    process.send_signal(sig)
    _out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode is not None
    return process.returncode, err.decode()


async def first_worker(studio: Any, process: asyncio.subprocess.Process) -> str:
    try:
        await studio.wait_for(lambda: any(w.heartbeats >= 2 for w in studio.workers.values()),
                              timeout=30)
    except TimeoutError:
        process.kill()
        _out, err = await process.communicate()
        raise AssertionError(err.decode()[-3000:]) from None
    return next(iter(studio.workers))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_the_window_stops_gracefully_on_a_signal(
    studio: Any, tmp_path: Path, sig: int
) -> None:
    job = studio.enqueue(model="synthetic", task={"kind": "image", "prompt": "x", "width": 32,
                                                   "height": 32})
    process, _config = await start_ui(tmp_path, studio, {"SDL_VIDEODRIVER": "offscreen"})
    await first_worker(studio, process)
    await studio.wait_for(lambda: studio.jobs[job].status == "completed", timeout=15)
    code, err = await stop(process, sig)
    assert code == 0, err[-3000:]
    assert "Traceback" not in err
    assert "without a window" not in err
    status = json.loads(resolve_paths(_config).status_file.read_text())
    assert status["running"] is False


async def test_a_second_launch_brings_the_open_window_to_the_front(
    studio: Any, tmp_path: Path
) -> None:
    process, config = await start_ui(tmp_path, studio, {"SDL_VIDEODRIVER": "offscreen"})
    await first_worker(studio, process)
    state_dir = resolve_paths(config).state_dir
    second, _ = await start_ui(tmp_path, studio, {"SDL_VIDEODRIVER": "offscreen"})
    _out, err = await asyncio.wait_for(second.communicate(), 30)
    assert second.returncode == 0, err.decode()[-3000:]
    assert "already open" in err.decode() and "brought its window to the front" in err.decode()
    # The open window takes the request (within its one-second tick).
    await studio.wait_for(lambda: not (state_dir / "raise-request").exists(), timeout=5)
    assert len(studio.workers) == 1
    code, err_first = await stop(process, signal.SIGTERM)
    assert code == 0, err_first[-3000:]


async def test_without_a_display_the_worker_runs_headless(
    studio: Any, tmp_path: Path
) -> None:
    process, _config = await start_ui(tmp_path, studio, {})
    worker_id = await first_worker(studio, process)
    assert studio.workers[worker_id].heartbeats >= 2
    code, err = await stop(process, signal.SIGTERM)
    assert code == 0, err[-3000:]
    lines = [line for line in err.splitlines() if "without a window" in line]
    assert lines == ["studio-worker: no display (neither DISPLAY nor WAYLAND_DISPLAY is set); "
                     "running the worker without a window"]
    assert "[Kivy" not in err and "KivyMD" not in err


def unused_display() -> str:
    """A display number no X server here serves (no socket, no lock file): a fixed one
    such as :93 may exist on the next machine."""
    for number in range(1000 + os.getpid() % 1000, 3000):
        if not Path(f"/tmp/.X11-unix/X{number}").exists() and \
                not Path(f"/tmp/.X{number}-lock").exists():
            return f":{number}"
    raise AssertionError("no unused X display number")


async def test_an_unreachable_display_falls_back_to_headless(
    studio: Any, tmp_path: Path
) -> None:
    display = unused_display()
    process, _config = await start_ui(tmp_path, studio, {"DISPLAY": display})
    await first_worker(studio, process)
    code, err = await stop(process, signal.SIGTERM)
    assert code == 0, err[-3000:]
    assert f"studio-worker: the display {display} could not be opened; running the worker " \
           "without a window" in err
