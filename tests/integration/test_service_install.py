import os
import plistlib
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from workerlib.cli import main
from workerlib.service_install import (
    LaunchdAgent,
    SystemdUserService,
    WindowsScheduledTask,
    service_command,
)


def _verify(unit: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700, exist_ok=True)
    return subprocess.run(["systemd-analyze", "verify", "--user", str(unit)],
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "XDG_RUNTIME_DIR": str(runtime)})


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze missing")
def test_systemd_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    backend = SystemdUserService(tmp_path, systemctl=None)
    lines = backend.install(service_command(tmp_path / "my config.toml"))
    unit = tmp_path / "systemd" / "user" / "minis-studio-worker.service"
    assert any(str(unit) in line for line in lines)
    assert any("systemctl --user enable --now" in line for line in lines)  # no user manager
    text = unit.read_text()
    assert "Restart=on-failure" in text
    assert f'ExecStart={sys.executable} -m workerlib --config "{tmp_path}/my config.toml" run' \
        in text
    result = _verify(unit, tmp_path)
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr
    # The check can fail: a broken directive is reported.
    broken = tmp_path / "broken" / "minis-studio-worker.service"
    broken.parent.mkdir()
    broken.write_text(text.replace("Restart=on-failure", "Restart=sometimes"))
    assert "sometimes" in _verify(broken, tmp_path).stderr


def test_install_is_idempotent_and_uninstall_undoes_it(tmp_path: Path) -> None:
    backend = SystemdUserService(tmp_path, systemctl=None)
    command = service_command(None)
    assert backend.install(command, start=False)[0].startswith("wrote")
    assert backend.install(command, start=False)[0].endswith("already up to date")
    assert backend.uninstall()[-1].startswith("removed")
    assert not backend.path.exists()
    assert backend.uninstall()[0].startswith("nothing to remove")


def test_cli_install_and_uninstall_service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("PATH", str(tmp_path))  # no systemctl: only the file is written
    config = tmp_path / "c.toml"
    assert main(["--config", str(config), "install-service"]) == 0
    out = capsys.readouterr().out
    unit = tmp_path / "xdg" / "systemd" / "user" / "minis-studio-worker.service"
    assert unit.exists() and "uninstall-service" in out
    assert str(config) in unit.read_text()
    assert main(["--config", str(config), "uninstall-service"]) == 0
    assert not unit.exists()


def test_launchd_and_task_scheduler_entries_as_data(tmp_path: Path) -> None:
    command = ["/Applications/Studio Worker.app/Contents/MacOS/StudioWorker", "run"]
    plist = plistlib.loads(LaunchdAgent(tmp_path).render(command).encode())
    assert plist["Label"] == "gg.minis.studio-worker"
    assert plist["ProgramArguments"] == command
    assert plist["KeepAlive"] == {"SuccessfulExit": False} and plist["RunAtLoad"] is True
    xml = WindowsScheduledTask(tmp_path).render(
        [r"C:\Users\me\AppData\Local\Programs\StudioWorker\StudioWorker.exe", "--config",
         r"C:\Users\me\my config.toml", "run"])
    root = ET.fromstring(xml.split("\n", 1)[1])
    ns = {"t": "http://schemas.microsoft.com/windows/2004/02/mit/task"}
    assert root.find("t:Triggers/t:LogonTrigger", ns) is not None
    assert root.findtext("t:Principals/t:Principal/t:LogonType", namespaces=ns) == \
        "InteractiveToken"
    assert root.findtext("t:Actions/t:Exec/t:Command", namespaces=ns).endswith(
        "StudioWorker.exe")
    assert root.findtext("t:Actions/t:Exec/t:Arguments", namespaces=ns) == \
        r'--config "C:\Users\me\my config.toml" run'
