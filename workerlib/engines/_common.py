"""Pieces shared by the engines that drive a real backend: images, models, HTTP."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import io
import json
import math
import posixpath
import threading
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from PIL import Image, UnidentifiedImageError, features

from workerlib.engines.base import (
    BinaryResult,
    EngineConfigError,
    EngineError,
    ProgressCallback,
)

MAX_DOWNLOAD_BYTES = 256 * 1024 * 1024
"""The largest image a backend may hand back; more is a broken backend, not a picture."""

_WRITABLE: dict[str, str] = {
    "png": "PNG",
    "webp": "WEBP",
    "jpg": "JPEG",
    "jpeg": "JPEG",
    "gif": "GIF",
}
_EXT_OF_FORMAT: dict[str, str] = {
    "PNG": "png",
    "WEBP": "webp",
    "JPEG": "jpg",
    "GIF": "gif",
    "BMP": "bmp",
    "TIFF": "tiff",
    "MPO": "jpg",
}
# libwebp refuses larger sides.
_WEBP_MAX_SIDE = 16383
_ERROR_SLICE = 300
START_PROBE_SECS = 5.0
"""How long ``start()`` waits for a backend's model list before leaving it to check()."""


# --- config checks ------------------------------------------------------------------------


def checked_url(url: str, key: str, what: str) -> str:
    """``url`` without trailing slashes, or EngineConfigError naming ``key``."""
    value = url.strip().rstrip("/")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise EngineConfigError(
            f"config key '{key}' must be the address of {what}, like http://127.0.0.1:7860 "
            f"(got {url!r})",
            key=key,
        )
    return value


# --- progress -----------------------------------------------------------------------------


class Progress:
    """Wraps a ProgressCallback: values are clamped to [0, 1] and never go backwards."""

    def __init__(self, callback: ProgressCallback) -> None:
        self._callback = callback
        self._last = -1.0
        self._lock = threading.Lock()

    def __call__(self, value: float) -> None:
        if not math.isfinite(value):
            return
        value = min(1.0, max(0.0, value))
        with self._lock:
            if value <= self._last:
                return
            self._last = value
        self._callback(value)


# --- models -------------------------------------------------------------------------------


def _stem(name: str) -> str:
    base = posixpath.basename(name.replace("\\", "/"))
    head, dot, _ext = base.rpartition(".")
    return head if dot else base


def match_name(wanted: str, installed: Iterable[str]) -> str | None:
    """The installed entry ``wanted`` (a model_map value) names, if any.

    Exact match first, then the file name (``sdxl/a.safetensors`` matches ``a.safetensors``),
    then the name without its extension (``a`` matches ``a.safetensors``).
    """
    candidates = list(installed)
    want = wanted.strip().replace("\\", "/")
    if not want:
        return None
    for name in candidates:
        if name.replace("\\", "/") == want:
            return name
    base = posixpath.basename(want)
    for name in candidates:
        if posixpath.basename(name.replace("\\", "/")) == base:
            return name
    stem = _stem(want)
    for name in candidates:
        if _stem(name) == stem:
            return name
    return None


def describe_names(names: Iterable[str], limit: int = 8) -> str:
    items = sorted(set(names))
    if not items:
        return "none"
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


# --- images -------------------------------------------------------------------------------


def _normalise_ext(ext: str) -> str:
    return ext.strip().lower().lstrip(".")


def _can_write(fmt: str, size: tuple[int, int]) -> bool:
    if fmt == "WEBP":
        return features.check_module("webp") and max(size) <= _WEBP_MAX_SIDE
    return True


def decode_base64_image(text: object, source: str) -> bytes:
    """Bytes of a base64 image (plain or a ``data:`` URL); EngineError when it is not base64."""
    if not isinstance(text, str):
        raise EngineError(f"{source} sent an image that is not a base64 string")
    payload = text.strip()
    if payload.startswith("data:"):
        _head, comma, payload = payload.partition(",")
        if not comma:
            raise EngineError(f"{source} sent a data URL without data")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise EngineError(f"{source} sent an image that is not valid base64") from None


