"""Helpers the backend engines share: images, model names, error bodies, progress."""

from __future__ import annotations

import base64
import io
import json

import pytest
from PIL import Image

from workerlib.engines import EngineError
from workerlib.engines._common import (
    Progress,
    decode_base64_image,
    encode_image,
    match_name,
    reason_from_body,
    save_image,
)


def image_bytes(fmt: str, size: tuple[int, int] = (8, 6), mode: str = "RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, 128).save(buf, format=fmt)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("source", "wanted", "fmt", "ext"),
    [
        ("PNG", "png", "PNG", "png"),
        ("PNG", ".WEBP", "WEBP", "webp"),
        ("WEBP", "png", "PNG", "png"),
        ("PNG", "jpeg", "JPEG", "jpeg"),
        ("JPEG", "jpg", "JPEG", "jpg"),
        ("PNG", "gif", "GIF", "gif"),
        # Nothing Pillow writes for this: keep the real image and say what it is.
        ("WEBP", "mp4", "WEBP", "webp"),
        ("BMP", "tga", "BMP", "bmp"),
    ],
)
def test_encode_image_converts_only_when_it_can(source: str, wanted: str, fmt: str,
                                                ext: str) -> None:
    data = image_bytes(source)
    result = encode_image(data, wanted, "the app")
    image = Image.open(io.BytesIO(result.data))
    assert (image.format, image.size, result.ext) == (fmt, (8, 6), ext)
    if source == fmt:
        assert result.data == data  # the backend's own bytes, untouched


def test_encode_image_handles_alpha_for_jpeg() -> None:
    result = encode_image(image_bytes("PNG", mode="RGBA"), "jpg", "the app")
    assert Image.open(io.BytesIO(result.data)).mode == "RGB"


@pytest.mark.parametrize("data", [b"", b"not an image at all", image_bytes("PNG")[:40]])
def test_encode_image_refuses_what_is_not_an_image(data: bytes) -> None:
    with pytest.raises(EngineError, match="ComfyUI sent data that is not a readable image"):
        encode_image(data, "png", "ComfyUI")


def test_save_image_falls_back_to_png() -> None:
    result = save_image(Image.new("P", (4, 4)), "mp3")
    assert result.ext == "png" and Image.open(io.BytesIO(result.data)).format == "PNG"


def test_decode_base64_image_accepts_plain_and_data_urls() -> None:
    data = image_bytes("PNG")
    text = base64.b64encode(data).decode()
    assert decode_base64_image(text, "x") == data
    assert decode_base64_image("data:image/png;base64," + text, "x") == data
    for bad in ("***", "data:image/png;base64", 42):
        with pytest.raises(EngineError):
            decode_base64_image(bad, "AUTOMATIC1111")


@pytest.mark.parametrize(
    ("wanted", "installed", "expected"),
    [
        ("a.safetensors", ["b.ckpt", "a.safetensors"], "a.safetensors"),
        ("a.safetensors", ["sdxl/a.safetensors"], "sdxl/a.safetensors"),
        ("sdxl\\a.safetensors", ["sdxl/a.safetensors"], "sdxl/a.safetensors"),
        ("a", ["sub/a.safetensors"], "sub/a.safetensors"),
        ("/models/Stable-diffusion/a.ckpt", ["a.ckpt [123abc]", "/x/a.ckpt"], "/x/a.ckpt"),
        ("c.safetensors", ["a.safetensors"], None),
        ("", ["a.safetensors"], None),
    ],
)
def test_match_name(wanted: str, installed: list[str], expected: str | None) -> None:
    assert match_name(wanted, installed) == expected


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        # AUTOMATIC1111's API error handler
        ({"error": "RuntimeError", "detail": "", "body": "", "errors": "CUDA out of memory"},
         "CUDA out of memory"),
        ({"detail": "Not Found"}, "Not Found"),
        # FastAPI request validation
        ({"detail": [{"loc": ["body", "steps"], "msg": "value is not a valid integer",
                      "type": "type_error.integer"}]}, "steps: value is not a valid integer"),
        # ComfyUI
        ({"error": {"type": "no_prompt", "message": "No prompt provided", "details": "",
                    "extra_info": {}}, "node_errors": {}}, "No prompt provided"),
        # Gradio 3
        ({"error": "boom"}, "boom"),
        ({"error": None}, '{"error": null}'),
    ],
)
def test_reason_from_json_bodies(body: object, expected: str) -> None:
    assert reason_from_body(json.dumps(body).encode()) == expected


def test_reason_from_text_bodies_is_one_bounded_line() -> None:
    assert reason_from_body(b"500 Internal Server Error\n\nServer got itself in trouble") == \
        "500 Internal Server Error Server got itself in trouble"
    long = reason_from_body(b"x" * 5000)
    assert len(long) < 400 and long.endswith("…")


def test_progress_is_clamped_and_never_goes_back() -> None:
    seen: list[float] = []
    report = Progress(seen.append)
    for value in (0.0, 0.5, 0.3, float("nan"), 2.0, 1.0, -1.0):
        report(value)
    assert seen == [0.0, 0.5, 1.0]
