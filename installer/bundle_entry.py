"""The bundle's entry script (pyinstaller.spec): the same entry point as the
``studio-worker`` console script, so ``StudioWorker --version`` answers before the
worker (or Kivy) is imported, and ``--headless`` never imports Kivy."""

import sys

from app.entry import main

if __name__ == "__main__":
    sys.exit(main())
