"""Talking to a running worker: ``ControlClient`` (one request at a time, no event loop:
the CLI) and ``RemoteWorker`` (the ``WorkerHandle`` a window attaches with: a mirror
kept current by the event stream, commands sent as requests)."""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from workerlib.api import Registration
from workerlib.config import Config
from workerlib.control.endpoint import API_VERSION, Endpoint, EndpointError, read_endpoint
from workerlib.errors import ConfigError, WorkerError
from workerlib.logs import UI_RING_SIZE, LogLine, get_logger
from workerlib.paths import Paths
from workerlib.policy.hold import Hold
from workerlib.runtime.events import Listeners
from workerlib.runtime.link import Link
from workerlib.runtime.state import (
    RECENT_JOBS,
    Event,
    FinishedJob,
    Listener,
    StatusSnapshot,
    UpdateInfo,
)
from workerlib.stats import StatsSummary

log = get_logger("control")
MAX_REPLY = 16 * 1024 * 1024
QUICK_SECS = 10.0
"""A command the worker answers at once (pause, config, quit)."""
STUDIO_SECS = 120.0
"""A command that waits on the studio or the feed (register, check update)."""
RECONNECT_SECS = 0.5


class ControlError(WorkerError):
    """The worker refused a command, or could not be reached; ``title`` says which."""

    def __init__(self, title: str, message: str) -> None:
        super().__init__(message)
        self.title = title


class WorkerGone(ControlError):
    def __init__(self, message: str = "the background worker is not running") -> None:
        super().__init__("Worker not running", message)


class IncompatibleWorker(ControlError):
    """The worker speaks another version of the control API."""

    def __init__(self, theirs: int, version: str) -> None:
        super().__init__(
            "Different version",
            f"the background worker runs studio-worker {version} (control API v{theirs}); "
            f"this one speaks v{API_VERSION}: restart the worker into the installed version")
        self.api = theirs
        self.version = version


def raise_error(status: int, payload: Any) -> None:
    """Turn an error reply back into the exception the worker raised (errors are data)."""
    error = payload.get("error") if isinstance(payload, dict) else None
    if not isinstance(error, dict):
        raise ControlError("Control API error", f"the worker answered {status}")
    message = str(error.get("message", ""))[:2000]
    if error.get("type") == "ConfigError":
        raise ConfigError(Path(str(error.get("path", ""))), str(error.get("reason", message)),
                          key=error.get("key"), line=error.get("line"))
    raise ControlError(str(error.get("title", "Error"))[:200], message)


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


