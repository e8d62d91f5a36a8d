"""The diffusers engine on the CPU with a tiny, randomly initialised Stable Diffusion
pipeline that the test builds and saves itself (no download anywhere)."""

from __future__ import annotations

import asyncio
import io
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from bench.gpu import build_pipeline
from tests.conftest import ServiceFactory
from workerlib.config import Config
from workerlib.engines import CannotServe, DiffusersEngine, EngineError, build_engine
from workerlib.engines import diffusers as diffusers_engine
from workerlib.engines.base import DeferredResult, resolve
from workerlib.engines.settings import DiffusersSettings
from workerlib.wire import ImageTask, VideoTask

TINY = "tiny-sd"

# What the libraries say about their own internals is not this test's business.
pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::DeprecationWarning")


def save_tiny_pipeline(folder: Path) -> None:
    """The tiny shape of bench/gpu.py: real Stable Diffusion layers, a few channels each,
    random weights, a byte-pair tokenizer over single letters."""
    for name in ("torch", "diffusers", "transformers"):
        pytest.importorskip(name)
    build_pipeline("tiny", folder, "cpu")


@pytest.fixture(scope="module")
def models_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("models")
    save_tiny_pipeline(root / TINY)
    # A folder named like a studio id serves that id without a model_map entry.
    shutil.copytree(root / TINY, root / "studio-direct")
    (root / "not-a-pipeline").mkdir()
    (root / "not-a-pipeline" / "weights.bin").write_bytes(b"\0")
    yield root


@pytest.fixture(autouse=True)
def _offline_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # The engine sets these for the process; put them back after each test.
    monkeypatch.setenv("HF_HUB_OFFLINE", os.environ.get("HF_HUB_OFFLINE", "0"))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")


def make_engine(root: Path, **settings: Any) -> DiffusersEngine:
    return DiffusersEngine(root, model_map={"studio-tiny": TINY, "studio-missing": "nope"},
                           settings=DiffusersSettings(device="cpu", **settings))


def task(**fields: Any) -> ImageTask:
    values: dict[str, Any] = {"prompt": "a stone golem", "width": 32, "height": 32,
                              "steps": 2, "seed": 1, "ext": "png"}
    values.update(fields)
    return ImageTask(**values)


async def test_only_real_pipeline_folders_are_advertised(models_root: Path) -> None:
    engine = make_engine(models_root)
    assert await engine.check() is None
    assert engine.models_per_kind() == {"image": ["studio-direct", "studio-tiny"]}


