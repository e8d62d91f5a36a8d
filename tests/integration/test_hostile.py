"""A studio (or a proxy in front of it) that misbehaves on purpose must not beat the worker.

Every test runs the real worker against the real local studio with its hostile layer
(``workerlib/devstudio/hostile.py``) switched on for the case at hand.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import BOOTSTRAP, ServiceFactory
from workerlib.cli import main
from workerlib.config import ConfigStore
from workerlib.devstudio import DevStudio
from workerlib.devstudio.hostile import Catcher, Hostile, endless, gzip_bomb
from workerlib.engines.synthetic import SyntheticEngine
from workerlib.errors import ConfigError, StudioError
from workerlib.paths import resolve_paths
from workerlib.runtime.journal import Journal

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def studio() -> AsyncIterator[DevStudio]:
    server = DevStudio(bootstrap_token=BOOTSTRAP)
    server.hostile = Hostile(server)  # type: ignore[attr-defined]
    await server.start()
    yield server
    server.hostile.release()  # type: ignore[attr-defined]
    await server.stop()


def hostile(studio: DevStudio) -> Hostile:
    layer = studio.hostile  # type: ignore[attr-defined]
    assert isinstance(layer, Hostile)
    return layer


def image_job(studio: DevStudio, prompt: str = "a golem") -> str:
    return studio.enqueue(model="synthetic", task={"kind": "image", "prompt": prompt})


# -- 1. redirects -------------------------------------------------------------------------
@pytest.mark.parametrize("target", ["login", "other-host"])
async def test_a_redirected_complete_is_never_followed(
    studio: DevStudio, make_service: ServiceFactory, target: str
) -> None:
    catcher = Catcher()
    await catcher.start()
    try:
        location = "/login" if target == "login" else f"{catcher.url}/steal"
        # Every upload attempt is redirected (302 to a login page, 307 to another host,
        # which keeps the method and the body): the result must go nowhere else.
        hostile(studio).redirect("complete", location, status=302 if target == "login" else 307,
                                 count=4)
        job = image_job(studio)
        service = await make_service()
        await service.start()
        await studio.wait_for(lambda: studio.jobs[job].status == "completed", timeout=30)
    finally:
        await catcher.stop()
    assert catcher.requests == []
    assert hostile(studio).login_gets == 0
    assert hostile(studio).count("complete") == 4
    # Reported retryable after the bounded retries, requeued, then completed for real.
    [failure] = studio.jobs[job].fail_history
    assert failure["retryable"] is True and "redirect" in failure["error"]
    # (counted by the worker once it has read the studio's answer)
    await studio.wait_for(lambda: service.status().jobs_completed == 1)
    assert service.status().jobs_failed == 1


async def test_a_redirected_heartbeat_is_a_failure_not_a_success(
    studio: DevStudio, make_service: ServiceFactory
) -> None:
    hostile(studio).redirect("heartbeat", "/login", count=1000)
    service = await make_service()
    await service.start()
    await studio.wait_for(lambda: hostile(studio).count("heartbeat") >= 2, timeout=10)
    assert service.state.last_ok_heartbeat_at is None
    assert "redirect" in (service.status().last_heartbeat.error or "")  # type: ignore[union-attr]
    assert hostile(studio).login_gets == 0


# -- 2. 401/403 bursts on complete and fail --------------------------------------------------
async def test_an_auth_burst_on_complete_and_fail_keeps_the_job_journaled(
    studio: DevStudio, make_service: ServiceFactory
) -> None:
    job = image_job(studio)
    studio.inject_fault("complete", status=401, count=1, body="token rotating")
    studio.inject_fault("fail", status=403, count=3, body="proxy glitch")
    service = await make_service()
    await service.start()
    # The fail is re-sent once auth recovers; the studio requeues the job and it completes.
    await studio.wait_for(lambda: studio.jobs[job].status == "completed", timeout=30)
    [failure] = studio.jobs[job].fail_history
    assert failure["retryable"] is True and "401" in failure["error"]
    fails = [r.status for r in studio.requests if r.endpoint == "fail"]
    assert fails == [403, 403, 403, 200]
    await studio.wait_for(lambda: service.journal.entries() == [], timeout=5)


# -- 3. ids with control characters, ../ in ids -------------------------------------------
def _raw_claim(job_id: str, **extra: Any) -> dict[str, Any]:
    return {"jobId": job_id, "gameId": "g", "assetName": "a/b", "model": "synthetic",
            "vramGbEstimate": 1, "task": {"kind": "image", "prompt": "p"}, **extra}


@pytest.mark.parametrize("job_id", ["nul\x00id", "cr\rid", "lf\nid", "tab\tid",
                                    "clear\x1b[2J\x1b]0;owned\x07id"])
async def test_a_job_id_with_control_characters_is_failed_not_run(
    studio: DevStudio, make_service: ServiceFactory, job_id: str
) -> None:
    studio.enqueue_raw(_raw_claim(job_id))
    follow_up = image_job(studio, "next")
    service = await make_service()
    await service.start()
    await studio.wait_for(lambda: studio.jobs[follow_up].status == "completed", timeout=15)
    [fail] = [r for r in studio.requests if r.endpoint == "fail"]
    assert fail.job_id == job_id  # percent-encoded on the wire, the very same id
    body = json.loads(fail.body)
    assert body["retryable"] is False and "jobId" in body["error"]
    assert not any(r.endpoint == "complete" and r.job_id != follow_up for r in studio.requests)
    await studio.wait_for(lambda: not service.status().busy, timeout=5)  # never stuck Busy
    shown = "\n".join(line.message for line in service.log_lines())
    assert "\x1b" not in shown and "\x00" not in shown and "\r" not in shown


async def test_a_dot_dot_job_id_stays_inside_its_path_segment(
    studio: DevStudio, make_service: ServiceFactory
) -> None:
    studio.enqueue_raw(_raw_claim("../../../etc/passwd"))
    follow_up = image_job(studio, "next")
    service = await make_service()
    await service.start()
    await studio.wait_for(lambda: studio.jobs[follow_up].status == "completed", timeout=15)
    raw = [s.raw_path for s in hostile(studio).seen]
    assert any(p.endswith("/jobs/..%2F..%2F..%2Fetc%2Fpasswd/complete") for p in raw), raw
    assert all(p.startswith("/graphics/api/workers/") for p in raw), raw
    done = [r for r in studio.requests if r.endpoint == "complete" and r.status == 200]
    assert {r.job_id for r in done} == {"../../../etc/passwd", follow_up}


async def test_duplicate_keys_in_a_claim_fail_it_non_retryable(
    studio: DevStudio, make_service: ServiceFactory
) -> None:
    body = json.dumps(_raw_claim("dup-1"))[:-1] + ', "model": "synthetic-llm"}'
    studio.enqueue_raw(body.encode())
    follow_up = image_job(studio, "next")
    service = await make_service()
    await service.start()
    await studio.wait_for(lambda: studio.jobs[follow_up].status == "completed", timeout=15)
    [fail] = [r for r in studio.requests if r.endpoint == "fail"]
    assert fail.job_id == "dup-1" and fail.status == 200
    body_sent = json.loads(fail.body)
    assert body_sent["retryable"] is False and "appears twice" in body_sent["error"]


async def test_a_megabyte_job_id_is_refused_and_logged_short(
    studio: DevStudio, make_service: ServiceFactory
) -> None:
    studio.enqueue_raw(_raw_claim("j" * 1_000_000))
    follow_up = image_job(studio, "next")
    service = await make_service()
    await service.start()
    await studio.wait_for(lambda: studio.jobs[follow_up].status == "completed", timeout=15)
    errors = [line.message for line in service.log_lines() if line.level == "error"]
    assert errors and all(len(m) < 20_000 for m in errors)
    assert max(len(e["message"]) for e in studio.logs) < 20_000


# -- 9. every reply read within a bound ---------------------------------------------------
async def test_a_huge_heartbeat_reply_is_not_read_to_the_end(
    studio: DevStudio, make_service: ServiceFactory
) -> None:
    service = await make_service()
    size = 512 * 1024 * 1024
    hostile(studio).reply("heartbeat", endless(size), count=1)
    await service.start()
    await studio.wait_for(lambda: hostile(studio).count("heartbeat", "studio") >= 2, timeout=30)
    # The worker stopped reading at its cap and dropped the connection; the server could
    # only push what fits into the socket buffers on top of that.
    assert hostile(studio).bytes_sent < 64 * 1024 * 1024


@pytest.mark.parametrize("endpoint", ["heartbeat", "claim", "register"])
async def test_a_gzip_bomb_is_unpacked_only_up_to_the_cap(
    studio: DevStudio, make_service: ServiceFactory, endpoint: str
) -> None:
    service = await make_service()
    bomb = gzip_bomb(256 * 1024 * 1024)
    assert len(bomb) < 1024 * 1024
    hostile(studio).reply(endpoint, bomb, encoded="gzip", count=1)
    client, config = service.client, service.config
    tracemalloc.start()
    try:
        if endpoint == "heartbeat":
            await client.heartbeat(config.worker_id, config.auth_token,
                                   service.capabilities(), None)
        elif endpoint == "claim":
            with pytest.raises(Exception, match="larger than"):
                await client.claim(config.worker_id, config.auth_token)
        else:
            with pytest.raises(Exception, match="larger than"):
                await client.register(BOOTSTRAP, service.capabilities(), None)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 48 * 1024 * 1024, peak


# -- 11. a bounded quit whatever the network does -----------------------------------------
def _worker_config(studio: DevStudio, tmp_path: Path, **extra: Any) -> Path:
    config = tmp_path / "c.toml"
    ConfigStore(config).update({
        "api_base_url": studio.url, "bootstrap_token": BOOTSTRAP,
        "heartbeat_interval_secs": 0.3, "claim_interval_secs": 0.2,
        "auto_update_enabled": False, "engine": "synthetic", "protocol": "v1", **extra,
    })
    return config


async def _spawn(config: Path, *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "workerlib", "--config", str(config), *args, cwd=ROOT,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT, start_new_session=True)


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGHUP"])
async def test_quit_is_bounded_when_complete_fail_and_logs_hang(
    studio: DevStudio, tmp_path: Path, sig: str
) -> None:
    drain = 1.0
    config = _worker_config(studio, tmp_path, shutdown_drain_secs=drain,
                            **{"synthetic.delay_secs": 0.1})
    for endpoint in ("complete", "fail", "logs"):
        hostile(studio).hang(endpoint)
    hostile(studio).echo_auth("heartbeat", status=502, count=2)  # the console must redact
    job = image_job(studio, "never delivered")
    worker = await _spawn(config, "run")
    try:
        await studio.wait_for(lambda: hostile(studio).count("complete") >= 1, timeout=30)
        worker.send_signal(getattr(signal, sig))
        # Generous cap below systemd's 90 s SIGKILL: the hung endpoints would hold the
        # worker forever if the drain budget and the shutdown grace did not cut them.
        output, _ = await asyncio.wait_for(worker.communicate(), 60)
    finally:
        if worker.returncode is None:
            worker.kill()
            await worker.wait()
    text = output.decode("utf-8", "replace")
    assert worker.returncode == 0, text[-3000:]
    # The fail report could not be sent: the job waits in the journal for the next start.
    journal = json.loads((tmp_path / ".c.d" / "state" / "inflight.json").read_text())
    [entry] = journal["jobs"]
    assert entry["job_id"] == job and entry["error"] == "worker shutting down"
    assert "stopping (signal received)" in text
    assert "Traceback" not in text
    token = ConfigStore(config).load().auth_token
    assert token and token not in text and "502" in text


# -- 4. a full disk --------------------------------------------------------------------------
@pytest.fixture
def tiny_disk(tmp_path: Path) -> Any:
    """A real 256 KiB file system (tmpfs), filled up: writes fail with ENOSPC."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k,mode=0700", "tmpfs",
                           str(mount)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(mount: Path) -> Path:
    filler = mount / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, b"\0" * 4096)
    finally:
        os.close(fd)
    return filler


