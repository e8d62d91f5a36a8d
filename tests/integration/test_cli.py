"""The command line, as a user runs it: real subprocesses against the local studio."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import BOOTSTRAP
from workerlib import __version__
from workerlib.cli import main
from workerlib.config import ConfigStore

ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60,
            cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "workerlib", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=cwd, env=env, stdin=subprocess.DEVNULL)


def test_version_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"studio-worker {__version__}"
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    out = capsys.readouterr().out
    for command in ("run", "ui", "register", "status", "enable", "disable", "set-threshold",
                    "config", "check-update", "demo", "dev-studio", "pause", "resume", "stats"):
        assert command in out
    with pytest.raises(SystemExit) as exit_info:
        main(["frobnicate"])
    assert exit_info.value.code == 2


def test_config_prints_path_and_masks_secrets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "c.toml"
    ConfigStore(path).update({"auth_token": "tok-VERY-SECRET-1", "bootstrap_token": BOOTSTRAP})
    assert main(["--config", str(path), "config"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == str(path)
    assert "tok-VERY-SECRET-1" not in out and BOOTSTRAP not in out
    assert "auth_token = ••••••••" in out
    assert 'engine = "synthetic"' in out
    assert main(["--config", str(path), "config", "--show-secrets"]) == 0
    assert "tok-VERY-SECRET-1" in capsys.readouterr().out


def test_enable_disable_set_threshold_edit_the_file_keeping_comments(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "c.toml"
    path.write_text("# mine\nauto_enabled = true\n")
    assert main(["--config", str(path), "disable"]) == 0
    assert ConfigStore(path).load().auto_enabled is False
    assert main(["--config", str(path), "enable"]) == 0
    assert ConfigStore(path).load().auto_enabled is True
    assert main(["--config", str(path), "set-threshold", "7.5"]) == 0
    assert ConfigStore(path).load().vram_threshold_gb == 7.5
    assert path.read_text().startswith("# mine\n")
    assert main(["--config", str(path), "set-threshold", "-1"]) == 1
    err = capsys.readouterr().err
    assert "vram_threshold_gb" in err and str(path) in err


def test_env_var_selects_the_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "from-env.toml"
    monkeypatch.setenv("STUDIO_WORKER_CONFIG", str(path))
    assert main(["disable"]) == 0
    assert ConfigStore(path).load().auto_enabled is False


def test_malformed_config_exits_1_naming_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "c.toml"
    path.write_text("engine = \n")
    for command in (["status"], ["config"], ["disable"], ["run"]):
        assert main(["--config", str(path), *command]) == 1
        err = capsys.readouterr().err
        assert str(path) in err and "line 1" in err
    assert path.read_text() == "engine = \n"


def test_run_without_registration_or_token_explains(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "c.toml"
    ConfigStore(path).update({"api_base_url": "http://127.0.0.1:9", "auto_update_enabled": False,
                              "protocol": "v1"})
    assert main(["--config", str(path), "run"]) == 1
    assert "bootstrap_token" in capsys.readouterr().err
    assert main(["--config", str(path), "register"]) == 1
    assert "--bootstrap-token" in capsys.readouterr().err


def test_set_threshold_explains_its_argument(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["set-threshold", "--help"])
    out = capsys.readouterr().out
    assert "GiB of VRAM are left to others" in out


@pytest.fixture
def studio_process(tmp_path: Path) -> Iterator[str]:
    """`studio-worker dev-studio` as its own process, as a developer would run it."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "workerlib", "dev-studio", "--port", str(port),
         "--bootstrap-token", BOOTSTRAP],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        stdin=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    import urllib.request

    while True:
        try:
            urllib.request.urlopen(url + "/admin/stats", timeout=1).read()
            break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError(f"dev-studio did not start: {proc.communicate()[0]}") from None
            time.sleep(0.1)
    yield url
    proc.send_signal(signal.SIGINT)
    try:
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def _admin(url: str, method: str, path: str, body: Any = None) -> Any:
    import json
    import urllib.request

    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as resp:
        return json.loads(resp.read() or b"null")


