"""A stand-in for the AUTOMATIC1111 / Forge ``/sdapi/v1`` API (modules/api/api.py, models.py).

Replies keep the real shapes: ``SDModelItem`` objects from ``sd-models``, a
``TextToImageResponse`` (base64 images, parameters, info as a JSON string) from
``txt2img``, a ``ProgressResponse`` from ``progress``, ``{}`` from ``interrupt``; errors
go through the web UI's handler (``{"error", "detail", "body", "errors"}``), request
validation through FastAPI's 422 ``{"detail": [{"loc", "msg", "type"}]}``.
"""

from __future__ import annotations

import asyncio
import base64
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes._server import FakeServer, png_bytes


def checkpoint(filename: str, folder: str = "/sd/models/Stable-diffusion") -> dict[str, Any]:
    """An ``SDModelItem`` the way the web UI lists a checkpoint file."""
    stem = filename.rsplit(".", 1)[0]
    short = format(abs(hash(filename)) % 16**10, "010x")
    return {
        "title": f"{filename} [{short}]",
        "model_name": stem.replace("/", "_"),
        "hash": short,
        "sha256": short * 6 + "abcd",
        "filename": f"{folder}/{filename}",
        "config": None,
    }


@dataclass
class FakeA1111(FakeServer):
    checkpoints: list[dict[str, Any]] = field(default_factory=list)
    api_enabled: bool = True
    # "ok" | "error" | "not_json" | "no_images" | "bad_base64"
    txt2img_mode: str = "ok"
    step_secs: float = 0.02
    image_format: str = "PNG"
    interrupted: bool = False
    _state: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._reset_state()

    def _reset_state(self) -> None:
        self._state = {
            "skipped": False, "interrupted": False, "job": "", "job_count": 0,
            "job_timestamp": "0", "job_no": 0, "sampling_step": 0, "sampling_steps": 0,
        }

    def build(self) -> web.Application:
        app = web.Application()
        if self.api_enabled:
            app.router.add_get("/sdapi/v1/sd-models", self._sd_models)
            app.router.add_post("/sdapi/v1/txt2img", self._txt2img)
            app.router.add_get("/sdapi/v1/progress", self._progress)
            app.router.add_post("/sdapi/v1/interrupt", self._interrupt)
        return app

    @staticmethod
    def _api_error(exc_type: str, message: str, status: int = 500,
                   detail: str = "") -> web.Response:
        return web.json_response(
            {"error": exc_type, "detail": detail, "body": "", "errors": message}, status=status
        )

    async def _sd_models(self, _request: web.Request) -> web.Response:
        return web.json_response(self.checkpoints)

    async def _progress(self, _request: web.Request) -> web.Response:
        state = self._state
        if state["job_count"] == 0:
            return web.json_response({"progress": 0, "eta_relative": 0, "state": state,
                                      "current_image": None, "textinfo": None})
        progress = 0.01 + state["job_no"] / state["job_count"]
        if state["sampling_steps"] > 0:
            progress += state["sampling_step"] / state["sampling_steps"] / state["job_count"]
        return web.json_response({"progress": min(progress, 1), "eta_relative": 1.0,
                                  "state": state, "current_image": None, "textinfo": None})

    async def _interrupt(self, _request: web.Request) -> web.Response:
        self.interrupted = True
        self._state["interrupted"] = True
        return web.json_response({})

    async def _txt2img(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"detail": [{"loc": ["body", 0], "msg": "Expecting value",
                                                  "type": "value_error.jsondecode"}]},
                                     status=422)
        problems = [
            {"loc": ["body", key], "msg": "value is not a valid integer",
             "type": "type_error.integer"}
            for key in ("width", "height", "steps", "seed")
            if key in body and not isinstance(body[key], int)
        ]
        if problems:
            return web.json_response({"detail": problems}, status=422)
        wanted = (body.get("override_settings") or {}).get("sd_model_checkpoint")
        aliases = {c["title"] for c in self.checkpoints} | {c["model_name"]
                                                            for c in self.checkpoints}
        if wanted is not None and wanted not in aliases:
            return self._api_error("RuntimeError", f"model {wanted!r} not found")
        if self.txt2img_mode == "error":
            return self._api_error("OutOfMemoryError", "CUDA out of memory. Tried to allocate "
                                   "2.00 GiB")
        steps = int(body.get("steps", 20))
        self._state.update(job="scripts_txt2img", job_count=1, job_no=0, sampling_steps=steps,
                           sampling_step=0, interrupted=False)
        try:
            for step in range(1, steps + 1):
                await asyncio.sleep(self.step_secs)
                if self._state["interrupted"]:
                    break
                self._state["sampling_step"] = step
        finally:
            self._reset_state()
        if self.txt2img_mode == "not_json":
            return web.Response(text="<html>Internal Server Error</html>", status=200,
                                content_type="text/html")
        if self.txt2img_mode == "no_images":
            images: list[str] = []
        elif self.txt2img_mode == "bad_base64":
            images = ["this is not base64!"]
        else:
            data = png_bytes(int(body.get("width", 512)), int(body.get("height", 512)),
                             fmt=self.image_format)
            images = [base64.b64encode(data).decode()]
        info = {"prompt": body.get("prompt", ""), "seed": body.get("seed", -1),
                "sd_model_name": wanted}
        return web.json_response({"images": images, "parameters": body,
                                  "info": json.dumps(info)})