async def test_generate_runs_the_pipeline_with_step_progress(
    models_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(diffusers_engine, "PROGRESS_INTERVAL_SECS", 0.0)  # every step
    engine = build_engine(Config(engine="diffusers", models_root=str(models_root),
                                 model_map={"studio-tiny": TINY},
                                 diffusers={"device": "cpu"}))
    assert isinstance(engine, DiffusersEngine)
    await engine.start()
    seen: list[float] = []
    deferred = await engine.generate("studio-tiny", task(), seen.append)
    # Encoded by the caller, off the pipeline's thread (the job runner does it beside the
    # next job).
    assert isinstance(deferred, DeferredResult)
    result = resolve(deferred)
    image = Image.open(io.BytesIO(result.data))  # type: ignore[union-attr]
    assert (image.format, image.size, result.ext) == ("PNG", (32, 32), "png")  # type: ignore[union-attr]
    assert seen == [0.0, pytest.approx(0.49), pytest.approx(0.98), 1.0]
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    # Same seed, same image; the pipeline stays loaded between jobs.
    again = resolve(await engine.generate("studio-tiny", task(ext="webp"), lambda _f: None))
    assert again.ext == "webp"  # type: ignore[union-attr]
    assert Image.open(io.BytesIO(again.data)).convert("RGB").tobytes() != b""  # type: ignore[union-attr]
    direct = resolve(await engine.generate("studio-direct", task(), lambda _f: None))
    assert direct.data == result.data  # type: ignore[union-attr]
    await engine.close()


async def test_step_progress_is_throttled_to_what_a_person_sees(
    models_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Steps closer together than the interval are not reported (each report wakes the
    # event loop); the last step always is.
    monkeypatch.setattr(diffusers_engine, "PROGRESS_INTERVAL_SECS", 3600.0)
    engine = make_engine(models_root)
    seen: list[float] = []
    await engine.generate("studio-tiny", task(steps=6), seen.append)
    assert seen == [0.0, pytest.approx(0.98), 1.0]
    await engine.close()


async def test_a_single_pipeline_is_loaded_at_start(models_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "models"
    shutil.copytree(models_root / TINY, root / TINY)
    engine = DiffusersEngine(root, settings=DiffusersSettings(device="cpu"))
    await engine.start()
    assert engine.preload is not None
    await asyncio.wait_for(engine.preload, 120)
    loaded = engine._loaded
    assert loaded is not None and loaded[0] == root / TINY
    result = resolve(await engine.generate(TINY, task(), lambda _f: None))
    assert engine._loaded is loaded  # the job used the preloaded pipeline
    assert Image.open(io.BytesIO(result.data)).size == (32, 32)  # type: ignore[union-attr]
    await engine.close()
    # Several pipelines: none is guessed at.
    several = make_engine(models_root)
    await several.start()
    assert several.preload is None


async def test_opt_in_speed_ups_are_applied_when_the_pipeline_loads(
    models_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch = pytest.importorskip("torch")
    compiled: list[Any] = []

    def fake_compile(module: Any, **_kwargs: Any) -> Any:
        # Compiling for real needs a C++ toolchain and minutes; what is checked here is
        # that the engine hands the denoiser to torch.compile and runs what comes back.
        compiled.append(module)
        return module

    monkeypatch.setattr(torch, "compile", fake_compile)
    engine = make_engine(models_root, compile=True, channels_last=True, fuse_qkv=True)
    result = resolve(await engine.generate("studio-tiny", task(), lambda _f: None))
    assert Image.open(io.BytesIO(result.data)).size == (32, 32)  # type: ignore[union-attr]
    assert engine._loaded is not None
    pipe = engine._loaded[1]
    assert compiled == [pipe.unet]
    assert any("Fused" in type(proc).__name__ for proc in pipe.unet.attn_processors.values())
    weight = next(p for p in pipe.unet.parameters() if p.dim() == 4)
    assert weight.is_contiguous(memory_format=torch.channels_last)
    await engine.close()
    plain = make_engine(models_root)
    await plain.generate("studio-tiny", task(), lambda _f: None)
    assert plain._loaded is not None
    weight = next(p for p in plain._loaded[1].unet.parameters() if p.dim() == 4)
    assert weight.is_contiguous() and len(compiled) == 1  # the defaults leave it alone
    await plain.close()


async def start_long_job(engine: Any) -> tuple[asyncio.Task[Any], list[float]]:
    """A 500-step job, returned once its first step is observed (not after a timer)."""
    loop = asyncio.get_running_loop()
    first_step = asyncio.Event()
    seen: list[float] = []

    def progress(value: float) -> None:
        seen.append(value)
        if value > 0:
            loop.call_soon_threadsafe(first_step.set)

    job = asyncio.create_task(engine.generate("studio-tiny", task(steps=500), progress))
    await asyncio.wait_for(first_step.wait(), 30)
    return job, seen


async def test_interrupt_stops_the_pipeline_between_steps(models_root: Path) -> None:
    engine = make_engine(models_root)
    job, seen = await start_long_job(engine)
    await engine.interrupt()
    with pytest.raises(EngineError, match="interrupted"):
        await asyncio.wait_for(job, 30)
    assert len(seen) < 50
    await engine.close()


async def test_a_timed_out_job_stops_and_the_next_one_runs(models_root: Path) -> None:
    """The job timeout cancels the job's task (asyncio.wait_for): cancel it as soon as its
    first step is observed, so no race between a timer and 500 steps on a fast CPU."""
    engine = make_engine(models_root)
    await engine.generate("studio-tiny", task(), lambda _f: None)  # loaded
    job, steps = await start_long_job(engine)
    job.cancel()
    with pytest.raises(asyncio.CancelledError):
        await job
    result = resolve(await asyncio.wait_for(
        engine.generate("studio-tiny", task(), lambda _f: None), 30))
    assert Image.open(io.BytesIO(result.data)).size == (32, 32)  # type: ignore[union-attr]
    assert len(steps) < 500  # the cut-off job stopped at its next step, not at its last
    await engine.close()


async def test_unknown_models_and_other_kinds_cannot_be_served(models_root: Path) -> None:
    engine = make_engine(models_root)
    for model in ("studio-missing", "not-a-pipeline", "never-heard-of"):
        with pytest.raises(CannotServe):
            await engine.generate(model, task(), lambda _f: None)
    with pytest.raises(CannotServe):
        await engine.generate("studio-tiny", VideoTask(prompt="x"), lambda _f: None)


async def test_a_size_the_pipeline_refuses_is_not_retryable(models_root: Path) -> None:
    engine = make_engine(models_root)
    with pytest.raises(EngineError) as info:
        await engine.generate("studio-tiny", task(width=30), lambda _f: None)
    assert info.value.retryable is False and "divisible by 8" in str(info.value)
    await engine.close()


async def test_a_broken_pipeline_folder_fails_without_downloading(
    models_root: Path, tmp_path: Path
) -> None:
    root = tmp_path / "models"
    shutil.copytree(models_root / TINY, root / TINY)
    for weights in (root / TINY / "unet").glob("diffusion_pytorch_model*"):
        weights.unlink()
    engine = make_engine(root)
    assert engine.models_per_kind() == {"image": ["studio-tiny"]}
    with pytest.raises(EngineError) as info:
        await asyncio.wait_for(engine.generate("studio-tiny", task(), lambda _f: None), 60)
    assert "cannot be loaded" in str(info.value) and info.value.retryable is True
    await engine.close()


@pytest.mark.parametrize("protocol", ["v1", "v2"])
async def test_the_worker_runs_the_pipeline_and_uploads_webp(
    models_root: Path, studio: Any, make_service: ServiceFactory, protocol: str
) -> None:
    """The whole worker with the real engine: each result is encoded off the pipeline's
    thread (v1: beside the next job) and reaches the studio as the format it asked for."""
    jobs = [studio.enqueue(model="studio-tiny", task={
        "kind": "image", "prompt": f"golem {i}", "width": 32, "height": 32, "steps": 2,
        "seed": i, "ext": "webp"}) for i in range(3)]
    service = await make_service(engine="diffusers", protocol=protocol,
                                 models_root=str(models_root),
                                 model_map={"studio-tiny": TINY}, diffusers={"device": "cpu"})
    await service.start()
    await studio.wait_for(lambda: all(studio.jobs[j].status == "completed" for j in jobs),
                          timeout=300)
    for job in jobs:
        record = studio.jobs[job]
        assert record.result_ext == "webp" and record.result_bytes is not None
        image = Image.open(io.BytesIO(record.result_bytes))
        assert (image.format, image.size) == ("WEBP", (32, 32))
    await studio.wait_for(lambda: service.journal.entries() == [], timeout=30)