def _wait(predicate: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        time.sleep(0.1)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_register_run_status_disable_and_signal_exit(
    tmp_path: Path, studio_process: str, sig: signal.Signals
) -> None:
    url = studio_process
    config = tmp_path / "c.toml"
    ConfigStore(config).update({"heartbeat_interval_secs": 0.3, "claim_interval_secs": 0.3,
                                "auto_update_enabled": False})
    reg = run_cli("--config", str(config), "register", "--bootstrap-token", BOOTSTRAP,
                  "--api-base-url", url)
    assert reg.returncode == 0, reg.stderr
    assert "registered as worker" in reg.stdout
    assert BOOTSTRAP not in reg.stdout + reg.stderr
    job_ids = _admin(url, "POST", "/admin/jobs", {"model": "synthetic", "count": 3,
                     "task": {"kind": "image", "prompt": "cli"}})["jobIds"]

    log_path = tmp_path / "run.log"
    with open(log_path, "w") as log:
        worker = subprocess.Popen([sys.executable, "-m", "workerlib", "--config", str(config),
                                   "--headless"], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL)
    try:
        _wait(lambda: all(_admin(url, "GET", f"/admin/jobs/{j}")["status"] == "completed"
                          for j in job_ids), 20)
        # (the worker counts a job once it has read the studio's answer)
        _wait(lambda: "3 completed" in run_cli("--config", str(config), "status").stdout, 20)
        status = run_cli("--config", str(config), "status")
        assert status.returncode == 0
        assert f"running (pid {worker.pid}, live, through its control API)" in status.stdout

        # Asked of the running worker: its figures up to the last job, although it writes
        # its stats file only about once a second.
        assert "last 24 hours: 3 completed, 0 failed" in run_cli(
            "--config", str(config), "stats").stdout
        data = json.loads(run_cli("--config", str(config), "stats", "--json").stdout)
        assert data["day"]["completed"] == 3
        assert data["by_kind_model"][0]["model"] == "synthetic"
        assert run_cli("--config", str(config), "pause", "--for", "2h").returncode == 0
        _wait(lambda: "holding:    Snoozed until" in run_cli("--config", str(config),
                                                           "status").stdout, 20)
        assert run_cli("--config", str(config), "resume").returncode == 0
        _wait(lambda: "holding:" not in run_cli("--config", str(config), "status").stdout, 20)

        assert run_cli("--config", str(config), "disable").returncode == 0  # applied at once
        late = _admin(url, "POST", "/admin/jobs", {"model": "synthetic",
                      "task": {"kind": "image", "prompt": "paused"}})["jobIds"][0]
        time.sleep(1.0)
        assert _admin(url, "GET", f"/admin/jobs/{late}")["status"] == "queued"
        assert "Paused" in run_cli("--config", str(config), "status").stdout

        worker.send_signal(sig)
        assert worker.wait(timeout=60) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
    output = log_path.read_text()
    token = ConfigStore(config).load().auth_token
    assert token not in output and BOOTSTRAP not in output
    assert "not running" in run_cli("--config", str(config), "status").stdout


def test_demo_completes_jobs_of_every_kind() -> None:
    result = run_cli("demo", "--headless", "--jobs", "6", timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith("ok ")]
    assert len(lines) == 6
    for kind in ("image", "llm", "audio_stt", "audio_tts", "video"):
        assert any(f" {kind} " in line for line in lines), kind
    assert "6/6 jobs completed" in result.stdout
    # A politeness rule holds first and lifts by itself, before any job.
    out = result.stdout
    assert out.index("rule holding: Snoozed until") < out.index("rule lifted") < out.index("ok ")
    # Over v2, after the studio's operator approved this PC.
    assert out.index("waiting for the studio to approve this PC (request r-") < \
        out.index("operator approved request") < out.index("ok ")
    assert "talking to the studio over v2 channel" in out


def test_ui_without_gui_packages_points_to_headless(tmp_path: Path) -> None:
    # A stub package that fails to import stands in for a missing 'ui' extra.
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "__init__.py").write_text("raise ImportError('no ui extra')\n")
    result = run_cli("--config", str(tmp_path / "c.toml"), "ui", cwd=tmp_path)
    assert result.returncode == 2
    assert "studio-worker run" in result.stderr


def test_a_second_run_with_the_same_config_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    ConfigStore(config).update({"api_base_url": "http://127.0.0.1:9", "auto_update_enabled": False,
                                "worker_id": "w-x", "auth_token": "tok-abcdef-123"})
    log = tmp_path / "first.log"
    with open(log, "w") as out:
        first = subprocess.Popen([sys.executable, "-m", "workerlib", "--config", str(config),
                                  "run"], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL)
    try:
        _wait(lambda: (tmp_path / ".c.d" / "state" / "instance.json").exists(), 20)
        second = run_cli("--config", str(config), "run")
        assert second.returncode == 1
        assert f"headless studio-worker (pid {first.pid})" in second.stderr
        assert "kill" in second.stderr
        assert "window" not in second.stderr  # a second `run`: nothing about a window
        other = tmp_path / "other.toml"
        ConfigStore(other).update({"api_base_url": "http://127.0.0.1:9", "protocol": "v1"})
        # A different config file may run side by side (here it stops at once: a v1 worker
        # with no token has nothing to do; a v2 one would wait for approval).
        assert "already running" not in run_cli("--config", str(other), "run").stderr
    finally:
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=15) == 0
    # The lock went with the process: a new run may start.
    assert not (tmp_path / ".c.d" / "state" / "instance.json").exists()


