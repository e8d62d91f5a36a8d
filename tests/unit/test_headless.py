"""workerlib must run where no GUI package is installed."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

BLOCKED = ("kivy", "kivymd", "pystray", "plyer", "gi", "sdl2")


def test_every_workerlib_module_imports_with_gui_packages_blocked() -> None:
    code = textwrap.dedent(
        f"""
        import importlib, importlib.abc, pkgutil, sys

        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {BLOCKED!r}:
                    raise ImportError("blocked GUI package " + name)
                return None

        sys.meta_path.insert(0, Block())
        import workerlib
        names = [m.name for m in pkgutil.walk_packages(workerlib.__path__, "workerlib.")
                 if not m.name.endswith("__main__")]
        for name in names:
            importlib.import_module(name)
        gui = [m for m in sys.modules if m.split(".")[0] in {BLOCKED!r}]
        assert not gui, gui
        print(len(names))
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout.strip()) >= 15


@pytest.mark.parametrize("package", ["workerlib", "app"])
def test_run_help_does_not_import_gui(package: str) -> None:
    # `python -m app` is the full entry point: it too must not touch Kivy for --help.
    code = (
        "import sys, runpy; sys.argv=['studio-worker','--help']\n"
        f"try:\n    runpy.run_module({package!r}, run_name='__main__')\n"
        "except SystemExit: pass\n"
        f"assert not [m for m in sys.modules if m.split('.')[0] in {BLOCKED!r}]\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert "dev-studio" in result.stdout


def test_import_layers_hold() -> None:
    """The contracts in pyproject.toml ([tool.importlinter]): entry → app → workerlib,
    no GUI package in workerlib, and the layers inside each (docs/ARCHITECTURE.md)."""
    code = "import sys; from importlinter.cli import lint_imports_command as c; sys.exit(c())"
    result = subprocess.run([sys.executable, "-c", code, "--no-cache"],
                            capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert result.stdout.rstrip().endswith("kept, 0 broken.")


def test_version_answers_without_importing_the_worker() -> None:
    code = ("import sys; from app.entry import main; main(['--version']);"
            "heavy = [m for m in ('aiohttp', 'pydantic', 'workerlib.cli') if m in sys.modules];"
            "assert not heavy, heavy")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("studio-worker ")


def test_ui_without_the_ui_extra_prints_the_hint_and_exits_2(tmp_path: Path) -> None:
    # A plain `pip install .` on a desktop: kivy and kivymd cannot be imported.
    code = textwrap.dedent(
        f"""
        import importlib.abc, sys

        class NotInstalled(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {BLOCKED!r}:
                    raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
                return None

        sys.meta_path.insert(0, NotInstalled())
        from app.entry import main
        sys.exit(main(sys.argv[1:]))
        """
    )
    env = {**os.environ, "DISPLAY": ":4242", "STUDIO_WORKER_HOME": str(tmp_path)}
    env.pop("SDL_VIDEODRIVER", None)
    for args in (["ui"], []):
        result = subprocess.run(
            [sys.executable, "-c", code, "--config", str(tmp_path / "config.toml"), *args],
            capture_output=True, text=True, timeout=60, env=env)
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, lines
        assert "pip install 'studio-worker[ui]'" in lines[0]
        assert "studio-worker run" in lines[0]
