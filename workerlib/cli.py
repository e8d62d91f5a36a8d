"""The ``studio-worker`` command line. Exit codes: 0 ok, 1 error, 2 usage.

The faces that need the desktop app (``ui``, the windowed ``demo``) are handed in by
the entry point above (``app.entry``) or found through the ``studio_worker.faces``
entry point group: this package never names the app.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Literal

from workerlib import __version__, updater
from workerlib.config import Config, ConfigStore, field_infos, get_value, mask_secret
from workerlib.control.client import ControlClient, ControlError, WorkerGone, find_client
from workerlib.control.endpoint import EndpointError
from workerlib.control.server import ControlServer, Host
from workerlib.errors import ConfigError, StudioAuthError, StudioError, WorkerError
from workerlib.instance import InstanceLock, describe_holder
from workerlib.paths import Paths, resolve_paths
from workerlib.policy.hold import clock_text
from workerlib.policy.snooze import SnoozeStore, parse_duration, tomorrow_morning
from workerlib.runtime.registration import POLL_SECS, Registrar
from workerlib.runtime.state import StatusSnapshot
from workerlib.service import WorkerService

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2
EXIT_RESTART = -1
"""Internal: run_headless asks main() to start the command again (never exits with it)."""


def report(message: str) -> None:
    print(f"studio-worker: {message}", file=sys.stderr)


FACES_GROUP = "studio_worker.faces"


@dataclass(frozen=True)
class Faces:
    """What this command line cannot do by itself: open the window."""

    ui: Callable[[Paths, bool], int] | None = None
    """Open the window (paths, start minimised) and return the exit code."""
    gui_demo: Callable[[int], int] | None = None
    """The demo with a window (number of jobs); None: the headless demo."""


def installed_faces() -> Faces:
    """The faces another installed package declares (the desktop app's ``ui`` and
    ``gui_demo`` in the ``studio_worker.faces`` entry point group)."""
    found: dict[str, Any] = {}
    try:
        points = metadata.entry_points(group=FACES_GROUP)
    except Exception:  # broken metadata must not stop the headless commands
        return Faces()
    for point in points:
        if point.name in ("ui", "gui_demo") and point.name not in found:
            try:
                found[point.name] = point.load()
            except ImportError:
                continue
    return Faces(**found)


def console_handler() -> logging.Handler:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s",
                                           datefmt="%H:%M:%S"))
    handler.setLevel(logging.INFO)
    return handler


STOP_SIGNALS: tuple[signal.Signals, ...] = tuple(
    sig for sig in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None))
    if sig is not None)
"""Each one stops the worker the same way (SIGHUP: the terminal or session went away)."""


def install_signal_handlers(stop: Callable[[], None]) -> None:
    loop = asyncio.get_running_loop()
    for sig in STOP_SIGNALS:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop)


# -- run ------------------------------------------------------------------------------------
async def run_headless(paths: Paths, *, drain_secs: float | None = None,
                       service: WorkerService | None = None) -> int:
    lock = InstanceLock(paths.state_dir, "run")
    if not lock.acquire():
        report(describe_holder(lock.holder(), paths.config_file))
        return EXIT_ERROR
    with lock:
        return await _run_locked(paths, drain_secs, service)


async def _run_locked(paths: Paths, drain_secs: float | None,
                      service: WorkerService | None) -> int:
    service = service or WorkerService(paths, console=console_handler())
    try:
        await service.open()
    except ConfigError as exc:
        report(str(exc))
        return EXIT_ERROR
    if drain_secs is None:
        drain_secs = service.config.shutdown_drain_secs
    server: ControlServer | None = None
    try:
        code = await _ensure_registered(service)
        if code is not None:
            return code
        stop = asyncio.Event()
        why = ["signal received"]

        def quit_(drain: float | None, reason: str = "stop requested through the control API",
                  ) -> None:
            nonlocal drain_secs
            if drain is not None:
                drain_secs = drain
            why[0] = reason
            stop.set()

        def restart() -> None:
            quit_(None, "restart requested through the control API")
            code_box[0] = EXIT_RESTART

        code_box = [EXIT_OK]
        install_signal_handlers(stop.set)
        await service.start()
        server = ControlServer(service, Host(quit=quit_, restart=restart), mode="run")
        try:
            await server.start()
        except (OSError, EndpointError) as exc:  # the worker runs on; only the faces miss it
            logging.getLogger("workerlib.control").error("no control API: %s", exc)
            server = None
        waits = [asyncio.create_task(stop.wait()),
                 asyncio.create_task(service.restart_requested.wait())]
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for task in waits:
            task.cancel()
        reason = why[0] if stop.is_set() else "restarting into the update"
        logging.getLogger("workerlib.worker").info("stopping (%s)", reason)
        return code_box[0]
    finally:
        await service.close(drain_secs)
        if server is not None:
            await server.close()


def restart_self() -> None:
    """Start this command again in place (same pid, so a service manager keeps it):
    after an upgrade, that runs the installed version."""
    frozen = getattr(sys, "frozen", False)
    argv = [sys.executable, *(sys.argv[1:] if frozen else sys.orig_argv[1:])]
    logging.getLogger("workerlib.worker").info("starting again: %s", " ".join(argv))
    os.execv(sys.executable, argv)


async def _ensure_registered(service: WorkerService) -> int | None:
    config = service.config
    if config.is_registered():
        return None
    if not config.bootstrap_token and config.protocol != "v1":
        # The loops ask the studio for approval and wait for it (docs/PROTOCOL.md §3.1).
        return None
    if not config.bootstrap_token:
        report(f"this worker is not registered: set bootstrap_token in {service.paths.config_file} "
             "or run `studio-worker register --bootstrap-token TOKEN`")
        return EXIT_ERROR
    try:
        await service.register()
    except StudioAuthError as exc:
        report(str(exc))
        return EXIT_ERROR
    except StudioError as exc:
        # Unreachable for now: the loops keep trying with backoff.
        logging.getLogger("workerlib.register").warning("%s; retrying in the background", exc)
    return None


# -- one-shot commands -----------------------------------------------------------------------
def _load(paths: Paths) -> Config:
    store = ConfigStore(paths.config_file)
    if not store.exists():
        config, _ = store.load_or_create()
        return config
    return store.load()


def bootstrap_token_from(arg: str | None, paths: Paths) -> str | None:
    """``--bootstrap-token``: the value, ``-`` for one line from stdin (keeps it out of
    the process list), or — when neither it nor the config has one and stdin is a
    terminal — a prompt that does not echo."""
    if arg == "-":
        return sys.stdin.readline().strip() or None
    if arg is not None:
        return arg
    if sys.stdin is not None and sys.stdin.isatty():
        try:
            configured = _load(paths).bootstrap_token
        except ConfigError:
            configured = ""
        if not configured:
            import getpass

            return getpass.getpass("bootstrap token from the studio (Enter: ask the studio "
                                   "for approval instead): ").strip() or None
    return None


def cmd_register(paths: Paths, token: str | None, url: str | None, *, reset: bool = False,
                 poll_secs: float = POLL_SECS) -> int:
    """With a bootstrap token: v1 ``register``. Without: ask the studio for approval (v2)
    and wait for an operator's decision. ``reset`` forgets the registration first."""
    if not reset:
        token = bootstrap_token_from(token, paths)

    async def go() -> int:
        service = WorkerService(paths, file_logging=True)
        try:
            await service.open()
            if reset:
                service.reset_registration()
                print("registration reset: this PC asks the studio for approval again")
                if not (token or url):
                    return EXIT_OK
            if token:
                registration = await service.register(token, url)
                print(f"registered as worker {registration.worker_id} with "
                      f"{service.config.api_base_url}")
                return EXIT_OK
            if url:
                service.save_config({"api_base_url": url.strip()})
            return await _wait_for_approval(service, poll_secs)
        except (WorkerError, ValueError) as exc:
            report(str(exc))
            return EXIT_ERROR
        finally:
            await service.close()

    return asyncio.run(go())


