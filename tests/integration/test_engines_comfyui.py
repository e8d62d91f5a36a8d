"""The comfyui engine against a local stand-in for ComfyUI's HTTP and WebSocket API."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.fakes._server import dead_url, eventually
from tests.fakes.comfyui import FakeComfyUI
from workerlib.config import Config
from workerlib.engines import (
    CannotServe,
    ComfyUIEngine,
    EngineConfigError,
    EngineError,
    build_engine,
)
from workerlib.engines.comfyui import DEFAULT_WORKFLOW
from workerlib.engines.settings import ComfyUISettings
from workerlib.wire import AudioTtsTask, ImageTask

MODEL_MAP = {"sd15": "v1-5-pruned-emaonly.safetensors", "sdxl": "sd_xl_base_1.0.safetensors",
             "absent": "nope.safetensors"}
INSTALLED = ["v1-5-pruned-emaonly.safetensors", "SDXL/sd_xl_base_1.0.safetensors"]


@pytest.fixture
async def fake() -> AsyncIterator[FakeComfyUI]:
    server = FakeComfyUI(checkpoints=list(INSTALLED))
    await server.start()
    yield server
    await server.stop()


def make_engine(url: str, **settings: Any) -> ComfyUIEngine:
    return ComfyUIEngine(ComfyUISettings(url=url, **settings), model_map=MODEL_MAP)


@pytest.mark.parametrize("combo_format", [False, True])
async def test_check_advertises_only_installed_mapped_checkpoints(
    fake: FakeComfyUI, combo_format: bool
) -> None:
    fake.combo_format = combo_format
    engine = make_engine(fake.url)
    assert await engine.check() is None
    assert engine.models_per_kind() == {"image": ["sd15", "sdxl"]}
    assert [(r.method, r.path) for r in fake.requests] == [
        ("GET", "/object_info/CheckpointLoaderSimple")]
    await engine.close()


async def test_generate_fills_the_workflow_and_follows_the_socket(fake: FakeComfyUI) -> None:
    engine = make_engine(fake.url, negative_prompt="blurry", cfg_scale=6.0)
    await engine.start()
    await engine.check()
    seen: list[float] = []
    task = ImageTask(prompt="a stone golem", width=64, height=40, steps=5, seed=42, ext="png")
    result = await engine.generate("sdxl", task, seen.append)

    image = Image.open(io.BytesIO(result.data))  # type: ignore[union-attr]
    assert (image.format, image.size, result.ext) == ("PNG", (64, 40), "png")  # type: ignore[union-attr]
    (ws,) = fake.calls("GET", "/ws")
    (post,) = fake.calls("POST", "/prompt")
    assert post.body["client_id"] == ws.query["clientId"]
    expected = json.loads(json.dumps(DEFAULT_WORKFLOW))
    expected["4"]["inputs"]["ckpt_name"] = "SDXL/sd_xl_base_1.0.safetensors"
    expected["6"]["inputs"]["text"] = "a stone golem"
    expected["7"]["inputs"]["text"] = "blurry"
    expected["5"]["inputs"].update(width=64, height=40)
    expected["3"]["inputs"].update(seed=42, steps=5, cfg=6.0)
    assert post.body["prompt"] == expected
    prompt_id = next(iter(fake.history))
    assert fake.calls("GET", f"/history/{prompt_id}")
    (view,) = fake.calls("GET", "/view")
    assert view.query == {"filename": "studio-worker_00001_.png", "subfolder": "",
                          "type": "output"}
    # One report per sampler step (scaled), then done.
    assert seen[0] == 0.0 and seen[-1] == 1.0 and seen == sorted(seen)
    assert len([v for v in seen if 0 < v < 1]) == 5, seen
    await engine.close()


async def test_the_jobs_negative_prompt_and_cfg_win_over_the_settings(
    fake: FakeComfyUI
) -> None:
    engine = make_engine(fake.url, negative_prompt="blurry", cfg_scale=6.0)
    await engine.start()
    await engine.check()
    task = ImageTask(prompt="golem", width=32, height=32, steps=2, negative_prompt="text",
                     cfg_scale=2.5)
    await engine.generate("sdxl", task, lambda _f: None)
    (post,) = fake.calls("POST", "/prompt")
    assert post.body["prompt"]["7"]["inputs"]["text"] == "text"
    assert post.body["prompt"]["3"]["inputs"]["cfg"] == 2.5
    await engine.close()


async def test_no_seed_gets_a_random_one_and_the_ext_is_converted(fake: FakeComfyUI) -> None:
    engine = make_engine(fake.url)
    await engine.check()
    result = await engine.generate("sd15", ImageTask(prompt="x", width=32, height=32, steps=1,
                                                     ext="jpg"), lambda _f: None)
    assert result.ext == "jpg"  # type: ignore[union-attr]
    assert Image.open(io.BytesIO(result.data)).format == "JPEG"  # type: ignore[union-attr]
    (post,) = fake.calls("POST", "/prompt")
    seed = post.body["prompt"]["3"]["inputs"]["seed"]
    assert isinstance(seed, int) and 0 <= seed < 2**32
    await engine.close()


async def test_a_users_workflow_file_is_used_through_the_config(
    fake: FakeComfyUI, tmp_path: Path
) -> None:
    workflow = json.loads(json.dumps(DEFAULT_WORKFLOW))
    workflow["6"]["inputs"]["text"] = "masterpiece, {{prompt}}, {{ width }}px"
    workflow["9"] = {"class_type": "PreviewImage", "inputs": {"images": ["8", 0]}}
    path = tmp_path / "flow.json"
    path.write_text(json.dumps(workflow))
    config = Config(engine="comfyui", model_map=MODEL_MAP,
                    comfyui={"url": fake.url, "workflow_file": str(path)})
    engine = build_engine(config)
    assert isinstance(engine, ComfyUIEngine)
    await engine.check()
    result = await engine.generate("sd15", ImageTask(prompt="golem", width=32, height=24,
                                                     steps=1, ext="png"), lambda _f: None)
    assert Image.open(io.BytesIO(result.data)).size == (32, 24)  # type: ignore[union-attr]
    (post,) = fake.calls("POST", "/prompt")
    assert post.body["prompt"]["6"]["inputs"]["text"] == "masterpiece, golem, 32px"
    (view,) = fake.calls("GET", "/view")
    assert view.query["type"] == "temp"
    await engine.close()


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "cannot be read"),
        ("{not json", "not valid JSON"),
        (json.dumps({"nodes": [], "links": []}), "Save (API Format)"),
        (json.dumps({"1": {"inputs": {}}}), "not an API-format"),
        (json.dumps({"1": {"class_type": "CLIPTextEncode", "inputs": {"text": "{{prompt}}"}}}),
         "{{checkpoint}}"),
        (json.dumps({"1": {"class_type": "X", "inputs": {"a": "{{prompt}} {{checkpoint}}",
                                                         "b": "{{sampler}}"}}}),
         "{{sampler}}"),
    ],
)
def test_a_broken_workflow_file_names_the_config_key(
    tmp_path: Path, content: str | None, expected: str
) -> None:
    path = tmp_path / "flow.json"
    if content is not None:
        path.write_text(content)
    config = Config(engine="comfyui", comfyui={"workflow_file": str(path)})
    with pytest.raises(EngineConfigError) as info:
        build_engine(config)
    assert info.value.key == "comfyui.workflow_file"
    assert expected in str(info.value) and "comfyui.workflow_file" in str(info.value)


async def test_an_execution_error_gives_comfyuis_reason(fake: FakeComfyUI) -> None:
    fake.run_mode = "error"
    engine = make_engine(fake.url)
    await engine.check()
    with pytest.raises(EngineError) as info:
        await engine.generate("sd15", ImageTask(prompt="x", steps=2), lambda _f: None)
    message = str(info.value)
    assert "torch.OutOfMemoryError" in message and "KSampler" in message
    assert info.value.retryable is True
    await engine.close()


async def test_a_refused_workflow_gives_the_node_errors(fake: FakeComfyUI) -> None:
    engine = make_engine(fake.url)
    await engine.check()
    fake.checkpoints = INSTALLED[1:]  # removed after the check
    with pytest.raises(EngineError) as info:
        await engine.generate("sd15", ImageTask(prompt="x", steps=2), lambda _f: None)
    message = str(info.value)
    assert "Prompt outputs failed validation" in message
    assert "ckpt_name: 'v1-5-pruned-emaonly.safetensors' not in" in message
    assert info.value.retryable is False
    await engine.close()


async def test_a_server_error_is_retryable_with_its_body(fake: FakeComfyUI) -> None:
    fake.prompt_status = 500
    engine = make_engine(fake.url)
    await engine.check()
    with pytest.raises(EngineError) as info:
        await engine.generate("sd15", ImageTask(prompt="x", steps=2), lambda _f: None)
    assert "HTTP 500" in str(info.value) and "Server got itself in trouble" in str(info.value)
    assert info.value.retryable is True
    await engine.close()


async def test_a_workflow_without_saved_images_is_an_error(fake: FakeComfyUI) -> None:
    fake.run_mode = "no_output"
    engine = make_engine(fake.url)
    await engine.check()
    with pytest.raises(EngineError, match="saved no image"):
        await engine.generate("sd15", ImageTask(prompt="x", steps=2), lambda _f: None)
    await engine.close()


async def test_a_closed_socket_falls_back_to_the_history(fake: FakeComfyUI) -> None:
    fake.run_mode = "close_ws"
    engine = make_engine(fake.url)
    await engine.check()
    result = await engine.generate("sd15", ImageTask(prompt="x", width=16, height=16, steps=4,
                                                     ext="png"), lambda _f: None)
    assert Image.open(io.BytesIO(result.data)).size == (16, 16)  # type: ignore[union-attr]
    await engine.close()


async def test_a_dead_comfyui_is_reported_in_plain_words() -> None:
    url = dead_url()
    engine = make_engine(url)
    problem = await engine.check()
    assert problem is not None and problem.startswith(f"ComfyUI at {url} is not answering")
    with pytest.raises(EngineError) as info:
        await engine.generate("sd15", ImageTask(prompt="x"), lambda _f: None)
    assert info.value.retryable is True and "not answering" in str(info.value)
    await engine.close()


async def test_a_comfyui_that_died_after_the_check_fails_retryably(fake: FakeComfyUI) -> None:
    engine = make_engine(fake.url)
    assert await engine.check() is None
    await fake.stop()
    with pytest.raises(EngineError) as info:
        await engine.generate("sd15", ImageTask(prompt="x", steps=2), lambda _f: None)
    assert info.value.retryable is True and f"ComfyUI at {fake.url}" in str(info.value)
    assert await engine.check() is not None
    with pytest.raises(EngineError) as info:
        await engine.generate("sd15", ImageTask(prompt="x", steps=2), lambda _f: None)
    assert not isinstance(info.value, CannotServe) and info.value.retryable is True
    await engine.close()


async def test_unmapped_uninstalled_and_other_kinds_cannot_be_served(fake: FakeComfyUI) -> None:
    engine = make_engine(fake.url)
    await engine.check()
    for model in ("absent", "never-mapped"):
        with pytest.raises(CannotServe):
            await engine.generate(model, ImageTask(prompt="x"), lambda _f: None)
    with pytest.raises(CannotServe):
        await engine.generate("sd15", AudioTtsTask(text="hi"), lambda _f: None)
    assert fake.calls("POST", "/prompt") == []
    await engine.close()


async def test_interrupt_stops_the_running_prompt(fake: FakeComfyUI) -> None:
    fake.step_secs = 0.05
    engine = make_engine(fake.url)
    await engine.check()
    await engine.interrupt()
    assert fake.calls("POST", "/interrupt") == []
    seen: list[float] = []
    job = asyncio.create_task(
        engine.generate("sd15", ImageTask(prompt="x", steps=200), seen.append))
    await eventually(lambda: len(seen) >= 2)
    await engine.interrupt()
    with pytest.raises(EngineError, match="interrupted"):
        await asyncio.wait_for(job, 5)
    prompt_id = next(iter(fake.history))
    (interrupt,) = fake.calls("POST", "/interrupt")
    assert interrupt.body == {"prompt_id": prompt_id}
    assert fake.deleted == [prompt_id]
    await engine.close()


async def test_a_job_cut_off_by_the_worker_is_interrupted_in_comfyui(fake: FakeComfyUI) -> None:
    fake.step_secs = 0.05
    engine = make_engine(fake.url)
    await engine.check()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(
            engine.generate("sd15", ImageTask(prompt="x", steps=200), lambda _f: None), 0.3)
    assert len(fake.calls("POST", "/interrupt")) == 1
    await engine.interrupt()  # what the worker does next: harmless, and still reaches it
    assert len(fake.calls("POST", "/interrupt")) == 2
    assert fake.interrupted
    await engine.close()
