"""GUI tests: the real app with no X server (SDL's offscreen driver, a real GL context).

The environment must be set before anything imports kivy, hence at the very top.
"""

from __future__ import annotations

import os
import tempfile

os.environ.pop("DISPLAY", None)
os.environ.pop("WAYLAND_DISPLAY", None)
os.environ["SDL_VIDEODRIVER"] = "offscreen"
os.environ["KIVY_NO_ARGS"] = "1"
os.environ["KIVY_HOME"] = tempfile.mkdtemp(prefix="kivy-home-")
os.environ["KIVY_LOG_MODE"] = "PYTHON"
os.environ["KIVY_NO_CONSOLELOG"] = "1"
os.environ["KIVY_NO_FILELOG"] = "1"
os.environ["KIVY_NO_CONFIG"] = "1"

import asyncio
import importlib.util
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.gui.pilot import Pilot, StartGui

HAVE_KIVY = all(importlib.util.find_spec(name) is not None for name in ("kivy", "kivymd"))
if HAVE_KIVY:
    from app.env import configure_kivy

    configure_kivy()  # window size and frame cap, before any test imports the window
# Without the 'ui' extra only the view-model tests (no kivy in them) can run.
collect_ignore_glob = [] if HAVE_KIVY else ["test_app*.py", "test_screenshots.py"]

@pytest.fixture(autouse=True)
def login_entries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The app syncs its login entry at start: never the real ~/.config/autostart."""
    config_home = tmp_path / "xdg-config"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config_home))
    return config_home


@pytest.fixture
async def start_gui() -> AsyncIterator[StartGui]:
    """Open the real window over a service; closed (and checked to exit 0) at teardown."""
    from app.runner import run_window

    pilots: list[Pilot] = []

    async def start(service: Any, **kwargs: Any) -> Pilot:
        holder: list[Any] = []
        kwargs.setdefault("drain_secs", 0.5)
        task = asyncio.create_task(run_window(service, on_app=holder.append, **kwargs))
        pilot = Pilot(holder, task)
        pilots.append(pilot)
        await pilot.started()
        return pilot

    yield start
    for pilot in pilots:
        assert await pilot.close() == 0
