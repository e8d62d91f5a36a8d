"""A studio (or a proxy in front of it) that misbehaves on purpose must not beat the worker.

Every test runs the real worker against the real local studio with its hostile layer
(``workerlib/devstudio/hostile.py``) switched on for the case at hand.
"""

from __future__ import annotations

import json
import tracemalloc
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.conftest import BOOTSTRAP, ServiceFactory
from workerlib.devstudio import DevStudio
from workerlib.devstudio.hostile import Catcher, Hostile, endless, gzip_bomb


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
    assert service.status().jobs_completed == 1 and service.status().jobs_failed == 1


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
    assert not service.status().busy
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
