"""A GPU-free engine that produces real, deterministic results for every task kind.

It exists for tests, demos and for checking a worker's wiring end to end: every
result is genuine (a decodable image, a playable WAV, an animated image, JSON in
the shape real backends return), derived only from the SHA-256 of the task's
prompt so that the same task always yields the same bytes.
"""

from __future__ import annotations

import array
import asyncio
import hashlib
import io
import math
import sys
import wave
from collections.abc import Callable
from typing import Any

from PIL import Image, ImageDraw, features

from workerlib.engines.base import (
    BinaryResult,
    CannotServe,
    EngineError,
    EngineResult,
    JsonResult,
    ProgressCallback,
)
from workerlib.wire import (
    AudioSttTask,
    AudioTtsTask,
    ImageTask,
    LlmTask,
    Task,
    VideoTask,
    task_prompt,
)

SYNTHETIC_MODELS: dict[str, tuple[str, ...]] = {
    "image": ("synthetic", "synthetic-image"),
    "llm": ("synthetic", "synthetic-llm"),
    "audio_stt": ("synthetic", "synthetic-stt"),
    "audio_tts": ("synthetic", "synthetic-tts"),
    "video": ("synthetic", "synthetic-video"),
}
"""What is advertised per kind: the generic id and the kind's own."""
SYNTHETIC_IDS: frozenset[str] = frozenset(m for ids in SYNTHETIC_MODELS.values() for m in ids)
"""Every id serves every kind: a v1 studio matches a job's model against the flat list of
all advertised ids, so each of them must really run for each advertised kind."""

MAX_IMAGE_PIXELS = 4096 * 4096
INLINE_MAX_PIXELS = 64 * 64
"""Images up to this size (and JSON results) are made on the event loop itself: they take
about a millisecond, less than handing them to a thread and back costs."""
# libwebp refuses larger sides; such images fall back to PNG.
_WEBP_MAX_SIDE = 16383
_IMAGE_FORMATS: dict[str, str] = {
    "png": "PNG",
    "webp": "WEBP",
    "jpg": "JPEG",
    "jpeg": "JPEG",
    "gif": "GIF",
}

VIDEO_FPS = 8
VIDEO_MAX_FRAMES = 48
VIDEO_MAX_SIDE = 256

TTS_SAMPLE_RATE = 16000
TTS_SECONDS = 1.0

_PROGRESS_STEPS = 5

_WORDS = (
    "amber", "bright", "canyon", "drift", "ember", "forest", "glow", "harbor",
    "ivory", "jade", "kestrel", "lantern", "meadow", "nova", "orbit", "pebble",
    "quartz", "river", "signal", "tide", "umber", "velvet", "willow", "zenith",
)  # fmt: skip


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


def _task_digest(task: Task) -> bytes:
    text = task_prompt(task)
    if isinstance(task, ImageTask) and task.seed is not None:
        text += f"\x00seed={task.seed}"
    return _digest(text)


def _colour(digest: bytes, offset: int) -> tuple[int, int, int]:
    return (digest[offset], digest[offset + 1], digest[offset + 2])


def _words_from(digest: bytes, count: int) -> list[str]:
    # Stretch the digest so any count of words stays deterministic.
    stream = bytearray(digest)
    while len(stream) < count:
        stream += hashlib.sha256(bytes(stream)).digest()
    return [_WORDS[b % len(_WORDS)] for b in stream[:count]]


def _webp_available(animated: bool) -> bool:
    if not features.check_module("webp"):
        return False
    # Pillow < 11 reports animated WebP as a separate optional feature.
    if animated and "webp_anim" in features.features:
        return bool(features.check_feature("webp_anim"))
    return True