def encode_image(data: bytes, wanted_ext: str, source: str) -> BinaryResult:
    """The real image in ``data``, converted to ``wanted_ext`` when it differs and Pillow can
    write that format; otherwise kept as it is, with its real extension."""
    try:
        with Image.open(io.BytesIO(data)) as probe:
            fmt = probe.format or ""
            probe.verify()
        image = Image.open(io.BytesIO(data))
        image.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise EngineError(f"{source} sent data that is not a readable image ({exc})") from None
    real_ext = _EXT_OF_FORMAT.get(fmt, fmt.lower() or "bin")
    wanted = _normalise_ext(wanted_ext)
    wanted_fmt = _WRITABLE.get(wanted)
    if wanted_fmt == fmt:
        return BinaryResult(data=data, ext=wanted)
    if wanted_fmt is None or not _can_write(wanted_fmt, image.size):
        return BinaryResult(data=data, ext=real_ext)
    return save_image(image, wanted)


def save_image(image: Image.Image, wanted_ext: str) -> BinaryResult:
    """Encode a Pillow image as ``wanted_ext``; PNG when that format cannot be written."""
    wanted = _normalise_ext(wanted_ext)
    fmt = _WRITABLE.get(wanted)
    if fmt is None or not _can_write(fmt, image.size):
        wanted, fmt = "png", "PNG"
    if fmt == "JPEG" and image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    elif fmt != "GIF" and image.mode not in ("RGB", "RGBA", "L", "LA"):
        image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
    buf = io.BytesIO()
    image.save(buf, format=fmt)
    return BinaryResult(data=buf.getvalue(), ext=wanted)


async def image_result(data: bytes, wanted_ext: str, source: str) -> BinaryResult:
    """``encode_image`` off the event loop: decoding a large image takes a while."""
    return await asyncio.to_thread(encode_image, data, wanted_ext, source)


# --- HTTP ---------------------------------------------------------------------------------


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _ERROR_SLICE else text[:_ERROR_SLICE] + " …"


def reason_from_body(body: bytes) -> str:
    """The reason a backend gives in an error body, as one line."""
    text = body.decode("utf-8", "replace").strip()
    try:
        value = json.loads(text)
    except ValueError:
        return _short(text)
    return _short(_reason_from_json(value)) if value is not None else ""


