"""The gradio engine against a real Gradio app on loopback, and a Gradio 3 stand-in for
the raw ``/run/predict`` fallback."""

from __future__ import annotations

import asyncio
import io
import os
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from PIL import Image

from tests.fakes._server import dead_url, eventually
from tests.fakes.gradio3 import REMOTE_ROOT, FakeGradio3
from workerlib.config import Config
from workerlib.engines import CannotServe, EngineError, GradioEngine, build_engine
from workerlib.engines.settings import GradioSettings
from workerlib.wire import ImageTask, LlmTask

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

# Gradio's own use of pandas warns; that is not this test's business.
pytestmark = pytest.mark.filterwarnings(
    "ignore:'future.no_silent_downcasting' is deprecated", "ignore:The copy keyword is deprecated"
)

MODEL_MAP = {"studio-alpha": "alpha-v1", "studio-beta": "beta-v2", "studio-gamma": "gamma"}
SLOW_RELEASE = threading.Event()
"""Lets the app's /slow function finish (set when its test is done)."""


def build_app() -> Any:
    gr = pytest.importorskip("gradio")

    def predict(prompt: str, model: str, progress: Any = gr.Progress()) -> Any:
        for _ in progress.tqdm(range(4)):
            time.sleep(0.05)
        colour = (255, 0, 0) if model == "alpha-v1" else (0, 0, 255)
        return Image.new("RGB", (40, 30), colour)

    def sized(prompt: str, width: float, height: float, steps: float, seed: float) -> Any:
        return Image.new("RGB", (int(width), int(height)), (int(steps) % 256, 9, 9))

    def gallery(prompt: str) -> list[Any]:
        return [(Image.new("RGB", (20, 10), (1, 2, 3)), "first"),
                (Image.new("RGB", (10, 20), (4, 5, 6)), "second")]

    def broken(prompt: str) -> Any:
        raise gr.Error("the GPU caught fire")

    def words(prompt: str) -> str:
        return f"no picture of {prompt}"

    def slow(prompt: str, progress: Any = gr.Progress()) -> Any:
        # Runs until the test lets it finish (a safety cap of 10 minutes): a result can
        # only come back early if the engine stopped waiting for it.
        for _ in progress.tqdm(range(12_000)):
            if SLOW_RELEASE.wait(0.05):
                break
        return Image.new("RGB", (8, 8))

    with gr.Blocks() as demo:
        prompt = gr.Textbox(label="prompt")
        model = gr.Dropdown(["alpha-v1", "beta-v2"], label="model")
        numbers = [gr.Number(label=n) for n in ("width", "height", "steps", "seed")]
        image = gr.Image(type="pil", format="png")
        webp = gr.Image(type="pil")  # Gradio's default format: webp
        pictures = gr.Gallery()
        text = gr.Textbox()
        run = gr.Button()
        run.click(predict, [prompt, model], image, api_name="predict")
        run.click(sized, [prompt, *numbers], webp, api_name="sized")
        run.click(gallery, [prompt], pictures, api_name="gallery")
        run.click(broken, [prompt], image, api_name="broken")
        run.click(words, [prompt], text, api_name="words")
        run.click(slow, [prompt], image, api_name="slow")
    return demo


@pytest.fixture(scope="module")
def gradio_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    pytest.importorskip("gradio_client")
    with pytest.MonkeyPatch.context() as patch:
        # The app's cached outputs go to the test's folder, not /tmp/gradio.
        patch.setenv("GRADIO_TEMP_DIR", str(tmp_path_factory.mktemp("gradio")))
        demo = build_app()
        _app, url, _share = demo.launch(server_name="127.0.0.1", server_port=None,
                                        prevent_thread_lock=True, quiet=True, show_error=True)
        yield url.rstrip("/")
        demo.close()


def make_engine(url: str, **settings: Any) -> GradioEngine:
    return GradioEngine(url, settings=GradioSettings(**settings), model_map=MODEL_MAP,
                        poll_secs=0.02)


