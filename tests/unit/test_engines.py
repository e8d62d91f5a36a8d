"""Engines: the synthetic engine's real outputs, multi routing and the factory."""

from __future__ import annotations

import asyncio
import io
import itertools
import socket
import time
import wave
from collections.abc import Callable
from typing import Any

import pytest
from PIL import Image

import workerlib.engines.synthetic as synthetic
from workerlib.engines import (
    KNOWN_ENGINES,
    BinaryResult,
    CannotServe,
    Engine,
    EngineConfigError,
    EngineError,
    EngineResult,
    JsonResult,
    MultiEngine,
    SyntheticEngine,
    UnknownEngine,
    create_engine,
)
from workerlib.engines.base import ProgressCallback
from workerlib.wire import (
    KIND_ORDER,
    AudioSttTask,
    AudioTtsTask,
    ChatMessage,
    ImageTask,
    LlmTask,
    Task,
    VideoTask,
)

MODEL_FOR_KIND = {
    "image": "synthetic",
    "llm": "synthetic-llm",
    "audio_stt": "synthetic-stt",
    "audio_tts": "synthetic-tts",
    "video": "synthetic-video",
}

SAMPLE_TASKS: dict[str, Task] = {
    "image": ImageTask(prompt="a stone golem", width=64, height=48, ext="png"),
    "llm": LlmTask(messages=[ChatMessage(role="user", content="name a golem")]),
    "audio_stt": AudioSttTask(input_url="https://example.invalid/clip.wav"),
    "audio_tts": AudioTtsTask(text="hello golem"),
    "video": VideoTask(prompt="a golem walks", seconds=1.0, width=64, height=64),
}


def _no_progress(_: float) -> None:
    pass


async def _run(task: Task, model: str | None = None, engine: Engine | None = None) -> EngineResult:
    engine = engine or SyntheticEngine()
    return await engine.generate(model or MODEL_FOR_KIND[task.kind], task, _no_progress)


async def _binary(task: Task, model: str | None = None) -> BinaryResult:
    result = await _run(task, model)
    assert isinstance(result, BinaryResult)
    return result


async def _json(task: Task, model: str | None = None) -> Any:
    result = await _run(task, model)
    assert isinstance(result, JsonResult)
    return result.value


# --- synthetic: advertising -------------------------------------------------------------


def test_synthetic_advertises_only_synthetic_models_for_all_kinds() -> None:
    engine = SyntheticEngine()
    assert engine.name == "synthetic"
    assert isinstance(engine, Engine)
    assert engine.models_per_kind() == {
        "image": ["synthetic", "synthetic-image"],
        "llm": ["synthetic", "synthetic-llm"],
        "audio_stt": ["synthetic", "synthetic-stt"],
        "audio_tts": ["synthetic", "synthetic-tts"],
        "video": ["synthetic", "synthetic-video"],
    }
    # The caller may mutate what it gets without changing the engine.
    engine.models_per_kind()["image"].append("sdxl")
    assert "sdxl" not in engine.models_per_kind()["image"]


@pytest.mark.parametrize("kind", ["image", "llm", "audio_stt", "audio_tts", "video"])
async def test_every_advertised_id_serves_every_kind(kind: str) -> None:
    """A v1 studio matches a job's model against the flat union of ids: whichever id it
    pairs with whichever advertised kind, the job runs (no fail, no cool-down)."""
    engine = SyntheticEngine()
    flat = {m for models in engine.models_per_kind().values() for m in models}
    for model in sorted(flat):
        await engine.generate(model, SAMPLE_TASKS[kind], lambda _f: None)


async def test_synthetic_start_and_close_are_cheap_no_ops() -> None:
    engine = SyntheticEngine()
    await engine.start()
    await engine.close()
    await engine.close()


