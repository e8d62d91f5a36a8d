"""The console entry point: answers ``--version`` before importing the worker (a tray
icon or a service manager may ask often, and the full import takes ~0.3 s)."""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args == ["--version"]:
        from workerlib import __version__

        print(f"studio-worker {__version__}")
        return 0
    from workerlib.cli import main as cli_main

    return cli_main(args)