def decode(result: Any) -> Image.Image:
    return Image.open(io.BytesIO(result.data))


async def test_check_offers_the_mapped_models_the_apps_dropdown_accepts(gradio_url: str) -> None:
    engine = make_engine(gradio_url)
    assert await engine.check() is None
    assert engine.models_per_kind() == {"image": ["studio-alpha", "studio-beta"]}
    await engine.close()


async def test_generate_returns_the_apps_image_with_progress(gradio_url: str) -> None:
    engine = make_engine(gradio_url)
    await engine.start()
    await engine.check()
    seen: list[float] = []
    result = await engine.generate("studio-alpha", ImageTask(prompt="golem", ext="png"),
                                   seen.append)
    image = decode(result)
    assert (image.format, image.size, result.ext) == ("PNG", (40, 30), "png")
    assert image.convert("RGB").getpixel((0, 0)) == (255, 0, 0)  # the app got model alpha-v1
    assert seen[0] == 0.0 and seen[-1] == 1.0 and seen == sorted(seen)
    assert any(0 < v < 1 for v in seen), seen
    # webp asked, png made: converted
    result = await engine.generate("studio-beta", ImageTask(prompt="golem", ext="webp"),
                                   lambda _f: None)
    assert (decode(result).format, result.ext) == ("WEBP", "webp")
    await engine.close()


async def test_arg_order_passes_the_task_values(gradio_url: str) -> None:
    engine = make_engine(gradio_url, api_name="sized", models=["any-model"],
                         arg_order=["prompt", "width", "height", "steps", "seed"])
    assert await engine.check() is None
    assert engine.models_per_kind() == {"image": ["any-model"]}
    task = ImageTask(prompt="golem", width=48, height=24, steps=7, seed=3, ext="jpg")
    result = await engine.generate("any-model", task, lambda _f: None)
    image = decode(result)
    assert (image.format, image.size, result.ext) == ("JPEG", (48, 24), "jpg")
    # The app made webp; when that is what the task wants, the bytes are the app's own.
    result = await engine.generate("any-model", task.model_copy(update={"ext": "webp"}),
                                   lambda _f: None)
    assert (decode(result).format, result.ext) == ("WEBP", "webp")
    await engine.close()


async def test_a_gallery_output_gives_its_first_image(gradio_url: str) -> None:
    engine = make_engine(gradio_url, api_name="/gallery", arg_order=["prompt"],
                         models=["studio-alpha"])
    await engine.check()
    result = await engine.generate("studio-alpha", ImageTask(prompt="x", ext="png"),
                                   lambda _f: None)
    assert decode(result).size == (20, 10)
    await engine.close()


async def test_an_app_error_is_an_engine_error_with_its_message(gradio_url: str) -> None:
    engine = make_engine(gradio_url, api_name="/broken", arg_order=["prompt"],
                         models=["studio-alpha"])
    await engine.check()
    with pytest.raises(EngineError, match="the GPU caught fire"):
        await engine.generate("studio-alpha", ImageTask(prompt="x"), lambda _f: None)
    await engine.close()


async def test_an_output_without_an_image_is_an_engine_error(gradio_url: str) -> None:
    engine = make_engine(gradio_url, api_name="/words", arg_order=["prompt"],
                         models=["studio-alpha"])
    await engine.check()
    with pytest.raises(EngineError, match="without an image"):
        await engine.generate("studio-alpha", ImageTask(prompt="x"), lambda _f: None)
    await engine.close()


async def test_an_unknown_endpoint_is_reported_by_check(gradio_url: str) -> None:
    engine = make_engine(gradio_url, api_name="/nope")
    problem = await engine.check()
    assert problem is not None
    assert "has no endpoint /nope" in problem and "/predict" in problem
    assert "gradio.api_name" in problem
    assert engine.models_per_kind() == {}
    await engine.close()


