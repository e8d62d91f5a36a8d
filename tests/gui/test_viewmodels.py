"""View-models without a window: formatting, filtering, routing, editing.

They run against a real WorkerService (opened on a temp config, no studio
needed unless a test registers) or against snapshots built here.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from app.viewmodels.about import AboutViewModel
from app.viewmodels.config import ConfigViewModel, label_for
from app.viewmodels.jobs import JobsViewModel
from app.viewmodels.logs import WINDOW, LogsViewModel
from app.viewmodels.status import StatusViewModel, coarse_ago
from tests.conftest import BOOTSTRAP, ServiceFactory
from workerlib.config import GROUPS, ConfigStore, field_infos
from workerlib.engines.synthetic import SyntheticEngine
from workerlib.logs import LogLine
from workerlib.paths import Paths
from workerlib.runtime.state import (
    Connection,
    CurrentJob,
    FinishedJob,
    HeartbeatInfo,
    StatusSnapshot,
    UpdateInfo,
)
from workerlib.service import WorkerService

# No kivy here: these run without the 'ui' extra and are not marked gui.
NOW = 1_760_000_000.0


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[WorkerService]:
    paths = Paths(config_file=tmp_path / "config.toml", log_dir=tmp_path / "logs",
                  state_dir=tmp_path / "state", cache_dir=tmp_path / "cache")
    ConfigStore(paths.config_file).update({"api_base_url": "http://127.0.0.1:9",
                                           "auto_update_enabled": False})
    svc = WorkerService(paths, engine_factory=lambda _c: SyntheticEngine(),
                        vram_probe=lambda: 24.0, file_logging=False)
    await svc.open()
    yield svc
    await svc.close(drain_secs=0.1)


def snapshot(**changes: Any) -> StatusSnapshot:
    base: dict[str, Any] = dict(
        version="1.2.3", worker_id="w-1", api_base_url="https://studio.example",
        registered=True, connection=Connection.CONNECTED, label="Idle", paused=False,
        busy=False, current_job=None, last_heartbeat=HeartbeatInfo(ok=True, at=NOW - 5),
        last_ok_heartbeat_at=NOW - 5, vram_total_gb=24.0, vram_threshold_gb=12.0,
        backend_problem=None, cooldown_until=None,
        engine="synthetic", last_error=None, last_update=None, started_at=NOW - 3600,
        jobs_completed=3, jobs_failed=1, heartbeat_interval_secs=5.0, running=True,
        restart_pending=False, pid=1,
        config_path="/c/config.toml", log_file="/l/studio-worker.log",
    )
    base.update(changes)
    return StatusSnapshot(**base)


def finished(i: int, *, outcome: str = "completed", reason: str | None = None,
             retryable: bool | None = None, secs: float = 12.0) -> FinishedJob:
    return FinishedJob(job_id=f"job-{i}", kind="image", model="sdxl", prompt_preview="p",
                       outcome=outcome, reason=reason, retryable=retryable,  # type: ignore[arg-type]
                       duration_secs=secs, finished_at=NOW - 1000 + i)


def line(seq: int, level: str = "info", message: str = "hello", category: str = "claim",
         job_id: str | None = None) -> LogLine:
    return LogLine(seq, NOW + seq, level, category, message, job_id)  # type: ignore[arg-type]


# -- Status -------------------------------------------------------------------------------------
async def test_status_formats_a_connected_idle_worker(service: WorkerService) -> None:
    vm = StatusViewModel(service)
    view = vm.render(snapshot(), running=True, now=NOW)
    assert view.badge == "Idle" and view.badge_tone == "ok"
    assert view.heartbeat == "ok, under a minute ago" and view.heartbeat_tone == "ok"
    assert view.vram == "24 GiB detected · accepts jobs up to 12 GiB"
    assert view.worker_id == "w-1" and view.studio_url == "https://studio.example"
    assert view.current_job == "No job running"
    assert view.pause_label == "Pause claiming" and not view.show_register
    assert not view.show_start and view.problem == ""


async def test_status_names_a_result_still_uploading(service: WorkerService) -> None:
    from workerlib.runtime.state import CurrentJob

    vm = StatusViewModel(service)
    view = vm.render(snapshot(busy=True, label="Busy", uploading=1), running=True, now=NOW)
    assert view.badge == "Busy"
    assert view.current_job == "No job running — the last result is uploading"
    job = CurrentJob(job_id="j-2", kind="image", model="sdxl", prompt_preview="a golem",
                     started_at=NOW - 3, progress=0.5)
    view = vm.render(snapshot(busy=True, label="Busy", current_job=job, uploading=1),
                     running=True, now=NOW)
    assert view.current_job.startswith("image · sdxl")
    assert view.current_job.endswith("50% — a golem — the last result is uploading")


async def test_status_shows_the_approval_wait_coarsely_and_the_protocol(
    service: WorkerService
) -> None:
    from workerlib.runtime.state import Approval, ProtocolInfo

    vm = StatusViewModel(service)
    unregistered = dict(registered=False, connection=Connection.NOT_REGISTERED,
                        worker_id="", last_heartbeat=None)
    waiting = Approval(phase="waiting", request_id="r-42", since=NOW - 30)
    view = vm.render(snapshot(label="Waiting for approval", approval=waiting, **unregistered),
                     running=True, now=NOW)
    assert view.badge == "Waiting for approval" and view.badge_tone == "warn"
    assert "request r-42, waiting for less than a minute" in view.approval
    assert view.approval_tone == "warn" and not view.show_start_over
    assert view.protocol == "not connected yet"
    later = waiting.model_copy(update={"since": NOW - 185})
    view = vm.render(snapshot(label="Waiting for approval", approval=later, **unregistered),
                     running=True, now=NOW)
    assert "waiting for 3 minutes" in view.approval  # minutes, not a per-second counter
    rejected = Approval(phase="rejected", request_id="r-42", since=NOW - 60,
                        reason="unknown PC")
    view = vm.render(snapshot(label="Rejected", approval=rejected, **unregistered),
                     running=True, now=NOW)
    assert view.badge_tone == "error" and view.show_start_over
    assert "rejected this PC: unknown PC" in view.approval
    polling = ProtocolInfo(name="v1", reason="studio has no v2 channel: polling")
    view = vm.render(snapshot(protocol=polling), running=True, now=NOW)
    assert view.protocol == "v1 polling (studio has no v2 channel: polling)"
    assert view.approval == "" and not view.show_start_over


async def test_an_idle_status_tab_stays_the_same_between_heartbeats(
    service: WorkerService,
) -> None:
    # Every change repaints the whole window: with heartbeats every few seconds an idle
    # worker's Status tab must not change second by second.
    vm = StatusViewModel(service)
    views = [vm.render(snapshot(last_heartbeat=HeartbeatInfo(ok=True, at=NOW - 5)),
                       running=True, now=NOW + delta) for delta in (0, 1, 20, 50)]
    assert all(view == views[0] for view in views)
    assert coarse_ago(NOW - 59, NOW) == "under a minute ago"
    assert coarse_ago(NOW - 61, NOW) == "1 min ago"
    assert coarse_ago(NOW - 3 * 3600, NOW) == "3 h ago"
    assert coarse_ago(NOW - 3 * 86400, NOW) == "3 days ago"


async def test_status_badges_and_job_line(service: WorkerService) -> None:
    vm = StatusViewModel(service)
    job = CurrentJob(job_id="j", kind="llm", model="synthetic-llm", prompt_preview="lore",
                     started_at=NOW - 184, progress=0.5)
    busy = vm.render(snapshot(label="Busy", busy=True, current_job=job), running=True, now=NOW)
    assert busy.badge == "Busy" and busy.badge_tone == "busy"
    assert busy.current_job == "llm · synthetic-llm — 3m 04s — 50% — lore"
    paused = vm.render(snapshot(label="Paused", paused=True), running=True, now=NOW)
    assert paused.pause_label == "Resume claiming" and paused.badge_tone == "paused"
    down = vm.render(snapshot(label="Disconnected", connection=Connection.DISCONNECTED,
                              last_heartbeat=HeartbeatInfo(
                                  ok=False, at=NOW - 2,
                                  error="heartbeat failed: connection refused")),
                     running=True, now=NOW)
    assert down.badge_tone == "error"
    assert down.heartbeat == "failed under a minute ago: connection refused"
    stopped = vm.render(snapshot(), running=False, now=NOW)
    assert stopped.badge == "Stopped" and stopped.show_start
    no_gpu = vm.render(snapshot(vram_total_gb=0.0), running=True, now=NOW)
    assert no_gpu.vram.startswith("no GPU memory detected")
    overridden = vm.render(snapshot(vram_source="set by STUDIO_WORKER_VRAM_GB"), running=True,
                           now=NOW)
    assert overridden.vram == "24 GiB set by STUDIO_WORKER_VRAM_GB · accepts jobs up to 12 GiB"


async def test_unregistered_or_unauthorised_routes_to_the_register_form(
    service: WorkerService,
) -> None:
    vm = StatusViewModel(service)
    view = vm.render(snapshot(registered=False, worker_id="", label="Not registered",
                              connection=Connection.NOT_REGISTERED, last_heartbeat=None),
                     running=True, now=NOW)
    assert view.show_register and view.worker_id == "(not registered)"
    assert view.badge == "Not registered" and "not registered yet" in view.register_hint
    assert view.heartbeat == "none (not registered)"
    refused = vm.render(snapshot(label="Not authorised", connection=Connection.UNAUTHORISED),
                        running=True, now=NOW)
    assert refused.show_register and "register again" in refused.register_hint
    # The real service with no credentials says the same.
    assert vm.view().show_register


async def test_register_refusals_are_plain_words(
    studio: Any, make_service: ServiceFactory
) -> None:
    service = await make_service(register=False, bootstrap_token="")
    vm = StatusViewModel(service)
    assert not await vm.register("  ", studio.url)
    assert vm.register_error == "Paste the bootstrap token from the studio first."
    assert not await vm.register("wrong-token-123456", studio.url)
    assert vm.register_error.startswith("Not authorised: ")
    assert "bootstrap token" in vm.register_error and "wrong-token" not in vm.register_error
    assert not await vm.register(BOOTSTRAP, "ftp://nowhere")
    assert vm.register_error.startswith("api_base_url: must start with http")
    assert not await vm.register(BOOTSTRAP, "http://127.0.0.1:9")
    assert vm.register_error.startswith("Studio unreachable: ")
    assert not vm.registering
    assert await vm.register(BOOTSTRAP, studio.url)
    assert vm.register_error == "" and not vm.view().show_register
    assert service.config.is_registered()


async def test_pause_toggle_writes_the_config(service: WorkerService) -> None:
    vm = StatusViewModel(service)
    vm.toggle_pause()
    assert service.config.auto_enabled is False
    assert ConfigStore(service.paths.config_file).load().auto_enabled is False
    assert vm.view().pause_label == "Resume claiming"
    vm.toggle_pause()
    assert service.config.auto_enabled is True


# -- Jobs -----------------------------------------------------------------------------------------
def test_jobs_current_card_and_durations() -> None:
    job = CurrentJob(job_id="j1", kind="video", model="synthetic-video", prompt_preview="spin",
                     started_at=NOW - 4320, progress=None)
    view = JobsViewModel.render(job, [], NOW)
    assert view.current.visible and view.current.title == "video · synthetic-video"
    assert view.current.elapsed == "1h 12m" and not view.current.has_progress
    with_progress = JobsViewModel.render(job.model_copy(update={"progress": 0.42}), [], NOW)
    assert with_progress.current.has_progress and with_progress.current.progress == 42.0
    assert with_progress.current.progress_text == "42%"
    idle = JobsViewModel.render(None, [], NOW)
    assert not idle.current.visible and idle.current.title == "No job running"
    assert idle.rows == () and idle.heading == "Finished jobs"


def test_jobs_are_newest_first_capped_and_explain_failures() -> None:
    recent = [finished(i) for i in range(60)]
    recent.append(finished(99, outcome="failed", reason="engine crashed", retryable=True,
                           secs=184))
    view = JobsViewModel.render(None, recent, NOW)
    assert len(view.rows) == 50
    assert view.rows[0].job_id == "job-99" and view.rows[1].job_id == "job-59"
    failed = view.rows[0]
    assert failed.icon == "alert-circle" and failed.tone == "error"
    assert failed.reason == "engine crashed (will be retried)"
    assert failed.duration == "3m 04s" and failed.title == "image · sdxl"
    ok = view.rows[1]
    assert ok.icon == "check-circle" and ok.reason == "" and ok.duration == "12s"
    assert ok.finished_at == time.strftime("%H:%M:%S", time.localtime(NOW - 1000 + 59))
    assert view.heading == "Last 50 finished jobs · 49 completed · 1 failed"
    assert ok.as_data()["job_id"] == "job-59"


# -- Logs -----------------------------------------------------------------------------------------
async def test_logs_window_is_the_newest_500_of_1000(service: WorkerService) -> None:
    vm = LogsViewModel(service)
    lines = [line(i) for i in range(1, 1001)]
    view = vm.render(lines)
    assert len(view.rows) == WINDOW == 500
    assert view.rows[0].seq == 501 and view.rows[-1].seq == 1000  # oldest on top
    assert view.summary == "Showing the last 500 of 1000 lines"
    assert view.auto_scroll


async def test_logs_filter_by_level_and_text(service: WorkerService) -> None:
    vm = LogsViewModel(service)
    lines = [line(1, "info", "claimed job j1", job_id="j1"),
             line(2, "warn", "heartbeat failed: timeout", category="heartbeat"),
             line(3, "error", "job j2 failed: Boom\nTraceback ...", category="generate",
                  job_id="j2"),
             line(4, "info", "registered")]
    # A level filter is "this level and above": Warn keeps the error too.
    vm.set_level("warn")
    assert [r.seq for r in vm.render(lines).rows] == [2, 3]
    vm.set_level("info")
    assert [r.seq for r in vm.render(lines).rows] == [1, 2, 3, 4]
    vm.set_level("error")
    row = vm.render(lines).rows[0]
    assert row.level == "ERROR" and row.tone == "error" and row.headline == "job j2 failed: Boom"
    vm.set_level("all")
    vm.set_search("J1")
    view = vm.render(lines)
    assert [r.seq for r in view.rows] == [1]
    assert view.summary == "1 of the last 4 lines match"
    vm.set_search("heartbeat")  # the category counts too
    assert [r.seq for r in vm.render(lines).rows] == [2]
    with pytest.raises(ValueError):
        vm.set_level("debug")
    vm.toggle_auto_scroll()
    assert not vm.render(lines).auto_scroll


async def test_logs_copy_is_the_visible_lines(service: WorkerService) -> None:
    vm = LogsViewModel(service)
    vm.set_level("error")
    vm.render([line(1, "error", "claimed job j1", job_id="j1"), line(2, "warn", "x")])
    clock = time.strftime("%H:%M:%S", time.localtime(NOW + 1))
    assert vm.copy_text() == f"{clock} ERROR claim: claimed job j1 [j1]"


async def test_logs_from_the_real_service(service: WorkerService) -> None:
    vm = LogsViewModel(service)
    assert any("studio-worker" in r.message for r in vm.view().rows)


# -- Config ---------------------------------------------------------------------------------------
async def test_config_lists_every_field_by_group_with_help(service: WorkerService) -> None:
    view = ConfigViewModel(service).view()
    assert [g.name for g in view.groups] == list(GROUPS)
    shown = {f.name: f for g in view.groups for f in g.fields}
    assert set(shown) == {info.name for info in field_infos()}
    for info in field_infos():
        assert shown[info.name].help.startswith(info.description)
        assert info.name in [f.name for g in view.groups if g.name == info.group
                             for f in g.fields]
    assert shown["auto_start"].kind == "bool" and shown["auto_start"].active
    assert shown["vram_threshold_gb"].text == "12"
    assert shown["engines"].kind == "list" and "commas" in shown["engines"].help
    assert [g.name for g in view.groups if g.is_engine] == ["Engine"]
    assert not view.dirty and view.message == ""
    assert label_for("heartbeat_interval_secs") == "Heartbeat interval (seconds)"
    assert label_for("api_base_url") == "API base URL"
    assert label_for("gradio.api_name") == "Gradio API name"
    assert label_for("comfyui.url") == "ComfyUI URL"
    assert label_for("vram_threshold_gb") == "VRAM threshold (GiB)"


async def test_config_secrets_are_masked_until_revealed(service: WorkerService) -> None:
    service.save_config({"auth_token": "tok-VERY-SECRET-1"})
    vm = ConfigViewModel(service)
    field = vm.field_view(next(i for i in vm.infos if i.name == "auth_token"))
    assert field.kind == "secret" and field.password
    vm.toggle_reveal("auth_token")
    assert not vm.field_view(next(i for i in vm.infos if i.name == "auth_token")).password
    vm.toggle_reveal("auth_token")
    assert vm.field_view(next(i for i in vm.infos if i.name == "auth_token")).password
    assert not vm.field_view(next(i for i in vm.infos if i.name == "worker_id")).password


async def test_config_invalid_input_is_refused_naming_the_field(service: WorkerService) -> None:
    vm = ConfigViewModel(service)
    before = service.paths.config_file.read_text()
    vm.set_text("heartbeat_interval_secs", "soon")
    vm.set_text("vram_threshold_gb", "-3")
    vm.set_text("api_base_url", "studio.example")
    vm.set_text("auto_update_interval_secs", "1.5")
    assert vm.errors["heartbeat_interval_secs"] == "heartbeat_interval_secs: must be a number"
    assert vm.errors["vram_threshold_gb"].startswith("vram_threshold_gb: ")
    assert "greater than or equal to 0" in vm.errors["vram_threshold_gb"]
    assert vm.errors["api_base_url"] == (
        "api_base_url: must start with http:// or https:// followed by a host")
    assert vm.errors["auto_update_interval_secs"] == (
        "auto_update_interval_secs: must be a whole number")
    assert vm.view().dirty and not vm.view().can_save
    assert not vm.save()
    assert vm.message.startswith("Not saved: fix ") and vm.message_is_error
    assert "heartbeat_interval_secs" in vm.message
    assert service.paths.config_file.read_text() == before


async def test_config_dirty_reset_and_save(service: WorkerService) -> None:
    vm = ConfigViewModel(service)
    vm.set_text("vram_threshold_gb", "12")  # the saved value: not an edit
    assert not vm.dirty
    vm.set_text("vram_threshold_gb", "9.5")
    vm.set_flag("notify_on_failure", True)
    vm.set_text("engines", "synthetic, gradio ,")
    view = vm.view()
    assert view.dirty and view.can_save
    dirty = {f.name for g in view.groups for f in g.fields if f.dirty}
    assert dirty == {"vram_threshold_gb", "notify_on_failure", "engines"}
    vm.reset()
    assert not vm.dirty and vm.field_view(
        next(i for i in vm.infos if i.name == "vram_threshold_gb")).text == "12"

    vm.set_text("vram_threshold_gb", "9.5")
    vm.set_text("engines", "synthetic, gradio ,")
    assert vm.save()
    assert vm.message == "Saved 2 settings." and not vm.dirty
    saved = ConfigStore(service.paths.config_file).load()
    assert saved.vram_threshold_gb == 9.5 and saved.engines == ["synthetic", "gradio"]
    text = service.paths.config_file.read_text()
    assert "# Largest job (GiB of VRAM) this worker accepts." in text
    assert (service.paths.config_file.stat().st_mode & 0o777) == 0o600


async def test_config_keeps_edits_when_the_file_changes_elsewhere(
    service: WorkerService,
) -> None:
    vm = ConfigViewModel(service)
    vm.set_text("vram_threshold_gb", "9.5")
    service.set_paused(True)  # e.g. the Status tab's Pause button
    vm.sync()
    assert vm.field_view(next(i for i in vm.infos if i.name == "auto_enabled")).active is False
    assert vm.texts == {"vram_threshold_gb": "9.5"}
    service.save_config({"vram_threshold_gb": 9.5})  # someone saved the same value
    vm.sync()
    assert not vm.dirty


async def test_config_engine_change_raises_the_restart_flag(service: WorkerService) -> None:
    vm = ConfigViewModel(service)
    assert vm.view().restart_note == ""
    vm.set_text("models_root", "/srv/models")
    assert vm.save()
    assert service.restart_pending
    assert "Apply and restart loops" in vm.view().restart_note
    await vm.apply_and_restart()  # loops not running: the engine is rebuilt in place
    assert not service.restart_pending and vm.view().restart_note == ""
    assert vm.message.startswith("Worker loops restarted") and not vm.restarting


# -- About ----------------------------------------------------------------------------------------
async def test_about_shows_version_paths_and_update_outcome(service: WorkerService) -> None:
    vm = AboutViewModel(service)
    view = vm.render(snapshot(), auto=False)
    assert view.version == "studio-worker 1.2.3"
    assert view.config_path == "/c/config.toml" and view.log_path == "/l/studio-worker.log"
    assert view.update == "Not checked yet (automatic checks are off)."
    available = UpdateInfo(checked_at=NOW, current="1.2.3", latest="1.3.0", available=True,
                           download_url="https://example/dl")
    view = vm.render(snapshot(last_update=available), auto=True)
    assert view.update.startswith("Update available: 1.2.3 -> 1.3.0 (checked ")
    assert view.update_tone == "warn" and view.download_url == "https://example/dl"
    failed = UpdateInfo(checked_at=NOW, current="1.2.3", error="feed answered 500")
    view = vm.render(snapshot(last_update=failed), auto=True)
    assert view.update.startswith("Update check failed: feed answered 500")
    assert view.update_tone == "error"
    real = vm.view()
    assert real.config_path == str(service.paths.config_file)
    assert real.check_label == "Check for updates now" and not real.checking


async def test_about_check_now_goes_through_the_facade(service: WorkerService) -> None:
    service.save_config({"auto_update_feed": "http://127.0.0.1:9/releases"})
    vm = AboutViewModel(service)
    await vm.check_update()
    view = vm.view()
    assert view.update.startswith("Update check failed: the update feed could not be fetched")
    assert not view.checking


async def test_config_engine_tables_and_model_map(service: WorkerService) -> None:
    vm = ConfigViewModel(service)
    shown = {f.name: f for g in vm.view().groups for f in g.fields}
    assert shown["a1111.url"].text == "http://127.0.0.1:7860"
    assert shown["model_map"].kind == "table"
    vm.set_text("model_map", "sdxl = sd_xl_base_1.0.safetensors, flux=flux1-dev")
    vm.set_text("a1111.url", "http://127.0.0.1:7861")
    assert vm.errors == {}
    assert vm.save()
    saved = ConfigStore(service.paths.config_file).load()
    assert saved.model_map == {"sdxl": "sd_xl_base_1.0.safetensors", "flux": "flux1-dev"}
    assert saved.a1111.url == "http://127.0.0.1:7861"
    assert vm.field_view(next(i for i in vm.infos if i.name == "model_map")).text == (
        "sdxl = sd_xl_base_1.0.safetensors, flux = flux1-dev")
    vm.set_text("model_map", "sdxl")
    assert vm.errors["model_map"].startswith("model_map: write entries as studio-model = ")


async def test_config_model_level_errors_name_their_field(service: WorkerService) -> None:
    vm = ConfigViewModel(service)
    vm.set_text("api_base_url", "http://studio.example")
    assert vm.errors["api_base_url"].startswith("api_base_url: api_base_url uses plain http")
    vm.set_flag("allow_insecure_http", True)
    assert vm.errors == {}


async def test_status_explains_why_it_holds_back(service: WorkerService) -> None:
    vm = StatusViewModel(service)
    offline = vm.render(snapshot(label="Engine offline",
                                 backend_problem="the gradio app does not answer"),
                        running=True, now=NOW)
    assert offline.badge_tone == "error"
    assert offline.problem == "Not claiming: the gradio app does not answer"
    cooling = vm.render(snapshot(label="Cooling down", cooldown_until=NOW + 125),
                        running=True, now=NOW)
    assert cooling.badge_tone == "paused"
    assert cooling.problem.startswith("Several jobs failed in a row: not claiming until ")
    assert cooling.problem.endswith("(2m 05s left)")


async def test_snooze_and_resume_from_the_status_tab(service: WorkerService) -> None:
    from datetime import datetime

    vm = StatusViewModel(service)
    vm.snooze("4h")
    assert vm.view().snoozed and service.status().hold is not None
    assert service.paths.snooze_file.exists()  # state, not config: it survives a restart
    vm.snooze("tomorrow")
    until = service.status().hold.until  # type: ignore[union-attr]
    assert until is not None and datetime.fromtimestamp(until).hour == 8
    vm.resume_now()
    assert not vm.view().snoozed and service.status().hold is None


async def test_politeness_settings_in_the_config_tab(service: WorkerService) -> None:
    vm = ConfigViewModel(service)
    shown = {f.name: f for g in vm.view().groups for f in g.fields}
    assert shown["schedule"].kind == "list" and "semicolons" in shown["schedule"].help
    assert shown["only_when_idle"].kind == "bool" and not shown["only_when_idle"].active
    vm.set_text("schedule", "mon-fri 18:00-08:00; mon-fry all")
    assert "line 2" in vm.errors["schedule"] and "'fry'" in vm.errors["schedule"]
    vm.set_text("schedule", "mon-fri 18:00-08:00; sat,sun all")
    vm.set_text("pause_while_running", "eldenring.exe, steam_app_*")
    vm.set_flag("only_when_idle", True)
    assert vm.save()
    config = service.config
    assert config.schedule == ["mon-fri 18:00-08:00", "sat,sun all"]
    assert config.pause_while_running == ["eldenring.exe", "steam_app_*"]
    assert config.only_when_idle and config.idle_minutes == 5
    shown = {f.name: f for g in vm.view().groups for f in g.fields}
    assert shown["schedule"].text == "mon-fri 18:00-08:00; sat,sun all"
