"""multi routes by (kind, model) across real backend engines; a whole worker runs jobs on
them and stops a timed-out one in the backend."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from typing import Any

import pytest
from PIL import Image

from tests.conftest import ServiceFactory
from tests.fakes._server import eventually
from tests.fakes.a1111 import FakeA1111, checkpoint
from tests.fakes.comfyui import FakeComfyUI
from tests.fakes.gradio3 import FakeGradio3
from workerlib.config import Config
from workerlib.engines import (
    A1111Engine,
    CannotServe,
    ComfyUIEngine,
    GradioEngine,
    MultiEngine,
    SyntheticEngine,
    build_engine,
)
from workerlib.engines.settings import A1111Settings
from workerlib.wire import ImageTask, LlmTask

MODEL_MAP = {"sd15": "v1-5-pruned-emaonly.safetensors", "sdxl": "sd_xl_base_1.0.safetensors",
             "old": "m1"}


@pytest.fixture
async def backends() -> AsyncIterator[tuple[FakeA1111, FakeComfyUI, FakeGradio3]]:
    a1111 = FakeA1111(checkpoints=[checkpoint("v1-5-pruned-emaonly.safetensors")])
    comfy = FakeComfyUI(checkpoints=["sd_xl_base_1.0.safetensors"])
    old = FakeGradio3(choices=["m1"])
    for server in (a1111, comfy, old):
        await server.start()
    yield a1111, comfy, old
    for server in (a1111, comfy, old):
        await server.stop()


def multi_config(a1111: FakeA1111, comfy: FakeComfyUI, old: FakeGradio3) -> Config:
    return Config(
        engine="multi", engines=["a1111", "comfyui", "gradio", "synthetic"],
        model_map=MODEL_MAP, a1111={"url": a1111.url}, comfyui={"url": comfy.url},
        gradio_endpoint_url=old.url, gradio={"models": ["old"]},
    )


async def test_multi_routes_each_model_to_the_backend_that_has_it(
    backends: tuple[FakeA1111, FakeComfyUI, FakeGradio3]
) -> None:
    a1111, comfy, old = backends
    engine = build_engine(multi_config(a1111, comfy, old))
    assert isinstance(engine, MultiEngine)
    await engine.start()
    assert await engine.check() is None
    models = engine.models_per_kind()
    assert models["image"] == ["old", "sd15", "sdxl", "synthetic", "synthetic-image"]
    assert "llm" in models  # the synthetic member
    members = engine.members
    assert isinstance(engine.route("image", "sd15"), A1111Engine)
    assert isinstance(engine.route("image", "sdxl"), ComfyUIEngine)
    assert isinstance(engine.route("image", "old"), GradioEngine)
    assert engine.route("llm", "sd15") is None

    for model in ("sd15", "sdxl", "old"):
        result = await engine.generate(model, ImageTask(prompt=model, width=16, height=16,
                                                        steps=2, ext="png"), lambda _f: None)
        assert Image.open(io.BytesIO(result.data)).format == "PNG"  # type: ignore[union-attr]
    assert len(a1111.calls("POST", "/sdapi/v1/txt2img")) == 1
    assert len(comfy.calls("POST", "/prompt")) == 1
    assert old.calls("POST", "/run/predict")[0].body == {"data": ["old", "m1"]}
    with pytest.raises(CannotServe):
        await engine.generate("sdxl", LlmTask(messages=[{"role": "user", "content": "x"}]),
                              lambda _f: None)
    assert isinstance(members[3], SyntheticEngine)
    await engine.close()


async def test_a_dead_member_stops_being_offered_and_the_rest_go_on(
    backends: tuple[FakeA1111, FakeComfyUI, FakeGradio3]
) -> None:
    a1111, comfy, old = backends
    engine = build_engine(multi_config(a1111, comfy, old))
    await engine.check()
    await comfy.stop()
    assert await engine.check() is None  # the other members answer
    assert "sdxl" not in engine.models_per_kind()["image"]
    assert engine.route("image", "sdxl") is None
    result = await engine.generate("sd15", ImageTask(prompt="x", steps=2), lambda _f: None)
    assert result.data  # type: ignore[union-attr]
    await engine.close()


async def test_multi_interrupt_reaches_the_member_running_the_job(
    backends: tuple[FakeA1111, FakeComfyUI, FakeGradio3]
) -> None:
    a1111, comfy, old = backends
    a1111.step_secs = 0.05
    engine = build_engine(multi_config(a1111, comfy, old))
    await engine.check()
    job = asyncio.create_task(engine.generate("sd15", ImageTask(prompt="x", steps=200),
                                              lambda _f: None))
    await eventually(lambda: a1111.calls("GET", "/sdapi/v1/progress"))
    await engine.interrupt()
    await asyncio.wait_for(job, 5)
    assert a1111.interrupted and comfy.calls("POST", "/interrupt") == []
    await engine.close()


# --- a whole worker -----------------------------------------------------------------------


async def test_a_worker_completes_a_job_on_a_backend_engine(
    studio: Any, make_service: ServiceFactory
) -> None:
    fake = FakeA1111(checkpoints=[checkpoint("v1-5-pruned-emaonly.safetensors")])
    await fake.start()
    try:
        engine = A1111Engine(A1111Settings(url=fake.url), model_map=MODEL_MAP, poll_secs=0.02)
        job = studio.enqueue(model="sd15", task={"kind": "image", "prompt": "golem",
                                                 "width": 40, "height": 24, "steps": 3,
                                                 "ext": "webp"})
        service = await make_service(engine=engine)
        await service.run_until_idle(timeout=30)
        record = studio.jobs[job]
        assert record.status == "completed", record.error
        assert record.result_ext == "webp"
        assert Image.open(io.BytesIO(record.result_bytes)).size == (40, 24)
        worker = next(iter(studio.workers.values()))
        assert worker.capabilities["supportedModels"] == ["sd15"]
    finally:
        await fake.stop()


async def test_a_timed_out_job_is_interrupted_in_the_backend(
    studio: Any, make_service: ServiceFactory
) -> None:
    fake = FakeA1111(checkpoints=[checkpoint("v1-5-pruned-emaonly.safetensors")],
                     step_secs=0.05)
    await fake.start()
    try:
        engine = A1111Engine(A1111Settings(url=fake.url), model_map=MODEL_MAP, poll_secs=0.02)
        job = studio.enqueue(model="sd15", task={"kind": "image", "prompt": "slow",
                                                 "steps": 400})
        service = await make_service(engine=engine, job_timeout_secs=1)
        await service.start()
        await studio.wait_for(lambda: len(studio.jobs[job].fail_history) >= 1, timeout=15)
        failure = studio.jobs[job].fail_history[0]
        assert failure["retryable"] is True and "timed out" in failure["error"]
        assert fake.interrupted and fake.calls("POST", "/sdapi/v1/interrupt")
        # Handed back as retryable, the job comes again; a faster web UI now finishes it.
        fake.step_secs = 0.0
        await studio.wait_for(lambda: studio.jobs[job].status == "completed", timeout=15)
        await service.stop()
    finally:
        await fake.stop()
