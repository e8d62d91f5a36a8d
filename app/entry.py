"""The ``studio-worker`` command: the one entry point above the worker and the window.

``--version`` answers before anything heavy is imported (a tray icon or a service
manager may ask often). Every other command is parsed by ``workerlib.cli``; the two
that need the desktop app (``ui`` and the windowed ``demo``) are handed to it from
here, so ``workerlib`` never names ``app``. ``app`` is installed without its GUI
dependencies: nothing here imports Kivy until a window is really opened.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from workerlib.paths import Paths


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args == ["--version"]:
        from workerlib import __version__

        print(f"studio-worker {__version__}")
        return 0
    from workerlib.cli import Faces
    from workerlib.cli import main as cli_main

    return cli_main(args, faces=Faces(ui=run_ui, gui_demo=run_gui_demo))


def run_ui(paths: Paths, start_minimised: bool) -> int:
    """``studio-worker ui`` (also found by ``python -m workerlib ui`` through the
    ``studio_worker.faces`` entry point group)."""
    from app.env import missing_gui_packages

    if missing_gui_packages():  # a plain `pip install .`: kivy or kivymd is missing
        from workerlib.cli import EXIT_USAGE, report

        report("the desktop app is not installed here (install the 'ui' extra: "
               "pip install 'studio-worker[ui]'); run the worker without a window with "
               "`studio-worker run` (or `studio-worker --headless`)")
        return EXIT_USAGE
    from app.main import run_app

    return run_app(paths, start_minimised=start_minimised)


def run_gui_demo(jobs: int) -> int:
    """``studio-worker demo`` with a display: the real window over the local studio."""
    from app.demo import run_gui_demo as demo

    return demo(jobs)
