"""Status tab: who we are, whether the studio hears us, what runs, pause/resume, register."""

from __future__ import annotations

import time
from dataclasses import dataclass

from app.viewmodels.errors import describe_error
from app.viewmodels.tones import BADGE_TONES, Tone
from workerlib.control.handle import WorkerHandle
from workerlib.format import duration
from workerlib.runtime.state import Connection, StatusSnapshot


@dataclass(frozen=True)
class StatusView:
    worker_id: str = ""
    studio_url: str = ""
    badge: str = ""
    badge_tone: Tone = "muted"
    heartbeat: str = ""
    heartbeat_tone: Tone = "muted"
    vram: str = ""
    current_job: str = ""
    jobs_summary: str = ""
    engine: str = ""
    paused: bool = False
    pause_label: str = "Pause claiming"
    pause_icon: str = "pause"
    running: bool = False
    show_start: bool = False
    problem: str = ""
    show_register: bool = False
    register_hint: str = ""
    register_error: str = ""
    registering: bool = False
    gpu: str = ""
    """GPU health, one line per GPU; empty without an NVIDIA GPU (the row is hidden)."""
    snoozed: bool = False
    protocol: str = ""
    """How the worker talks to the studio and why, e.g. "v1 polling (studio has no v2
    channel: polling)"; "not connected yet" before the first session."""
    approval: str = ""
    """A v2 registration request: waiting (with its id and how long), or rejected."""
    approval_tone: Tone = "muted"
    show_start_over: bool = False


