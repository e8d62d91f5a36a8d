"""ComfyUI: an API-format workflow with placeholders, followed on its WebSocket."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import re
import secrets
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import aiohttp

from workerlib.engines._common import (
    CheckpointBackend,
    HttpStatusError,
    Progress,
    checked_url,
    expect,
    image_result,
    match_name,
)
from workerlib.engines.base import (
    CannotServe,
    EngineConfigError,
    EngineError,
    EngineResult,
    ProgressCallback,
)
from workerlib.engines.settings import ComfyUISettings
from workerlib.files import read_bounded
from workerlib.wire import ImageTask, Task

PLACEHOLDERS: tuple[str, ...] = (
    "prompt", "negative_prompt", "width", "height", "steps", "seed", "checkpoint", "cfg",
)
REQUIRED_PLACEHOLDERS: tuple[str, ...] = ("prompt", "checkpoint")
_PLACEHOLDER = re.compile(r"\{\{\s*([a-z_]+)\s*\}\}")

# CheckpointLoaderSimple → CLIPTextEncode ×2 → EmptyLatentImage → KSampler → VAEDecode →
# SaveImage, in ComfyUI's API format (what "Save (API Format)" writes).
DEFAULT_WORKFLOW: dict[str, Any] = {
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "{{checkpoint}}"}},
    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "{{prompt}}", "clip": ["4", 1]}},
    "7": {"class_type": "CLIPTextEncode",
          "inputs": {"text": "{{negative_prompt}}", "clip": ["4", 1]}},
    "5": {"class_type": "EmptyLatentImage",
          "inputs": {"width": "{{width}}", "height": "{{height}}", "batch_size": 1}},
    "3": {"class_type": "KSampler", "inputs": {
        "seed": "{{seed}}", "steps": "{{steps}}", "cfg": "{{cfg}}", "sampler_name": "euler",
        "scheduler": "normal", "denoise": 1.0, "model": ["4", 0], "positive": ["6", 0],
        "negative": ["7", 0], "latent_image": ["5", 0]}},
    "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
    "9": {"class_type": "SaveImage",
          "inputs": {"filename_prefix": "studio-worker", "images": ["8", 0]}},
}

_HISTORY_POLL_SECS = 0.5
INTERRUPT_TIMEOUT_SECS = 5.0
# KSampler takes seeds up to 2**64 - 1; 2**32 keeps them readable and portable.
_SEED_RANGE = 2**32


def _placeholders_in(value: Any) -> set[str]:
    if isinstance(value, str):
        return set(_PLACEHOLDER.findall(value))
    if isinstance(value, dict):
        return set().union(*(_placeholders_in(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(_placeholders_in(v) for v in value))
    return set()


def _braced(names: Iterable[str]) -> str:
    return ", ".join("{{" + name + "}}" for name in names)


def validate_workflow(workflow: Any, where: str) -> dict[str, Any]:
    """An API-format workflow with the placeholders the engine needs, or EngineConfigError."""
    key = "comfyui.workflow_file"
    if isinstance(workflow, dict) and "nodes" in workflow and "links" in workflow:
        raise EngineConfigError(
            f"{where} is a ComfyUI UI workflow; export it with 'Save (API Format)' "
            f"(config key '{key}')",
            key=key,
        )
    if not isinstance(workflow, dict) or not workflow or not all(
        isinstance(node, dict) and isinstance(node.get("class_type"), str)
        and isinstance(node.get("inputs"), dict)
        for node in workflow.values()
    ):
        raise EngineConfigError(
            f"{where} is not an API-format ComfyUI workflow (an object of nodes, each with "
            f"class_type and inputs) (config key '{key}')",
            key=key,
        )
    found = _placeholders_in(workflow)
    unknown = sorted(found - set(PLACEHOLDERS))
    if unknown:
        raise EngineConfigError(
            f"{where} uses unknown placeholders {_braced(unknown)}; "
            f"known: {_braced(PLACEHOLDERS)} (config key '{key}')",
            key=key,
        )
    missing = [p for p in REQUIRED_PLACEHOLDERS if p not in found]
    if missing:
        raise EngineConfigError(
            f"{where} lacks the placeholder(s) {_braced(missing)} "
            f"(config key '{key}')",
            key=key,
        )
    return workflow


MAX_WORKFLOW_BYTES = 8 * 1024 * 1024
"""An API-format workflow is tens of KB; the file the config points at is capped."""


def load_workflow(path: str) -> dict[str, Any]:
    """Read ``[comfyui].workflow_file``; EngineConfigError naming the key on any problem."""
    key = "comfyui.workflow_file"
    file = Path(path).expanduser()
    try:
        text = read_bounded(file, MAX_WORKFLOW_BYTES).decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise EngineConfigError(
            f"the ComfyUI workflow {file} cannot be read ({reason}) (config key '{key}')",
            key=key,
        ) from None
    try:
        workflow = json.loads(text)
    except ValueError as exc:
        raise EngineConfigError(
            f"the ComfyUI workflow {file} is not valid JSON ({exc}) (config key '{key}')",
            key=key,
        ) from None
    return validate_workflow(workflow, f"the ComfyUI workflow {file}")


def fill_workflow(workflow: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """A copy with each placeholder filled: a string that is exactly one placeholder takes
    the value as is (a number stays a number); one inside longer text is replaced by text."""

    def fill(value: Any) -> Any:
        if isinstance(value, str):
            whole = _PLACEHOLDER.fullmatch(value.strip())
            if whole is not None:
                return values[whole.group(1)]
            return _PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), value)
        if isinstance(value, dict):
            return {k: fill(v) for k, v in value.items()}
        if isinstance(value, list):
            return [fill(v) for v in value]
        return value

    return {node_id: fill(node) for node_id, node in copy.deepcopy(dict(workflow)).items()}


def checkpoint_names(reply: Any) -> list[str] | None:
    """``ckpt_name`` choices from ``/object_info/CheckpointLoaderSimple``; None if absent."""
    try:
        spec = reply["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"]
    except (KeyError, TypeError):
        return None
    if not isinstance(spec, list) or not spec:
        return None
    first = spec[0]
    if isinstance(first, list):
        return [name for name in first if isinstance(name, str)]
    # Newer ComfyUI: ["COMBO", {"options": [...]}]
    if first == "COMBO" and len(spec) > 1 and isinstance(spec[1], dict):
        options = spec[1].get("options")
        if isinstance(options, list):
            return [name for name in options if isinstance(name, str)]
    return None


class ComfyUIEngine(CheckpointBackend):
    """Image jobs on the checkpoints model_map names that ComfyUI really has."""

    label = "ComfyUI"

    def __init__(
        self,
        settings: ComfyUISettings | None = None,
        *,
        model_map: Mapping[str, str] | None = None,
        workflow: Mapping[str, Any] | None = None,
    ) -> None:
        self.settings = settings or ComfyUISettings()
        url = checked_url(self.settings.url, "comfyui.url", "ComfyUI")
        super().__init__(url, timeout_secs=self.settings.timeout_secs, model_map=model_map)
        if workflow is not None:
            self.workflow = validate_workflow(dict(workflow), "the ComfyUI workflow")
        elif self.settings.workflow_file.strip():
            self.workflow = load_workflow(self.settings.workflow_file.strip())
        else:
            self.workflow = DEFAULT_WORKFLOW
        self._prompt_id: str | None = None

    @property
    def name(self) -> str:
        return "comfyui"

    async def _refresh_models(self) -> None:
        reply = await self.request_json("GET", "/object_info/CheckpointLoaderSimple",
                                        what="the checkpoint list")
        installed = checkpoint_names(reply)
        if installed is None:
            raise EngineError(
                f"{self.label} at {self.url} has no CheckpointLoaderSimple node to list "
                "checkpoints with"
            )
        found: dict[str, str] = {}
        for model_id, wanted in self._model_map.items():
            match = match_name(wanted, installed)
            if match is not None:
                found[model_id] = match
        self._checkpoints = found
        self._checked = True

    async def interrupt(self) -> None:
        prompt_id = self._prompt_id
        if prompt_id is None:
            return
        # A job still waiting in the queue is not stopped by /interrupt: take it out too.
        await self.request("POST", "/queue", what="the queue removal",
                           json_body={"delete": [prompt_id]}, timeout=INTERRUPT_TIMEOUT_SECS)
        # Newer ComfyUI stops only this prompt; older ones whatever runs, which is ours.
        await self.request("POST", "/interrupt", what="the interrupt",
                           json_body={"prompt_id": prompt_id}, timeout=INTERRUPT_TIMEOUT_SECS)

    async def generate(self, model: str, task: Task, progress: ProgressCallback) -> EngineResult:
        if not isinstance(task, ImageTask):
            raise CannotServe(self.name, task.kind, model)
        if not self._checked and model in self._model_map:
            await self._refresh_models()
        checkpoint = self._checkpoints.get(model)
        if checkpoint is None:
            raise CannotServe(self.name, task.kind, model)
        seed = task.seed if task.seed is not None else secrets.randbelow(_SEED_RANGE)
        workflow = fill_workflow(self.workflow, {
            "prompt": task.prompt,
            # The job's own negative prompt and CFG first (v2 offers), else the settings'.
            "negative_prompt": task.negative_prompt or self.settings.negative_prompt,
            "width": task.width,
            "height": task.height,
            "steps": task.steps,
            "seed": seed,
            "checkpoint": checkpoint,
            "cfg": task.cfg_scale if task.cfg_scale is not None else self.settings.cfg_scale,
        })
        report = Progress(progress)
        report(0.0)
        client_id = uuid.uuid4().hex
        self._prompt_id = None
        ws = await self._connect_ws(client_id)
        try:
            reply = await self.request_json(
                "POST", "/prompt", what="the workflow",
                json_body={"prompt": workflow, "client_id": client_id},
            )
            prompt_id = reply.get("prompt_id") if isinstance(reply, dict) else None
            if not isinstance(prompt_id, str) or not prompt_id:
                raise EngineError(f"{self.label} accepted the workflow but sent no prompt_id")
            # Kept until the prompt ends by itself: a job cut off by the worker (timeout,
            # shutdown) still runs in ComfyUI, and interrupt() must reach it.
            self._prompt_id = prompt_id
            if ws is not None:
                await self._follow(ws, prompt_id, report)
            entry = await self._history(prompt_id)
            self._prompt_id = None
        except asyncio.CancelledError:
            with contextlib.suppress(EngineError):
                await self.interrupt()
            raise
        except EngineError:
            self._prompt_id = None
            raise
        finally:
            if ws is not None:
                await ws.close()
        data = await self._fetch_output(entry)
        result = await image_result(data, task.ext, self.label)
        report(1.0)
        return result

    def bad_status(self, what: str, status: int, body: bytes) -> HttpStatusError:
        reason = _prompt_error(body) if what == "the workflow" and status == 400 else ""
        if reason:
            return HttpStatusError(f"{self.label} refused the workflow: {reason}",
                                   status=status, reason=reason, retryable=False)
        return super().bad_status(what, status, body)

    async def _connect_ws(self, client_id: str) -> aiohttp.ClientWebSocketResponse | None:
        """The progress socket; None when it cannot be opened (history polling then)."""
        ws_url = "ws" + self.url[len("http"):] + "/ws"
        try:
            return await self.session().ws_connect(
                ws_url, params={"clientId": client_id}, heartbeat=30.0
            )
        except (aiohttp.ClientConnectionError, OSError) as exc:
            raise self.down(exc) from None
        except aiohttp.ClientError:
            return None

    async def _follow(self, ws: aiohttp.ClientWebSocketResponse, prompt_id: str,
                      report: Progress) -> None:
        """Read the socket until our prompt finished; EngineError when it failed."""
        async for message in ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                continue  # binary frames are previews
            try:
                event = json.loads(message.data)
            except ValueError:
                continue
            if not isinstance(event, dict) or not isinstance(event.get("data"), dict):
                continue
            kind, data = event.get("type"), event["data"]
            # Old ComfyUI sends progress without a prompt_id; only our client gets them.
            if data.get("prompt_id", prompt_id) != prompt_id:
                continue
            if kind == "progress":
                value, top = data.get("value"), data.get("max")
                if isinstance(value, int | float) and isinstance(top, int | float) and top > 0:
                    # Leave the last bit for decoding and fetching the image.
                    report(0.95 * value / top)
            elif kind == "execution_success" or (
                    kind == "executing" and data.get("node") is None and "prompt_id" in data):
                return
            elif kind == "execution_error":
                raise EngineError(_execution_error(data))
            elif kind == "execution_interrupted":
                raise EngineError(f"{self.label} interrupted the job "
                                  f"(in node {data.get('node_id')} {data.get('node_type')})")
        # The socket closed early: the history says how the prompt ended.

    async def _history(self, prompt_id: str) -> dict[str, Any]:
        """The prompt's history entry once it completed (polled: the socket may be gone)."""
        while True:
            reply = await self.request_json("GET", f"/history/{prompt_id}", what="the history")
            entry = reply.get(prompt_id) if isinstance(reply, dict) else None
            if isinstance(entry, dict):
                status = entry.get("status")
                if isinstance(status, dict) and status.get("status_str") == "error":
                    raise EngineError(_history_error(status))
                if not isinstance(status, dict) or status.get("completed", True):
                    return entry
            await asyncio.sleep(_HISTORY_POLL_SECS)

    async def _fetch_output(self, entry: Mapping[str, Any]) -> bytes:
        outputs = expect(entry.get("outputs"), dict,
                         f"{self.label} sent a history entry without outputs")
        files: list[dict[str, Any]] = []
        for node_output in outputs.values():
            if isinstance(node_output, dict) and isinstance(node_output.get("images"), list):
                files += [f for f in node_output["images"]
                          if isinstance(f, dict) and isinstance(f.get("filename"), str)]
        if not files:
            raise EngineError(f"{self.label} finished the workflow but it saved no image "
                              "(it needs a SaveImage node)")
        # Saved images before previews.
        files.sort(key=lambda f: f.get("type") != "output")
        chosen = files[0]
        params = {
            "filename": chosen["filename"],
            "subfolder": str(chosen.get("subfolder") or ""),
            "type": str(chosen.get("type") or "output"),
        }
        return await self.request("GET", "/view", what="the image download", params=params)


