"""The bundle's entry script (pyinstaller.spec): the same entry point as the
``studio-worker`` console script, so ``StudioWorker --version`` answers before the
worker (or Kivy) is imported, and ``--headless`` never imports Kivy. The window's tray
icon runs the bundle again as ``StudioWorker --tray-helper`` (app/tray_helper.py)."""

import sys

if __name__ == "__main__":
    if sys.argv[1:2] == ["--tray-helper"]:
        from app.tray_helper import main as tray_helper

        sys.exit(tray_helper())
    from app.entry import main

    sys.exit(main())
