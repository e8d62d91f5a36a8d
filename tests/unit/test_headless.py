"""workerlib must run where no GUI package is installed."""

import subprocess
import sys
import textwrap

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


def test_run_help_does_not_import_gui() -> None:
    code = (
        "import sys, runpy; sys.argv=['studio-worker','--help']\n"
        "try:\n    runpy.run_module('workerlib', run_name='__main__')\n"
        "except SystemExit: pass\n"
        f"assert not [m for m in sys.modules if m.split('.')[0] in {BLOCKED!r}]\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert "dev-studio" in result.stdout


def test_version_answers_without_importing_the_worker() -> None:
    code = ("import sys; from workerlib.entry import main; main(['--version']);"
            "heavy = [m for m in ('aiohttp', 'pydantic', 'workerlib.cli') if m in sys.modules];"
            "assert not heavy, heavy")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("studio-worker ")