# --- synthetic: image -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ext", "pil_format", "out_ext"),
    [
        ("png", "PNG", "png"),
        ("webp", "WEBP", "webp"),
        ("jpg", "JPEG", "jpg"),
        ("jpeg", "JPEG", "jpeg"),
        ("gif", "GIF", "gif"),
        ("PNG", "PNG", "png"),
        ("tiff-ish", "PNG", "png"),
        ("mp4", "PNG", "png"),
    ],
)
async def test_image_is_real_at_requested_size_and_format(
    ext: str, pil_format: str, out_ext: str
) -> None:
    result = await _binary(ImageTask(prompt="golem", width=123, height=77, ext=ext))
    assert result.ext == out_ext
    with Image.open(io.BytesIO(result.data)) as img:
        assert img.format == pil_format
        assert img.size == (123, 77)


async def test_image_falls_back_to_png_without_webp(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(synthetic, "_webp_available", lambda animated: False)
    result = await _binary(ImageTask(prompt="golem", width=32, height=32, ext="webp"))
    assert result.ext == "png"
    with Image.open(io.BytesIO(result.data)) as img:
        assert img.format == "PNG"


async def test_image_is_deterministic_and_depends_on_prompt_and_seed() -> None:
    base = ImageTask(prompt="a stone golem", width=64, height=64, ext="png")
    first = await _binary(base)
    again = await _binary(ImageTask(prompt="a stone golem", width=64, height=64, ext="png"))
    other_prompt = await _binary(base.model_copy(update={"prompt": "a fire golem"}))
    seeded = await _binary(base.model_copy(update={"seed": 7}))
    seeded_again = await _binary(base.model_copy(update={"seed": 7}))
    other_seed = await _binary(base.model_copy(update={"seed": 8}))
    assert first.data == again.data
    assert first.data != other_prompt.data
    assert seeded.data == seeded_again.data
    assert len({first.data, seeded.data, other_seed.data}) == 3


async def test_image_lossy_formats_are_deterministic_too() -> None:
    task = ImageTask(prompt="golem", width=80, height=40, ext="webp")
    assert (await _binary(task)).data == (await _binary(task)).data


async def test_image_too_large_is_refused_before_any_work() -> None:
    calls: list[float] = []
    task = ImageTask(prompt="huge", width=8192, height=4097, ext="png")
    with pytest.raises(EngineError) as info:
        await SyntheticEngine().generate("synthetic", task, calls.append)
    assert info.value.retryable is False
    assert not isinstance(info.value, CannotServe)
    assert "width 8192" in str(info.value)
    assert "height 4097" in str(info.value)
    assert calls == []


async def test_image_pixel_cap_boundary(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(synthetic, "MAX_IMAGE_PIXELS", 100)
    at_cap = await _binary(ImageTask(prompt="x", width=10, height=10, ext="png"))
    with Image.open(io.BytesIO(at_cap.data)) as img:
        assert img.size == (10, 10)
    with pytest.raises(EngineError):
        await _run(ImageTask(prompt="x", width=10, height=11, ext="png"))


async def test_image_wider_than_webp_allows_falls_back_to_png() -> None:
    result = await _binary(ImageTask(prompt="strip", width=16384, height=2, ext="webp"))
    # libwebp cannot encode sides above 16383, so the engine honestly says png.
    assert result.ext == "png"
    with Image.open(io.BytesIO(result.data)) as img:
        assert img.size == (16384, 2)


# --- synthetic: llm ---------------------------------------------------------------------


async def test_llm_returns_openai_chat_completion_shape() -> None:
    task = LlmTask(
        messages=[
            ChatMessage(role="system", content="be terse"),
            ChatMessage(role="user", content="describe the stone golem"),
            ChatMessage(role="assistant", content="ok"),
        ]
    )
    value = await _json(task, "synthetic-llm")
    assert set(value) == {"id", "object", "created", "model", "choices", "usage"}
    assert value["object"] == "chat.completion"
    assert value["model"] == "synthetic-llm"
    assert isinstance(value["created"], int)
    assert value["id"].startswith("chatcmpl-")
    assert len(value["id"]) == len("chatcmpl-") + 16
    (choice,) = value["choices"]
    assert choice["index"] == 0
    assert choice["finish_reason"] == "stop"
    assert choice["message"]["role"] == "assistant"
    content = choice["message"]["content"]
    # Echoes the last *user* message, not the trailing assistant one.
    assert "describe the stone golem" in content
    usage = value["usage"]
    assert usage["prompt_tokens"] == 2 + 4 + 1
    assert usage["completion_tokens"] == len(content.split())
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


async def test_llm_honours_max_tokens_as_a_word_cap() -> None:
    task = LlmTask(
        messages=[ChatMessage(role="user", content="a long answer please")], max_tokens=4
    )
    value = await _json(task)
    content = value["choices"][0]["message"]["content"]
    assert len(content.split()) == 4
    assert value["usage"]["completion_tokens"] == 4
    assert value["choices"][0]["finish_reason"] == "length"


async def test_llm_is_deterministic_and_depends_on_prompt() -> None:
    def task(text: str) -> LlmTask:
        return LlmTask(messages=[ChatMessage(role="user", content=text)])

    assert await _json(task("golem")) == await _json(task("golem"))
    assert await _json(task("golem")) != await _json(task("dragon"))


async def test_llm_without_messages_still_answers() -> None:
    value = await _json(LlmTask(messages=[]))
    assert value["choices"][0]["message"]["content"]
    assert value["usage"]["prompt_tokens"] == 0


# --- synthetic: audio_stt ---------------------------------------------------------------


async def test_stt_returns_whisper_shape_without_touching_the_network(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("the synthetic engine must not fetch input_url")

    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    value = await _json(AudioSttTask(input_url="https://studio.example/a.wav"))
    assert set(value) == {"text", "language", "duration", "segments"}
    assert value["language"] == "en"
    segments = value["segments"]
    assert segments
    assert [s["id"] for s in segments] == list(range(len(segments)))
    assert segments[0]["start"] == 0.0
    for seg in segments:
        assert set(seg) == {"id", "start", "end", "text"}
        assert seg["end"] > seg["start"]
        assert seg["text"]
    for before, after in itertools.pairwise(segments):
        assert after["start"] == before["end"]
    assert value["duration"] == segments[-1]["end"]
    assert value["text"] == " ".join(s["text"] for s in segments)


async def test_stt_uses_requested_language_and_is_deterministic_per_url() -> None:
    fr = await _json(AudioSttTask(input_url="https://x/a.wav", language="fr"))
    assert fr["language"] == "fr"
    same = await _json(AudioSttTask(input_url="https://x/a.wav"))
    other = await _json(AudioSttTask(input_url="https://x/b.wav"))
    assert same["segments"] == fr["segments"]
    assert same["segments"] != other["segments"]


# --- synthetic: audio_tts ---------------------------------------------------------------


@pytest.mark.parametrize("ext", ["wav", "mp3"])
async def test_tts_is_a_real_one_second_16khz_wav(ext: str) -> None:
    result = await _binary(AudioTtsTask(text="hello golem", ext=ext))
    assert result.ext == "wav"
    with wave.open(io.BytesIO(result.data)) as wav:
        assert wav.getnchannels() == 1
        assert wav.getsampwidth() == 2
        assert wav.getframerate() == 16000
        assert wav.getnframes() == 16000
        frames = wav.readframes(wav.getnframes())
    assert len(frames) == 32000
    assert frames.strip(b"\x00"), "the tone must not be silence"


async def test_tts_is_deterministic_and_pitch_depends_on_text() -> None:
    first = await _binary(AudioTtsTask(text="hello"))
    assert first.data == (await _binary(AudioTtsTask(text="hello"))).data
    assert first.data != (await _binary(AudioTtsTask(text="goodbye"))).data


# --- synthetic: video -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "frames"),
    [(2.0, 16), (1.0, 8), (0.05, 2), (60.0, 48)],
)
async def test_video_is_an_animated_webp_with_bounded_frames(seconds: float, frames: int) -> None:
    result = await _binary(VideoTask(prompt="golem", seconds=seconds, width=64, height=32))
    assert result.ext == "webp"
    with Image.open(io.BytesIO(result.data)) as img:
        assert img.format == "WEBP"
        assert getattr(img, "is_animated", False)
        assert getattr(img, "n_frames", 1) == frames
        assert img.size == (64, 32)


@pytest.mark.parametrize(
    ("size", "expected"),
    [((1024, 512), (256, 128)), ((300, 1200), (64, 256)), ((100, 60), (100, 60))],
)
async def test_video_is_scaled_down_to_256_keeping_aspect(
    size: tuple[int, int], expected: tuple[int, int]
) -> None:
    width, height = size
    result = await _binary(VideoTask(prompt="golem", seconds=0.25, width=width, height=height))
    with Image.open(io.BytesIO(result.data)) as img:
        assert img.size == expected


async def test_video_gif_when_asked_or_when_webp_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asked = await _binary(VideoTask(prompt="golem", seconds=0.5, width=40, height=40, ext="gif"))
    monkeypatch.setattr(synthetic, "_webp_available", lambda animated: False)
    fallback = await _binary(VideoTask(prompt="golem", seconds=0.5, width=40, height=40))
    for result in (asked, fallback):
        assert result.ext == "gif"
        with Image.open(io.BytesIO(result.data)) as img:
            assert img.format == "GIF"
            assert getattr(img, "n_frames", 1) == 4


async def test_video_is_deterministic_and_depends_on_prompt() -> None:
    def task(prompt: str) -> VideoTask:
        return VideoTask(prompt=prompt, seconds=0.5, width=48, height=48)

    first = await _binary(task("golem"))
    assert first.data == (await _binary(task("golem"))).data
    assert first.data != (await _binary(task("dragon"))).data


# --- synthetic: serving rules, progress, threading --------------------------------------


@pytest.mark.parametrize(
    ("kind", "model"),
    [
        ("image", "sdxl"),
        ("image", "synthetic-unknown"),
        ("llm", "llama"),
        ("audio_stt", "synthetic-whisper"),
        ("audio_tts", "whisper"),
        ("video", "svd"),
    ],
)
async def test_cannot_serve_a_model_that_is_not_synthetic(kind: str, model: str) -> None:
    calls: list[float] = []
    with pytest.raises(CannotServe) as info:
        await SyntheticEngine().generate(model, SAMPLE_TASKS[kind], calls.append)
    assert info.value.retryable is False
    assert "cannot serve" in str(info.value)
    assert model in str(info.value)
    assert calls == []


@pytest.mark.parametrize("kind", KIND_ORDER)
async def test_progress_is_monotonic_and_ends_at_one(kind: str) -> None:
    seen: list[float] = []
    await SyntheticEngine().generate(MODEL_FOR_KIND[kind], SAMPLE_TASKS[kind], seen.append)
    assert seen == [0.0, 1.0]  # no delay: nothing to watch in between
    seen.clear()
    await SyntheticEngine(delay_secs=0.01).generate(MODEL_FOR_KIND[kind], SAMPLE_TASKS[kind],
                                                    seen.append)
    assert len(seen) >= 3
    assert seen[0] == 0.0
    assert seen[-1] == 1.0
    assert all(0.0 <= v <= 1.0 for v in seen)
    assert seen == sorted(seen)


async def test_delay_spreads_steps_and_keeps_the_loop_running() -> None:
    ticks = 0
    stop = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            await asyncio.sleep(0.01)

    seen: list[tuple[float, float]] = []
    ticks_at: list[int] = []
    started = time.monotonic()
    tick_task = asyncio.create_task(ticker())
    await SyntheticEngine(delay_secs=0.25).generate(
        "synthetic-tts",
        SAMPLE_TASKS["audio_tts"],
        lambda p: (seen.append((time.monotonic() - started, p)), ticks_at.append(ticks)),
    )
    stop.set()
    await tick_task
    assert time.monotonic() - started >= 0.25 * 0.8  # the delay is honoured (a floor)
    # The loop ran between the steps: another coroutine ticked while the engine worked.
    assert ticks_at[-1] > ticks_at[0]
    # Steps are spread out, not all reported at the end.
    assert seen[-1][0] - seen[0][0] >= 0.2
    assert seen[len(seen) // 2][0] - seen[0][0] >= 0.05


async def test_render_work_runs_in_a_thread_unless_it_is_tiny(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[object] = []
    real = asyncio.to_thread

    async def spy(func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        calls.append(func)
        return await real(func, *args, **kwargs)

    monkeypatch.setattr(asyncio, "to_thread", spy)
    heavy = [ImageTask(prompt="big", width=65, height=64), SAMPLE_TASKS["audio_tts"],
             SAMPLE_TASKS["video"]]
    for task in heavy:
        await _run(task)
    assert len(calls) == len(heavy)
    # A small image or a JSON result costs less than the hop to a thread and back.
    for task in (ImageTask(prompt="small", width=64, height=64), SAMPLE_TASKS["llm"],
                 SAMPLE_TASKS["audio_stt"]):
        await _run(task)
    assert len(calls) == len(heavy)


@pytest.mark.parametrize("delay", [-1.0, float("nan"), float("inf")])
def test_delay_must_be_finite_and_non_negative(delay: float) -> None:
    with pytest.raises(ValueError, match="delay_secs"):
        SyntheticEngine(delay_secs=delay)


# --- multi ------------------------------------------------------------------------------


class FakeEngine:
    def __init__(
        self,
        name: str,
        models: dict[str, list[str]],
        *,
        fail_start: bool = False,
        fail_close: bool = False,
    ) -> None:
        self._name = name
        self._models = models
        self.fail_start = fail_start
        self.fail_close = fail_close
        self.started = 0
        self.closed = 0
        self.jobs: list[tuple[str, str]] = []

    @property
    def name(self) -> str:
        return self._name

    def models_per_kind(self) -> dict[str, list[str]]:
        return {k: list(v) for k, v in self._models.items()}

    async def start(self) -> None:
        if self.fail_start:
            raise RuntimeError(f"{self._name} start failed")
        self.started += 1

    async def close(self) -> None:
        self.closed += 1
        if self.fail_close:
            raise RuntimeError(f"{self._name} close failed")

    async def generate(self, model: str, task: Task, progress: ProgressCallback) -> EngineResult:
        self.jobs.append((task.kind, model))
        progress(0.5)
        progress(1.0)
        return JsonResult({"by": self._name, "model": model})


def _pair() -> tuple[FakeEngine, FakeEngine]:
    a = FakeEngine("a", {"image": ["sdxl", "flux"], "llm": ["llama"]})
    b = FakeEngine("b", {"image": ["flux", "anime"], "video": ["svd"], "weird": ["x"]})
    return a, b


def test_multi_advertises_the_per_kind_union_in_kind_order() -> None:
    a, b = _pair()
    multi = MultiEngine([a, b])
    assert multi.name == "multi"
    assert isinstance(multi, Engine)
    models = multi.models_per_kind()
    assert models == {
        "image": ["anime", "flux", "sdxl"],
        "llm": ["llama"],
        "video": ["svd"],
    }
    assert list(models) == ["image", "llm", "video"]


async def test_multi_routes_to_first_member_advertising_kind_and_model() -> None:
    a, b = _pair()
    multi = MultiEngine([a, b])
    seen: list[float] = []
    flux = await multi.generate("flux", ImageTask(prompt="x"), seen.append)
    anime = await multi.generate("anime", ImageTask(prompt="x"), _no_progress)
    svd = await multi.generate("svd", VideoTask(prompt="x"), _no_progress)
    assert isinstance(flux, JsonResult) and flux.value["by"] == "a"
    assert isinstance(anime, JsonResult) and anime.value["by"] == "b"
    assert isinstance(svd, JsonResult) and svd.value["by"] == "b"
    assert a.jobs == [("image", "flux")]
    assert b.jobs == [("image", "anime"), ("video", "svd")]
    assert seen == [0.5, 1.0]
    assert multi.route("image", "flux") is a
    assert multi.route("llm", "flux") is None


@pytest.mark.parametrize(
    ("model", "task"),
    [
        ("nope", ImageTask(prompt="x")),
        ("llama", ImageTask(prompt="x")),  # model exists, but not for this kind
        ("svd", AudioTtsTask(text="x")),  # no member serves the kind at all
    ],
)
async def test_multi_cannot_serve_unadvertised_pairs(model: str, task: Task) -> None:
    a, b = _pair()
    with pytest.raises(CannotServe) as info:
        await MultiEngine([a, b]).generate(model, task, _no_progress)
    assert info.value.retryable is False
    assert "cannot serve" in str(info.value)
    assert a.jobs == [] and b.jobs == []


async def test_multi_over_synthetic_produces_real_results() -> None:
    multi = MultiEngine([SyntheticEngine(), FakeEngine("a", {"image": ["sdxl"]})])
    result = await multi.generate(
        "synthetic", ImageTask(prompt="x", width=20, height=10), _no_progress
    )
    assert isinstance(result, BinaryResult)
    with Image.open(io.BytesIO(result.data)) as img:
        assert img.size == (20, 10)


async def test_multi_start_and_close_fan_out() -> None:
    a, b = _pair()
    multi = MultiEngine([a, b])
    await multi.start()
    await multi.close()
    assert (a.started, b.started, a.closed, b.closed) == (1, 1, 1, 1)


async def test_multi_close_closes_all_even_when_one_raises() -> None:
    a = FakeEngine("a", {}, fail_close=True)
    b = FakeEngine("b", {}, fail_close=True)
    c = FakeEngine("c", {})
    with pytest.raises(RuntimeError, match="a close failed") as info:
        await MultiEngine([a, b, c]).close()
    assert (a.closed, b.closed, c.closed) == (1, 1, 1)
    assert any("b close failed" in note for note in getattr(info.value, "__notes__", []))


async def test_multi_start_failure_closes_members_already_started() -> None:
    a = FakeEngine("a", {})
    b = FakeEngine("b", {}, fail_start=True)
    c = FakeEngine("c", {})
    with pytest.raises(RuntimeError, match="b start failed"):
        await MultiEngine([a, b, c]).start()
    assert (a.started, a.closed) == (1, 1)
    assert (c.started, c.closed) == (0, 0)


def test_multi_needs_members() -> None:
    with pytest.raises(ValueError, match="at least one"):
        MultiEngine([])


# --- factory ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["synthetic", " Synthetic "])
def test_factory_builds_synthetic(name: str) -> None:
    assert isinstance(create_engine(name), SyntheticEngine)


def test_factory_builds_multi_from_members() -> None:
    engine = create_engine("multi", members=["synthetic"])
    assert isinstance(engine, MultiEngine)
    assert [type(m) for m in engine.members] == [SyntheticEngine]
    assert engine.models_per_kind() == SyntheticEngine().models_per_kind()


def test_known_engines() -> None:
    assert KNOWN_ENGINES == ("a1111", "comfyui", "diffusers", "gradio", "synthetic", "multi")


def test_factory_unknown_engine_names_the_key_and_known_names() -> None:
    with pytest.raises(UnknownEngine) as info:
        create_engine("gradioo")
    assert isinstance(info.value, ValueError)
    assert info.value.key == "engine"
    message = str(info.value)
    assert "'engine'" in message
    assert "gradioo" in message
    assert "synthetic" in message and "multi" in message


def test_factory_unknown_member_names_the_engines_key() -> None:
    with pytest.raises(UnknownEngine) as info:
        create_engine("multi", members=["synthetic", "nope"])
    assert info.value.key == "engines"
    assert "'engines'" in str(info.value)
    assert "nope" in str(info.value)


@pytest.mark.parametrize("members", [[], ["synthetic", "multi"], ["MULTI"]])
def test_factory_refuses_empty_or_nested_multi(members: list[str]) -> None:
    with pytest.raises(EngineConfigError) as info:
        create_engine("multi", members=members)
    assert isinstance(info.value, ValueError)
    assert info.value.key == "engines"
    assert "'engines'" in str(info.value)