async def test_models_the_app_does_not_offer_cannot_be_served(gradio_url: str) -> None:
    engine = make_engine(gradio_url)
    await engine.check()
    for model in ("studio-gamma", "unmapped"):
        with pytest.raises(CannotServe) as info:
            await engine.generate(model, ImageTask(prompt="x"), lambda _f: None)
        assert info.value.retryable is False
    with pytest.raises(CannotServe):
        await engine.generate("studio-alpha",
                              LlmTask(messages=[{"role": "user", "content": "hi"}]),
                              lambda _f: None)
    await engine.close()


async def test_check_without_any_model_says_what_to_set(gradio_url: str) -> None:
    engine = GradioEngine(gradio_url)
    problem = await engine.check()
    assert problem is not None and "gradio.models" in problem and "model_map" in problem
    await engine.close()


async def test_interrupt_cancels_the_apps_job(gradio_url: str) -> None:
    engine = make_engine(gradio_url, api_name="/slow", arg_order=["prompt"],
                         models=["studio-alpha"])
    await engine.check()
    seen: list[float] = []
    job = asyncio.create_task(engine.generate("studio-alpha", ImageTask(prompt="x"),
                                              seen.append))
    try:
        await eventually(lambda: any(0 < v < 1 for v in seen))
        await engine.interrupt()
        # The app's function is still running (it waits for SLOW_RELEASE): the engine
        # gave up on it rather than waiting for its result.
        with pytest.raises(EngineError, match="interrupted"):
            await asyncio.wait_for(job, 60)
    finally:
        SLOW_RELEASE.set()
        await engine.close()


async def test_a_dead_app_is_reported_in_plain_words() -> None:
    url = dead_url()
    engine = make_engine(url)
    problem = await engine.check()
    assert problem is not None and problem.startswith(f"the Gradio app at {url} is not answering")
    with pytest.raises(EngineError) as info:
        await engine.generate("studio-alpha", ImageTask(prompt="x"), lambda _f: None)
    assert info.value.retryable is True and "not answering" in str(info.value)
    await engine.close()


# --- Gradio 3: the raw /run/predict fallback -----------------------------------------------


@pytest.fixture
async def old_app() -> AsyncIterator[FakeGradio3]:
    server = FakeGradio3(choices=["alpha-v1", "gamma"])
    await server.start()
    yield server
    await server.stop()


@pytest.mark.parametrize("output", ["data_url", "file", "gallery", "remote"])
async def test_an_old_app_is_called_through_run_predict(
    old_app: FakeGradio3, output: str
) -> None:
    old_app.output = "file" if output == "remote" else output
    old_app.remote = output == "remote"
    engine = build_engine(Config(engine="gradio", gradio_endpoint_url=old_app.url,
                                 model_map=MODEL_MAP))
    assert await engine.check() is None
    assert engine.models_per_kind() == {"image": ["studio-alpha", "studio-gamma"]}
    result = await engine.generate("studio-gamma", ImageTask(prompt="golem", ext="png"),
                                   lambda _f: None)
    assert decode(result).size == (24, 16)
    (call,) = old_app.calls("POST", "/run/predict")
    assert call.body == {"data": ["golem", "gamma"]}
    downloads = old_app.calls("GET", f"/file={REMOTE_ROOT}/out.png")
    assert len(downloads) == (1 if output == "remote" else 0)
    await engine.close()


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("error", "CUDA out of memory"),
        ("hidden_error", "HTTP 500"),
        ("text", "without an image"),
    ],
)
async def test_an_old_apps_failures_are_engine_errors(
    old_app: FakeGradio3, output: str, expected: str
) -> None:
    old_app.output = output
    engine = make_engine(old_app.url)
    await engine.check()
    with pytest.raises(EngineError) as info:
        await engine.generate("studio-alpha", ImageTask(prompt="x"), lambda _f: None)
    assert expected in str(info.value)
    assert info.value.retryable is True
    await engine.close()