async def test_a_full_disk_stops_claiming_instead_of_draining_the_queue(
    studio: DevStudio, make_service: ServiceFactory, tiny_disk: Path
) -> None:
    service = await make_service()
    service.journal = Journal(tiny_disk / "state" / "inflight.json")
    (tiny_disk / "state").mkdir()
    filler = fill(tiny_disk)
    jobs = [image_job(studio, f"p{i}") for i in range(3)]
    await service.start()
    await studio.wait_for(lambda: (service.status().last_error or "").startswith("disk full"),
                          timeout=15)
    worker = studio.workers[service.config.worker_id]
    beats = worker.heartbeats
    await studio.wait_for(lambda: worker.heartbeats >= beats + 5, timeout=15)
    # One job was claimed, could not be journaled and was handed back (once); nothing
    # more was claimed, and no job counts as failed: the fault is the worker's disk.
    assert sum(studio.jobs[j].attempts for j in jobs) == 1
    [handed_back] = [studio.jobs[j] for j in jobs if studio.jobs[j].attempts]
    assert handed_back.fail_history[0]["retryable"] is True
    assert "disk full" in handed_back.fail_history[0]["error"]
    assert service.status().jobs_failed == 0
    published = json.loads(service.paths.status_file.read_text())
    assert published["last_error"].startswith("disk full: cannot write")
    filler.unlink()  # space again: claiming resumes on its own
    await studio.wait_for(lambda: all(studio.jobs[j].status == "completed" for j in jobs),
                          timeout=20)
    assert service.status().last_error is None


