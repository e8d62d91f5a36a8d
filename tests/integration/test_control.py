"""The local control API: real worker processes, the real CLI, refused strangers."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import BOOTSTRAP
from tests.integration.test_cli import ROOT, _admin, _wait, run_cli, studio_process
from workerlib.config import ConfigStore
from workerlib.control import endpoint as endpoint_mod
from workerlib.control import server as server_mod
from workerlib.control.client import (
    ControlClient,
    ControlError,
    IncompatibleWorker,
    RemoteWorker,
    WorkerGone,
)
from workerlib.control.endpoint import EndpointError, read_endpoint
from workerlib.control.server import ControlServer, Host
from workerlib.errors import ConfigError
from workerlib.paths import Paths

__all__ = ["studio_process"]  # the fixture, shared with the CLI tests
NOBODY = 65534


def _worker(config: Path, log: Path, *args: str) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "app", "--config", str(config), "run",
                                 *args], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)


def _state(config: Path) -> Path:
    return config.parent / f".{config.stem}.d" / "state"


def _client(config: Path, timeout: float = 30) -> ControlClient:
    found: list[ControlClient] = []

    def answers() -> bool:
        client = ControlClient.find(_state(config))
        if client is not None:
            found.append(client)
        return client is not None

    _wait(answers, timeout)
    return found[-1]


def _worker_record(url: str) -> dict[str, Any]:
    workers = _admin(url, "GET", "/admin/workers")
    records = workers["workers"] if isinstance(workers, dict) else workers
    assert len(records) == 1, records
    record: dict[str, Any] = records[0]
    return record


@pytest.fixture
def registered(tmp_path: Path, studio_process: str) -> Iterator[tuple[Path, str]]:
    config = tmp_path / "c.toml"
    ConfigStore(config).update({"heartbeat_interval_secs": 0.2, "claim_interval_secs": 0.2,
                                "auto_update_enabled": False})
    reg = run_cli("--config", str(config), "register", "--bootstrap-token", BOOTSTRAP,
                  "--api-base-url", studio_process)
    assert reg.returncode == 0, reg.stderr
    yield config, studio_process


def test_cli_commands_go_through_a_running_worker(registered: tuple[Path, str],
                                                  tmp_path: Path) -> None:
    config, url = registered
    worker = _worker(config, tmp_path / "run.log")
    try:
        client = _client(config)
        assert client.endpoint.pid == worker.pid
        state = _state(config)
        assert oct((state / "control.json").stat().st_mode & 0o777) == "0o600"
        assert oct(Path(client.endpoint.path).stat().st_mode & 0o777) == "0o600"

        status = run_cli("--config", str(config), "status")
        assert status.returncode == 0, status.stderr
        assert f"running (pid {worker.pid}, live, through its control API)" in status.stdout

        # disable: applied by the worker before the command returns, so the job queued
        # afterwards is never claimed (no file watch, no race).
        disable = run_cli("--config", str(config), "disable")
        assert disable.returncode == 0, disable.stderr
        assert f"applied by the running worker (pid {worker.pid})" in disable.stdout
        claims = _worker_record(url)["claims"]
        late = _admin(url, "POST", "/admin/jobs", {"model": "synthetic",
                      "task": {"kind": "image", "prompt": "paused"}})["jobIds"][0]
        beats = _worker_record(url)["heartbeats"]
        _wait(lambda: _worker_record(url)["heartbeats"] >= beats + 5, 30)
        record = _worker_record(url)
        assert _admin(url, "GET", f"/admin/jobs/{late}")["status"] == "queued"
        assert record["claimsWhilePaused"] == 0
        assert record["claims"] <= claims + 1  # at most one already on its way
        assert "claiming:   paused" in run_cli("--config", str(config), "status").stdout

        # set-threshold and enable: the live status shows them at once.
        assert run_cli("--config", str(config), "set-threshold", "3.5").returncode == 0
        assert client.status().vram_threshold_gb == 3.5
        assert ConfigStore(config).load().vram_threshold_gb == 3.5  # and the file has it
        assert run_cli("--config", str(config), "enable").returncode == 0
        _wait(lambda: _admin(url, "GET", f"/admin/jobs/{late}")["status"] == "completed", 30)
        assert "1 completed" in run_cli("--config", str(config), "status").stdout

        # An invalid value is refused by the worker with the field named; nothing changes.
        bad = run_cli("--config", str(config), "set-threshold", "-4")
        assert bad.returncode == 1
        assert "vram_threshold_gb" in bad.stderr
        assert client.status().vram_threshold_gb == 3.5

        # quit with a drain budget: the process ends cleanly and takes its endpoint along.
        client.quit(drain_secs=1.0)
        assert worker.wait(timeout=30) == 0
        assert not (state / "control.json").exists()
        assert ControlClient.find(state) is None
        with pytest.raises(WorkerGone):
            client.status()
        assert "worker:     not running" in run_cli("--config", str(config), "status").stdout
    finally:
        if worker.poll() is None:
            worker.kill()
    output = (tmp_path / "run.log").read_text()
    assert ConfigStore(config).load().auth_token not in output and BOOTSTRAP not in output


def test_restart_starts_the_installed_version_in_place(registered: tuple[Path, str],
                                                       tmp_path: Path) -> None:
    config, _url = registered
    worker = _worker(config, tmp_path / "run.log")
    try:
        first = _client(config)
        first.restart()
        # Same pid (a service manager keeps tracking it), a fresh endpoint and token.
        _wait(lambda: (e := _endpoint_or_none(config)) is not None
              and e.token != first.endpoint.token, 60)
        second = _client(config)
        assert second.endpoint.pid == worker.pid
        assert second.status().pid == worker.pid
        second.quit(0.5)
        assert worker.wait(timeout=30) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
    assert "restart requested through the control API" in (tmp_path / "run.log").read_text()


def _endpoint_or_none(config: Path) -> endpoint_mod.Endpoint | None:
    try:
        return read_endpoint(_state(config))
    except EndpointError:
        return None


# -- in-process servers: who may talk ----------------------------------------------------------
@pytest.fixture
async def served(make_service: Any) -> AsyncIterator[tuple[Any, ControlServer, list[float | None]]]:
    service = await make_service()
    quits: list[float | None] = []
    server = ControlServer(service, Host(quit=quits.append), mode="run")
    await server.start()
    yield service, server, quits
    await server.close()


def _raw_request(endpoint: endpoint_mod.Endpoint, path: str, token: str | None) -> int:
    """One HTTP/1.0 request over a plain socket; returns the status code."""
    if endpoint.transport == "unix":
        sock = socket.socket(socket.AF_UNIX)
        sock.connect(endpoint.path)
    else:
        sock = socket.create_connection(("127.0.0.1", endpoint.port))
    with sock:
        auth = f"Authorization: Bearer {token}\r\n" if token is not None else ""
        sock.sendall(f"GET {path} HTTP/1.0\r\nHost: x\r\n{auth}\r\n".encode())
        head = sock.recv(64).decode()
    return int(head.split()[1])


async def test_requests_without_the_token_are_refused(served: Any) -> None:
    _service, server, _quits = served
    endpoint = server.endpoint
    assert endpoint is not None and endpoint.transport == "unix"
    for path in ("/hello", "/v1/snapshot", "/v1/events"):
        assert await asyncio.to_thread(_raw_request, endpoint, path, None) == 401
        assert await asyncio.to_thread(_raw_request, endpoint, path, "guess") == 401
    assert await asyncio.to_thread(_raw_request, endpoint, "/hello", endpoint.token) == 200
    client = ControlClient(endpoint)
    assert (await asyncio.to_thread(client.status)).pid == os.getpid()


async def test_a_socket_or_file_of_another_user_is_not_trusted(served: Any) -> None:
    service, server, _quits = served
    state = service.paths.state_dir
    sock_path = Path(server.endpoint.path)
    os.chown(sock_path, NOBODY, NOBODY)
    with pytest.raises(EndpointError, match="belongs to uid 65534"):
        ControlClient.find(state)
    os.chown(sock_path, os.getuid(), os.getgid())
    os.chmod(sock_path, 0o666)
    with pytest.raises(EndpointError, match="open to other users"):
        ControlClient.find(state)
    os.chmod(sock_path, 0o600)
    os.chmod(state / "control.json", 0o644)
    with pytest.raises(EndpointError, match="open to other users"):
        ControlClient.find(state)
    os.chmod(state / "control.json", 0o600)
    assert await asyncio.to_thread(ControlClient.find, state) is not None
    # The CLI says why it does not use it, and falls back to the file.
    os.chown(sock_path, NOBODY, NOBODY)
    from workerlib.cli import control_client

    assert control_client(service.paths) is None


@pytest.mark.skipif(not sys.platform.startswith("linux") or os.getuid() != 0,
                    reason="needs root to act as a second user")
async def test_another_user_is_refused_even_with_the_token(make_service: Any) -> None:
    # A state folder others may enter, a socket anyone may open: the peer check is
    # what stands, and the token alone does not get another uid an answer.
    root = Path(tempfile.mkdtemp(prefix="sw-peer-"))
    os.chmod(root, 0o755)
    service = await make_service()
    service.paths = Paths(config_file=service.paths.config_file, log_dir=root / "logs",
                          state_dir=root / "state", cache_dir=root / "cache")
    server = ControlServer(service, Host(quit=lambda _d: None), mode="run")
    endpoint = await server.start()
    try:
        os.chmod(root / "state", 0o755)
        os.chmod(endpoint.path, 0o666)
        pid = os.fork()
        if pid == 0:  # the child: another user, with the token in hand
            code = 1
            try:
                os.setgid(NOBODY)
                os.setuid(NOBODY)
                code = 0 if _raw_request(endpoint, "/hello", endpoint.token) == 403 else 2
            finally:
                os._exit(code)
        _, status = await asyncio.to_thread(os.waitpid, pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        # The owner still gets in.
        assert await asyncio.to_thread(_raw_request, endpoint, "/hello", endpoint.token) == 200
    finally:
        await server.close()
        import shutil

        shutil.rmtree(root, ignore_errors=True)


async def test_the_windows_transport_listens_on_loopback_with_a_token(make_service: Any) -> None:
    # What Windows uses, run here: 127.0.0.1 on a random port, the token in control.json.
    service = await make_service()
    server = ControlServer(service, Host(quit=lambda _d: None), mode="ui", transport="tcp")
    endpoint = await server.start()
    try:
        assert endpoint.transport == "tcp" and endpoint.path == ""
        assert read_endpoint(service.paths.state_dir) == endpoint
        assert await asyncio.to_thread(_raw_request, endpoint, "/hello", None) == 401
        assert await asyncio.to_thread(_raw_request, endpoint, "/hello", "x" * 43) == 401
        hello = await asyncio.to_thread(ControlClient(endpoint).hello)
        assert hello["mode"] == "ui" and hello["pid"] == os.getpid()
        with socket.socket() as probe:  # nothing on another interface
            probe.settimeout(2)
            other = _non_loopback_address()
            if other is not None:
                assert probe.connect_ex((other, endpoint.port)) != 0
    finally:
        await server.close()
    assert not (service.paths.state_dir / "control.json").exists()


def _non_loopback_address() -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.255.255.255", 1))
            address: str = probe.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address


async def test_another_api_version_is_told_apart(served: Any,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    service, server, _quits = served
    await server.close()
    monkeypatch.setattr(server_mod, "API_VERSION", 2)
    newer = ControlServer(service, Host(quit=lambda _d: None), mode="run")
    await newer.start()
    try:
        with pytest.raises(IncompatibleWorker) as info:
            await asyncio.to_thread(ControlClient.find, service.paths.state_dir)
        assert info.value.api == 2
        assert "restart the worker into the installed version" in str(info.value)
    finally:
        await newer.close()


async def test_commands_and_errors_are_data(served: Any) -> None:
    service, server, quits = served
    client = ControlClient(server.endpoint)
    with pytest.raises(ConfigError) as info:
        await asyncio.to_thread(client.save_config, {"heartbeat_interval_secs": -1})
    assert info.value.key == "heartbeat_interval_secs"
    assert service.config.heartbeat_interval_secs == 0.2  # untouched
    with pytest.raises(ControlError, match="paused must be true or false"):
        await asyncio.to_thread(client.request, "POST", "pause", {"paused": "yes"})
    with pytest.raises(ControlError, match="drain_secs"):
        await asyncio.to_thread(client.quit, -1)
    # Snooze and resume (the tray's and the CLI's) are the worker's own at once.
    hold = await asyncio.to_thread(lambda: client.snooze(preset="1h"))
    assert hold is not None and hold.text.startswith("Snoozed until")
    assert service.status().hold is not None
    with pytest.raises(ControlError, match="preset"):
        await asyncio.to_thread(lambda: client.snooze(preset="forever"))
    assert await asyncio.to_thread(client.resume) is None
    assert service.status().hold is None
    assert (await asyncio.to_thread(client.stats)).day.completed == 0
    await asyncio.to_thread(client.set_paused, True)
    assert service.config.auto_enabled is False
    await asyncio.to_thread(client.quit, 2.5)
    await asyncio.sleep(0)
    assert quits == [2.5]


async def test_a_remote_worker_mirrors_the_events(served: Any, studio: Any) -> None:
    service, server, _quits = served
    remote = await asyncio.to_thread(RemoteWorker.attach, service.paths)
    assert remote is not None
    seen: list[str] = []
    remote.subscribe(lambda event: seen.append(event.kind))
    follower = asyncio.create_task(remote.run())
    try:
        await service.start()
        studio.enqueue(model="synthetic", task={"kind": "image", "prompt": "mirrored"})
        await studio.wait_for(lambda: len(remote.recent_jobs()) == 1, timeout=30)
        assert remote.recent_jobs()[0].outcome == "completed"
        assert remote.status().jobs_completed == 1
        assert "finished" in seen and "log" in seen
        assert remote.link().attached and remote.link().connected
        # A setting changed by someone else (the CLI, the file) reaches the mirror.
        service.save_config({"vram_threshold_gb": 5.0})
        await studio.wait_for(lambda: remote.config.vram_threshold_gb == 5.0, timeout=10)
        # Through the handle: the worker has it at once.
        await asyncio.to_thread(remote.set_paused, True)
        assert service.config.auto_enabled is False
        # The worker goes away: the face is told, and the mirror says stopped.
        await server.close()
        await studio.wait_for(lambda: not remote.link().connected, timeout=10)
        assert remote.status().running is False
        assert remote.link().problem == ""  # a clean goodbye, not a broken connection
        # ... and it comes back: the mirror reconnects by itself.
        again = ControlServer(service, Host(quit=lambda _d: None), mode="run")
        await again.start()
        try:
            await studio.wait_for(lambda: remote.link().connected, timeout=30)
            assert remote.snapshots == 3  # attach, first stream line, reconnect
        finally:
            await again.close()
    finally:
        follower.cancel()
        with pytest.raises(asyncio.CancelledError):
            await follower


def test_windows_endpoint_files_are_validated(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    target = state / "control.json"
    for bad in ({"transport": "tcp", "token": "t", "pid": 1, "version": "1", "api": 1,
                 "port": 0},
                {"transport": "pipe", "token": "t", "pid": 1, "version": "1", "api": 1},
                {"transport": "tcp", "pid": 1, "version": "1", "api": 1, "port": 80},
                ["not", "an", "object"]):
        target.write_text(json.dumps(bad))
        os.chmod(target, 0o600)
        with pytest.raises(EndpointError):
            read_endpoint(state)
    target.write_bytes(b"{" + b" " * 5000 + b"}")
    with pytest.raises(EndpointError, match="larger than"):
        read_endpoint(state)
    target.unlink()
    assert read_endpoint(state) is None


def test_a_long_state_path_gets_a_short_private_socket(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60) / "state"
    path = endpoint_mod.socket_path(deep)
    assert len(os.fsencode(path)) <= endpoint_mod.SOCKET_PATH_LIMIT
    assert path == endpoint_mod.socket_path(deep)  # the same every time
    sock = endpoint_mod.bind_unix(path)
    try:
        assert oct(path.parent.stat().st_mode & 0o777) == "0o700"
        assert oct(path.stat().st_mode & 0o777) == "0o600"
    finally:
        sock.close()
        path.unlink()


def test_sigterm_still_stops_a_worker_that_serves_the_api(registered: tuple[Path, str],
                                                          tmp_path: Path) -> None:
    config, _url = registered
    worker = _worker(config, tmp_path / "run.log")
    try:
        _client(config)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
    assert not (_state(config) / "control.json").exists()
    assert not (_state(config) / "control.sock").exists()
