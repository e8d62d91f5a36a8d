"""Self-update, part 1: what a release ships and what this process was installed as.

Release artefact names live here, and nowhere else (``python -m workerlib.updater``
prints them for the build scripts). :class:`Installation` says what a self-update
replaces; :func:`swap` and :func:`restart` are the last two steps of an update.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NoReturn


# -- release artefacts --------------------------------------------------------------------
@dataclass(frozen=True)
class Artefact:
    """One platform's self-update artefact, as attached to every release."""

    system: str
    machine: str
    name: str

    @property
    def archive(self) -> Literal["tar.gz", "zip"] | None:
        if self.name.endswith(".tar.gz"):
            return "tar.gz"
        if self.name.endswith(".zip"):
            return "zip"
        return None


ARTEFACTS: tuple[Artefact, ...] = (
    # The one-file executable in a folder with the installer scripts and the icon.
    Artefact("linux", "x86_64", "StudioWorker-linux-x86_64.tar.gz"),
    # The bare one-file executable (the setup program installs this same file).
    Artefact("windows", "x86_64", "StudioWorker-windows-x86_64.exe"),
    # StudioWorker.app, zipped with ditto (keeps the symlinks inside the .app).
    Artefact("macos", "arm64", "StudioWorker-macos-arm64.zip"),
)
WINDOWS_SETUP = "StudioWorker-windows-x86_64-setup.exe"
"""The Inno Setup installer: attached to releases for people, never used for updates."""
EXECUTABLE = "StudioWorker"


def current_system(plat: str = sys.platform) -> str:
    if plat.startswith("linux"):
        return "linux"
    if plat == "win32":
        return "windows"
    if plat == "darwin":
        return "macos"
    return plat


def current_machine(machine: str | None = None) -> str:
    name = (machine if machine is not None else platform.machine()).lower()
    return {"amd64": "x86_64", "x64": "x86_64", "aarch64": "arm64"}.get(name, name)


def artefact_for(system: str | None = None, machine: str | None = None) -> Artefact | None:
    system = system or current_system()
    machine = current_machine(machine)
    return next((a for a in ARTEFACTS if (a.system, a.machine) == (system, machine)), None)


# -- the installed bundle -----------------------------------------------------------------
@dataclass(frozen=True)
class Installation:
    """What a self-update replaces.

    ``onefile``: ``root`` is the executable itself. ``onedir``: ``root`` is the folder
    that is swapped whole (the bundle folder, or the ``.app`` on macOS) and
    ``executable`` lies inside it. ``source``: a pip install, never self-replaced.
    """

    kind: Literal["onefile", "onedir", "source"]
    root: Path
    executable: Path
    artefact: Artefact | None
    frozen: bool = True

    @property
    def previous(self) -> Path:
        """Where the replaced bundle waits to be deleted at the next start."""
        return self.root.with_name(self.root.name + ".old")

    @property
    def staging_prefix(self) -> str:
        return f".{self.root.name}.update-"


def detect_installation() -> Installation:
    """This process's installation: frozen by PyInstaller (one-file or one-folder) or not."""
    artefact = artefact_for()
    meipass = getattr(sys, "_MEIPASS", None)
    if not getattr(sys, "frozen", False) or not meipass:
        exe = Path(sys.executable)
        return Installation("source", exe.parent, exe, artefact, frozen=False)
    exe = Path(sys.executable).resolve()
    internal = Path(meipass).resolve()
    app = exe.parents[2] if len(exe.parents) > 2 else None
    if (app is not None and app.suffix == ".app" and exe.parent.name == "MacOS"
            and internal.is_relative_to(app)):
        return Installation("onedir", app, exe, artefact)
    if internal.is_relative_to(exe.parent):
        return Installation("onedir", exe.parent, exe, artefact)
    # One-file: the bootloader unpacked itself into a temp _MEI folder.
    return Installation("onefile", exe, exe, artefact)


def cleanup_previous(installation: Installation | None = None) -> None:
    """Remove what an earlier update left behind (the ``.old`` bundle, stale temp dirs).

    Called at start. On Windows the old exe may still be running for a moment after a
    restart: whatever cannot be removed now is removed at a later start.
    """
    inst = installation or detect_installation()
    if inst.kind == "source":
        return
    with contextlib.suppress(OSError):
        for entry in inst.root.parent.iterdir():
            name = entry.name
            if name.startswith(inst.previous.name) or name.startswith(inst.staging_prefix):
                remove_path(entry)


# -- swap and restart ---------------------------------------------------------------------------
def swap(installation: Installation, candidate: Path) -> None:
    """Two renames in one folder: the installed bundle aside, the new one in place."""
    root = installation.root
    previous = installation.previous
    if os.path.lexists(previous):
        remove_path(previous)
    if os.path.lexists(previous):  # still there (a Windows exe that has not exited yet)
        previous = previous.with_name(f"{previous.name}-{os.getpid()}")
    os.rename(root, previous)
    try:
        os.rename(candidate, root)
    except OSError:
        os.rename(previous, root)
        raise


def restart_environment(environ: Mapping[str, str], *, frozen: bool) -> dict[str, str]:
    """The environment for starting a (new) bundle as an independent process.

    A PyInstaller one-file child sees ``_PYI_*`` variables from its bootloader: passed
    on, they would make the new bootloader think it is that child and run the old,
    unpacked code. The bootloader also prepends its folder to ``LD_LIBRARY_PATH``.
    """
    env = {k: v for k, v in environ.items() if not k.startswith("_PYI_") and k != "_MEIPASS2"}
    if frozen:
        env["PYINSTALLER_RESET_ENVIRONMENT"] = "1"
        original = env.pop("LD_LIBRARY_PATH_ORIG", None)
        if original is not None:
            env["LD_LIBRARY_PATH"] = original
        else:
            env.pop("LD_LIBRARY_PATH", None)
    return env


def restart(installation: Installation, argv: Sequence[str]) -> NoReturn:
    """Replace this process by the installed bundle run with ``argv`` (POSIX: same pid);
    on Windows, start it and exit. Call only after a clean shutdown (locks released)."""
    exe = str(installation.executable)
    env = restart_environment(os.environ, frozen=installation.frozen)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    if sys.platform == "win32":  # pragma: no cover - Windows only
        flags = subprocess.CREATE_NEW_PROCESS_GROUP | subprocess.CREATE_NO_WINDOW
        subprocess.Popen([exe, *argv], env=env, creationflags=flags, close_fds=True)
        raise SystemExit(0)
    os.execve(exe, [exe, *argv], env)


def remove_path(path: Path) -> None:
    with contextlib.suppress(OSError):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