async def test_status_shows_why_a_running_worker_holds_back(
    studio: Any, make_service: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from workerlib.engines.synthetic import SyntheticEngine

    class Offline(SyntheticEngine):
        async def check(self) -> str | None:
            return "ComfyUI at http://127.0.0.1:8188 is not answering"

    service = await make_service(engine=Offline())
    await service.start()
    await studio.wait_for(lambda: service.status().label == "Engine offline", timeout=5)
    await studio.wait_for(lambda: service.paths.status_file.exists(), timeout=5)
    service.publish_status_file(force=True)
    from workerlib.cli import cmd_status

    assert cmd_status(service.paths) == 0
    out = capsys.readouterr().out
    assert "Engine offline" in out
    assert "not claiming — ComfyUI at http://127.0.0.1:8188 is not answering" in out


def start_register(config: Path, out: Path) -> subprocess.Popen[bytes]:
    """`studio-worker register` without a token, polling fast, its output into ``out``."""
    with open(out, "w") as sink:
        return subprocess.Popen(
            [sys.executable, "-m", "workerlib", "--config", str(config), "register",
             "--poll-secs", "0.1"], cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL)


def test_register_without_a_token_waits_for_approval_and_reset_starts_over(
    tmp_path: Path, studio_process: str
) -> None:
    url = studio_process
    config = tmp_path / "c.toml"
    ConfigStore(config).update({"api_base_url": url, "auto_update_enabled": False})
    out = tmp_path / "register.out"
    waiting = start_register(config, out)
    try:
        _wait(lambda: any(r["status"] == "pending"
                          for r in _admin(url, "GET", "/admin/registrations")), 30)
        request_id = _admin(url, "GET", "/admin/registrations")[0]["requestId"]
        _wait(lambda: f"request {request_id}" in out.read_text(), 30)
        assert "waiting for the studio" in out.read_text()
        worker_id = _admin(url, "POST", f"/admin/registrations/{request_id}/approve")["workerId"]
        assert waiting.wait(timeout=30) == 0, out.read_text()
    finally:
        if waiting.poll() is None:
            waiting.kill()
    assert f"registered as worker {worker_id}" in out.read_text()
    saved = ConfigStore(config).load()
    assert saved.worker_id == worker_id and saved.auth_token
    assert saved.registration_secret == "" and saved.registration_request_id == ""
    assert saved.auth_token not in out.read_text()
    status = run_cli("--config", str(config), "status")
    assert "protocol:   auto" in status.stdout

    reset = run_cli("--config", str(config), "register", "--reset")
    assert reset.returncode == 0 and "registration reset" in reset.stdout
    assert not ConfigStore(config).load().is_registered()
    again = start_register(config, out)
    try:
        _wait(lambda: any(r["status"] == "pending"
                          for r in _admin(url, "GET", "/admin/registrations")), 30)
        pending = next(r["requestId"] for r in _admin(url, "GET", "/admin/registrations")
                       if r["status"] == "pending")
        _admin(url, "POST", f"/admin/registrations/{pending}/reject",
               {"reason": "not one of ours"})
        assert again.wait(timeout=30) == 1
    finally:
        if again.poll() is None:
            again.kill()
    assert "rejected this PC: not one of ours" in out.read_text()
    assert "register --reset" in out.read_text()


def test_workerlib_finds_the_window_through_the_faces_entry_point(tmp_path: Path) -> None:
    # `python -m workerlib ui` never imports the app: it asks the installed packages'
    # metadata (the studio_worker.faces group) who opens the window.
    site = tmp_path / "site"
    info = site / "fakeface-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fakeface\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[studio_worker.faces]\nui = fakeface:ui\n")
    (site / "fakeface.py").write_text(
        "def ui(paths, minimised):\n"
        "    print('window for', paths.config_file.name, 'minimised' if minimised else '')\n"
        "    return 0\n")
    import os

    env = {**os.environ, "PYTHONPATH": f"{site}{os.pathsep}{ROOT}"}
    # Not from the checkout: `-m` puts the cwd first on sys.path, and an editable install
    # leaves studio_worker.egg-info there, whose real `ui` would then be found first.
    result = run_cli("--config", str(tmp_path / "c.toml"), "ui", "--minimised", env=env,
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "window for c.toml minimised"
