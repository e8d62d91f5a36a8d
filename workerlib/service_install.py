"""``install-service``: run the headless worker in the user's session at login.

A systemd user unit on Linux, a launchd agent on macOS, a Task Scheduler entry on
Windows. Always the user's session, never a system service: on Windows a service
(session 0) has no access to the GPU driver's user-mode side, and elsewhere the user's
session is where the GPU and its driver settings live.
"""

from __future__ import annotations

import os
import plistlib
import shutil
import subprocess
import sys
import tempfile
from abc import ABC, abstractmethod
from pathlib import Path
from xml.sax.saxutils import escape

from workerlib.autostart import launch_command

UNIT_NAME = "minis-studio-worker.service"
MAC_LABEL = "gg.minis.studio-worker"
WINDOWS_TASK = "StudioWorker"


def service_command(config_file: Path | None) -> list[str]:
    return launch_command(["run"], config_file)


def _run(argv: list[str]) -> tuple[bool, str]:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=30,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, str(exc)
    return proc.returncode == 0, (proc.stderr or proc.stdout).strip()


class ServiceBackend(ABC):
    name = "none"

    @property
    @abstractmethod
    def path(self) -> Path: ...

    @abstractmethod
    def render(self, command: list[str]) -> str: ...

    @abstractmethod
    def activate(self) -> list[str]:
        """Tell the service manager; returns what happened, one line each."""

    @abstractmethod
    def deactivate(self) -> list[str]: ...

    def install(self, command: list[str], *, start: bool = True) -> list[str]:
        entry = self.render(command)
        lines: list[str] = []
        try:
            current = self.path.read_text("utf-8")
        except OSError:
            current = None
        if current == entry:
            lines.append(f"{self.path} is already up to date")
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(entry, encoding="utf-8")
            lines.append(f"{'updated' if current else 'wrote'} {self.path}")
        if start:
            lines += self.activate()
        lines.append("undo with: studio-worker uninstall-service")
        return lines

    def uninstall(self) -> list[str]:
        if not self.path.exists():
            return [f"nothing to remove: {self.path} does not exist"]
        lines = self.deactivate()
        self.path.unlink()
        lines.append(f"removed {self.path}")
        return lines


class SystemdUserService(ServiceBackend):
    name = "systemd"

    def __init__(self, config_home: Path | None = None, *, systemctl: str | None = "systemctl"):
        base = config_home or Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
        self._path = base / "systemd" / "user" / UNIT_NAME
        self.systemctl = systemctl

    @property
    def path(self) -> Path:
        return self._path

    def render(self, command: list[str]) -> str:
        exec_start = " ".join(_systemd_quote(arg) for arg in command)
        return "\n".join([
            "[Unit]",
            "Description=Studio Worker (minis.gg): lends this PC's GPU to the studio",
            "Documentation=https://minis.gg",
            "After=network-online.target",
            "Wants=network-online.target",
            "",
            "[Service]",
            "Type=simple",
            f"ExecStart={exec_start}",
            "Restart=on-failure",
            "RestartSec=10",
            # The worker drains a running job on SIGTERM (5 s by default).
            "TimeoutStopSec=60",
            "Environment=PYTHONUNBUFFERED=1",
            "",
            "[Install]",
            "WantedBy=default.target",
            "",
        ])

    def _ctl(self, *args: str) -> tuple[bool, str]:
        if self.systemctl is None or shutil.which(self.systemctl) is None:
            return False, "systemctl not found"
        return _run([self.systemctl, "--user", *args])

    def activate(self) -> list[str]:
        ok, out = self._ctl("daemon-reload")
        if ok:
            ok, out = self._ctl("enable", "--now", UNIT_NAME)
        if ok:
            return [f"enabled and started {UNIT_NAME} (systemctl --user status {UNIT_NAME})"]
        return [f"could not reach your user service manager ({out or 'no answer'}); "
                f"in your desktop session run: systemctl --user daemon-reload && "
                f"systemctl --user enable --now {UNIT_NAME}",
                "to keep it running while you are logged out: loginctl enable-linger"]

    def deactivate(self) -> list[str]:
        ok, out = self._ctl("disable", "--now", UNIT_NAME)
        self._ctl("daemon-reload")
        return [f"stopped and disabled {UNIT_NAME}" if ok else
                f"could not stop {UNIT_NAME} ({out or 'no answer'})"]