class ControlClient:
    """Requests to one worker's endpoint. Every reply is bounded and checked."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint

    @classmethod
    def find(cls, state_dir: Path) -> ControlClient | None:
        """The client for the worker serving ``state_dir``; None when none answers.

        Raises EndpointError when the endpoint belongs to someone else, and
        IncompatibleWorker when it speaks another API version.
        """
        endpoint = read_endpoint(state_dir)
        if endpoint is None:
            return None
        client = cls(endpoint)
        try:
            hello = client.hello()
        except WorkerGone:
            return None
        if hello.get("api") != API_VERSION:
            raise IncompatibleWorker(int(hello.get("api", 0)), str(hello.get("version", "?")))
        return client

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        if self.endpoint.transport == "unix":
            return _UnixConnection(self.endpoint.path, timeout)
        return http.client.HTTPConnection("127.0.0.1", self.endpoint.port, timeout=timeout)

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.endpoint.token}",
                "Content-Type": "application/json"}

    def request(self, method: str, name: str, body: dict[str, Any] | None = None,
                timeout: float = QUICK_SECS, *, versioned: bool = True) -> dict[str, Any]:
        path = f"/v{API_VERSION}/{name}" if versioned else f"/{name}"
        conn = self._connection(timeout)
        try:
            conn.request(method, path, body=json.dumps(body or {}) if method == "POST" else None,
                         headers=self.headers())
            reply = conn.getresponse()
            raw = reply.read(MAX_REPLY + 1)
        except (ConnectionRefusedError, FileNotFoundError) as exc:
            raise WorkerGone() from exc
        except (OSError, http.client.HTTPException) as exc:
            raise WorkerGone(f"the background worker stopped answering ({exc})") from exc
        finally:
            conn.close()
        if len(raw) > MAX_REPLY:
            raise ControlError("Control API error", "the worker's reply is too large")
        try:
            payload = json.loads(raw) if raw else {}
        except ValueError:
            raise ControlError("Control API error", "the worker's reply is not JSON") from None
        if reply.status >= 400:
            raise_error(reply.status, payload)
        if not isinstance(payload, dict):
            raise ControlError("Control API error", "the worker's reply is not an object")
        return payload

    # -- the calls ------------------------------------------------------------------------------
    def hello(self) -> dict[str, Any]:
        return self.request("GET", "hello", versioned=False)

    def snapshot(self) -> dict[str, Any]:
        return self.request("GET", "snapshot")

    def status(self) -> StatusSnapshot:
        return StatusSnapshot.model_validate(self.snapshot()["status"])

    def set_paused(self, paused: bool) -> None:
        self.request("POST", "pause", {"paused": paused})

    def save_config(self, changes: dict[str, Any]) -> Config:
        return Config.model_validate(self.request("POST", "config", {"changes": changes})
                                     ["config"])

    def snooze(self, *, preset: str | None = None, until: float | None = None) -> Hold | None:
        return _hold(self.request("POST", "snooze", {"preset": preset, "until": until}))

    def resume(self) -> Hold | None:
        return _hold(self.request("POST", "resume"))

    def stats(self) -> StatsSummary:
        return StatsSummary.model_validate(self.request("GET", "stats"))

    def quit(self, drain_secs: float | None = None) -> None:
        self.request("POST", "quit", {"drain_secs": drain_secs})

    def restart(self) -> None:
        self.request("POST", "restart")


def _hold(reply: dict[str, Any]) -> Hold | None:
    data = reply.get("hold")
    return None if data is None else Hold.model_validate(data)


def find_client(paths: Paths) -> ControlClient | None:
    """The running worker for this config, or None (then the files are the truth)."""
    return ControlClient.find(paths.state_dir)


def _log_line(data: Any) -> LogLine:
    if not isinstance(data, dict):
        raise ValueError("a log line is not an object")
    return LogLine(seq=int(data["seq"]), created=float(data["created"]),
                   level=data["level"] if data["level"] in ("info", "warn", "error") else "info",
                   category=str(data["category"])[:100], message=str(data["message"])[:20000],
                   job_id=None if data.get("job_id") is None else str(data["job_id"])[:200])


class RemoteWorker:
    """A worker in another process, as a ``WorkerHandle``.

    ``run()`` keeps the mirror current from the event stream; when the worker stops,
    ``link().connected`` turns false (a status event says so) and ``run()`` waits for
    a worker to answer at this config's endpoint again.
    """

    def __init__(self, paths: Paths, client: ControlClient) -> None:
        self._paths = paths
        self.client = client
        self._listeners = Listeners()
        self._status: StatusSnapshot | None = None
        self._config: Config | None = None
        self._recent: deque[FinishedJob] = deque(maxlen=RECENT_JOBS)
        self._logs: deque[LogLine] = deque(maxlen=UI_RING_SIZE)
        self._connected = False
        self._version = client.endpoint.version
        self._problem = ""
        self.snapshots = 0
        """How many snapshots arrived (the first on attach, one per reconnect)."""

    @classmethod
    def attach(cls, paths: Paths) -> RemoteWorker | None:
        """Attach to the worker serving this config (None when none answers)."""
        client = find_client(paths)
        if client is None:
            return None
        remote = cls(paths, client)
        remote._apply_snapshot(client.snapshot())
        return remote

    # -- WorkerHandle: reads ----------------------------------------------------------------
    @property
    def paths(self) -> Paths:
        return self._paths

    @property
    def config(self) -> Config:
        assert self._config is not None, "attach() reads the first snapshot"
        return self._config

    def status(self) -> StatusSnapshot:
        assert self._status is not None, "attach() reads the first snapshot"
        if self._connected:
            return self._status
        return self._status.model_copy(update={"running": False, "current_job": None})

    def recent_jobs(self) -> list[FinishedJob]:
        return list(reversed(self._recent))

    def log_lines(self) -> list[LogLine]:
        return list(self._logs)

    def link(self) -> Link:
        return Link(attached=True, connected=self._connected, pid=self.client.endpoint.pid,
                    version=self._version, problem=self._problem)

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        return self._listeners.subscribe(listener)

    # -- WorkerHandle: commands ---------------------------------------------------------------
    def save_config(self, changes: dict[str, Any]) -> Config:
        # A local socket answers in milliseconds: the window waits for it like for a file.
        config = self.client.save_config(changes)
        self._config = config
        return config

    def set_paused(self, paused: bool) -> None:
        self.client.set_paused(paused)

    def snooze_preset(self, preset: str) -> Hold | None:
        return self.client.snooze(preset=preset)

    def resume(self) -> Hold | None:
        return self.client.resume()

    def stats_summary(self, now: float | None = None) -> StatsSummary:
        # Asked of the worker (its store) when the Stats tab draws; a local socket is quick.
        return self.client.stats()

    async def start(self) -> object:
        return await asyncio.to_thread(self.client.request, "POST", "start")

    async def register(self, bootstrap_token: str | None = None,
                       api_base_url: str | None = None) -> Registration:
        reply = await asyncio.to_thread(
            self.client.request, "POST", "register",
            {"bootstrap_token": bootstrap_token, "api_base_url": api_base_url}, STUDIO_SECS)
        return Registration(worker_id=str(reply.get("worker_id", "")), auth_token="")

    def reset_registration(self) -> None:
        self.client.request("POST", "reset-registration")

    async def restart_loops(self, *, start_if_stopped: bool = True) -> None:
        await asyncio.to_thread(self.client.request, "POST", "restart-loops",
                                {"start_if_stopped": start_if_stopped}, STUDIO_SECS)

    async def check_update(self) -> UpdateInfo:
        reply = await asyncio.to_thread(self.client.request, "POST", "check-update", None,
                                        STUDIO_SECS)
        return UpdateInfo.model_validate(reply["update"])

    async def quit(self, drain_secs: float | None = None) -> None:
        """Stop the worker (the tray's "Stop background worker")."""
        await asyncio.to_thread(self.client.quit, drain_secs)

    async def restart(self) -> None:
        """Restart the worker from the installed version (a window newer than it)."""
        await asyncio.to_thread(self.client.restart)

    # -- the mirror ---------------------------------------------------------------------------
    def _emit(self, event: Event) -> None:
        self._listeners.dispatch(event)

    def _apply_snapshot(self, data: dict[str, Any]) -> None:
        self._status = StatusSnapshot.model_validate(data["status"])
        self._config = Config.model_validate(data["config"])
        self._recent = deque((FinishedJob.model_validate(j) for j in
                              reversed(data.get("recent_jobs", [])[:RECENT_JOBS])),
                             maxlen=RECENT_JOBS)
        self._logs = deque((_log_line(line) for line in data.get("logs", [])[-UI_RING_SIZE:]),
                           maxlen=UI_RING_SIZE)
        self._version = self._status.version
        self._connected = True
        self._problem = ""
        self.snapshots += 1

    def apply(self, item: dict[str, Any]) -> None:
        """One line of the event stream (validated; a bad line raises ValueError)."""
        kind = item.get("kind")
        if kind == "snapshot":
            self._apply_snapshot(item)
            for name in ("config", "status", "job", "log", "finished"):
                self._emit(Event(name, self._config if name == "config" else None))
            return
        if "status" in item:
            self._status = StatusSnapshot.model_validate(item["status"])
        if kind == "finished":
            job = FinishedJob.model_validate(item["job"])
            self._recent.append(job)
            self._emit(Event("finished", job))
        elif kind == "log":
            line = _log_line(item["line"])
            self._logs.append(line)
            self._emit(Event("log", line))
        elif kind == "config":
            self._config = Config.model_validate(item["config"])
            self._emit(Event("config", self._config))
        elif kind == "job":
            self._emit(Event("job", self._status.current_job if self._status else None))
        if kind in ("status", "job", "finished", "config"):
            self._emit(Event("status"))

    def _lost(self, problem: str) -> None:
        if self._connected:
            self._connected = False
            self._problem = problem
            self._emit(Event("status"))

    async def run(self) -> None:
        """Follow the worker's events until cancelled, reconnecting when it comes back."""
        while True:
            try:
                await self._follow()
                self._lost("")  # it said goodbye: it stopped
            except (aiohttp.ClientError, OSError, ValueError, KeyError) as exc:
                self._lost(f"the connection broke: {type(exc).__name__}")
            await self._wait_for_worker()

    async def _follow(self) -> None:
        endpoint = self.client.endpoint
        if endpoint.transport == "unix":
            connector: aiohttp.BaseConnector = aiohttp.UnixConnector(path=endpoint.path)
            url = f"http://localhost/v{API_VERSION}/events"
        else:
            connector = aiohttp.TCPConnector()
            url = f"http://127.0.0.1:{endpoint.port}/v{API_VERSION}/events"
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=QUICK_SECS)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session, \
                session.get(url, headers=self.client.headers()) as response:
            if response.status != 200:
                raise ValueError(f"the event stream answered {response.status}")
            log.info("following the background worker's events (pid %s)", endpoint.pid)
            buffer = b""
            async for chunk in response.content.iter_any():
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    self.apply(json.loads(line))
                if len(buffer) > MAX_REPLY:
                    raise ValueError("an event line is too long")

    async def _wait_for_worker(self) -> None:
        while True:
            await asyncio.sleep(RECONNECT_SECS)
            try:
                client = await asyncio.to_thread(find_client, self._paths)
            except (EndpointError, ControlError) as exc:
                self._problem = str(exc)
                continue
            if client is not None:
                self.client = client
                return
