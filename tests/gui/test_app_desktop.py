"""`studio-worker ui --autostart` on a real X desktop with a real tray host.

Xvfb + a private session bus + trayer; the menu is clicked with xdotool, the window's
state is read from the X server, the icon's colour from the screen. Skipped where
the tools are missing; scripts/_gui_setup.sh installs them, so CI runs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import BOOTSTRAP
from tests.gui.test_app import claims
from workerlib.config import ConfigStore

pytestmark = [pytest.mark.gui, pytest.mark.skipif(not sys.platform.startswith("linux"),
                                                   reason="an X desktop")]

ROOT = Path(__file__).resolve().parents[2]
IMAGE = {"kind": "image", "prompt": "a stone golem", "width": 64, "height": 64}
OPEN, PAUSE, SNOOZE, QUIT = 0, 1, 2, 3
ITEMS = 4
"""The tray menu: Open Window, Pause/Resume claiming, Snooze (a submenu), Quit."""


@pytest.fixture
def desktop(tmp_path: Path) -> Iterator[Any]:
    from tests.gui import xdesktop

    reason = xdesktop.missing()
    if reason is not None:
        pytest.skip(reason)
    desk = xdesktop.XDesktop(tmp_path / "desktop")
    try:
        yield desk
    finally:
        desk.close()


@contextlib.asynccontextmanager
async def launched(argv: list[str], env: dict[str, str],
                   log: Path) -> AsyncIterator[asyncio.subprocess.Process]:
    """Start a program with its stderr in ``log``; should the block fail, kill the
    program and show the end of its log."""
    with log.open("wb") as err:
        process = await asyncio.create_subprocess_exec(
            *argv, cwd=ROOT, env=env, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL, stderr=err)
    try:
        yield process
    except BaseException:
        if process.returncode is None:
            process.kill()
            await process.wait()
        print(log.read_text()[-5000:])
        raise


def ui_command(config: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "app", "--config", str(config), "ui", *args]


def ui_env(tmp_path: Path, desk: Any) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("DISPLAY", "WAYLAND_DISPLAY", "SDL_VIDEODRIVER", "PYSTRAY_BACKEND")}
    env.update(desk.env())
    env["STUDIO_WORKER_HOME"] = str(tmp_path / "home")
    env["STUDIO_WORKER_VRAM_GB"] = "8"
    env["XDG_CONFIG_HOME"] = str(tmp_path / "xdg")
    return env


async def test_tray_menu_window_and_quit_on_a_real_desktop(
    studio: Any, tmp_path: Path, desktop: Any
) -> None:
    from app.tray import COLOURS
    from tests.gui.xdesktop import colour_share

    if importlib.util.find_spec("gi") is None:
        pytest.skip("needs PyGObject: without it pystray's xorg icon has no menu")
    desk = desktop
    config = tmp_path / "config.toml"
    ConfigStore(config).update({
        "api_base_url": studio.url, "bootstrap_token": BOOTSTRAP, "auto_update_enabled": False,
        "protocol": "v1",
        "heartbeat_interval_secs": 0.5, "claim_interval_secs": 0.2,
        "synthetic": {"delay_secs": 2.0},
    })
    env = ui_env(tmp_path, desk)
    log = tmp_path / "ui.log"
    with log.open("wb") as err:
        # As the login entry starts it: start_minimised (the default) hides the window.
        process = await asyncio.create_subprocess_exec(
            *ui_command(config, "--autostart"), cwd=ROOT, env=env,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=err)
    try:
        await _scenario(studio, desk, process, config, env, colour_share, COLOURS)
    except BaseException:
        if process.returncode is None:
            process.kill()
            await process.wait()
        print(log.read_text()[-5000:])
        raise
    log_text = log.read_text()
    assert "Traceback" not in log_text, log_text[-5000:]
    assert "tray icon ready (gtk)" in log_text


def save_shot(desk: Any, menu: Any, tray: Any) -> None:
    """The icon and its open menu, for docs/screenshots when refreshing them."""
    out = os.environ.get("STUDIO_WORKER_SCREENSHOTS")
    if not out:
        return
    from tests.gui.xdesktop import Box

    left = min(menu.x, tray.x) - 24
    right = max(menu.x + menu.width, tray.x + tray.width)
    box = Box(left, 0, right - left, menu.y + menu.height + 16)
    desk.grab(box).save(Path(out) / "tray.png")


async def _scenario(studio: Any, desk: Any, process: Any, config: Path, env: dict[str, str],
                    colour_share: Any, colours: Any) -> None:
    await studio.wait_for(lambda: any(w.heartbeats >= 2 for w in studio.workers.values()),
                          timeout=30)
    tray = await desk.drawn_icon(list(colours.values()), 15)
    window = await desk.wait(lambda: desk.window_named("Studio Worker"), 5, "the window")
    assert not desk.viewable(window), "started at login: the window waits in the tray"
    await desk.wait(lambda: colour_share(desk.grab(tray), colours["idle"]) > 0.2, 5,
                    "a green icon")

    # Pause claiming: the studio sees no more claims.
    menu, centres = await desk.menu(ITEMS)
    save_shot(desk, menu, tray)
    await desk.click(*centres[PAUSE])
    await desk.wait(lambda: ConfigStore(config).load().auto_enabled is False, 5, "the pause")
    await asyncio.sleep(0.5)  # a claim already in flight may still land
    before = claims(studio)
    await asyncio.sleep(1.0)
    assert claims(studio) == before
    # The same item now resumes.
    await desk.choose(PAUSE, ITEMS)
    await studio.wait_for(lambda: claims(studio) >= before + 2, timeout=5)
    assert ConfigStore(config).load().auto_enabled is True

    # Open Window shows the window, drawn.
    await desk.choose(OPEN, ITEMS)
    await desk.wait(lambda: desk.viewable(window), 5, "the window to open")
    await desk.wait(lambda: len(desk.grab(desk.box(window)).getcolors(1 << 16) or ()) > 50,
                    5, "the window's contents")

    # The close button hides it; the worker keeps claiming.
    desk.send_close(window)
    await desk.wait(lambda: not desk.viewable(window), 5, "the window to hide")
    assert process.returncode is None
    before = claims(studio)
    await studio.wait_for(lambda: claims(studio) >= before + 2, timeout=5)

    # No StatusNotifier host here: the gtk icon, whose left click opens the window.
    await desk.click(*tray.centre)
    await desk.wait(lambda: desk.viewable(window), 5, "the window after a left click")
    desk.send_close(window)
    await desk.wait(lambda: not desk.viewable(window), 5, "the window to hide again")

    # A second launch brings it back instead of starting a second worker.
    second = await asyncio.create_subprocess_exec(
        *ui_command(config), cwd=ROOT, env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    _out, err = await asyncio.wait_for(second.communicate(), 30)
    assert second.returncode == 0, err.decode()[-3000:]
    assert "already open" in err.decode()
    await desk.wait(lambda: desk.viewable(window), 3, "the raised window")
    assert len(studio.workers) == 1

    # A running job turns the icon amber; Quit lets it finish (2 s < the 5 s budget).
    job = studio.enqueue(model="synthetic", task=IMAGE)
    await studio.wait_for(lambda: studio.jobs[job].status == "claimed", timeout=5)
    await desk.wait(lambda: colour_share(desk.grab(tray), colours["busy"]) > 0.2, 3,
                    "an amber icon")
    await desk.choose(QUIT, ITEMS)
    assert await asyncio.wait_for(process.wait(), 60) == 0
    assert studio.jobs[job].status == "completed"
    await desk.wait(lambda: desk.tray_box() is None, 3, "the icon to leave the tray")


async def test_without_pygobject_a_left_click_on_the_xorg_icon_opens_the_window(
    studio: Any, tmp_path: Path, desktop: Any
) -> None:
    """pystray's fallback when PyGObject is missing: an icon without a menu, whose
    window must ask for button presses (the app patches that in)."""
    import signal

    desk = desktop
    config = tmp_path / "config.toml"
    ConfigStore(config).update({
        "api_base_url": studio.url, "bootstrap_token": BOOTSTRAP, "auto_update_enabled": False,
        "protocol": "v1",
        "heartbeat_interval_secs": 0.2, "claim_interval_secs": 0.2,
    })
    env = {**ui_env(tmp_path, desk), "PYSTRAY_BACKEND": "xorg"}
    log = tmp_path / "ui.log"
    async with launched(ui_command(config, "--minimised"), env, log) as process:
        from app.tray import COLOURS

        tray = await desk.drawn_icon(list(COLOURS.values()), 20)
        window = await desk.wait(lambda: desk.window_named("Studio Worker"), 5, "the window")
        await desk.wait(lambda: "tray icon ready (xorg)" in log.read_text(), 5, "the icon")
        assert not desk.viewable(window)
        await desk.click(*tray.centre)
        await desk.wait(lambda: desk.viewable(window), 5, "the window to open")
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 10) == 0


async def test_without_a_tray_host_it_says_so_once_and_closing_minimises(
    studio: Any, tmp_path: Path, desktop: Any
) -> None:
    """Stock GNOME: no StatusNotifier watcher, no XEmbed tray. The app must not claim a
    tray icon, and closing the window must not hide it beyond reach."""
    import signal

    desk = desktop
    desk.close_tray()
    config = tmp_path / "config.toml"
    ConfigStore(config).update({
        "api_base_url": studio.url, "bootstrap_token": BOOTSTRAP, "auto_update_enabled": False,
        "heartbeat_interval_secs": 0.2, "claim_interval_secs": 0.2, "protocol": "v1",
    })
    log = tmp_path / "ui.log"
    async with launched(ui_command(config), ui_env(tmp_path, desk), log) as process:
        window = await desk.wait(lambda: desk.window_named("Studio Worker"), 30, "the window")
        await desk.wait(lambda: "no tray icon" in log.read_text(), 20, "the tray verdict")
        desk.send_close(window)
        before = claims(studio)
        await studio.wait_for(lambda: claims(studio) >= before + 2, timeout=10)
        assert process.returncode is None and desk.viewable(window)
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 15) == 0
    text = log.read_text()
    assert "tray icon ready" not in text and "Quit is in the tray menu" not in text
    verdicts = [line for line in text.splitlines() if "no tray icon" in line]
    assert len(verdicts) == 1 and "no tray host" in verdicts[0], verdicts
    assert "minimise" in verdicts[0]
