"""The installers: the Linux scripts run for real into a temp HOME with a tiny fake
bundle; the Windows and macOS ones (built only on their own runners) are checked as
data against what workerlib/autostart.py writes for the same settings."""

from __future__ import annotations

import configparser
import os
import plistlib
import re
import shutil
import stat
import subprocess
import tarfile
from pathlib import Path, PureWindowsPath

import pytest

from workerlib.autostart import MAC_LABEL, WINDOWS_VALUE, MacLaunchAgent, XdgAutostart
from workerlib.updater import ARTEFACTS, CHECKSUMS_ASSET, EXECUTABLE, WINDOWS_SETUP

REPO = Path(__file__).resolve().parents[2]
INSTALLER = REPO / "installer"
LINUX = INSTALLER / "linux"
BASH = shutil.which("bash")
pytestmark = pytest.mark.skipif(BASH is None, reason="needs bash")

FAKE_BUNDLE = """\
#!/bin/sh
# A stand-in for the real bundle: answers --version and uninstall-service.
case "$1" in
  --version) echo "studio-worker 7.7.7" ;;
  uninstall-service)
    rm -f "${XDG_CONFIG_HOME:-$HOME/.config}/systemd/user/minis-studio-worker.service"
    echo "removed the unit" ;;
  *) echo "fake worker: $*" ;;
esac
"""


@pytest.fixture
def home(tmp_path: Path) -> Path:
    # A space in HOME: every path the scripts write must be quoted right.
    path = tmp_path / "home of user"
    path.mkdir()
    return path


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    folder = tmp_path / "dist" / "StudioWorker"
    (folder / "_internal").mkdir(parents=True)
    (folder / "_internal" / "base_library.zip").write_bytes(b"lib")
    exe = folder / EXECUTABLE
    exe.write_text(FAKE_BUNDLE)
    exe.chmod(0o755)
    return folder


def sh(script: Path, *args: str, home: Path, path_env: str | None = None,
       **env: str) -> subprocess.CompletedProcess[str]:
    environ = {"HOME": str(home), "PATH": path_env or os.environ.get("PATH", "/usr/bin:/bin"),
               **env}
    return subprocess.run([str(BASH), str(script), *args], capture_output=True, text=True,
                          env=environ, timeout=60)


def paths(home: Path) -> dict[str, Path]:
    local = home / ".local"
    return {
        "dest": local / "opt" / "studio-worker",
        "exe": local / "opt" / "studio-worker" / EXECUTABLE,
        "link": local / "bin" / "studio-worker",
        "desktop": local / "share" / "applications" / "studio-worker.desktop",
        "icon": local / "share" / "icons" / "hicolor" / "256x256" / "apps" / "studio-worker.png",
        "autostart": home / ".config" / "autostart" / "studio-worker.desktop",
        "unit": home / ".config" / "systemd" / "user" / "minis-studio-worker.service",
        "settings": home / ".config" / "minis-studio-worker" / "config.toml",
    }


def desktop_entry(path: Path) -> dict[str, str]:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(path.read_text("utf-8"))
    return dict(parser["Desktop Entry"])