def test_set_threshold_on_a_full_disk_says_so_in_one_line(
    tiny_disk: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tiny_disk / "config.toml"
    assert main(["--config", str(config), "set-threshold", "8"]) == 0
    fill(tiny_disk)
    capsys.readouterr()
    assert main(["--config", str(config), "set-threshold", "4"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "could not be saved (No space left on device)" in err
    assert ConfigStore(config).load().vram_threshold_gb == 8


# -- 5. tokens with control characters ---------------------------------------------------------
async def test_a_registration_token_with_a_control_character_is_refused(
    studio: DevStudio, make_service: ServiceFactory
) -> None:
    hostile(studio).reply("register", json.dumps(
        {"workerId": "w-1", "authToken": "good-part\r\nX-Evil: 1"}).encode(), status=201)
    service = await make_service(register=False)
    with pytest.raises(StudioError, match="control character"):
        await service.register()
    assert not service.config.is_registered()
    assert service.store.load().auth_token == ""


def test_a_pasted_token_ending_in_cr_is_named_on_load(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('worker_id = "w-1"\nauth_token = "abcdef123456\\r"\n')
    with pytest.raises(ConfigError, match=r"auth_token.*control character"):
        ConfigStore(config).load()


# -- 6, 8. secrets and escape sequences never reach status --------------------------------------
def cli_status(service: Any, capsys: pytest.CaptureFixture[str]) -> str:
    """``studio-worker status`` for a service of the make_service fixture (its state folder
    is not where the CLI looks: the published status is copied there)."""
    service.publish_status_file(force=True)
    where = resolve_paths(str(service.paths.config_file)).status_file
    where.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(service.paths.status_file, where)
    capsys.readouterr()
    assert main(["--config", str(service.paths.config_file), "status"]) == 0
    return capsys.readouterr().out


async def test_an_error_body_echoing_the_token_never_reaches_status(
    studio: DevStudio, make_service: ServiceFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    service = await make_service()
    token = service.config.auth_token
    hostile(studio).echo_auth("heartbeat", status=502, count=1000)
    await service.start()
    await studio.wait_for(lambda: service.paths.status_file.exists() and
                          "upstream error" in service.paths.status_file.read_text(), timeout=15)
    shown = cli_status(service, capsys)
    published = service.paths.status_file.read_text()
    snapshot = service.status().model_dump_json()
    for blob in (shown, published, snapshot):
        assert token not in blob
    assert "[redacted]" in published and "heartbeat:" in shown


async def test_escape_sequences_from_the_studio_are_escaped_in_status(
    studio: DevStudio, make_service: ServiceFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    hostile(studio).reply("heartbeat", b"\x1b[2J\x1b]0;pwned\x07 bad gateway", status=502,
                          content_type="text/plain", count=1000)
    studio.enqueue(model="synthetic", task={"kind": "image", "prompt": "\x1b[2Jclear me"})
    service = await make_service(engine=SyntheticEngine(delay_secs=30))
    await service.start()
    await studio.wait_for(lambda: service.status().busy and service.status().last_heartbeat
                          is not None and not service.status().last_heartbeat.ok, timeout=15)
    shown = cli_status(service, capsys)
    assert "\x1b" not in shown and "\x07" not in shown
    assert "\\x1b[2J" in shown  # visible, harmless
    published = json.loads(service.paths.status_file.read_text())
    assert "\x1b" not in json.dumps(published, ensure_ascii=False)
    assert "\x1b" not in published["current_job"]["prompt_preview"]


# -- 15. claims above the VRAM threshold ---------------------------------------------------
async def test_a_claim_above_the_vram_threshold_is_refused(
    studio: DevStudio, make_service: ServiceFactory
) -> None:
    studio.enqueue_raw(_raw_claim("too-big", vramGbEstimate=48))
    follow_up = image_job(studio, "fits")
    service = await make_service(vram_threshold_gb=12)
    await service.start()
    await studio.wait_for(lambda: studio.jobs[follow_up].status == "completed", timeout=15)
    [fail] = [r for r in studio.requests if r.endpoint == "fail"]
    body = json.loads(fail.body)
    assert fail.job_id == "too-big" and body["retryable"] is False
    assert "cannot serve" in body["error"] and "48" in body["error"]
    assert not any(r.endpoint == "complete" and r.job_id == "too-big" for r in studio.requests)


# -- 16. a 401 after an outage is logged ---------------------------------------------------
async def test_a_401_after_an_outage_is_logged(
    studio: DevStudio, make_service: ServiceFactory
) -> None:
    service = await make_service()
    studio.inject_fault("heartbeat", status=503, count=3, body="down for maintenance")
    studio.inject_fault("heartbeat", status=401, count=1000, body="token revoked")
    await service.start()
    await studio.wait_for(lambda: service.status().label == "Not authorised", timeout=15)
    messages = [(line.level, line.message) for line in service.log_lines()
                if line.category == "heartbeat"]
    assert any(level == "warn" and "503" in m for level, m in messages), messages
    assert any(level == "error" and "not authorised" in m for level, m in messages), messages
