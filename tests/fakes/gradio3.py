"""A stand-in for a Gradio 3 app: ``GET /config`` without a ``protocol`` key, the REST
route ``POST /run/<api_name>`` (``{"data": [...]}`` in, ``{"data": [...], "is_generating",
"duration", "average_duration"}`` out, ``500 {"error": ...}`` when the function raised) and
``GET /file=<path>`` for file outputs. Modern gradio_client cannot talk to such an app."""

from __future__ import annotations

import base64
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.fakes._server import FakeServer, png_bytes

REMOTE_ROOT = "/srv/gradio-app/tmp"


@dataclass
class FakeGradio3(FakeServer):
    choices: list[str] = field(default_factory=lambda: ["m1", "m2"])
    # "data_url" | "file" | "gallery" | "error" | "hidden_error" | "text"
    output: str = "data_url"
    folder: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="fake-gradio3-")))
    # Name files by a path that exists only on the app's machine, as for a remote app.
    remote: bool = False

    def build(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/config", self._config)
        app.router.add_post("/run/{api_name}", self._run)
        app.router.add_get("/file={path:.*}", self._file)
        return app

    def config(self) -> dict[str, Any]:
        return {
            "version": "3.50.2",
            "mode": "blocks",
            "dev_mode": False,
            "analytics_enabled": False,
            "components": [
                {"id": 1, "type": "textbox", "props": {"label": "prompt", "value": ""}},
                {"id": 2, "type": "dropdown",
                 "props": {"label": "model", "choices": self.choices, "value": None}},
                {"id": 3, "type": "image", "props": {"label": "output"}},
                {"id": 4, "type": "button", "props": {"value": "Run"}},
            ],
            "dependencies": [
                {"targets": [4], "trigger": "click", "inputs": [1, 2], "outputs": [3],
                 "backend_fn": True, "js": None, "queue": None, "api_name": "predict",
                 "scroll_to_output": False, "show_progress": "full", "every": None,
                 "batch": False, "max_batch_size": 4, "cancels": [], "types":
                     {"continuous": False, "generator": False},
                 "collects_event_data": False, "trigger_after": None,
                 "trigger_only_on_success": False},
            ],
            "enable_queue": False,
            "show_error": True,
            "is_space": False,
        }

    async def _config(self, _request: web.Request) -> web.Response:
        return web.json_response(self.config())

    async def _run(self, request: web.Request) -> web.Response:
        if request.match_info["api_name"] != "predict":
            return web.json_response({"detail": "Not Found"}, status=404)
        body = await request.json()
        data = body.get("data")
        if not isinstance(data, list) or len(data) != 2:
            return web.json_response({"error": "expected 2 inputs"}, status=500)
        prompt, model = data
        if model not in self.choices:
            return web.json_response(
                {"error": f"Value: {model} is not in the list of choices: {self.choices}"},
                status=500)
        image = png_bytes(24, 16, (10, 200, 10))
        if self.output == "error":
            return web.json_response({"error": "CUDA out of memory"}, status=500)
        if self.output == "hidden_error":
            return web.json_response({"error": None}, status=500)
        if self.output == "text":
            result: Any = f"no image for {prompt}"
        elif self.output == "data_url":
            result = "data:image/png;base64," + base64.b64encode(image).decode()
        else:
            path = self.folder / "out.png"
            path.write_bytes(image)
            name = f"{REMOTE_ROOT}/out.png" if self.remote else str(path)
            item = {"name": name, "data": None, "is_file": True, "orig_name": "out.png"}
            result = [[item, None]] if self.output == "gallery" else item
        return web.json_response({"data": [result], "is_generating": False,
                                  "duration": 0.01, "average_duration": 0.01})

    async def _file(self, request: web.Request) -> web.StreamResponse:
        path = Path(request.match_info["path"])
        if self.remote and str(path).startswith(REMOTE_ROOT + "/"):
            path = self.folder / path.name
        if not path.is_file() or not path.resolve().is_relative_to(self.folder.resolve()):
            return web.json_response({"detail": "File not allowed"}, status=403)
        return web.FileResponse(path)