def _draw_scene(size: tuple[int, int], digest: bytes, phase: float = 0.0) -> Image.Image:
    """A diagonal two-colour gradient with a few discs, all chosen by the digest."""
    width, height = size
    start = Image.new("RGB", size, _colour(digest, 0))
    end = Image.new("RGB", size, _colour(digest, 3))
    mask = Image.linear_gradient("L").rotate(45 + digest[6] % 90).resize(size)
    img = Image.composite(start, end, mask)
    draw = ImageDraw.Draw(img)
    short = min(width, height)
    for i in range(3):
        base = 7 + i * 8
        radius = max(1, short * (4 + digest[base] % 12) // 40)
        cx = (digest[base + 1] / 255 * width + phase * width) % width
        cy = digest[base + 2] / 255 * height
        draw.ellipse(
            (cx - radius, cy - radius, cx + radius, cy + radius),
            fill=_colour(digest, base + 3),
        )
    return img


def render_image(task: ImageTask) -> BinaryResult:
    ext = task.ext.strip().lower().lstrip(".")
    fmt = _IMAGE_FORMATS.get(ext)
    if fmt is None or (fmt == "WEBP" and not _webp_available(animated=False)):
        ext, fmt = "png", "PNG"
    if fmt == "WEBP" and max(task.width, task.height) > _WEBP_MAX_SIDE:
        ext, fmt = "png", "PNG"
    img = _draw_scene((task.width, task.height), _task_digest(task))
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return BinaryResult(data=buf.getvalue(), ext=ext)


def render_chat(model: str, task: LlmTask) -> dict[str, Any]:
    digest = _task_digest(task)
    user_text = next(
        (m.content for m in reversed(task.messages) if m.role == "user"),
        task_prompt(task),
    )
    excerpt_words = user_text.split()
    excerpt = " ".join(excerpt_words[:12])
    if len(excerpt_words) > 12:
        excerpt += " …"
    filler = _words_from(digest, 8 + digest[0] % 17)
    reply = f'[synthetic {digest.hex()[:8]}] You said: "{excerpt}". {" ".join(filler)}'
    words = reply.split()
    finish_reason = "stop"
    if len(words) > task.max_tokens:
        words = words[: task.max_tokens]
        finish_reason = "length"
    content = " ".join(words)
    prompt_tokens = sum(len(m.content.split()) for m in task.messages)
    completion_tokens = len(words)
    return {
        "id": f"chatcmpl-{digest.hex()[:16]}",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": finish_reason,
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def render_transcript(task: AudioSttTask) -> dict[str, Any]:
    # Only the URL's text is hashed: the synthetic engine never fetches anything.
    digest = _task_digest(task)
    segments: list[dict[str, Any]] = []
    cursor = 0.0
    for i in range(1 + digest[0] % 3):
        length = 1.5 + digest[1 + i] / 255 * 2.5
        words = _words_from(digest[8 + i :], 3 + digest[4 + i] % 6)
        text = " ".join(words).capitalize() + "."
        start, cursor = cursor, round(cursor + length, 2)
        segments.append({"id": i, "start": start, "end": cursor, "text": text})
    return {
        "text": " ".join(s["text"] for s in segments),
        "language": task.language or "en",
        "duration": cursor,
        "segments": segments,
    }


def render_tone(task: AudioTtsTask) -> BinaryResult:
    digest = _task_digest(task)
    freq = 220.0 + int.from_bytes(digest[:2], "big") / 65535 * 660.0
    count = int(TTS_SAMPLE_RATE * TTS_SECONDS)
    fade = TTS_SAMPLE_RATE // 100
    samples = array.array("h", bytes(2 * count))
    step = 2 * math.pi * freq / TTS_SAMPLE_RATE
    for n in range(count):
        envelope = min(1.0, n / fade, (count - 1 - n) / fade)
        samples[n] = int(0.3 * 32767 * envelope * math.sin(step * n))
    if sys.byteorder == "big":
        samples.byteswap()
    buf = io.BytesIO()
    with wave.open(buf, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(TTS_SAMPLE_RATE)
        out.writeframes(samples.tobytes())
    return BinaryResult(data=buf.getvalue(), ext="wav")


def video_frame_size(width: int, height: int) -> tuple[int, int]:
    scale = min(1.0, VIDEO_MAX_SIDE / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def video_frame_count(seconds: float) -> int:
    # At least two frames: one frame would be a still image, not a video.
    return max(2, min(round(seconds * VIDEO_FPS), VIDEO_MAX_FRAMES))


def render_video(task: VideoTask) -> BinaryResult:
    digest = _task_digest(task)
    size = video_frame_size(task.width, task.height)
    count = video_frame_count(task.seconds)
    frames = [_draw_scene(size, digest, phase=i / count) for i in range(count)]
    options: dict[str, Any] = {
        "save_all": True,
        "append_images": frames[1:],
        "duration": 1000 // VIDEO_FPS,
        "loop": 0,
    }
    wants_gif = task.ext.strip().lower().lstrip(".") == "gif"
    if not wants_gif and _webp_available(animated=True):
        buf = io.BytesIO()
        try:
            frames[0].save(buf, format="WEBP", **options)
        except (OSError, ValueError, KeyError):
            pass
        else:
            return BinaryResult(data=buf.getvalue(), ext="webp")
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", **options)
    return BinaryResult(data=buf.getvalue(), ext="gif")


def _is_small(task: Task) -> bool:
    if isinstance(task, ImageTask):
        return task.width * task.height <= INLINE_MAX_PIXELS
    return isinstance(task, LlmTask | AudioSttTask)


class SyntheticEngine:
    """Serves every kind with any of its ``synthetic*`` ids, no GPU and no network needed."""

    def __init__(self, *, delay_secs: float = 0.0) -> None:
        if not math.isfinite(delay_secs) or delay_secs < 0:
            raise ValueError(f"delay_secs must be a finite number >= 0, got {delay_secs!r}")
        self._delay_secs = delay_secs

    @property
    def name(self) -> str:
        return "synthetic"

    def models_per_kind(self) -> dict[str, list[str]]:
        return {kind: list(models) for kind, models in SYNTHETIC_MODELS.items()}

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def check(self) -> str | None:
        return None

    async def interrupt(self) -> None:
        return None

    async def generate(self, model: str, task: Task, progress: ProgressCallback) -> EngineResult:
        if model not in SYNTHETIC_IDS or task.kind not in SYNTHETIC_MODELS:
            raise CannotServe(self.name, task.kind, model)
        work = self._prepare(model, task)
        pause = self._delay_secs / _PROGRESS_STEPS
        progress(0.0)
        # Steps only when there is time to see them: each one is an event for the window.
        for step in range(1, _PROGRESS_STEPS if pause > 0 else 1):
            await asyncio.sleep(pause)
            progress(step / _PROGRESS_STEPS)
        result = work() if _is_small(task) else await asyncio.to_thread(work)
        if pause > 0:
            await asyncio.sleep(pause)
        progress(1.0)
        return result

    def _prepare(self, model: str, task: Task) -> Callable[[], EngineResult]:
        """Validate the task and return the blocking work that produces its result."""
        if isinstance(task, ImageTask):
            if task.width * task.height > MAX_IMAGE_PIXELS:
                raise EngineError(
                    f"image of width {task.width} × height {task.height} is too large for "
                    f"the synthetic engine (at most {MAX_IMAGE_PIXELS} pixels)",
                    retryable=False,
                )
            return lambda: render_image(task)
        if isinstance(task, LlmTask):
            return lambda: JsonResult(render_chat(model, task))
        if isinstance(task, AudioSttTask):
            return lambda: JsonResult(render_transcript(task))
        if isinstance(task, AudioTtsTask):
            return lambda: render_tone(task)
        return lambda: render_video(task)
