"""The a1111 engine against a local stand-in for the AUTOMATIC1111 / Forge API."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator

import pytest
from PIL import Image

from tests.fakes._server import dead_url, eventually
from tests.fakes.a1111 import FakeA1111, checkpoint
from workerlib.engines import A1111Engine, CannotServe, EngineError
from workerlib.engines.settings import A1111Settings
from workerlib.wire import ChatMessage, ImageTask, LlmTask

MODEL_MAP = {
    "sd15": "v1-5-pruned-emaonly.safetensors",
    "sdxl": "sd_xl_base_1.0.safetensors",  # installed in a subfolder
    "dream": "dreamshaper_8",  # named without its extension
    "absent": "not-installed.ckpt",
}


@pytest.fixture
async def fake() -> AsyncIterator[FakeA1111]:
    server = FakeA1111(checkpoints=[
        checkpoint("v1-5-pruned-emaonly.safetensors"),
        checkpoint("SDXL/sd_xl_base_1.0.safetensors"),
        checkpoint("dreamshaper_8.safetensors"),
    ])
    await server.start()
    yield server
    await server.stop()


def make_engine(url: str, **settings: object) -> A1111Engine:
    return A1111Engine(A1111Settings(url=url, **settings), model_map=MODEL_MAP, poll_secs=0.02)


async def test_check_advertises_only_installed_mapped_checkpoints(fake: FakeA1111) -> None:
    engine = make_engine(fake.url)
    assert engine.models_per_kind() == {}
    assert await engine.check() is None
    assert engine.models_per_kind() == {"image": ["dream", "sd15", "sdxl"]}
    assert [(r.method, r.path) for r in fake.requests] == [("GET", "/sdapi/v1/sd-models")]
    await engine.close()


async def test_generate_sends_the_job_and_returns_the_real_image(fake: FakeA1111) -> None:
    engine = make_engine(fake.url, negative_prompt="blurry", sampler_name="Euler a",
                         cfg_scale=5.5)
    await engine.start()
    await engine.check()
    seen: list[float] = []
    task = ImageTask(prompt="a stone golem", width=64, height=48, steps=12, seed=7, ext="png")
    result = await engine.generate("sdxl", task, seen.append)

    image = Image.open(io.BytesIO(result.data))  # type: ignore[union-attr]
    assert (image.format, image.size, result.ext) == ("PNG", (64, 48), "png")  # type: ignore[union-attr]
    (call,) = fake.calls("POST", "/sdapi/v1/txt2img")
    title = next(c["title"] for c in fake.checkpoints if c["filename"].endswith("sd_xl_base_1.0"
                                                                                 ".safetensors"))
    assert call.body == {
        "prompt": "a stone golem", "negative_prompt": "blurry", "width": 64, "height": 48,
        "steps": 12, "seed": 7, "cfg_scale": 5.5, "batch_size": 1, "n_iter": 1,
        "override_settings": {"sd_model_checkpoint": title},
        "override_settings_restore_afterwards": True, "send_images": True,
        "save_images": False, "sampler_name": "Euler a",
    }
    polls = fake.calls("GET", "/sdapi/v1/progress")
    assert polls and all(p.query == {"skip_current_image": "true"} for p in polls)
    assert seen[0] == 0.0 and seen[-1] == 1.0
    assert any(0 < value < 1 for value in seen), seen
    assert seen == sorted(seen)
    await engine.close()


async def test_the_jobs_negative_prompt_and_cfg_win_over_the_settings(fake: FakeA1111) -> None:
    engine = make_engine(fake.url, negative_prompt="blurry", cfg_scale=5.5)
    await engine.start()
    await engine.check()
    task = ImageTask(prompt="golem", width=32, height=32, steps=2, negative_prompt="text",
                     cfg_scale=3.0)
    await engine.generate("sdxl", task, lambda _f: None)
    (call,) = fake.calls("POST", "/sdapi/v1/txt2img")
    assert (call.body["negative_prompt"], call.body["cfg_scale"]) == ("text", 3.0)
    await engine.close()


async def test_no_seed_is_minus_one_and_the_ext_is_converted(fake: FakeA1111) -> None:
    engine = make_engine(fake.url)
    await engine.check()
    result = await engine.generate("sd15", ImageTask(prompt="x", width=32, height=32, steps=2,
                                                     ext="webp"), lambda _f: None)
    assert result.ext == "webp"  # type: ignore[union-attr]
    assert Image.open(io.BytesIO(result.data)).format == "WEBP"  # type: ignore[union-attr]
    (call,) = fake.calls("POST", "/sdapi/v1/txt2img")
    assert call.body["seed"] == -1
    assert "sampler_name" not in call.body
    await engine.close()


async def test_unmapped_uninstalled_and_other_kinds_cannot_be_served(fake: FakeA1111) -> None:
    engine = make_engine(fake.url)
    await engine.check()
    image = ImageTask(prompt="x")
    for model in ("absent", "never-mapped"):
        with pytest.raises(CannotServe) as info:
            await engine.generate(model, image, lambda _f: None)
        assert info.value.retryable is False and "cannot serve" in str(info.value)
    with pytest.raises(CannotServe):
        await engine.generate("sd15", LlmTask(messages=[ChatMessage(role="user", content="hi")]),
                              lambda _f: None)
    assert fake.calls("POST", "/sdapi/v1/txt2img") == []
    await engine.close()


async def test_a_dead_web_ui_is_reported_in_plain_words() -> None:
    url = dead_url()
    engine = make_engine(url)
    problem = await engine.check()
    assert problem is not None
    assert problem.startswith(f"AUTOMATIC1111 at {url} is not answering")
    assert engine.models_per_kind() == {}
    # Never checked and dead: a job is handed back for another try, not refused for good.
    with pytest.raises(EngineError) as info:
        await engine.generate("sd15", ImageTask(prompt="x"), lambda _f: None)
    assert info.value.retryable is True and "not answering" in str(info.value)
    await engine.close()


async def test_a_web_ui_that_died_after_the_check_fails_retryably(fake: FakeA1111) -> None:
    engine = make_engine(fake.url)
    assert await engine.check() is None
    await fake.stop()
    with pytest.raises(EngineError) as info:
        await engine.generate("sd15", ImageTask(prompt="x", steps=2), lambda _f: None)
    assert info.value.retryable is True
    assert f"AUTOMATIC1111 at {fake.url} is not answering" in str(info.value)
    # Checked again while down: its models are unknown now, not refused for good.
    assert await engine.check() is not None
    with pytest.raises(EngineError) as info:
        await engine.generate("sd15", ImageTask(prompt="x", steps=2), lambda _f: None)
    assert not isinstance(info.value, CannotServe) and info.value.retryable is True
    await engine.close()


async def test_a_web_ui_without_api_says_to_start_it_with_api() -> None:
    server = FakeA1111(api_enabled=False)
    await server.start()
    try:
        engine = make_engine(server.url)
        problem = await engine.check()
        assert problem is not None and "--api" in problem and server.url in problem
        await engine.close()
    finally:
        await server.stop()


async def test_check_explains_missing_checkpoints(fake: FakeA1111) -> None:
    engine = A1111Engine(A1111Settings(url=fake.url), model_map={"x": "other.safetensors"})
    problem = await engine.check()
    assert problem is not None and "other.safetensors" in problem and "installed" in problem
    empty = A1111Engine(A1111Settings(url=fake.url))
    problem = await empty.check()
    assert problem is not None and "model_map" in problem
    await engine.close()
    await empty.close()


@pytest.mark.parametrize(
    ("mode", "expected", "retryable"),
    [
        ("error", "CUDA out of memory", True),
        ("not_json", "not JSON", True),
        ("no_images", "sent no image", True),
        ("bad_base64", "not valid base64", True),
    ],
)
async def test_bad_replies_become_engine_errors_with_the_reason(
    fake: FakeA1111, mode: str, expected: str, retryable: bool
) -> None:
    fake.txt2img_mode = mode
    engine = make_engine(fake.url)
    await engine.check()
    with pytest.raises(EngineError) as info:
        await engine.generate("sd15", ImageTask(prompt="x", steps=2), lambda _f: None)
    assert expected in str(info.value)
    assert info.value.retryable is retryable
    await engine.close()


async def test_a_checkpoint_removed_since_the_check_gives_the_web_uis_reason(
    fake: FakeA1111
) -> None:
    engine = make_engine(fake.url)
    await engine.check()
    fake.checkpoints = fake.checkpoints[1:]
    with pytest.raises(EngineError) as info:
        await engine.generate("sd15", ImageTask(prompt="x", steps=2), lambda _f: None)
    assert "not found" in str(info.value) and "HTTP 500" in str(info.value)
    await engine.close()


async def test_interrupt_reaches_the_web_ui_only_while_a_job_runs(fake: FakeA1111) -> None:
    engine = make_engine(fake.url)
    await engine.check()
    await engine.interrupt()
    assert fake.calls("POST", "/sdapi/v1/interrupt") == []

    fake.step_secs = 0.05
    job = asyncio.create_task(
        engine.generate("sd15", ImageTask(prompt="x", steps=200), lambda _f: None))
    await eventually(lambda: fake.calls("GET", "/sdapi/v1/progress"))
    await engine.interrupt()
    assert len(fake.calls("POST", "/sdapi/v1/interrupt")) == 1
    # AUTOMATIC1111 hands back what it had when interrupted.
    await asyncio.wait_for(job, 5)
    assert fake.interrupted
    await engine.close()


async def test_a_job_cut_off_by_the_worker_is_interrupted_in_the_web_ui(
    fake: FakeA1111
) -> None:
    """The worker cancels generate() on a timeout and then calls interrupt()."""
    fake.step_secs = 0.05
    engine = make_engine(fake.url)
    await engine.check()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(
            engine.generate("sd15", ImageTask(prompt="x", steps=200), lambda _f: None), 0.3)
    assert len(fake.calls("POST", "/sdapi/v1/interrupt")) == 1
    await engine.interrupt()
    assert len(fake.calls("POST", "/sdapi/v1/interrupt")) == 2
    assert fake.interrupted
    await engine.close()