def _prompt_error(body: bytes) -> str:
    """ComfyUI's reason for refusing a workflow: the error and the first node errors."""
    try:
        reply = json.loads(body)
    except ValueError:
        return ""
    if not isinstance(reply, dict):
        return ""
    error = reply.get("error")
    parts: list[str] = []
    if isinstance(error, dict):
        parts.append(str(error.get("message") or error.get("type") or ""))
        if error.get("details"):
            parts.append(str(error["details"]))
    elif isinstance(error, str):
        parts.append(error)
    node_errors = reply.get("node_errors")
    if isinstance(node_errors, dict):
        for node_id, info in list(node_errors.items())[:3]:
            if not isinstance(info, dict):
                continue
            for item in info.get("errors", [])[:2]:
                if isinstance(item, dict):
                    detail = item.get("details") or item.get("message")
                    parts.append(f"node {node_id} ({info.get('class_type', '?')}): {detail}")
    return "; ".join(p for p in parts if p)


def _execution_error(data: Mapping[str, Any]) -> str:
    where = f"node {data.get('node_id')} ({data.get('node_type')})"
    kind = data.get("exception_type") or "error"
    message = str(data.get("exception_message") or "").strip()
    return f"ComfyUI failed in {where}: {kind}: {message}"


def _history_error(status: Mapping[str, Any]) -> str:
    messages = status.get("messages")
    if isinstance(messages, list):
        for item in messages:
            if (isinstance(item, list) and len(item) == 2 and item[0] == "execution_error"
                    and isinstance(item[1], dict)):
                return _execution_error(item[1])
    return "ComfyUI reports that the job failed"
