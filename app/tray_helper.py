"""The tray icon in a small process of its own (Linux): GTK stays out of the window's.

pystray's gtk and appindicator icons load GTK, about 30 MB more in a process that also
holds Kivy, Mesa and the worker. ``HelperTray`` (app/tray.py) starts this module and
talks to it in JSON lines:

- to the helper (stdin): ``{"show": {"variant", "tooltip", "paused"}}``, ``{"stop": true}``;
  end of input (the app died) stops it too;
- from the helper (stdout): ``{"ready": BACKEND}``, ``{"failed": REASON}``,
  ``{"command": "open" | "pause" | "quit" | "snooze" | "stop_worker", "choice": ...}``,
  ``{"log": {"level", "message"}}`` for the app's log.

    python -m app.tray_helper [--with-stop-worker]   (the bundle: StudioWorker --tray-helper)
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from typing import Any, TextIO

from app.tray import STOP_WORKER_FLAG, PystrayTray, TrayCommands, TrayState

READY_WAIT_SECS = 60.0


class _Forward(logging.Handler):
    """The helper's log records go to the app, which logs them as its own."""

    def __init__(self, send: Any) -> None:
        super().__init__(logging.INFO)
        self._send = send

    def emit(self, record: logging.LogRecord) -> None:
        level = "error" if record.levelno >= logging.ERROR else \
            "warn" if record.levelno >= logging.WARNING else "info"
        self._send({"log": {"level": level, "message": record.getMessage()}})


def serve(stdin: TextIO, stdout: TextIO, *, stop_worker: bool = False) -> int:
    lock = threading.Lock()

    def send(message: dict[str, Any]) -> None:
        with lock:
            try:
                stdout.write(json.dumps(message) + "\n")
                stdout.flush()
            except (OSError, ValueError):  # the app is gone
                pass

    logger = logging.getLogger("workerlib")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    logger.addHandler(_Forward(send))
    tray = PystrayTray(TrayCommands(
        open_window=lambda: send({"command": "open"}),
        toggle_pause=lambda: send({"command": "pause"}),
        quit=lambda: send({"command": "quit"}),
        snooze=lambda choice: send({"command": "snooze", "choice": choice}),
        stop_worker=(lambda: send({"command": "stop_worker"})) if stop_worker else None,
    ))
    tray.start()

    def report() -> None:
        if tray.wait(READY_WAIT_SECS):
            send({"ready": tray.backend})
        else:
            send({"failed": "the tray icon did not start"})

    threading.Thread(target=report, name="tray-report", daemon=True).start()
    for line in stdin:
        try:
            message = json.loads(line)
        except ValueError:
            continue
        if not isinstance(message, dict) or message.get("stop"):
            break
        shown = message.get("show")
        if isinstance(shown, dict):
            try:
                tray.show(TrayState(variant=shown["variant"], tooltip=str(shown["tooltip"]),
                                    paused=bool(shown["paused"])))
            except (KeyError, TypeError):
                continue
    tray.stop()
    return 0


def main() -> int:
    return serve(sys.stdin, sys.stdout, stop_worker=STOP_WORKER_FLAG in sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