def _reason_from_json(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        # FastAPI validation errors: [{"loc": [...], "msg": ...}, ...]
        parts = []
        for item in value[:3]:
            if isinstance(item, dict) and "msg" in item:
                loc = ".".join(str(p) for p in item.get("loc", []) if p != "body")
                parts.append(f"{loc}: {item['msg']}" if loc else str(item["msg"]))
            else:
                parts.append(_reason_from_json(item))
        return "; ".join(p for p in parts if p)
    if isinstance(value, dict):
        # AUTOMATIC1111 puts the exception text in "errors", its type in "error".
        for key in ("errors", "detail", "error", "message", "details", "exception_message"):
            item = value.get(key)
            if item:
                reason = _reason_from_json(item)
                if reason:
                    return reason
        return json.dumps(value)[:_ERROR_SLICE]
    return str(value)


class HttpStatusError(EngineError):
    """A backend answered with a non-2xx status."""

    def __init__(self, message: str, *, status: int, reason: str, retryable: bool) -> None:
        super().__init__(message, retryable=retryable)
        self.status = status
        self.reason = reason


class HttpBackend:
    """An aiohttp session to one backend, with errors turned into EngineError sentences."""

    label = "backend"

    def __init__(self, url: str, *, timeout_secs: float) -> None:
        self.url = url.rstrip("/")
        self._timeout_secs = timeout_secs
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=self._timeout_secs)
            )
        return self._session

    async def close_session(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def down(self, exc: BaseException) -> EngineError:
        reason = str(exc) or type(exc).__name__
        return EngineError(f"{self.label} at {self.url} is not answering ({reason})",
                           retryable=True)

    def bad_status(self, what: str, status: int, body: bytes) -> HttpStatusError:
        reason = reason_from_body(body)
        # 4xx is the backend refusing this very request; 408/429 and 5xx may pass.
        retryable = status >= 500 or status in (408, 429)
        suffix = f": {reason}" if reason else ""
        return HttpStatusError(f"{self.label} refused {what} (HTTP {status}){suffix}",
                               status=status, reason=reason, retryable=retryable)

    async def request(
        self,
        method: str,
        path: str,
        *,
        what: str,
        json_body: Any = None,
        params: Mapping[str, str] | None = None,
        timeout: float | None = -1.0,
        max_bytes: int = MAX_DOWNLOAD_BYTES,
    ) -> bytes:
        """The body of a 2xx reply; EngineError for anything else.

        ``path`` is relative to the backend's address, or a whole http(s) URL.
        ``timeout`` -1 uses the backend's request timeout; None waits as long as it takes
        (a job: the worker's job timeout bounds it).
        """
        total = self._timeout_secs if timeout == -1.0 else timeout
        target = path if path.startswith(("http://", "https://")) else self.url + path
        try:
            async with self.session().request(
                method, target, json=json_body, params=params,
                timeout=aiohttp.ClientTimeout(total=total, sock_connect=self._timeout_secs),
            ) as response:
                body = await _read_limited(response, max_bytes, f"{self.label} {what}")
                if response.status >= 300:
                    raise self.bad_status(what, response.status, body)
                return body
        except TimeoutError:  # before OSError, of which it is a subclass
            limit = total if total is not None else self._timeout_secs
            raise EngineError(
                f"{self.label} at {self.url} did not answer {what} within {limit:g} s",
                retryable=True,
            ) from None
        except (aiohttp.ClientConnectionError, OSError) as exc:
            raise self.down(exc) from None
        except aiohttp.ClientError as exc:
            raise EngineError(f"{self.label} at {self.url} failed {what} ({exc})") from None

    async def request_json(self, method: str, path: str, *, what: str, **kwargs: Any) -> Any:
        body = await self.request(method, path, what=what, **kwargs)
        try:
            return json.loads(body)
        except ValueError:
            raise EngineError(
                f"{self.label} answered {what} with something that is not JSON: "
                f"{_short(body.decode('utf-8', 'replace')) or '(empty)'}"
            ) from None


class CheckpointBackend(HttpBackend):
    """A web UI that serves image jobs on installed checkpoints (AUTOMATIC1111, ComfyUI).

    Advertises only the studio ids in model_map whose checkpoint the backend really has;
    subclasses say how to list them in ``_refresh_models``.
    """

    def __init__(self, url: str, *, timeout_secs: float,
                 model_map: Mapping[str, str] | None) -> None:
        super().__init__(url, timeout_secs=timeout_secs)
        self._model_map = dict(model_map or {})
        # studio model id -> the checkpoint, as the backend names it.
        self._checkpoints: dict[str, str] = {}
        self._checked = False

    @property
    def name(self) -> str:
        raise NotImplementedError

    async def _refresh_models(self) -> None:
        raise NotImplementedError

    def models_per_kind(self) -> dict[str, list[str]]:
        return {"image": sorted(self._checkpoints)} if self._checkpoints else {}

    async def start(self) -> None:
        self.session()
        # Best effort, so the models are known when the worker registers; check() reports
        # a backend that does not answer.
        with contextlib.suppress(EngineError, TimeoutError):
            await asyncio.wait_for(self._refresh_models(), START_PROBE_SECS)

    async def close(self) -> None:
        await self.close_session()

    async def check(self) -> str | None:
        try:
            await self._refresh_models()
        except EngineError as exc:
            # Unknown rather than absent: a job now asks the backend again (and fails
            # retryably while it is down) instead of being refused for good.
            self._checkpoints = {}
            self._checked = False
            return str(exc)
        if not self._model_map:
            return (f"the {self.name} engine has no models: map studio model ids to "
                    "checkpoint files in model_map")
        if not self._checkpoints:
            wanted = describe_names(self._model_map.values())
            return (f"none of the checkpoints in model_map is installed in {self.label} at "
                    f"{self.url} (looked for: {wanted})")
        return None


async def _read_limited(response: aiohttp.ClientResponse, limit: int, what: str) -> bytes:
    if response.content_length is not None and response.content_length > limit:
        raise EngineError(f"{what}: the reply is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(1 << 16):
        size += len(chunk)
        if size > limit:
            raise EngineError(f"{what}: the reply is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def expect(value: Any, kind: type | tuple[type, ...], message: str) -> Any:
    """``value`` when it is of ``kind``, else EngineError(message): replies are untrusted."""
    if not isinstance(value, kind):
        raise EngineError(message)
    return value