async def _wait_for_approval(service: WorkerService, poll_secs: float) -> int:
    registrar = Registrar(service, poll_secs=poll_secs)
    shown: str | None = None
    while True:
        delay = await registrar.step()
        config = service.config
        if config.is_registered():
            print(f"registered as worker {config.worker_id} with {config.api_base_url}")
            return EXIT_OK
        approval = service.state.approval
        if approval is not None and approval.phase == "rejected":
            report(f"the studio rejected this PC: {approval.reason}; "
                 "`studio-worker register --reset` starts over")
            return EXIT_ERROR
        if approval is not None and shown != approval.request_id:
            shown = approval.request_id
            print(f"waiting for the studio at {config.api_base_url} to approve this PC "
                  f"(request {approval.request_id}); Ctrl-C stops waiting, the request "
                  "stays open and the worker picks the approval up when it runs", flush=True)
        if approval is None and (service.state.last_error or registrar.last_failure):
            report(f"{service.state.last_error or registrar.last_failure}; or register at "
                   "once with --bootstrap-token TOKEN")
            return EXIT_ERROR
        await asyncio.sleep(delay)


def _ago(seconds: float) -> str:
    from workerlib.format import duration

    return f"{duration(seconds)} ago"


def live_status(paths: Paths) -> StatusSnapshot | None:
    """The status a running worker last published to its file, if it is still running
    (the fallback for a worker without the control API)."""
    try:
        data = json.loads(paths.status_file.read_text("utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not data.get("running"):
        return None
    try:
        snapshot = StatusSnapshot.model_validate(data)
        os.kill(snapshot.pid, 0)
    except (OSError, ValueError):
        return None
    stale = 3 * snapshot.heartbeat_interval_secs + 10
    if time.time() - float(data.get("updated_at", 0)) > stale:
        return None
    return snapshot


def control_client(paths: Paths) -> ControlClient | None:
    """The running worker's control API, or None: then a command reads and writes the
    files, and a running worker without the API picks them up on its next tick.

    Every command that changes a setting goes through ``apply_changes``; a new one
    (``pause --for``, ...) only has to say what changes."""
    try:
        return find_client(paths)
    except (EndpointError, ControlError) as exc:
        report(f"not using the running worker's control API: {exc}")
        return None


def apply_changes(paths: Paths, changes: dict[str, Any]) -> str:
    """Write ``changes`` through the running worker (validated there, applied at once)
    or, with none running, to the config file. Returns how it was done, for the user."""
    client = control_client(paths)
    if client is not None:
        try:
            client.save_config(changes)
        except WorkerGone:
            pass  # it stopped meanwhile: the file is the truth again
        else:
            return f"applied by the running worker (pid {client.endpoint.pid})"
    store = ConfigStore(paths.config_file)
    if not store.exists():
        store.load_or_create()
    store.update(changes)
    return f"saved to {paths.config_file}"


def cmd_status(paths: Paths) -> int:
    client = control_client(paths)
    live: StatusSnapshot | None = None
    if client is not None:
        with contextlib.suppress(WorkerGone):
            snapshot = client.snapshot()
            live = StatusSnapshot.model_validate(snapshot["status"])
            config = Config.model_validate(snapshot["config"])
    if live is None:
        config = _load(paths)
        live = live_status(paths)
    print(f"config:     {paths.config_file}")
    print(f"studio:     {config.api_base_url}")
    print(f"worker id:  {config.worker_id or '(not registered)'}")
    print(f"protocol:   {config.protocol}")
    if config.registration_request_id and not config.is_registered():
        print(f"approval:   request {config.registration_request_id} sent to the studio")
    print(f"claiming:   {'enabled' if config.auto_enabled else 'paused'}")
    snoozed = SnoozeStore(paths.snooze_file).active_until(time.time())
    print(f"engine:     {config.engine}")
    print(f"threshold:  {config.vram_threshold_gb:g} GiB")
    if live is None:
        if snoozed is not None:
            print(f"snooze:     Snoozed until {clock_text(snoozed, time.time())}")
        print("worker:     not running")
        return EXIT_OK
    how = "live, through its control API" if client is not None else "from its status file"
    state = live.label if live.running else "loops stopped"
    print(f"worker:     running (pid {live.pid}, {how}) — {state}")
    print(f"version:    {live.version}")
    if live.protocol is not None:
        print(f"talking:    {live.protocol.describe()}")
    if live.approval is not None and live.approval.phase == "waiting":
        print(f"approval:   waiting for the studio to approve this PC (request "
              f"{live.approval.request_id}, asked {_ago(time.time() - live.approval.since)})")
    elif live.approval is not None:
        print(f"approval:   rejected: {live.approval.reason} — "
              "`studio-worker register --reset` starts over")
    if live.hold is not None:
        print(f"holding:    {live.hold.text}")
    for gpu in live.gpus:
        print(f"gpu:        {gpu.describe()}")
    print(f"vram:       {live.vram_total_gb:g} GiB detected")
    hb = live.last_heartbeat
    if hb:
        when = _ago(time.time() - hb.at)
        print(f"heartbeat:  {'ok' if hb.ok else 'failed: ' + str(hb.error)} ({when})")
    job = live.current_job
    if job:
        progress = f" {job.progress * 100:.0f}%" if job.progress is not None else ""
        print(f"job:        {job.job_id} {job.kind} · {job.model}{progress} — "
              f"{job.prompt_preview}")
    if live.uploading:
        print(f"uploading:  {live.uploading} finished job(s) being handed to the studio")
    print(f"jobs:       {live.jobs_completed} completed, {live.jobs_failed} failed")
    if live.backend_problem:
        print(f"engine:     not claiming — {live.backend_problem}")
    if live.cooldown_until:
        left = max(0.0, live.cooldown_until - time.time())
        print(f"cool-down:  not claiming for another {left:.0f} s after repeated failures")
    if live.last_error:
        print(f"problem:    {live.last_error}")
    return EXIT_OK


def cmd_update(paths: Paths, changes: dict[str, Any], message: str) -> int:
    print(f"{message} ({apply_changes(paths, changes)})")
    return EXIT_OK


def cmd_pause(paths: Paths, duration: str | None, until_tomorrow: bool) -> int:
    """``pause``: until ``resume``; ``--for 2h`` / ``--until-tomorrow``: a snooze that lifts
    by itself (kept in the state folder). A running worker applies it at once."""
    now = time.time()
    if not duration and not until_tomorrow:
        return cmd_update(paths, {"auto_enabled": False},
                          "claiming paused until `studio-worker resume` (heartbeats go on)")
    try:
        until = tomorrow_morning(now) if until_tomorrow else now + parse_duration(duration or "")
    except ValueError as exc:
        report(f"--for: {exc}")
        return EXIT_USAGE
    client = control_client(paths)
    try:
        if client is None:
            raise WorkerGone()
        client.snooze(until=until)
    except WorkerGone:
        SnoozeStore(paths.snooze_file).snooze_until(until)
    print(f"Snoozed until {clock_text(until, now)}: a running job finishes, no new one starts "
          "(`studio-worker resume` ends it)")
    return EXIT_OK


def cmd_resume(paths: Paths) -> int:
    """End a snooze and a pause; the other rules (schedule, games, ...) still apply."""
    client = control_client(paths)
    try:
        if client is None:
            raise WorkerGone()
        client.resume()
    except WorkerGone:
        SnoozeStore(paths.snooze_file).clear()
        if not _load(paths).auto_enabled:
            ConfigStore(paths.config_file).update({"auto_enabled": True})
    print("claiming resumed")
    return EXIT_OK


def cmd_stats(paths: Paths, as_json: bool) -> int:
    """The running worker's figures (up to its last job) through the control API; with
    none running, the stats file it left."""
    from workerlib.stats import StatsStore, StatsSummary, summarise, text_report

    now = time.time()
    client = control_client(paths)
    summary: StatsSummary | None = None
    if client is not None:
        with contextlib.suppress(WorkerGone):
            summary = client.stats()
    if summary is None and paths.stats_file.exists():
        store = StatsStore(paths.stats_file)
        try:
            summary = store.summary(now)
        finally:
            store.close()
    if summary is None:
        summary = summarise([], now)
    print(summary.model_dump_json(indent=2) if as_json else text_report(summary))
    return EXIT_OK


def cmd_config(paths: Paths, show_secrets: bool) -> int:
    config = _load(paths)
    print(paths.config_file)
    for info in field_infos():
        value = get_value(config, info.name)
        if info.secret and not show_secrets:
            shown = mask_secret(value)
        else:
            shown = json.dumps(value) if not isinstance(value, bool) else str(value).lower()
        print(f"{info.name} = {shown}")
    return EXIT_OK


def cmd_check_update(paths: Paths, apply: bool = False) -> int:
    import aiohttp

    from workerlib.update import check_for_update

    config = _load(paths)

    async def go() -> int:
        async with aiohttp.ClientSession() as session:
            info = await check_for_update(session, config.auto_update_feed,
                                          allow_prerelease=config.auto_update_prerelease)
            if info.error:
                report(info.describe())
                return EXIT_ERROR
            print(info.describe(), flush=True)
            if not (apply and info.available):
                return EXIT_OK
            try:
                release = await updater.fetch_latest(
                    session, config.auto_update_feed,
                    allow_prerelease=config.auto_update_prerelease)
            except updater.UpdateError as exc:
                report(str(exc))
                return EXIT_ERROR
            # A worker running from this bundle keeps its old code until it restarts.
            outcome = await updater.apply_update(session, release,
                                                 updater.detect_installation(),
                                                 can_start=lambda: True)
        failed = outcome.status is updater.UpdateStatus.FAILED
        print(outcome.message, file=sys.stderr if failed else sys.stdout, flush=True)
        return EXIT_ERROR if failed else EXIT_OK

    return asyncio.run(go())


def cmd_service(paths: Paths, install: bool, start: bool) -> int:
    from workerlib.service_install import service_backend, service_command

    backend = service_backend()
    if backend is None:
        report(f"installing a service is not supported on {sys.platform}")
        return EXIT_ERROR
    try:
        if install:
            lines = backend.install(service_command(paths.config_file), start=start)
        else:
            lines = backend.uninstall()
    except OSError as exc:
        report(f"could not write {backend.path}: {exc}")
        return EXIT_ERROR
    for line in lines:
        print(line)
    return EXIT_OK


def cmd_dev_studio(host: str, port: int, token: str,
                   protocol: Literal["v1", "v2", "both"] = "both") -> int:
    from workerlib.devstudio import run_dev_studio

    async def go() -> None:
        task = asyncio.current_task()
        assert task is not None

        def cancel() -> None:
            task.cancel()

        install_signal_handlers(cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await run_dev_studio(host, port, token, protocol=protocol)

    asyncio.run(go())
    return EXIT_OK


def cmd_ui(paths: Paths, args: argparse.Namespace, faces: Faces) -> int:
    if faces.ui is None:
        report("the desktop app is not installed here (install the 'ui' extra: "
               "pip install 'studio-worker[ui]'); run the worker without a window with "
               "`studio-worker run` (or `studio-worker --headless`)")
        return EXIT_USAGE
    minimised = bool(getattr(args, "minimised", False))
    if getattr(args, "autostart", False):
        # Started by the login entry: hidden in the tray unless the user chose otherwise.
        minimised = minimised or _load(paths).start_minimised
    return int(faces.ui(paths, minimised))


# -- argument parsing ---------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="studio-worker",
        description="Lend your GPU to the minis.gg studio. With no command, opens the window.",
    )
    parser.add_argument("--version", action="version", version=f"studio-worker {__version__}")
    parser.add_argument("--config", metavar="PATH",
                        help="config file to use (default: the platform config dir; "
                             "env STUDIO_WORKER_CONFIG)")
    parser.add_argument("--headless", action="store_true",
                        help="run the worker without a window (same as `run`)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="run the worker without a window (for services)")
    run.add_argument("--drain-secs", type=float, default=None,
                     help="on stop, how long to let a running job finish "
                          "(default: shutdown_drain_secs, 5)")
    ui = sub.add_parser("ui", help="open the desktop window (the default)")
    ui.add_argument("--minimised", action="store_true", help="start hidden in the tray")
    ui.add_argument("--autostart", action="store_true",
                    help="started by the login entry (hidden in the tray when "
                         "start_minimised is on)")
    reg = sub.add_parser("register", help="register this worker with the studio")
    reg.add_argument("--bootstrap-token", metavar="T",
                     help="one-time token from the studio; - reads it from stdin (it stays out "
                          "of the process list); left out on a terminal, you are asked for it")
    reg.add_argument("--api-base-url", metavar="U", help="the studio's address")
    reg.add_argument("--reset", action="store_true",
                     help="forget this worker's registration (a rejected request included) "
                          "and start over")
    reg.add_argument("--poll-secs", type=float, default=POLL_SECS, help=argparse.SUPPRESS)
    sub.add_parser("status", help="show the settings and, when running, the live state")
    sub.add_parser("enable", help="resume claiming jobs (a running worker picks it up)")
    sub.add_parser("disable", help="pause claiming jobs (heartbeats go on)")
    pause = sub.add_parser("pause", help="pause claiming: until `resume`, or for a while "
                                         "(a running job finishes)")
    when = pause.add_mutually_exclusive_group()
    when.add_argument("--for", dest="duration", metavar="DURATION",
                      help="snooze for a while, like 2h, 90m or 1h30m; survives a restart")
    when.add_argument("--until-tomorrow", action="store_true",
                      help="snooze until 08:00 tomorrow")
    sub.add_parser("resume", help="end a pause or snooze")
    stats = sub.add_parser("stats", help="the jobs this PC did (24 hours, 7 days)")
    stats.add_argument("--json", action="store_true", help="print JSON")
    thr = sub.add_parser("set-threshold", help="largest job to accept, in GiB of VRAM")
    thr.add_argument("gb", type=float, metavar="GIB",
                     help="jobs estimated above this many GiB of VRAM are left to others "
                          "(e.g. 12)")
    cfg = sub.add_parser("config", help="print the config file's path and settings")
    cfg.add_argument("--show-secrets", action="store_true", help="print tokens unmasked")
    chk = sub.add_parser("check-update", help="check the release feed for a newer version")
    chk.add_argument("--apply", action="store_true",
                     help="install it when this is the desktop bundle, then run it")
    svc = sub.add_parser("install-service",
                         help="run the headless worker at login in your session "
                              "(systemd user unit / launchd agent / scheduled task)")
    svc.add_argument("--no-start", action="store_true",
                     help="write the entry but do not enable or start it now")
    sub.add_parser("uninstall-service", help="stop and remove what install-service added")
    demo = sub.add_parser("demo", help="run jobs against a built-in local studio")
    demo.add_argument("--headless", action="store_true", help="no window even with a display")
    demo.add_argument("--jobs", type=int, default=10, metavar="N", help="jobs to run (default 10)")
    dev = sub.add_parser("dev-studio", help="run the local studio server for development")
    dev.add_argument("--port", type=int, default=9790)
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--bootstrap-token", default="dev-bootstrap-token")
    dev.add_argument("--protocol", choices=("v1", "v2", "both"), default="both",
                     help="which studio API to serve (default both)")
    return parser


def main(argv: Sequence[str] | None = None, faces: Faces | None = None) -> int:
    """Run one command. ``faces``: how to open the window (default: the installed app's)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    command = args.command or ("run" if args.headless else "ui")
    if args.headless and command not in ("run", "demo"):
        parser.error("--headless goes with no command, `run` or `demo`")
    paths = resolve_paths(args.config)
    argv_list = list(sys.argv[1:] if argv is None else argv)
    try:
        if command in ("run", "ui"):
            updater.cleanup_previous()  # what the last self-update left behind
        if command == "run":
            drain = getattr(args, "drain_secs", None)
            code = asyncio.run(run_headless(paths, drain_secs=drain))
            updater.restart_if_pending(argv_list)
            if code == EXIT_RESTART:
                try:
                    restart_self()
                except OSError as exc:
                    report(f"could not start again ({exc}); start the worker again")
                    return EXIT_ERROR
            return code
        if command == "ui":
            code = cmd_ui(paths, args, faces or installed_faces())
            updater.restart_if_pending(argv_list)
            return code
        if command == "register":
            return cmd_register(paths, args.bootstrap_token, args.api_base_url,
                                reset=args.reset, poll_secs=args.poll_secs)
        if command == "status":
            return cmd_status(paths)
        if command == "enable":
            return cmd_update(paths, {"auto_enabled": True}, "claiming enabled")
        if command == "disable":
            return cmd_update(paths, {"auto_enabled": False},
                              "claiming paused (heartbeats go on)")
        if command == "pause":
            return cmd_pause(paths, args.duration, args.until_tomorrow)
        if command == "resume":
            return cmd_resume(paths)
        if command == "stats":
            return cmd_stats(paths, args.json)
        if command == "set-threshold":
            return cmd_update(paths, {"vram_threshold_gb": args.gb},
                              f"VRAM threshold set to {args.gb:g} GiB")
        if command == "config":
            return cmd_config(paths, args.show_secrets)
        if command == "check-update":
            code = cmd_check_update(paths, args.apply)
            updater.restart_if_pending(argv_list)
            return code
        if command in ("install-service", "uninstall-service"):
            return cmd_service(paths, command == "install-service",
                               start=not getattr(args, "no_start", False))
        if command == "demo":
            from workerlib.demo import run_demo_command

            gui = None if args.headless else (faces or installed_faces()).gui_demo
            return run_demo_command(jobs=args.jobs, gui=gui)
        if command == "dev-studio":
            return cmd_dev_studio(args.host, args.port, args.bootstrap_token, args.protocol)
    except ConfigError as exc:
        report(str(exc))
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_OK
    parser.error(f"unknown command {command}")
    return EXIT_USAGE  # pragma: no cover


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

