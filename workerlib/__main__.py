"""``python -m workerlib``: the worker's command line (``python -m app`` is the full
entry point; ``ui`` here finds the desktop app through its entry point group)."""

import sys

from workerlib.cli import main

sys.exit(main())