# -- Linux -----------------------------------------------------------------------------------
def test_install_places_everything(home: Path, bundle: Path) -> None:
    result = sh(LINUX / "install.sh", "--from", str(bundle), home=home)
    assert result.returncode == 0, result.stderr
    p = paths(home)
    assert "installed 7.7.7 in" in result.stdout
    assert "is not on your PATH" in result.stdout
    assert p["exe"].stat().st_mode & stat.S_IXUSR
    assert (p["dest"] / "_internal" / "base_library.zip").read_bytes() == b"lib"
    assert (p["dest"] / "uninstall.sh").stat().st_mode & stat.S_IXUSR
    assert p["link"].is_symlink() and os.readlink(p["link"]) == str(p["exe"])
    ran = subprocess.run([str(p["link"]), "--version"], capture_output=True, text=True)
    assert ran.stdout.strip() == "studio-worker 7.7.7"
    # The icon comes from the repo's assets when the bundle carries none.
    assert p["icon"].read_bytes() == (REPO / "assets" / "studio-worker.png").read_bytes()

    entry = desktop_entry(p["desktop"])
    assert entry["Type"] == "Application" and entry["Name"] == "Studio Worker"
    # Desktop Entry quoting: a path with a space is double-quoted.
    assert entry["Exec"] == f'"{p["exe"]}"'
    assert entry["TryExec"] == str(p["exe"]) and entry["Icon"] == "studio-worker"
    assert entry["Terminal"] == "false"
    assert not p["autostart"].exists()
    if shutil.which("desktop-file-validate"):
        check = subprocess.run(["desktop-file-validate", str(p["desktop"])],
                               capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
    assert sorted(x.name for x in p["dest"].parent.iterdir()) == ["studio-worker"]


def test_autostart_entry_is_what_the_app_writes(home: Path, bundle: Path) -> None:
    result = sh(LINUX / "install.sh", "--autostart", "--from", str(bundle), home=home)
    assert result.returncode == 0, result.stderr
    p = paths(home)
    expected = XdgAutostart(home / ".config").render([str(p["exe"]), "ui", "--autostart"])
    assert p["autostart"].read_text("utf-8") == expected
    assert f"at login:   {p['autostart']}" in result.stdout


def test_xdg_dirs_and_prefix_are_honoured(home: Path, bundle: Path, tmp_path: Path) -> None:
    data, config, prefix = tmp_path / "data", tmp_path / "config", tmp_path / "prefix"
    result = sh(LINUX / "install.sh", "--autostart", "--prefix", str(prefix),
                "--from", str(bundle), home=home, XDG_DATA_HOME=str(data),
                XDG_CONFIG_HOME=str(config), path_env=f"{prefix / 'bin'}:/usr/bin:/bin")
    assert result.returncode == 0, result.stderr
    assert "not on your PATH" not in result.stdout
    exe = prefix / "opt" / "studio-worker" / EXECUTABLE
    assert (prefix / "bin" / "studio-worker").resolve() == exe
    assert (data / "applications" / "studio-worker.desktop").is_file()
    assert (config / "autostart" / "studio-worker.desktop").read_text() == \
        XdgAutostart(config).render([str(exe), "ui", "--autostart"])
    result = sh(LINUX / "uninstall.sh", "--prefix", str(prefix), home=home,
                XDG_DATA_HOME=str(data), XDG_CONFIG_HOME=str(config))
    assert result.returncode == 0, result.stderr
    assert not (prefix / "opt" / "studio-worker").exists()
    assert not (config / "autostart" / "studio-worker.desktop").exists()


def test_reinstall_upgrades_in_place(home: Path, bundle: Path) -> None:
    assert sh(LINUX / "install.sh", "--from", str(bundle), home=home).returncode == 0
    p = paths(home)
    (p["dest"] / "stale-file").write_text("from the old version")
    (p["dest"].parent / "studio-worker.old").mkdir()  # left by a self-update
    (bundle / EXECUTABLE).write_text(FAKE_BUNDLE.replace("7.7.7", "8.0.0"))
    result = sh(LINUX / "install.sh", "--from", str(bundle), home=home)
    assert result.returncode == 0, result.stderr
    assert "installed 8.0.0" in result.stdout
    assert not (p["dest"] / "stale-file").exists()
    assert sorted(x.name for x in p["dest"].parent.iterdir()) == ["studio-worker"]


def test_install_from_release_tarball(home: Path, bundle: Path, tmp_path: Path) -> None:
    """The release artefact's layout: StudioWorker/ with the bundle and these scripts."""
    for name in ("install.sh", "uninstall.sh"):
        shutil.copy2(LINUX / name, bundle / name)
    shutil.copy2(REPO / "assets" / "studio-worker.png", bundle / "studio-worker.png")
    tarball = tmp_path / ARTEFACTS[0].name
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(bundle, arcname="StudioWorker")
    result = sh(LINUX / "install.sh", "--from", str(tarball), home=home)
    assert result.returncode == 0, result.stderr
    p = paths(home)
    assert p["exe"].is_file() and (p["dest"] / "studio-worker.png").is_file()
    # ... and from the unpacked folder, the way a user runs it.
    unpacked = tmp_path / "unpacked"
    unpacked.mkdir()
    with tarfile.open(tarball) as tar:
        tar.extractall(unpacked, filter="data")
    result = sh(unpacked / "StudioWorker" / "install.sh", home=home)
    assert result.returncode == 0, result.stderr


def test_pip_installed_command_is_left_alone(home: Path, bundle: Path) -> None:
    p = paths(home)
    p["link"].parent.mkdir(parents=True)
    p["link"].write_text("#!/bin/sh\n# pip's console script\n")
    result = sh(LINUX / "install.sh", "--from", str(bundle), home=home)
    assert result.returncode == 0, result.stderr
    assert "is not ours (a pip install?)" in result.stdout
    assert p["link"].read_text().endswith("pip's console script\n")
    assert sh(LINUX / "uninstall.sh", home=home).returncode == 0
    assert p["link"].is_file()


def test_uninstall_removes_what_is_ours_and_keeps_settings(home: Path, bundle: Path) -> None:
    assert sh(LINUX / "install.sh", "--autostart", "--from", str(bundle),
              home=home).returncode == 0
    p = paths(home)
    p["settings"].parent.mkdir(parents=True)
    p["settings"].write_text('worker_id = "w-1"\n')
    p["unit"].parent.mkdir(parents=True)
    p["unit"].write_text(f"[Service]\nExecStart={p['exe']} run\n")
    result = sh(p["dest"] / "uninstall.sh", home=home)
    assert result.returncode == 0, result.stderr
    for key in ("dest", "link", "desktop", "icon", "autostart", "unit"):
        assert not p[key].exists() and not p[key].is_symlink(), key
    assert p["settings"].read_text() == 'worker_id = "w-1"\n'
    assert "kept your settings" in result.stdout
    again = sh(LINUX / "uninstall.sh", home=home)
    assert again.returncode == 0 and "nothing to remove" in again.stdout


def test_uninstall_purge_and_foreign_entries(home: Path, bundle: Path) -> None:
    assert sh(LINUX / "install.sh", "--from", str(bundle), home=home).returncode == 0
    p = paths(home)
    p["settings"].parent.mkdir(parents=True)
    p["settings"].write_text("x")
    state = home / ".local" / "state" / "minis-studio-worker"
    state.mkdir(parents=True)
    # A login entry for a pip-installed worker is not this installation's.
    p["autostart"].parent.mkdir(parents=True)
    p["autostart"].write_text("[Desktop Entry]\nExec=/usr/bin/studio-worker ui --autostart\n")
    result = sh(LINUX / "uninstall.sh", "--purge", home=home)
    assert result.returncode == 0, result.stderr
    assert not p["settings"].parent.exists() and not state.exists()
    assert p["autostart"].exists()


def test_install_refuses_a_bundle_that_does_not_run(home: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / EXECUTABLE).write_text("#!/bin/sh\nexit 1\n")
    (broken / EXECUTABLE).chmod(0o755)
    result = sh(LINUX / "install.sh", "--from", str(broken), home=home)
    assert result.returncode == 1 and "does not run here" in result.stderr
    assert not (home / ".local").exists()
    result = sh(LINUX / "install.sh", "--from", str(tmp_path / "nowhere"), home=home)
    assert result.returncode == 1 and "does not exist" in result.stderr
    assert sh(LINUX / "install.sh", "--bogus", home=home).returncode == 2


def test_desktop_exec_quoting(home: Path, bundle: Path, tmp_path: Path) -> None:
    prefix = tmp_path / 'we$ird "dir"'
    result = sh(LINUX / "install.sh", "--prefix", str(prefix), "--from", str(bundle), home=home)
    assert result.returncode == 0, result.stderr
    entry = desktop_entry(home / ".local" / "share" / "applications" / "studio-worker.desktop")
    exe = str(prefix / "opt" / "studio-worker" / EXECUTABLE)
    # String-level escaping first (each backslash doubled), then Exec quoting.
    quoted = '"' + exe.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$") + '"'
    assert entry["Exec"] == quoted.replace("\\", "\\\\")


def test_scripts_pass_shellcheck() -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed")
    scripts = [*LINUX.glob("*.sh"), INSTALLER / "macos" / "autostart.sh",
               REPO / "scripts" / "build-bundle", REPO / "scripts" / "_bundle_setup.sh"]
    result = subprocess.run([shellcheck, "-x", "-e", "SC1091", *map(str, scripts)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


# -- macOS (data) ----------------------------------------------------------------------------
def test_info_plist() -> None:
    with (INSTALLER / "macos" / "Info.plist").open("rb") as f:
        info = plistlib.load(f)
    assert info["CFBundleIdentifier"] == "gg.minis.studio-worker"
    assert info["CFBundleExecutable"] == EXECUTABLE
    assert info["CFBundlePackageType"] == "APPL"
    assert info["CFBundleIconFile"] == "studio-worker.icns"
    assert info["LSUIElement"] is False and info["LSBackgroundOnly"] is False
    assert info["NSHighResolutionCapable"] is True
    assert re.fullmatch(r"\d+\.\d+", info["LSMinimumSystemVersion"])
    assert (REPO / "assets" / info["CFBundleIconFile"]).is_file()
    spec = (REPO / "pyinstaller.spec").read_text()
    assert '"installer" / "macos" / "Info.plist"' in spec
    assert 'info_plist["CFBundleShortVersionString"] = __version__' in spec


def test_launch_agent_is_what_the_app_writes(home: Path, tmp_path: Path) -> None:
    template = (INSTALLER / "macos" / f"{MAC_LABEL}.plist").read_text("utf-8")
    app_exe = "/Applications/StudioWorker.app/Contents/MacOS/StudioWorker"
    assert template == MacLaunchAgent(home).render([app_exe, "ui", "--autostart"])
    # The script writes the same for an app anywhere (here: a path needing XML escapes).
    app = tmp_path / "Apps & Tools" / "StudioWorker.app"
    (app / "Contents" / "MacOS").mkdir(parents=True)
    (app / "Contents" / "MacOS" / EXECUTABLE).write_text(FAKE_BUNDLE)
    (app / "Contents" / "MacOS" / EXECUTABLE).chmod(0o755)
    script = INSTALLER / "macos" / "autostart.sh"
    result = sh(script, str(app), home=home)
    assert result.returncode == 0, result.stderr
    agent = home / "Library" / "LaunchAgents" / f"{MAC_LABEL}.plist"
    exe = str(app / "Contents" / "MacOS" / EXECUTABLE)
    assert agent.read_text("utf-8") == MacLaunchAgent(home).render([exe, "ui", "--autostart"])
    assert sh(script, "--remove", home=home).returncode == 0
    assert not agent.exists()


# -- Windows (data) ----------------------------------------------------------------------------
def iss_sections(text: str) -> dict[str, list[str]]:
    sections: dict[str, list[str]] = {}
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(";") or line.startswith("#") or line.startswith("//"):
            continue
        if re.fullmatch(r"\[\w+\]", line):
            current = line[1:-1]
            sections.setdefault(current, [])
        else:
            sections.setdefault(current, []).append(line)
    return sections


def iss_entry(line: str) -> dict[str, str]:
    """``Name: "a"; Flags: b c`` -> {"Name": "a", "Flags": "b c"} (Inno's "" escape kept)."""
    fields: dict[str, str] = {}
    for match in re.finditer(r'(\w+):\s*("(?:[^"]|"")*"|[^;]*)\s*(?:;|$)', line):
        value = match.group(2).strip()
        if value.startswith('"') and value.endswith('"'):
            value = value[1:-1].replace('""', '"')
        fields[match.group(1)] = value
    return fields


def windows_path(relative: str) -> Path:
    """A path in the .iss (relative to its folder) as a path on this machine."""
    return (INSTALLER / "windows").joinpath(*PureWindowsPath(relative).parts).resolve()


def test_inno_setup_script() -> None:
    text = (INSTALLER / "windows" / "StudioWorker.iss").read_text("utf-8")
    sections = iss_sections(text)
    assert {"Setup", "Tasks", "Files", "Icons", "Registry", "Run", "UninstallRun",
            "UninstallDelete", "Code"} <= set(sections)
    setup = dict(line.split("=", 1) for line in sections["Setup"])
    assert setup["PrivilegesRequired"] == "lowest"
    assert setup["DefaultDirName"].startswith("{autopf}")
    assert re.fullmatch(r"\{\{[0-9A-F-]{36}\}", setup["AppId"])
    assert setup["OutputBaseFilename"] + ".exe" == WINDOWS_SETUP
    assert windows_path(setup["SetupIconFile"]) == REPO / "assets" / "studio-worker.ico"

    tasks = {iss_entry(line)["Name"]: iss_entry(line) for line in sections["Tasks"]}
    assert "unchecked" in tasks["autostart"]["Flags"]
    files = [iss_entry(line) for line in sections["Files"]]
    assert any(f["DestName"] == "{#ExeName}" and f["DestDir"] == "{app}" for f in files)
    for entry in files:
        if "{#" not in entry["Source"]:
            assert windows_path(entry["Source"]).is_file(), entry["Source"]
    assert '#define ExeName "StudioWorker.exe"' in text
    icons = [iss_entry(line) for line in sections["Icons"]]
    assert any(i["Name"] == "{group}\\{#AppName}" for i in icons)
    assert any(i["Filename"] == "{uninstallexe}" for i in icons)

    (run_key,) = [iss_entry(line) for line in sections["Registry"]]
    assert run_key["Root"] == "HKCU"
    assert run_key["Subkey"] == "Software\\Microsoft\\Windows\\CurrentVersion\\Run"
    assert run_key["ValueName"] == WINDOWS_VALUE
    assert run_key["ValueData"] == '"{app}\\{#ExeName}" ui --autostart'
    assert run_key["Tasks"] == "autostart" and "uninsdeletevalue" in run_key["Flags"]
    # The same command line the app writes for an install path with a space in it.
    from workerlib.autostart import WindowsRunKey

    app = "C:\\Users\\me\\AppData\\Local\\Programs\\Studio Worker"
    value = run_key["ValueData"].replace("{app}", app).replace("{#ExeName}", "StudioWorker.exe")
    assert value == WindowsRunKey().render([f"{app}\\StudioWorker.exe", "ui", "--autostart"])

    (uninstall_run,) = [iss_entry(line) for line in sections["UninstallRun"]]
    assert uninstall_run["Parameters"] == "uninstall-service" and uninstall_run["RunOnceId"]
    assert "RegDeleteValue(HKEY_CURRENT_USER" in text and f"'{WINDOWS_VALUE}'" in text


# -- the release workflow -----------------------------------------------------------------------
def test_release_workflow_names_every_artefact() -> None:
    workflow = (REPO / ".github" / "workflows" / "release.yml").read_text("utf-8")
    for runner in ("ubuntu-22.04", "windows-latest", "macos-latest"):
        assert f"os: {runner}" in workflow
    assert "python -m workerlib.updater sha256sums" in workflow
    assert "python -m workerlib.updater artefacts" in workflow
    assert "iscc" in workflow.lower() and "StudioWorker.iss" in workflow
    assert "pyinstaller==6.22.3" in workflow and "KIVY_LOG_MODE: PYTHON" in workflow
    assert CHECKSUMS_ASSET in workflow
    try:
        import yaml  # type: ignore[import-untyped]
    except ImportError:
        return
    data = yaml.safe_load(workflow)
    assert set(data["jobs"]) >= {"build", "publish"}
