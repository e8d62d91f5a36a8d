"""The real app over the real worker and the real local studio, driven like a user."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest

from tests.conftest import BOOTSTRAP, ServiceFactory
from tests.gui.pilot import StartGui
from workerlib.config import ConfigStore
from workerlib.engines.base import ProgressCallback
from workerlib.engines.synthetic import SyntheticEngine
from workerlib.wire import Task

pytestmark = pytest.mark.gui

TAB_ORDER = ["status", "jobs", "stats", "config", "logs", "about"]


def claims(studio: Any) -> int:
    return sum(1 for r in studio.requests if r.endpoint == "claim")


class GatedEngine(SyntheticEngine):
    """Runs a job only when the test opens the gate, reporting progress on the way."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.started = asyncio.Event()

    async def generate(self, model: str, task: Task, progress: ProgressCallback) -> Any:
        self.started.set()
        progress(0.4)
        await self.gate.wait()
        return await super().generate(model, task, progress)


async def test_window_opens_on_status_and_every_tab_switches(
    studio: Any, make_service: ServiceFactory, start_gui: StartGui,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from kivy.core.window import Window

    service = await make_service()
    pilot = await start_gui(service)
    app = pilot.app
    assert Window.title == "Studio Worker"
    assert app.theme_cls.theme_style == "Dark"
    tab_items = app.root.ids.tabs.get_tabs_list()[::-1]
    assert [item.name for item in tab_items] == TAB_ORDER
    assert [item.text for item in tab_items] == ["Status", "Jobs", "Stats", "Config", "Logs",
                                                 "About"]
    assert app.root.ids.screens.current == "status"
    await pilot.wait_for(lambda: "Idle" in pilot.texts(pilot.ids().badge), 10, "Idle badge")
    assert service.config.worker_id in pilot.screen_text()
    for name in [*TAB_ORDER[1:], "status"]:
        screen = await pilot.switch_tab(name)
        assert pilot.on_screen(screen)
        assert all(not pilot.on_screen(other) for key, other in app.screens.items()
                   if key != name)
    about = await pilot.switch_tab("about")
    text = pilot.screen_text()
    assert "studio-worker " in text
    assert str(service.paths.config_file) in text and str(service.paths.log_file) in text
    copied: list[str] = []
    from kivy.core.clipboard import Clipboard

    monkeypatch.setattr(Clipboard, "copy", copied.append)
    await pilot.click(about.ids.log_path.ids.copy_button)
    assert copied == [str(service.paths.log_file)]
    assert "Log file copied" in pilot.screen_text()


async def test_register_through_the_form_explains_refusals(
    studio: Any, make_service: ServiceFactory, start_gui: StartGui
) -> None:
    service = await make_service(register=False, bootstrap_token="")
    pilot = await start_gui(service)
    ids = pilot.ids("status")
    await pilot.wait_for(lambda: pilot.on_screen(ids.register_button), 5, "the register form")
    assert "Not registered" in pilot.texts(ids.badge)
    assert ids.register_url.text == studio.url
    assert ids.register_token.password

    await pilot.type(ids.register_token, "wrong-token-123456")
    await pilot.click(ids.register_button)
    await pilot.wait_for(lambda: ids.register_error.text, 10, "a refusal")
    assert "refused the bootstrap token" in ids.register_error.text
    assert "wrong-token-123456" not in pilot.screen_text()
    assert not studio.workers

    await pilot.type(ids.register_url, "http://127.0.0.1:9")
    await pilot.type(ids.register_token, BOOTSTRAP)
    await pilot.click(ids.register_button)
    await pilot.wait_for(lambda: "could not be reached" in ids.register_error.text, 10,
                         "an unreachable studio")

    await pilot.type(ids.register_url, studio.url)
    await pilot.click(ids.register_button)
    await pilot.wait_for(lambda: studio.workers, 10, "the registration")
    worker_id = next(iter(studio.workers))
    await pilot.wait_for(lambda: not pilot.on_screen(ids.register_button), 5, "the form to go")
    await pilot.wait_for(lambda: worker_id in pilot.screen_text(), 5, "the worker id")
    saved = ConfigStore(service.paths.config_file).load()
    assert saved.worker_id == worker_id and saved.bootstrap_token == BOOTSTRAP
    await studio.wait_for(lambda: studio.workers[worker_id].heartbeats >= 1, timeout=10)
    await pilot.wait_for(lambda: "Idle" in pilot.texts(ids.badge), 10, "Idle badge")
    assert ids.register_token.text == ""


async def test_pause_and_resume_stop_and_restart_claiming(
    studio: Any, make_service: ServiceFactory, start_gui: StartGui
) -> None:
    service = await make_service()
    pilot = await start_gui(service)
    ids = pilot.ids("status")
    await studio.wait_for(lambda: claims(studio) >= 2, timeout=10)
    assert ids.pause_text.text == "Pause claiming"

    await pilot.click(ids.pause_button)
    await pilot.wait_for(lambda: "Paused" in pilot.texts(ids.badge), 5, "Paused badge")
    assert ids.pause_text.text == "Resume claiming"
    assert ConfigStore(service.paths.config_file).load().auto_enabled is False
    await asyncio.sleep(0.3)  # a claim already in flight may still land
    before = claims(studio)
    await asyncio.sleep(1.0)
    assert claims(studio) == before

    await pilot.click(ids.pause_button)
    await studio.wait_for(lambda: claims(studio) >= before + 2, timeout=10)
    await pilot.wait_for(lambda: "Idle" in pilot.texts(ids.badge), 5, "Idle badge")
    assert ConfigStore(service.paths.config_file).load().auto_enabled is True


async def test_a_job_shows_in_jobs_and_its_lines_in_logs(
    studio: Any, make_service: ServiceFactory, start_gui: StartGui,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    engine = GatedEngine()
    service = await make_service(engine=engine)
    pilot = await start_gui(service)
    await pilot.switch_tab("jobs")
    ids = pilot.ids("jobs")
    assert "No job running" in pilot.texts(ids.current_card)
    job = studio.enqueue(model="synthetic", task={"kind": "image", "prompt": "a stone golem",
                                                   "width": 64, "height": 64})
    await asyncio.wait_for(engine.started.wait(), 10)
    await pilot.wait_for(lambda: ids.current_title.text == "image · synthetic", 5, "the card")
    assert pilot.on_screen(ids.current_progress)
    assert ids.current_progress.value == pytest.approx(40)
    assert "a stone golem" in pilot.texts(ids.current_card)
    first = ids.current_elapsed.text
    assert first.endswith("s")
    await pilot.wait_for(lambda: ids.current_elapsed.text != first, 3, "the elapsed time to tick")

    engine.gate.set()
    await studio.wait_for(lambda: studio.jobs[job].status == "completed", timeout=10)
    await pilot.wait_for(lambda: ids.job_list.data, 5, "a finished row")
    row = ids.job_list.data[0]
    assert row["job_id"] == job and row["icon"] == "check-circle"
    assert row["title"] == "image · synthetic" and row["duration"].endswith("s")
    await pilot.wait_for(lambda: "No job running" in pilot.texts(ids.current_card), 5, "idle")
    assert "Last 1 finished jobs" in ids.heading.text

    logs = await pilot.switch_tab("logs")
    rows = logs.ids.log_list.data
    assert any(r["job_id"] == job and "claimed job" in r["message"] for r in rows)
    assert any(r["job_id"] == job and "completed" in r["message"] for r in rows)
    total = len(rows)

    await pilot.type(logs.ids.search, "claimed job")
    await pilot.wait_for(lambda: len(logs.ids.log_list.data) < total, 3, "the search filter")
    assert all("claimed job" in r["message"] for r in logs.ids.log_list.data)
    assert "match" in logs.ids.summary.text

    await pilot.type(logs.ids.search, "")
    await pilot.click(logs.ids.level_error)
    await pilot.wait_for(lambda: all(r["level"] == "ERROR" for r in logs.ids.log_list.data),
                         3, "the level filter")
    assert logs.ids.level_error.style == "filled" and logs.ids.level_all.style == "outlined"
    await pilot.click(logs.ids.level_all)
    await pilot.wait_for(lambda: len(logs.ids.log_list.data) >= total, 3, "all lines back")

    # Copy puts exactly the visible lines on the clipboard.
    copied: list[str] = []
    from kivy.core.clipboard import Clipboard

    monkeypatch.setattr(Clipboard, "copy", copied.append)
    await pilot.type(logs.ids.search, job)
    await pilot.wait_for(lambda: all(r["job_id"] == job for r in logs.ids.log_list.data), 3,
                         "the job's lines")
    await pilot.click(logs.ids.copy_button)
    assert len(copied) == 1
    assert len(copied[0].splitlines()) == len(logs.ids.log_list.data) >= 3
    assert all(line.endswith(f"[{job}]") for line in copied[0].splitlines())
    assert "Copied" in logs.ids.summary.text

    assert logs.ids.auto_scroll.active
    await pilot.click(logs.ids.auto_scroll)
    await pilot.wait_for(lambda: not logs.vm.auto_scroll, 3, "auto-scroll off")


async def test_config_edit_is_validated_saved_and_reset(
    studio: Any, make_service: ServiceFactory, start_gui: StartGui
) -> None:
    service = await make_service()
    path = service.paths.config_file
    pilot = await start_gui(service)
    screen = await pilot.switch_tab("config")
    original = path.read_text()
    assert "# Largest job (GiB of VRAM) this worker accepts." in original

    # Secrets are masked until revealed.
    secret = screen.rows["auth_token"].ids.input
    assert secret.password and secret.text == service.config.auth_token
    assert service.config.auth_token not in pilot.screen_text()
    await pilot.click(screen.rows["auth_token"].ids.reveal)
    assert not secret.password
    await pilot.click(screen.rows["auth_token"].ids.reveal)
    assert secret.password

    # Invalid input is refused inline, naming the field, and nothing is written.
    heartbeat = screen.rows["heartbeat_interval_secs"].ids.input
    await pilot.type(heartbeat, "soon")
    error = screen.rows["heartbeat_interval_secs"].ids.error
    assert pilot.on_screen(error) and error.text == "heartbeat_interval_secs: must be a number"
    assert heartbeat.error
    await pilot.click(screen.ids.save_button)
    assert "heartbeat_interval_secs" in screen.ids.message.text
    assert path.read_text() == original

    # Reset reverts unsaved edits.
    await pilot.click(screen.ids.reset_button)
    assert heartbeat.text == "0.2" and not pilot.on_screen(error)
    assert screen.ids.reset_button.disabled

    # A valid edit is saved through the facade, comments and all.
    threshold = screen.rows["vram_threshold_gb"].ids.input
    await pilot.type(threshold, "9.5")
    await pilot.click(screen.ids.save_button)
    await pilot.wait_for(lambda: "vram_threshold_gb = 9.5" in path.read_text(), 3, "the save")
    text = path.read_text()
    assert "# Largest job (GiB of VRAM) this worker accepts." in text
    assert "# studio-worker configuration; every key is in the README." in text
    assert (path.stat().st_mode & 0o777) == 0o600
    assert service.config.vram_threshold_gb == 9.5
    assert screen.ids.message.text == "Saved 1 setting."
    await pilot.switch_tab("status")
    await pilot.wait_for(lambda: "up to 9.5 GiB" in pilot.screen_text(), 3, "the new threshold")


async def test_engine_change_restarts_loops_after_the_running_job(
    studio: Any, make_service: ServiceFactory, start_gui: StartGui
) -> None:
    engine = GatedEngine()
    service = await make_service(engine=engine)
    pilot = await start_gui(service)
    job = studio.enqueue(model="synthetic", task={"kind": "image", "prompt": "slow golem",
                                                   "width": 64, "height": 64})
    await asyncio.wait_for(engine.started.wait(), 10)
    screen = await pilot.switch_tab("config")
    header = screen.headers["Engine"]
    await pilot.type(screen.rows["models_root"].ids.input, "/srv/models")
    await pilot.click(screen.ids.save_button)
    await pilot.wait_for(lambda: "take effect after the current job" in pilot.screen_text(), 3,
                         "the restart note")
    old_loops = service.loops
    await pilot.click(header.ids.restart_button)
    await pilot.wait_for(lambda: header.ids.restart_button.disabled, 3, "the restart to begin")
    assert "the running job finishes first" in screen.ids.message.text
    await asyncio.sleep(0.3)
    assert studio.jobs[job].status == "claimed"  # not cancelled by the restart

    engine.gate.set()
    await pilot.wait_for(lambda: "restarted" in screen.ids.message.text, 10, "the restart")
    assert studio.jobs[job].status == "completed"
    assert service.loops is not None and service.loops is not old_loops
    assert not header.ids.restart_button.disabled
    assert "take effect after the current job" not in pilot.screen_text()


async def test_auto_start_false_waits_for_the_start_button(
    studio: Any, make_service: ServiceFactory, start_gui: StartGui
) -> None:
    service = await make_service(auto_start=False)
    pilot = await start_gui(service)
    ids = pilot.ids("status")
    assert service.loops is None
    assert "Stopped" in pilot.texts(ids.badge)
    await asyncio.sleep(0.5)
    assert claims(studio) == 0
    await pilot.click(ids.start_button)
    await studio.wait_for(lambda: claims(studio) >= 1, timeout=10)
    await pilot.wait_for(lambda: "Idle" in pilot.texts(ids.badge), 5, "Idle badge")
    assert not pilot.on_screen(ids.start_button)


async def test_gui_demo_runs_every_job_and_closes_itself() -> None:
    from app.demo import gui_demo
    from app.env import configure_kivy

    configure_kivy()
    lines: list[str] = []
    code = await asyncio.wait_for(gui_demo(5, print_fn=lines.append, linger_secs=0.1), 90)
    assert code == 0, lines
    assert lines[0].startswith("local studio at http://127.0.0.1:")
    job_lines = [line for line in lines if line.startswith("ok  ")]
    assert len(job_lines) == 5
    for kind in ("image", "llm", "audio_stt", "audio_tts", "video"):
        assert any(f" {kind} " in line for line in job_lines), kind
    assert lines[-1].startswith("5/5 jobs completed in ")
    held = next(i for i, line in enumerate(lines) if line.startswith("rule holding: Snoozed"))
    assert held < lines.index("rule lifted: the snooze is over; claiming resumes") < \
        lines.index(job_lines[0])


async def test_event_bursts_are_coalesced_and_frames_capped(
    studio: Any, make_service: ServiceFactory, start_gui: StartGui
) -> None:
    from kivy.config import Config as KivyConfig

    assert KivyConfig.getint("graphics", "maxfps") == 30
    service = await make_service()
    pilot = await start_gui(service)
    logs = await pilot.switch_tab("logs")
    await pilot.settle()
    before = pilot.app.refresh_count
    log = logging.getLogger("workerlib.burst")
    started = time.monotonic()
    for i in range(300):
        log.info("burst line %d", i)
        if i % 30 == 0:
            await asyncio.sleep(0.05)  # the burst spreads over about half a second
    await pilot.wait_for(lambda: logs.ids.log_list.data
                         and logs.ids.log_list.data[-1]["message"] == "burst line 299", 3,
                         "the last burst line")
    elapsed = time.monotonic() - started
    refreshes = pilot.app.refresh_count - before
    assert 1 <= refreshes <= 2 + 4 * elapsed, (refreshes, elapsed)
