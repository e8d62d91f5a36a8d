"""Start the desktop app at login: XDG autostart, a macOS LaunchAgent, the Windows Run key.

One base class decides *whether* (the ``autostart_on_login`` setting); each backend
only *delivers*. The entry always points at the running executable (the bundle when
frozen) and is rewritten at each start so it stays current after a move or update.
"""

from __future__ import annotations

import os
import plistlib
import shlex
import subprocess
import sys
from abc import ABC, abstractmethod
from pathlib import Path

from workerlib.logs import get_logger

log = get_logger("autostart")
APP_ID = "studio-worker"
MAC_LABEL = "gg.minis.studio-worker-ui"
WINDOWS_VALUE = "StudioWorker"
WINDOWS_RUN_KEY = r"Software\Microsoft\Windows\CurrentVersion\Run"


def launch_command(args: list[str], config_file: Path | None = None) -> list[str]:
    """The command that starts this program with ``args``: the bundle when frozen."""
    base = [sys.executable] if getattr(sys, "frozen", False) else [
        sys.executable, "-m", "workerlib"]
    extra = ["--config", str(config_file)] if config_file is not None else []
    return [*base, *extra, *args]


def autostart_command(config_file: Path | None) -> list[str]:
    return launch_command(["ui", "--autostart"], config_file)


class AutostartBackend(ABC):
    name = "none"

    @abstractmethod
    def render(self, command: list[str]) -> str:
        """The entry as the platform stores it."""

    @abstractmethod
    def read(self) -> str | None:
        """The stored entry, or None."""

    @abstractmethod
    def write(self, entry: str) -> None: ...

    @abstractmethod
    def delete(self) -> None: ...

    @property
    @abstractmethod
    def location(self) -> str: ...

    def sync(self, enabled: bool, command: list[str]) -> str:
        """Make the stored entry match the setting; returns what was done."""
        current = self.read()
        if not enabled:
            if current is None:
                return "unchanged"
            self.delete()
            log.info("removed the login entry %s", self.location)
            return "removed"
        entry = self.render(command)
        if current == entry:
            return "unchanged"
        self.write(entry)
        log.info("%s the login entry %s", "updated" if current else "added", self.location)
        return "updated" if current else "added"


class _FileEntry(AutostartBackend):
    """An entry that is one file (XDG .desktop, launchd plist), written atomically."""

    path: Path

    @property
    def location(self) -> str:
        return str(self.path)

    def read(self) -> str | None:
        try:
            return self.path.read_text("utf-8")
        except OSError:
            return None

    def write(self, entry: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(entry, encoding="utf-8")
        os.replace(tmp, self.path)

    def delete(self) -> None:
        self.path.unlink(missing_ok=True)


class XdgAutostart(_FileEntry):
    name = "xdg"

    def __init__(self, config_home: Path | None = None) -> None:
        base = config_home or Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
        self.path = base / "autostart" / f"{APP_ID}.desktop"

    def render(self, command: list[str]) -> str:
        return "\n".join([
            "[Desktop Entry]",
            "Type=Application",
            "Name=Studio Worker",
            "Comment=Lend your GPU to the minis.gg studio",
            f"Exec={shlex.join(command)}",
            "Icon=studio-worker",
            "Terminal=false",
            "X-GNOME-Autostart-enabled=true",
            "",
        ])



class MacLaunchAgent(_FileEntry):
    name = "launchd"

    def __init__(self, home: Path | None = None) -> None:
        self.path = (home or Path.home()) / "Library" / "LaunchAgents" / f"{MAC_LABEL}.plist"

    def render(self, command: list[str]) -> str:
        plist = {"Label": MAC_LABEL, "ProgramArguments": command, "RunAtLoad": True,
                 "ProcessType": "Interactive"}
        return plistlib.dumps(plist).decode("utf-8")



class WindowsRunKey(AutostartBackend):
    """``HKCU\\...\\Run``: a per-user value holding the command line."""

    name = "windows-run"

    @property
    def location(self) -> str:
        return f"HKCU\\{WINDOWS_RUN_KEY}\\{WINDOWS_VALUE}"

    def render(self, command: list[str]) -> str:
        return subprocess.list2cmdline(command)

    def read(self) -> str | None:  # pragma: no cover - Windows only
        return _registry_read()

    def write(self, entry: str) -> None:  # pragma: no cover - Windows only
        _registry_write(entry)

    def delete(self) -> None:  # pragma: no cover - Windows only
        _registry_delete()


if sys.platform == "win32":  # pragma: no cover - Windows only
    import winreg

    def _registry_read() -> str | None:
        try:
            with winreg.OpenKey(winreg.HKEY_CURRENT_USER, WINDOWS_RUN_KEY) as key:
                value, _ = winreg.QueryValueEx(key, WINDOWS_VALUE)
                return str(value)
        except OSError:
            return None

    def _registry_write(entry: str) -> None:
        with winreg.OpenKey(winreg.HKEY_CURRENT_USER, WINDOWS_RUN_KEY, 0,
                            winreg.KEY_SET_VALUE) as key:
            winreg.SetValueEx(key, WINDOWS_VALUE, 0, winreg.REG_SZ, entry)

    def _registry_delete() -> None:
        try:
            with winreg.OpenKey(winreg.HKEY_CURRENT_USER, WINDOWS_RUN_KEY, 0,
                                winreg.KEY_SET_VALUE) as key:
                winreg.DeleteValue(key, WINDOWS_VALUE)
        except OSError:
            pass
else:

    def _registry_read() -> str | None:
        return None

    def _registry_write(entry: str) -> None:
        raise OSError("the Windows registry exists only on Windows")

    def _registry_delete() -> None:
        return None


def backend_for(platform: str = sys.platform) -> AutostartBackend | None:
    if platform.startswith("linux") or "bsd" in platform:
        return XdgAutostart()
    if platform == "darwin":
        return MacLaunchAgent()
    if platform == "win32":
        return WindowsRunKey()
    return None


def sync_autostart(enabled: bool, config_file: Path | None,
                   backend: AutostartBackend | None = None) -> str:
    """Apply ``autostart_on_login``; never raises (one warning on failure)."""
    backend = backend or backend_for()
    if backend is None:
        if enabled:
            log.warning("starting at login is not supported on %s", sys.platform)
        return "unsupported"
    try:
        return backend.sync(enabled, autostart_command(config_file))
    except OSError as exc:
        log.warning("could not update the login entry %s: %s", backend.location, exc)
        return "failed"