def approval_text(snapshot: StatusSnapshot, now: float) -> tuple[str, Tone]:
    """Coarse on purpose (minutes): the window does not redraw every second for it."""
    approval = snapshot.approval
    if approval is None:
        return "", "muted"
    if approval.phase == "rejected":
        return (f"The studio rejected this PC: {approval.reason or 'no reason given'}. "
                "Start over to ask again.", "error")
    minutes = int(max(0.0, now - approval.since) // 60)
    waited = "less than a minute" if minutes < 1 else \
        "1 minute" if minutes == 1 else f"{minutes} minutes"
    return (f"Waiting for the studio to approve this PC — request {approval.request_id}, "
            f"waiting for {waited}. Approval is picked up without a restart.", "warn")


def protocol_text(snapshot: StatusSnapshot) -> str:
    if snapshot.protocol is None:
        return "not connected yet"
    return snapshot.protocol.describe()


def coarse_ago(timestamp: float, now: float) -> str:
    """An age that changes at most once a minute: each change repaints the window, and
    a heartbeat every few seconds would otherwise repaint it every second."""
    minutes = int(max(0.0, now - timestamp) // 60)
    if minutes < 1:
        return "under a minute ago"
    if minutes < 60:
        return f"{minutes} min ago"
    hours = minutes // 60
    return f"{hours} h ago" if hours < 48 else f"{hours // 24} days ago"


def heartbeat_error(error: str | None) -> str:
    """The studio client's message without its own "heartbeat failed: " prefix."""
    text = error or "unknown error"
    return text.removeprefix("heartbeat failed: ")


def heartbeat_text(snapshot: StatusSnapshot, *, running: bool, now: float) -> tuple[str, Tone]:
    beat = snapshot.last_heartbeat
    if beat is None:
        if not running:
            return "none (the worker is stopped)", "muted"
        if not snapshot.registered:
            return "none (not registered)", "muted"
        return "waiting for the first heartbeat", "muted"
    if beat.ok:
        return f"ok, {coarse_ago(beat.at, now)}", "ok"
    return f"failed {coarse_ago(beat.at, now)}: {heartbeat_error(beat.error)}", "error"


def vram_text(snapshot: StatusSnapshot) -> str:
    detected = (f"{snapshot.vram_total_gb:g} GiB {snapshot.vram_source}"
                if snapshot.vram_total_gb > 0 or snapshot.vram_source != "detected"
                else "no GPU memory detected")
    return f"{detected} · accepts jobs up to {snapshot.vram_threshold_gb:g} GiB"


def problems(snapshot: StatusSnapshot, now: float) -> list[str]:
    found = []
    if snapshot.backend_problem:
        found.append(f"Not claiming: {snapshot.backend_problem}")
    if snapshot.cooldown_until is not None and snapshot.cooldown_until > now:
        until = time.strftime("%H:%M:%S", time.localtime(snapshot.cooldown_until))
        found.append(f"Several jobs failed in a row: not claiming until {until} "
                     f"({duration(snapshot.cooldown_until - now)} left)")
    if snapshot.last_error:
        found.append(snapshot.last_error)
    return found


def gpu_text(snapshot: StatusSnapshot) -> str:
    return "\n".join(gpu.describe() for gpu in snapshot.gpus)


def badge_text(snapshot: StatusSnapshot) -> str:
    """The label, or the politeness rule that holds claiming, named with when it lifts."""
    hold = snapshot.hold
    if hold is not None and snapshot.label == "Paused" and not snapshot.paused:
        return hold.text
    return snapshot.label


def current_job_text(snapshot: StatusSnapshot, now: float) -> str:
    """The running job; a finished job's result still uploading beside it (v1) is named
    after it, so the card never says "No job running" while a result is on its way."""
    job = snapshot.current_job
    uploading = "the last result is uploading" if snapshot.uploading == 1 else \
        f"{snapshot.uploading} results uploading"
    if job is None:
        return f"No job running — {uploading}" if snapshot.uploading else "No job running"
    parts = [f"{job.kind} · {job.model}", duration(now - job.started_at)]
    if job.progress is not None:
        parts.append(f"{job.progress * 100:.0f}%")
    if job.prompt_preview:
        parts.append(job.prompt_preview)
    if snapshot.uploading:
        parts.append(uploading)
    return " — ".join(parts)


class StatusViewModel:
    def __init__(self, service: WorkerHandle) -> None:
        self.service = service
        self.register_error = ""
        self.registering = False
        self.problem = ""

    @property
    def running(self) -> bool:
        return self.service.status().running

    def view(self, now: float | None = None) -> StatusView:
        return self.render(self.service.status(), running=self.running,
                           now=time.time() if now is None else now)

    def render(self, snapshot: StatusSnapshot, *, running: bool, now: float) -> StatusView:
        heartbeat, heartbeat_tone = heartbeat_text(snapshot, running=running, now=now)
        approval, approval_tone = approval_text(snapshot, now)
        unauthorised = snapshot.connection is Connection.UNAUTHORISED
        show_register = not snapshot.registered or unauthorised
        hint = ""
        if show_register:
            hint = ("The studio no longer accepts this worker's token: register again with a "
                    "fresh bootstrap token." if unauthorised else
                    "This worker is not registered yet. It asks the studio's operators to "
                    "approve it; or paste a bootstrap token from the studio to register at "
                    "once.")
        return StatusView(
            worker_id=snapshot.worker_id or "(not registered)",
            studio_url=snapshot.api_base_url,
            badge=badge_text(snapshot) if running or not snapshot.registered else "Stopped",
            badge_tone=BADGE_TONES.get(snapshot.label, "muted") if running else "muted",
            heartbeat=heartbeat,
            heartbeat_tone=heartbeat_tone,
            vram=vram_text(snapshot),
            current_job=current_job_text(snapshot, now),
            jobs_summary=(f"{snapshot.jobs_completed} completed · {snapshot.jobs_failed} failed "
                          f"since {time.strftime('%H:%M', time.localtime(snapshot.started_at))}"),
            engine=snapshot.engine,
            paused=snapshot.paused,
            pause_label="Resume claiming" if snapshot.paused else "Pause claiming",
            pause_icon="play" if snapshot.paused else "pause",
            running=running,
            show_start=not running,
            problem="\n".join([self.problem] if self.problem else problems(snapshot, now)),
            show_register=show_register,
            register_hint=hint,
            register_error=self.register_error,
            registering=self.registering,
            gpu=gpu_text(snapshot),
            snoozed=snapshot.hold is not None and snapshot.hold.rule == "snooze",
            protocol=protocol_text(snapshot),
            approval=approval,
            approval_tone=approval_tone,
            show_start_over=snapshot.approval is not None
            and snapshot.approval.phase == "rejected",
        )

    # -- commands ---------------------------------------------------------------------------
    def toggle_pause(self) -> None:
        try:
            # auto_enabled means "claiming": pausing is turning it off.
            self.service.set_paused(self.service.config.auto_enabled)
        except Exception as exc:  # a locked or unwritable config must not crash the window
            self.problem = describe_error(exc)
        else:
            self.problem = ""

    def snooze(self, preset: str) -> None:
        """``1h``, ``4h`` or ``tomorrow``: no new job until then (kept across restarts)."""
        try:
            self.service.snooze_preset(preset)
        except Exception as exc:  # an unwritable state folder must not crash the window
            self.problem = describe_error(exc)
        else:
            self.problem = ""

    def resume_now(self) -> None:
        try:
            self.service.resume()
        except Exception as exc:
            self.problem = describe_error(exc)
        else:
            self.problem = ""

    async def start(self) -> None:
        try:
            await self.service.start()
        except Exception as exc:
            self.problem = describe_error(exc)
        else:
            self.problem = ""

    def start_over(self) -> None:
        """Forget a rejected (or any) registration; the worker asks the studio again."""
        try:
            self.service.reset_registration()
        except Exception as exc:  # an unwritable config must not crash the window
            self.problem = describe_error(exc)
        else:
            self.problem = ""

    def default_url(self) -> str:
        return self.service.config.api_base_url

    async def register(self, token: str, url: str) -> bool:
        """Register through the facade; a refusal is kept in ``register_error``."""
        token, url = token.strip(), url.strip()
        if not token:
            self.register_error = "Paste the bootstrap token from the studio first."
            return False
        self.registering = True
        self.register_error = ""
        try:
            await self.service.register(token, url or None)
        except Exception as exc:  # every refusal is shown next to the form, in its own words
            self.register_error = describe_error(exc)
            return False
        finally:
            self.registering = False
        return True
