"""The control API a worker process serves (headless ``run``, the service, the window's
own worker): the facade's snapshots, events and commands as JSON over HTTP on the
local endpoint (see ``endpoint``), version 1 under ``/v1``.

    GET  /hello             api and worker version, pid, mode ("run" or "ui"); not
                            versioned, so any client can tell whether it may talk
    GET  /v1/snapshot       status, recent jobs, log tail, config
    GET  /v1/events         newline-delimited JSON: a snapshot, then one line per change
    GET  /v1/stats          jobs per hour and per day, by kind and model
    POST /v1/pause          {"paused": bool}
    POST /v1/snooze         {"preset": "1h" | "4h" | "tomorrow"} or {"until": epoch secs}
    POST /v1/resume         end a snooze and a pause
    POST /v1/config         {"changes": {...}}: validated and written like the Config tab
    POST /v1/register       {"bootstrap_token": str, "api_base_url": str | null}
    POST /v1/start          start the loops
    POST /v1/restart-loops  {"start_if_stopped": bool}
    POST /v1/check-update   the feed's answer
    POST /v1/apply-update   install it between jobs (the desktop bundle)
    POST /v1/quit           {"drain_secs": float | null}: stop, the running job drains
    POST /v1/restart        stop, then start again from the installed version

Errors are data: ``{"error": {"type", "title", "message", ...}}`` with a 4xx status.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import math
import os
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from aiohttp import web

from workerlib import __version__
from workerlib.control.endpoint import (
    API_VERSION,
    Endpoint,
    Transport,
    bind_loopback,
    bind_unix,
    default_transport,
    new_token,
    peer_uid,
    remove_endpoint,
    socket_path,
    write_endpoint,
)
from workerlib.errors import ConfigError, StudioHTTPError, WorkerError
from workerlib.logs import get_logger
from workerlib.runtime.state import Event
from workerlib.service import WorkerService

log = get_logger("control")
Mode = Literal["run", "ui"]
MAX_BODY = 256 * 1024
QUEUE_LIMIT = 2000
"""Events waiting for one slow client; past this it is dropped (it reconnects)."""


@dataclass(frozen=True)
class Host:
    """What only the hosting process can do: end itself."""

    quit: Callable[[float | None], None]
    """Stop with this drain budget (None: the config's shutdown_drain_secs)."""
    restart: Callable[[], None] | None = None
    """Stop, then start again from the installed version; None where it cannot."""


def error_body(exc: BaseException) -> dict[str, Any]:
    body: dict[str, Any] = {"type": type(exc).__name__,
                            "title": getattr(exc, "title", "Error"), "message": str(exc)}
    if isinstance(exc, ConfigError):
        body.update(path=str(exc.path), key=exc.key, reason=exc.reason, line=exc.line)
    if isinstance(exc, StudioHTTPError):
        body.update(status=exc.status)
    return {"error": body}


def snapshot_body(service: WorkerService) -> dict[str, Any]:
    return {
        "status": service.status().model_dump(mode="json"),
        "recent_jobs": [job.model_dump(mode="json") for job in service.recent_jobs()],
        "logs": [asdict(line) for line in service.log_lines()],
        "config": service.config.model_dump(mode="json"),
    }


def event_line(service: WorkerService, event: Event) -> dict[str, Any] | None:
    """The wire form of one facade event (status-like kinds carry the whole status)."""
    if event.kind in ("status", "job"):
        return {"kind": event.kind, "status": service.status().model_dump(mode="json")}
    if event.kind == "finished":
        return {"kind": "finished", "job": event.data.model_dump(mode="json"),
                "status": service.status().model_dump(mode="json")}
    if event.kind == "log":
        return {"kind": "log", "line": asdict(event.data)}
    if event.kind == "config":
        return {"kind": "config", "config": service.config.model_dump(mode="json"),
                "status": service.status().model_dump(mode="json")}
    return None


class ControlServer:
    def __init__(self, service: WorkerService, host: Host, *, mode: Mode,
                 transport: Transport | None = None) -> None:
        self.service = service
        self.host = host
        self.mode = mode
        self.transport: Transport = transport or default_transport()
        self.token = new_token()
        self.endpoint: Endpoint | None = None
        self._runner: web.AppRunner | None = None
        self._streams: set[asyncio.Queue[dict[str, Any] | None]] = set()
        self._unsubscribe: Callable[[], None] | None = None
        self._uid = os.getuid() if hasattr(os, "getuid") else None

    @property
    def state_dir(self) -> Path:
        return self.service.paths.state_dir

    # -- lifecycle --------------------------------------------------------------------------
    async def start(self) -> Endpoint:
        app = web.Application(client_max_size=MAX_BODY, middlewares=[self._guard])
        v = f"/v{API_VERSION}"
        app.router.add_get("/hello", self._hello)
        app.router.add_get(f"{v}/snapshot", self._snapshot)
        app.router.add_get(f"{v}/events", self._events)
        app.router.add_get(f"{v}/stats", self._stats)
        routes: dict[str, Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]] = {
            "pause": self._pause, "snooze": self._snooze, "resume": self._resume,
            "config": self._config, "register": self._register,
            "start": self._start, "restart-loops": self._restart_loops,
            "check-update": self._check_update, "apply-update": self._apply_update,
            "quit": self._quit, "restart": self._restart,
        }
        for name, handler in routes.items():
            app.router.add_post(f"{v}/{name}", self._command(handler))
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None,
                                     shutdown_timeout=1.0)
        await self._runner.setup()
        if self.transport == "unix":
            path = socket_path(self.state_dir)
            sock = bind_unix(path)
            endpoint = Endpoint("unix", self.token, os.getpid(), __version__, API_VERSION,
                                path=str(path))
        else:
            sock = bind_loopback()
            endpoint = Endpoint("tcp", self.token, os.getpid(), __version__, API_VERSION,
                                port=sock.getsockname()[1])
        await web.SockSite(self._runner, sock).start()
        self._unsubscribe = self.service.subscribe(self._on_event)
        write_endpoint(self.state_dir, endpoint)
        self.endpoint = endpoint
        log.info("control API listening (%s)", endpoint.path or f"127.0.0.1:{endpoint.port}")
        return endpoint

    async def close(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self.endpoint is not None:
            remove_endpoint(self.state_dir, self.endpoint)
            self.endpoint = None
        for queue in list(self._streams):
            self._offer(queue, None)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- who may ask ----------------------------------------------------------------------------
    @web.middleware
    async def _guard(self, request: web.Request,
                     handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
                     ) -> web.StreamResponse:
        if self.transport == "unix" and self._uid is not None:
            sock = request.transport.get_extra_info("socket") if request.transport else None
            uid = peer_uid(sock) if sock is not None else None
            if uid is not None and uid != self._uid:
                log.warning("refused a control request from uid %s", uid)
                return self._refuse(403, "this worker belongs to another user")
        sent = request.headers.get("Authorization", "")
        if not hmac.compare_digest(sent.encode(), f"Bearer {self.token}".encode()):
            return self._refuse(401, "no or wrong control token")
        return await handler(request)

    @staticmethod
    def _refuse(status: int, message: str) -> web.Response:
        return web.json_response({"error": {"type": "Refused", "title": "Refused",
                                            "message": message}}, status=status)

    # -- reads -------------------------------------------------------------------------------
    async def _hello(self, _request: web.Request) -> web.Response:
        return web.json_response({"api": API_VERSION, "version": __version__,
                                  "pid": os.getpid(), "mode": self.mode,
                                  "config_path": str(self.service.paths.config_file)})

    async def _snapshot(self, _request: web.Request) -> web.Response:
        return web.json_response(snapshot_body(self.service))

    async def _stats(self, _request: web.Request) -> web.Response:
        summary = await asyncio.to_thread(self.service.stats_summary)
        return web.json_response(summary.model_dump(mode="json"))

    async def _events(self, request: web.Request) -> web.StreamResponse:
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        self._streams.add(queue)
        try:
            await self._send(response, {"kind": "snapshot", **snapshot_body(self.service)})
            while True:
                item = await queue.get()
                if item is None:
                    break
                await self._send(response, item)
        except ConnectionError:
            pass
        finally:
            self._streams.discard(queue)
        with contextlib.suppress(ConnectionError, RuntimeError):
            await response.write_eof()
        return response

    @staticmethod
    async def _send(response: web.StreamResponse, item: dict[str, Any]) -> None:
        await response.write(json.dumps(item, separators=(",", ":")).encode() + b"\n")

    def _on_event(self, event: Event) -> None:
        if not self._streams:
            return
        line = event_line(self.service, event)
        if line is None:
            return
        for queue in list(self._streams):
            self._offer(queue, line)

    def _offer(self, queue: asyncio.Queue[dict[str, Any] | None],
               item: dict[str, Any] | None) -> None:
        if item is not None and queue.qsize() >= QUEUE_LIMIT:
            self._streams.discard(queue)  # too slow: it gets a fresh snapshot on reconnect
            item = None
        queue.put_nowait(item)

    # -- commands ---------------------------------------------------------------------------
    def _command(self, handler: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]],
                 ) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handle(request: web.Request) -> web.Response:
            try:
                body = await request.json() if request.can_read_body else {}
            except ValueError:
                return web.json_response(error_body(ValueError("the body is not JSON")),
                                         status=400)
            if not isinstance(body, dict):
                return web.json_response(error_body(ValueError("the body is not an object")),
                                         status=400)
            try:
                return web.json_response(await handler(body))
            except (WorkerError, ValueError, TypeError, OSError) as exc:
                return web.json_response(error_body(exc), status=400)

        return handle

    async def _pause(self, body: dict[str, Any]) -> dict[str, Any]:
        paused = body.get("paused")
        if not isinstance(paused, bool):
            raise ValueError("paused must be true or false")
        self.service.set_paused(paused)
        return {"paused": paused}

    async def _snooze(self, body: dict[str, Any]) -> dict[str, Any]:
        preset, until = body.get("preset"), body.get("until")
        if preset in ("1h", "4h", "tomorrow"):
            hold = self.service.snooze_preset(preset)
        elif isinstance(until, int | float) and not isinstance(until, bool) \
                and math.isfinite(until) and until > 0:
            hold = self.service.snooze(until=float(until))
        else:
            raise ValueError("snooze needs a preset (1h, 4h, tomorrow) or an until time")
        return {"hold": hold.model_dump(mode="json") if hold else None}

    async def _resume(self, _body: dict[str, Any]) -> dict[str, Any]:
        hold = self.service.resume()
        return {"hold": hold.model_dump(mode="json") if hold else None}

    async def _config(self, body: dict[str, Any]) -> dict[str, Any]:
        changes = body.get("changes")
        if not isinstance(changes, dict):
            raise ValueError("changes must be an object of settings")
        config = self.service.save_config(changes)
        return {"config": config.model_dump(mode="json")}

    async def _register(self, body: dict[str, Any]) -> dict[str, Any]:
        token, url = body.get("bootstrap_token"), body.get("api_base_url")
        if not (token is None or isinstance(token, str)) or \
                not (url is None or isinstance(url, str)):
            raise ValueError("bootstrap_token and api_base_url must be text")
        registration = await self.service.register(token, url)
        return {"worker_id": registration.worker_id}  # the auth token stays here

    async def _start(self, _body: dict[str, Any]) -> dict[str, Any]:
        await self.service.start()
        return {}

    async def _restart_loops(self, body: dict[str, Any]) -> dict[str, Any]:
        await self.service.restart_loops(start_if_stopped=bool(body.get("start_if_stopped",
                                                                        True)))
        return {}

    async def _check_update(self, _body: dict[str, Any]) -> dict[str, Any]:
        info = await self.service.check_update()
        return {"update": info.model_dump(mode="json")}

    async def _apply_update(self, _body: dict[str, Any]) -> dict[str, Any]:
        service = self.service
        outcome = await service.apply_update(lambda: service.state.current_job is None)
        return {"status": str(outcome.status), "message": outcome.message}

    async def _quit(self, body: dict[str, Any]) -> dict[str, Any]:
        drain = body.get("drain_secs")
        if drain is not None and (isinstance(drain, bool) or not isinstance(drain, int | float)
                                  or not math.isfinite(drain) or drain < 0):
            raise ValueError("drain_secs must be a number of seconds, 0 or more")
        asyncio.get_running_loop().call_soon(self.host.quit, None if drain is None
                                             else float(drain))
        return {"stopping": True}

    async def _restart(self, _body: dict[str, Any]) -> dict[str, Any]:
        if self.host.restart is None:
            raise ValueError("this worker cannot restart itself; quit it and start it again")
        asyncio.get_running_loop().call_soon(self.host.restart)
        return {"restarting": True}

