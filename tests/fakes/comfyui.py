"""A stand-in for ComfyUI's server (server.py, execution.py).

It validates workflows the way ``POST /prompt`` does (400 with ``error`` and
``node_errors``), runs them in the background and reports on ``/ws?clientId=`` with the
real message types (status, execution_start, execution_cached, executing, progress,
executed, execution_success / execution_error / execution_interrupted, and a final
``executing`` with node null), keeps ``/history/{prompt_id}`` entries and serves the saved
image from ``/view``.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from tests.fakes._server import FakeServer, png_bytes

NODE_TYPES = {"CheckpointLoaderSimple", "CLIPTextEncode", "EmptyLatentImage", "KSampler",
              "VAEDecode", "SaveImage", "PreviewImage"}
INT_INPUTS = {("KSampler", "seed"), ("KSampler", "steps"), ("EmptyLatentImage", "width"),
              ("EmptyLatentImage", "height"), ("EmptyLatentImage", "batch_size")}


@dataclass
class FakeComfyUI(FakeServer):
    checkpoints: list[str] = field(default_factory=list)
    combo_format: bool = False  # newer ComfyUI: ["COMBO", {"options": [...]}]
    # "ok" | "error" | "no_output" | "close_ws"
    run_mode: str = "ok"
    step_secs: float = 0.02
    prompt_status: int = 200  # anything else: the reply aiohttp gives a crashed handler
    interrupted: bool = False
    deleted: list[str] = field(default_factory=list)
    history: dict[str, Any] = field(default_factory=dict)
    files: dict[tuple[str, str, str], bytes] = field(default_factory=dict)
    sockets: dict[str, web.WebSocketResponse] = field(default_factory=dict)
    _number: int = 0
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def build(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/ws", self._ws)
        app.router.add_get("/object_info/{node_class}", self._object_info)
        app.router.add_post("/prompt", self._prompt)
        app.router.add_get("/history/{prompt_id}", self._history)
        app.router.add_get("/view", self._view)
        app.router.add_post("/interrupt", self._interrupt)
        app.router.add_post("/queue", self._queue)
        return app

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for ws in list(self.sockets.values()):
            await ws.close()
        await super().stop()

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        sid = request.query.get("clientId", "") or uuid.uuid4().hex
        self.sockets[sid] = ws
        try:
            await ws.send_json({"type": "status", "data": {
                "status": {"exec_info": {"queue_remaining": 0}}, "sid": sid}})
            async for msg in ws:
                if msg.type == WSMsgType.ERROR:
                    break
        finally:
            self.sockets.pop(sid, None)
        return ws

    async def _send(self, sid: str | None, kind: str, data: dict[str, Any]) -> None:
        ws = self.sockets.get(sid or "")
        if ws is not None and not ws.closed:
            await ws.send_json({"type": kind, "data": data})

    async def _object_info(self, request: web.Request) -> web.Response:
        node = request.match_info["node_class"]
        if node != "CheckpointLoaderSimple":
            return web.json_response({})
        tooltip = {"tooltip": "The name of the checkpoint (model) to load."}
        spec: list[Any] = (["COMBO", {**tooltip, "options": self.checkpoints}]
                           if self.combo_format else [self.checkpoints, tooltip])
        return web.json_response({node: {
            "input": {"required": {"ckpt_name": spec}},
            "input_order": {"required": ["ckpt_name"]},
            "output": ["MODEL", "CLIP", "VAE"],
            "output_is_list": [False, False, False],
            "output_name": ["MODEL", "CLIP", "VAE"],
            "name": node, "display_name": "Load Checkpoint",
            "description": "Loads a diffusion model checkpoint.",
            "python_module": "nodes", "category": "loaders", "output_node": False,
        }})

    @staticmethod
    def _bad(error_type: str, message: str, details: str = "",
             node_errors: dict[str, Any] | None = None) -> web.Response:
        return web.json_response({
            "error": {"type": error_type, "message": message, "details": details,
                      "extra_info": {}},
            "node_errors": node_errors or {},
        }, status=400)

    async def _prompt(self, request: web.Request) -> web.Response:
        if self.prompt_status != 200:
            return web.Response(status=self.prompt_status,
                                text="500 Internal Server Error\n\nServer got itself in trouble",
                                content_type="text/plain")
        body = await request.json()
        prompt = body.get("prompt") if isinstance(body, dict) else None
        if not isinstance(prompt, dict):
            return self._bad("no_prompt", "No prompt provided", "No prompt provided")
        for node_id, node in prompt.items():
            class_type = node.get("class_type") if isinstance(node, dict) else None
            if class_type not in NODE_TYPES:
                return self._bad("invalid_prompt",
                                 f"Cannot execute because node {class_type} does not exist.",
                                 f"Node ID '#{node_id}'")
        node_errors: dict[str, Any] = {}
        for node_id, node in prompt.items():
            errors = []
            for name, value in node["inputs"].items():
                if (node["class_type"], name) in INT_INPUTS and not isinstance(value, int):
                    errors.append({"type": "invalid_input_type",
                                   "message": "Failed to convert an input value to a INT value",
                                   "details": f"{name}, {value}, invalid literal",
                                   "extra_info": {"input_name": name}})
            if node["class_type"] == "CheckpointLoaderSimple":
                name = node["inputs"].get("ckpt_name")
                if name not in self.checkpoints:
                    errors.append({"type": "value_not_in_list", "message": "Value not in list",
                                   "details": f"ckpt_name: '{name}' not in {self.checkpoints}",
                                   "extra_info": {"input_name": "ckpt_name"}})
            if errors:
                node_errors[node_id] = {"errors": errors, "dependent_outputs": ["9"],
                                        "class_type": node["class_type"]}
        if node_errors:
            return self._bad("prompt_outputs_failed_validation",
                             "Prompt outputs failed validation", "", node_errors)
        prompt_id = str(uuid.uuid4())
        self._number += 1
        client_id = body.get("client_id")
        task = asyncio.create_task(self._execute(prompt_id, prompt, client_id, self._number))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return web.json_response({"prompt_id": prompt_id, "number": self._number,
                                  "node_errors": {}})

    async def _execute(self, prompt_id: str, prompt: dict[str, Any], sid: str | None,
                       number: int) -> None:
        stamp = int(time.time() * 1000)
        messages: list[list[Any]] = [["execution_start", {"prompt_id": prompt_id,
                                                          "timestamp": stamp}]]
        await self._send(sid, "execution_start", {"prompt_id": prompt_id, "timestamp": stamp})
        await self._send(sid, "execution_cached", {"nodes": [], "prompt_id": prompt_id,
                                                   "timestamp": stamp})
        sampler_id = next(k for k, n in prompt.items() if n["class_type"] == "KSampler")
        latent = next(n for n in prompt.values() if n["class_type"] == "EmptyLatentImage")
        steps = prompt[sampler_id]["inputs"]["steps"]
        outputs: dict[str, Any] = {}
        status = "success"
        executed: list[str] = []
        for node_id, node in prompt.items():
            await self._send(sid, "executing", {"node": node_id, "display_node": node_id,
                                                "prompt_id": prompt_id})
            if node_id == sampler_id:
                for step in range(1, steps + 1):
                    await asyncio.sleep(self.step_secs)
                    if self.interrupted:
                        data = {"prompt_id": prompt_id, "node_id": node_id,
                                "node_type": "KSampler", "executed": executed,
                                "timestamp": stamp}
                        await self._send(sid, "execution_interrupted", data)
                        messages.append(["execution_interrupted", data])
                        status = "error"
                        break
                    await self._send(sid, "progress", {"value": step, "max": steps,
                                                       "prompt_id": prompt_id, "node": node_id})
                    if self.run_mode == "close_ws" and step == 1:
                        ws = self.sockets.get(sid or "")
                        if ws is not None:
                            await ws.close()
                if status == "error":
                    break
                if self.run_mode == "error":
                    data = {"prompt_id": prompt_id, "node_id": node_id,
                            "node_type": "KSampler", "executed": executed,
                            "exception_message": "Allocation on device would exceed allowed "
                                                 "memory. (out of memory)",
                            "exception_type": "torch.OutOfMemoryError",
                            "traceback": ["Traceback (most recent call last):\n"],
                            "current_inputs": {}, "current_outputs": {}, "timestamp": stamp}
                    await self._send(sid, "execution_error", data)
                    messages.append(["execution_error", data])
                    status = "error"
                    break
            if node["class_type"] in ("SaveImage", "PreviewImage") and \
                    self.run_mode != "no_output":
                kind = "output" if node["class_type"] == "SaveImage" else "temp"
                name = f"{node['inputs'].get('filename_prefix', 'ComfyUI')}_{number:05d}_.png"
                self.files[(name, "", kind)] = png_bytes(latent["inputs"]["width"],
                                                         latent["inputs"]["height"])
                ui = {"images": [{"filename": name, "subfolder": "", "type": kind}]}
                outputs[node_id] = ui
                await self._send(sid, "executed", {"node": node_id, "display_node": node_id,
                                                   "output": ui, "prompt_id": prompt_id})
            executed.append(node_id)
        if status == "success":
            messages.append(["execution_success", {"prompt_id": prompt_id,
                                                   "timestamp": stamp}])
            await self._send(sid, "execution_success", {"prompt_id": prompt_id,
                                                        "timestamp": stamp})
        self.history[prompt_id] = {
            "prompt": [number, prompt_id, prompt, {"client_id": sid}, ["9"]],
            "outputs": outputs,
            "status": {"status_str": status, "completed": status == "success",
                       "messages": messages},
            "meta": {k: {"node_id": k, "display_node": k, "parent_node": None,
                         "real_node_id": k} for k in outputs},
        }
        await self._send(sid, "executing", {"node": None, "prompt_id": prompt_id})

    async def _history(self, request: web.Request) -> web.Response:
        prompt_id = request.match_info["prompt_id"]
        entry = self.history.get(prompt_id)
        return web.json_response({prompt_id: entry} if entry is not None else {})

    async def _view(self, request: web.Request) -> web.Response:
        filename = request.query.get("filename")
        if filename is None:
            return web.Response(status=404)
        if filename.startswith("/") or ".." in filename:
            return web.Response(status=400)
        kind = request.query.get("type", "output")
        if kind not in ("output", "input", "temp"):
            return web.Response(status=400)
        data = self.files.get((filename, request.query.get("subfolder", ""), kind))
        if data is None:
            return web.Response(status=404)
        return web.Response(body=data, content_type="image/png",
                            headers={"Content-Disposition": f'filename="{filename}"'})

    async def _interrupt(self, _request: web.Request) -> web.Response:
        self.interrupted = True
        return web.Response(status=200)

    async def _queue(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.deleted += list(body.get("delete", []))
        return web.Response(status=200)
