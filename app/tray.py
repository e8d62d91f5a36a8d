"""The tray icon: what it shows (pure functions) and the pystray icon that shows it.

Nothing here imports kivy. pystray is imported on the icon's own thread, only when
the icon starts: importing it initialises GTK (or opens an X connection) and can
fail in many ways on a machine without a desktop.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from PIL import Image, ImageDraw

from workerlib.logs import get_logger
from workerlib.runtime.state import Connection, StatusSnapshot

log = get_logger("tray")

Variant = Literal["idle", "busy", "disconnected"]
TITLE = "Studio Worker"
OPEN_LABEL = "Open Window"
QUIT_LABEL = "Quit"
STOP_WORKER_LABEL = "Stop background worker"
SNOOZE_LABEL = "Snooze"
SNOOZE_CHOICES: tuple[tuple[str, str], ...] = (
    ("1h", "For 1 hour"), ("4h", "For 4 hours"), ("tomorrow", "Until tomorrow"),
    ("resume", "Resume now"),
)
"""The Snooze submenu: (command for ``TrayCommands.snooze``, label)."""
STALE_BEATS = 3
"""No good heartbeat for this many intervals counts as disconnected."""
TOOLTIP_LIMIT = 120
"""Windows truncates tray tooltips at 127 characters."""
COLOURS: dict[Variant, tuple[int, int, int]] = {
    "idle": (46, 160, 90),
    "busy": (236, 160, 32),
    "disconnected": (214, 58, 58),
}


# -- what the icon shows --------------------------------------------------------------------
def disconnected_reason(snapshot: StatusSnapshot, now: float) -> str | None:
    """Why the studio cannot be reached, or None while it can (the red icon)."""
    if snapshot.connection is Connection.NOT_REGISTERED:
        return "not registered"
    if snapshot.connection is Connection.UNAUTHORISED:
        return "the studio refused the token"
    beat = snapshot.last_heartbeat
    if beat is not None and not beat.ok:
        return "the last heartbeat failed"
    stale_after = STALE_BEATS * snapshot.heartbeat_interval_secs
    # Before the first heartbeat, the grace period runs from the start.
    reference = snapshot.last_ok_heartbeat_at or snapshot.started_at
    if now - reference > stale_after:
        if not snapshot.running:
            return "the worker is stopped"
        return "no heartbeat for a while"
    return None


def icon_variant(snapshot: StatusSnapshot, now: float) -> Variant:
    """Red when disconnected, amber while a job runs, else green (also when paused)."""
    if disconnected_reason(snapshot, now) is not None:
        return "disconnected"
    return "busy" if snapshot.current_job is not None else "idle"


def pause_label(paused: bool) -> str:
    return "Resume claiming" if paused else "Pause claiming"


def tooltip(snapshot: StatusSnapshot, now: float) -> str:
    """One short line for the state, one for the running job and its progress."""
    reason = disconnected_reason(snapshot, now)
    if reason is not None:
        state = f"disconnected ({reason})"
    else:
        state = "busy" if snapshot.current_job is not None else "idle"
    if snapshot.paused:
        state += ", paused"
    elif snapshot.hold is not None:
        state += f" — {snapshot.hold.text}"
    lines = [f"{TITLE}: {state}"]
    job = snapshot.current_job
    if job is not None:
        line = f"{job.kind} · {job.model}"
        if job.progress is not None:
            line += f" · {job.progress * 100:.0f}%"
        lines.append(line)
    text = "\n".join(lines)
    return text if len(text) <= TOOLTIP_LIMIT else text[: TOOLTIP_LIMIT - 1] + "…"


@dataclass(frozen=True)
class TrayState:
    variant: Variant
    tooltip: str
    paused: bool

    @property
    def pause_label(self) -> str:
        return pause_label(self.paused)


def tray_state(snapshot: StatusSnapshot, now: float) -> TrayState:
    return TrayState(icon_variant(snapshot, now), tooltip(snapshot, now), snapshot.paused)


def draw_icon(variant: Variant, size: int = 64) -> Image.Image:
    """A coloured disc with a white mark (tick, three dots, cross), so the states also
    differ for people who cannot tell the colours apart. Drawn large, then scaled down
    for smooth edges."""
    scale = 4
    big = size * scale
    image = Image.new("RGBA", (big, big), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    pad = big // 16
    draw.ellipse((pad, pad, big - pad, big - pad), fill=(*COLOURS[variant], 255),
                 outline=(20, 20, 20, 255), width=big // 32)
    white = (255, 255, 255, 255)
    width = big // 11

    def at(x: float, y: float) -> tuple[float, float]:
        return (x * big, y * big)

    if variant == "idle":
        draw.line([at(0.30, 0.52), at(0.45, 0.67), at(0.72, 0.36)], fill=white, width=width,
                  joint="curve")
    elif variant == "busy":
        radius = big * 0.07
        for x in (0.30, 0.50, 0.70):
            cx, cy = at(x, 0.5)
            draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=white)
    else:
        draw.line([at(0.34, 0.34), at(0.66, 0.66)], fill=white, width=width)
        draw.line([at(0.34, 0.66), at(0.66, 0.34)], fill=white, width=width)
    return image.resize((size, size), Image.Resampling.LANCZOS)


# -- the icon ---------------------------------------------------------------------------------
class Tray(Protocol):
    """What the app needs from a tray icon; tests pass their own."""

    @property
    def available(self) -> bool:
        """The icon is up (closing the window may hide it)."""

    @property
    def failed(self) -> bool:
        """The icon could not start and will not."""

    def start(self) -> None: ...

    def show(self, state: TrayState) -> None: ...

    def stop(self) -> None: ...


@dataclass(frozen=True)
class TrayCommands:
    """Menu actions. They are called on the tray's thread: each must hop to the app's loop."""

    open_window: Callable[[], None]
    toggle_pause: Callable[[], None]
    quit: Callable[[], None]
    stop_worker: Callable[[], None] | None = None
    """Only for a window attached to a background worker (Quit closes just the window)."""
    snooze: Callable[[str], None] = lambda _choice: None
    """``1h``, ``4h``, ``tomorrow`` or ``resume`` (SNOOZE_CHOICES)."""


class _NoNotifier:
    """pystray's GTK icons connect to the notification service when they start and fail
    without one, though only plyer shows notifications here: a tray host (trayer, a
    tiling WM's bar) does not need a notification daemon."""

    def notify(self, *_args: Any) -> None:
        return None

    def hide(self) -> None:
        return None


SNI_WATCHER = "org.kde.StatusNotifierWatcher"


def status_notifier_host() -> bool:
    """Whether the session bus has a StatusNotifier host (KDE, GNOME's AppIndicator
    extension, waybar...): what the appindicator backend needs to show a real item."""
    try:
        gio = importlib.import_module("gi.repository.Gio")
        glib = importlib.import_module("gi.repository.GLib")
        bus = gio.bus_get_sync(gio.BusType.SESSION, None)
        reply = bus.call_sync("org.freedesktop.DBus", "/org/freedesktop/DBus",
                              "org.freedesktop.DBus", "NameHasOwner",
                              glib.Variant("(s)", (SNI_WATCHER,)), glib.VariantType.new("(b)"),
                              gio.DBusCallFlags.NONE, 2000, None)
        return bool(reply.unpack()[0])
    except Exception:  # no session bus, no gi: no StatusNotifier host either
        return False


def xembed_tray_host(display: str | None = None) -> bool:
    """Whether an X11 system tray (the ``_NET_SYSTEM_TRAY_Sn`` selection) has an owner:
    what pystray's gtk and xorg icons dock into."""
    if not (display or os.environ.get("DISPLAY")):
        return False
    try:
        xdisplay = importlib.import_module("Xlib.display").Display(display)
    except Exception:  # no python-xlib, or the display cannot be opened
        return False
    try:
        atom = xdisplay.intern_atom(f"_NET_SYSTEM_TRAY_S{xdisplay.get_default_screen()}")
        owner = xdisplay.get_selection_owner(atom)
        return getattr(owner, "id", owner) not in (0, None)
    except Exception:
        return False
    finally:
        xdisplay.close()


def missing_tray_host(platform: str, has_sni_host: Callable[[], bool],
                      has_xembed_host: Callable[[], bool]) -> str | None:
    """Why no tray icon can be shown here, or None. On Linux an icon needs a host: a
    StatusNotifier watcher (KDE, GNOME's AppIndicator extension, waybar) or an XEmbed
    system tray (XFCE, MATE, trayer); stock GNOME has neither. Windows' notification
    area and macOS's menu bar are always there."""
    if not platform.startswith("linux"):
        return None
    if has_sni_host() or has_xembed_host():
        return None
    return ("this desktop has no tray host (no StatusNotifier watcher on the session bus, "
            "no X11 system tray)")


def pick_backend(default: str, forced: str | None, has_sni_host: Callable[[], bool]) -> str:
    """pystray picks appindicator whenever its library is installed. Without a
    StatusNotifier host that falls back to an XEmbed icon without tooltip or left
    click; the gtk backend's XEmbed icon has both. PYSTRAY_BACKEND still decides."""
    if forced or default != "appindicator":
        return default
    return "appindicator" if has_sni_host() else "gtk"


def _icon_class(pystray: Any, has_sni_host: Callable[[], bool]) -> type:
    """pystray's Icon for this platform, with the fixes this app relies on."""
    default = pystray.Icon.__module__.rsplit("._", 1)[-1]
    backend = pick_backend(default, os.environ.get("PYSTRAY_BACKEND"), has_sni_host)
    base = pystray.Icon if backend == default else \
        importlib.import_module(f"pystray._{backend}").Icon
    namespace: dict[str, Any] = {}

    def _start_setup(self: Any, setup: Callable[[Any], None]) -> None:
        # pystray's setup thread is not a daemon: if the icon dies before it is ready
        # the thread waits forever and the process can never exit.
        queue = self._Icon__queue  # pystray._base.Icon's private queue (pinned 0.19.5)

        def handler() -> None:
            if queue.get():
                setup(self)

        self._setup_thread = threading.Thread(target=handler, name="tray-setup", daemon=True)
        self._setup_thread.start()

    namespace["_start_setup"] = _start_setup
    namespace["BACKEND"] = backend
    module = base.__module__
    if module in ("pystray._gtk", "pystray._appindicator"):
        def _initialize(self: Any) -> None:
            self._notifier = _NoNotifier()
            self._mark_ready()

        namespace["_initialize"] = _initialize
    if module == "pystray._gtk":
        on_gtk_loop = importlib.import_module("pystray._util.gtk").mainloop

        def _update_title(self: Any) -> None:
            # GtkStatusIcon's title is for screen readers; the tooltip is set apart.
            self._status_icon.set_title(self.title)
            self._status_icon.set_tooltip_text(self.title)

        namespace["_update_title"] = on_gtk_loop(_update_title)
    elif module == "pystray._xorg":
        def _create_window(self: Any) -> Any:
            # The xorg icon reacts to clicks only if its window asks for them.
            x = importlib.import_module("Xlib.X")
            window = base._create_window(self)
            window.change_attributes(
                event_mask=x.ExposureMask | x.StructureNotifyMask | x.ButtonPressMask)
            self._display.flush()
            return window

        namespace["_create_window"] = _create_window
    return type("StudioWorkerTrayIcon", (base,), namespace)


class _Startup:
    """Whether an icon came up, shared by the in-process icon and the helper's."""

    def __init__(self) -> None:
        self.backend = ""
        self._ready = threading.Event()
        self._failed = threading.Event()
        self._stopping = False

    @property
    def available(self) -> bool:
        """The icon is up (closing the window may hide it)."""
        return self._ready.is_set() and not self._failed.is_set()

    @property
    def failed(self) -> bool:
        return self._failed.is_set()

    def wait(self, timeout: float) -> bool:
        """Wait until the icon is up or has failed; True when it is up."""
        self._ready.wait(timeout)
        return self.available

    def _give_up(self, reason: str) -> None:
        """The icon will not come up: one warning, and the window minimises instead."""
        log.warning("no tray icon (%s); closing the window will minimise it instead", reason)
        self._failed.set()
        self._ready.set()


class PystrayTray(_Startup):
    """A pystray icon on its own daemon thread. Best effort: if it cannot start, one
    warning is logged and ``failed`` turns true; the window keeps working without it."""

    def __init__(self, commands: TrayCommands) -> None:
        super().__init__()
        self.commands = commands
        self._lock = threading.Lock()
        """Guards the states; menu callbacks on the tray's thread read them too."""
        self._apply_lock = threading.Lock()
        """Serialises updates of the icon (the app's thread and, once, the setup thread)."""
        self._state: TrayState | None = None
        self._shown: TrayState | None = None
        self._icon: Any = None
        self._thread: threading.Thread | None = None
        self._images: dict[Variant, Image.Image] = {}

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="tray", daemon=True)
        self._thread.start()

    def show(self, state: TrayState) -> None:
        with self._lock:
            self._state = state
        if self._ready.is_set():
            self._apply()

    def stop(self) -> None:
        self._stopping = True
        icon = self._icon
        if icon is None or not self._ready.is_set():
            return
        try:
            icon.visible = False
            icon.stop()
        except Exception as exc:  # already gone with its host: nothing left to hide
            log.debug("stopping the tray icon: %s", exc)

    # -- the tray's thread ----------------------------------------------------------------------
    def _run(self) -> None:
        try:
            has_sni = status_notifier_host()
            if not os.environ.get("PYSTRAY_BACKEND"):
                # Without a host pystray still "starts" an icon nobody can see or click.
                absent = missing_tray_host(sys.platform, lambda: has_sni, xembed_tray_host)
                if absent is not None:
                    self._fail(RuntimeError(absent))
                    return
            import pystray  # only now: importing it loads GTK (~30 MB)

            cls = _icon_class(pystray, lambda: has_sni)
            self.backend = cls.BACKEND  # type: ignore[attr-defined]
            state = self._state or TrayState("idle", TITLE, False)
            menu = pystray.Menu(
                pystray.MenuItem(OPEN_LABEL, self._on_open, default=True),
                pystray.MenuItem(lambda _item: self._pause_text(), self._on_pause),
                pystray.MenuItem(SNOOZE_LABEL, pystray.Menu(*(
                    pystray.MenuItem(label, self._on_snooze(choice))
                    for choice, label in SNOOZE_CHOICES))),
                pystray.MenuItem(STOP_WORKER_LABEL, self._on_stop_worker,
                                 visible=self.commands.stop_worker is not None),
                pystray.MenuItem(QUIT_LABEL, self._on_quit),
            )
            # The title (tooltip) is set once the icon is up: some backends apply only changes.
            self._icon = cls("studio-worker", self._image(state.variant), "", menu)
            self._icon.run(setup=self._on_ready)
        except Exception as exc:  # no desktop, no tray host, a backend that cannot load
            if not self._ready.is_set():
                self._fail(exc)
            elif not self._stopping:
                log.warning("the tray icon stopped: %s", exc)
                self._failed.set()

    def _fail(self, exc: BaseException) -> None:
        self._give_up(str(exc) if type(exc) is RuntimeError else f"{type(exc).__name__}: {exc}")

    def _on_ready(self, icon: Any) -> None:
        try:
            icon.visible = True
        except Exception as exc:
            self._fail(exc)
            return
        self._ready.set()
        log.info("tray icon ready (%s)", self.backend)
        self._apply()

    def _apply(self) -> None:
        """Push the latest state to the icon (only what changed)."""
        with self._apply_lock:
            with self._lock:
                state, shown = self._state, self._shown
                if state is None or state == shown or self._icon is None:
                    return
                self._shown = state
            icon = self._icon
            try:
                if shown is None or shown.variant != state.variant:
                    icon.icon = self._image(state.variant)
                if shown is None or shown.tooltip != state.tooltip:
                    icon.title = state.tooltip
                if shown is None or shown.paused != state.paused:
                    icon.update_menu()
            except Exception as exc:  # a vanished tray host; the window still works
                log.debug("updating the tray icon: %s", exc)

    def _image(self, variant: Variant) -> Image.Image:
        if variant not in self._images:
            self._images[variant] = draw_icon(variant)
        return self._images[variant]

    def _pause_text(self) -> str:
        with self._lock:
            paused = self._state.paused if self._state is not None else False
        return pause_label(paused)

    def _on_open(self, _icon: Any, _item: Any) -> None:
        self.commands.open_window()

    def _on_pause(self, _icon: Any, _item: Any) -> None:
        self.commands.toggle_pause()

    def _on_snooze(self, choice: str) -> Callable[[Any, Any], None]:
        def snooze(_icon: Any, _item: Any) -> None:
            self.commands.snooze(choice)

        return snooze

    def _on_quit(self, _icon: Any, _item: Any) -> None:
        self.commands.quit()

    def _on_stop_worker(self, _icon: Any, _item: Any) -> None:
        if self.commands.stop_worker is not None:
            self.commands.stop_worker()