def _systemd_quote(arg: str) -> str:
    if arg and all(c.isalnum() or c in "/._-:=+,@" for c in arg):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


class LaunchdAgent(ServiceBackend):
    name = "launchd"

    def __init__(self, home: Path | None = None) -> None:
        self._path = (home or Path.home()) / "Library" / "LaunchAgents" / f"{MAC_LABEL}.plist"

    @property
    def path(self) -> Path:
        return self._path

    def render(self, command: list[str]) -> str:
        logs = Path.home() / "Library" / "Logs" / "studio-worker"
        plist = {
            "Label": MAC_LABEL,
            "ProgramArguments": command,
            "RunAtLoad": True,
            "KeepAlive": {"SuccessfulExit": False},
            "ProcessType": "Interactive",
            "StandardOutPath": str(logs / "service.out.log"),
            "StandardErrorPath": str(logs / "service.err.log"),
        }
        return plistlib.dumps(plist).decode("utf-8")

    def activate(self) -> list[str]:  # pragma: no cover - macOS only
        ok, out = _run(["launchctl", "bootstrap", f"gui/{os.getuid()}", str(self.path)])
        return [f"loaded {MAC_LABEL}" if ok else f"launchctl bootstrap failed: {out}"]

    def deactivate(self) -> list[str]:  # pragma: no cover - macOS only
        ok, out = _run(["launchctl", "bootout", f"gui/{os.getuid()}", str(self.path)])
        return [f"unloaded {MAC_LABEL}" if ok else f"launchctl bootout failed: {out}"]


class WindowsScheduledTask(ServiceBackend):
    """A Task Scheduler entry that starts at logon, in the user's session."""

    name = "schtasks"

    def __init__(self, data_dir: Path | None = None) -> None:
        base = data_dir or Path(os.environ.get("LOCALAPPDATA") or tempfile.gettempdir())
        self._path = base / "StudioWorker" / "StudioWorker-task.xml"

    @property
    def path(self) -> Path:
        return self._path

    def render(self, command: list[str]) -> str:
        program, args = command[0], subprocess.list2cmdline(command[1:])
        return "\n".join([
            '<?xml version="1.0" encoding="UTF-16"?>',
            '<Task version="1.2" xmlns="http://schemas.microsoft.com/windows/2004/02/mit/task">',
            "  <RegistrationInfo><Description>Studio Worker (minis.gg)</Description>"
            "</RegistrationInfo>",
            "  <Triggers><LogonTrigger><Enabled>true</Enabled></LogonTrigger></Triggers>",
            "  <Principals><Principal id=\"Author\"><LogonType>InteractiveToken</LogonType>"
            "<RunLevel>LeastPrivilege</RunLevel></Principal></Principals>",
            "  <Settings>",
            "    <MultipleInstancesPolicy>IgnoreNew</MultipleInstancesPolicy>",
            "    <DisallowStartIfOnBatteries>false</DisallowStartIfOnBatteries>",
            "    <ExecutionTimeLimit>PT0S</ExecutionTimeLimit>",
            "    <RestartOnFailure><Interval>PT1M</Interval><Count>10</Count></RestartOnFailure>",
            "  </Settings>",
            "  <Actions Context=\"Author\"><Exec>",
            f"    <Command>{escape(program)}</Command>",
            f"    <Arguments>{escape(args)}</Arguments>",
            "  </Exec></Actions>",
            "</Task>",
            "",
        ])

    def activate(self) -> list[str]:  # pragma: no cover - Windows only
        ok, out = _run(["schtasks", "/Create", "/TN", WINDOWS_TASK, "/XML", str(self.path),
                        "/F"])
        if ok:
            _run(["schtasks", "/Run", "/TN", WINDOWS_TASK])
        return [f"created the scheduled task {WINDOWS_TASK}" if ok else
                f"schtasks failed: {out}"]

    def deactivate(self) -> list[str]:  # pragma: no cover - Windows only
        ok, out = _run(["schtasks", "/Delete", "/TN", WINDOWS_TASK, "/F"])
        return [f"deleted the scheduled task {WINDOWS_TASK}" if ok else f"schtasks: {out}"]


def service_backend(platform: str = sys.platform) -> ServiceBackend | None:
    if platform.startswith("linux"):
        return SystemdUserService()
    if platform == "darwin":
        return LaunchdAgent()
    if platform == "win32":
        return WindowsScheduledTask()
    return None
