"""Screenshots of every tab over realistic data, taken under Xvfb when it is installed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

pytestmark = pytest.mark.gui

ROOT = Path(__file__).resolve().parents[2]
TABS = ("status", "jobs", "stats", "config", "logs", "about")
SIZE = (980, 700)
EXPECTED = {
    "status": ["Busy", "Pause claiming", "24 GiB detected · accepts jobs up to 16 GiB",
               "8 completed · 1 failed"],
    "jobs": ["video · synthetic-video", "60%", "Last 9 finished jobs · 8 completed · 1 failed",
             "is too large for the synthetic engine"],
    "stats": ["Last 24 hours, jobs per hour", "Last 7 days, jobs per day",
              "By kind and model, last 7 days", "image · synthetic"],
    "config": ["Connection", "Bootstrap token", "Auth token", "Worker id"],
    "logs": ["ERROR", "WARN", "heartbeat ok again after 1 failures", "Copy"],
    "about": ["Update available: 0.2.0 -> 0.9.0", "Check for updates now", "Config file"],
}


def test_every_tab_is_captured_with_real_data_and_no_secrets(tmp_path: Path) -> None:
    # STUDIO_WORKER_SCREENSHOTS=docs/screenshots refreshes the committed pictures.
    out = Path(os.environ.get("STUDIO_WORKER_SCREENSHOTS") or tmp_path / "shots").resolve()
    report_file = tmp_path / "report.json"
    command = [sys.executable, "-m", "tests.gui.shots", str(out), str(report_file)]
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "SDL_VIDEODRIVER")}
    xvfb = shutil.which("xvfb-run")
    if xvfb:
        command = [xvfb, "-a", "-s", f"-screen 0 {SIZE[0]}x{SIZE[1]}x24", *command]
    else:
        env["SDL_VIDEODRIVER"] = "offscreen"
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=150)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    report = json.loads(report_file.read_text())
    assert report["mode"] == ("xvfb" if xvfb else "offscreen")
    assert report["exit_code"] == 0
    for tab in TABS:
        image = Image.open(out / f"{tab}.png").convert("RGB")
        assert image.size == SIZE, tab
        colours = image.getcolors(maxcolors=1 << 20)
        assert colours is not None and len(colours) > 100, f"{tab}.png looks blank"
        seen = report["tabs"][tab]
        assert seen["leaks"] == [], f"{tab}.png shows {seen['leaks']}"
        text = "\n".join(seen["texts"])
        for expected in EXPECTED[tab]:
            assert expected in text, f"{expected!r} is not on the {tab} tab"
    assert report["worker_id"] in "\n".join(report["tabs"]["status"]["texts"])
    assert report["tabs"]["config"]["masked_fields"] >= 2