# -- the icon in a helper process (Linux) -------------------------------------------------------
STOP_WORKER_FLAG = "--with-stop-worker"
"""Tells the helper to offer the Stop background worker item (an attached window)."""


def helper_command(stop_worker: bool = False) -> list[str]:
    """How to start app/tray_helper.py: the bundle runs itself with --tray-helper."""
    flags = [STOP_WORKER_FLAG] if stop_worker else []
    if getattr(sys, "frozen", False):
        return [sys.executable, "--tray-helper", *flags]
    return [sys.executable, "-m", "app.tray_helper", *flags]


class HelperTray(_Startup):
    """The same icon and menu as ``PystrayTray``, run by app/tray_helper.py in its own
    process so that GTK never loads into the window's process (about 30 MB)."""

    STOP_WAIT_SECS = 5.0

    def __init__(self, commands: TrayCommands,
                 command: Callable[[bool], list[str]] = helper_command) -> None:
        super().__init__()
        self.commands = commands
        self._command = command
        self._proc: subprocess.Popen[str] | None = None
        self._lock = threading.Lock()
        self._shown: TrayState | None = None
        self._pending: TrayState | None = None

    def start(self) -> None:
        env = dict(os.environ)
        # The helper imports this package the way this process did.
        root = str(Path(__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        try:
            self._proc = subprocess.Popen(
                self._command(self.commands.stop_worker is not None), stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, text=True,
                env=env, bufsize=1)
        except OSError as exc:
            self._give_up(f"the tray helper could not start: {exc}")
            return
        threading.Thread(target=self._read, name="tray-helper", daemon=True).start()

    def show(self, state: TrayState) -> None:
        with self._lock:
            self._pending = state
        if self._ready.is_set():
            self._flush()

    def stop(self) -> None:
        self._stopping = True
        proc = self._proc
        if proc is None:
            return
        self._send({"stop": True})
        with contextlib.suppress(OSError):
            if proc.stdin is not None:
                proc.stdin.close()
        # Not on the caller's thread: quitting must not wait for GTK to let go.
        threading.Thread(target=self._reap, args=(proc,), name="tray-helper-reap",
                         daemon=True).start()

    def _reap(self, proc: subprocess.Popen[str]) -> None:
        try:
            proc.wait(self.STOP_WAIT_SECS)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    # -- the reader thread ------------------------------------------------------------------
    def _read(self) -> None:
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        for line in proc.stdout:
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if isinstance(message, dict):
                self._handle(message)
        if not self._ready.is_set():
            self._give_up("the tray helper exited")
        elif not self._stopping and not self._failed.is_set():
            log.warning("the tray icon stopped: its helper exited")
            self._failed.set()

    def _handle(self, message: dict[str, Any]) -> None:
        if "log" in message and isinstance(message["log"], dict):
            level = {"warn": logging.WARNING, "error": logging.ERROR}.get(
                str(message["log"].get("level")), logging.INFO)
            log.log(level, "%s", str(message["log"].get("message", ""))[:2000])
        elif "ready" in message:
            self.backend = str(message["ready"])
            self._ready.set()
            self._flush()
        elif "failed" in message:
            self._failed.set()
            self._ready.set()
        elif message.get("command") == "open":
            self.commands.open_window()
        elif message.get("command") == "pause":
            self.commands.toggle_pause()
        elif message.get("command") == "quit":
            self.commands.quit()
        elif message.get("command") == "snooze":
            self.commands.snooze(str(message.get("choice", "")))
        elif message.get("command") == "stop_worker" and self.commands.stop_worker is not None:
            self.commands.stop_worker()

    def _flush(self) -> None:
        with self._lock:
            state = self._pending
            if state is None or state == self._shown:
                return
            self._shown = state
        self._send({"show": {"variant": state.variant, "tooltip": state.tooltip,
                             "paused": state.paused}})

    def _send(self, message: dict[str, Any]) -> None:
        proc = self._proc
        if proc is None or proc.stdin is None:
            return
        try:
            with self._lock:
                proc.stdin.write(json.dumps(message) + "\n")
                proc.stdin.flush()
        except (OSError, ValueError):  # the helper is gone: the reader says so
            pass


def default_tray(commands: TrayCommands) -> Tray:
    """On Linux the icon lives in a helper process (GTK stays out of this one)."""
    if sys.platform.startswith("linux"):
        return HelperTray(commands)
    return PystrayTray(commands)
