"""AUTOMATIC1111 / Forge through their ``/sdapi/v1`` HTTP API (the web UI started with --api)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import Any

from workerlib.engines._common import (
    CheckpointBackend,
    HttpStatusError,
    Progress,
    checked_url,
    decode_base64_image,
    expect,
    image_result,
    match_name,
)
from workerlib.engines.base import (
    CannotServe,
    EngineError,
    EngineResult,
    ProgressCallback,
)
from workerlib.engines.settings import A1111Settings
from workerlib.wire import ImageTask, Task

PROGRESS_POLL_SECS = 0.5
INTERRUPT_TIMEOUT_SECS = 5.0


class A1111Engine(CheckpointBackend):
    """Image jobs on the checkpoints model_map names that the web UI really has installed."""

    label = "AUTOMATIC1111"

    def __init__(
        self,
        settings: A1111Settings | None = None,
        *,
        model_map: Mapping[str, str] | None = None,
        poll_secs: float = PROGRESS_POLL_SECS,
    ) -> None:
        self.settings = settings or A1111Settings()
        url = checked_url(self.settings.url, "a1111.url", "the AUTOMATIC1111 web UI")
        super().__init__(url, timeout_secs=self.settings.timeout_secs, model_map=model_map)
        self._poll_secs = poll_secs
        # True from a job's start until it ends by itself: a job cut off by the worker
        # (timeout, shutdown) may still run in the web UI, and interrupt() must reach it.
        self._unfinished = False

    @property
    def name(self) -> str:
        return "a1111"

    async def _refresh_models(self) -> None:
        try:
            reply = await self.request_json("GET", "/sdapi/v1/sd-models",
                                            what="the checkpoint list")
        except HttpStatusError as exc:
            if exc.status == 404:
                raise EngineError(
                    f"{self.label} at {self.url} answers but its API is off: start the web UI "
                    "with --api"
                ) from None
            raise
        items = expect(reply, list, f"{self.label} sent a checkpoint list that is not a list")
        # Each name a checkpoint answers to, mapped to the title that selects it.
        names: dict[str, str] = {}
        for item in items:
            if not isinstance(item, dict) or not isinstance(item.get("title"), str):
                continue
            title = item["title"]
            for key in ("filename", "model_name", "title"):
                value = item.get(key)
                if isinstance(value, str) and value:
                    names.setdefault(value, title)
        found: dict[str, str] = {}
        for model_id, wanted in self._model_map.items():
            match = match_name(wanted, names)
            if match is not None:
                found[model_id] = names[match]
        self._checkpoints = found
        self._checked = True

    async def interrupt(self) -> None:
        if self._unfinished:
            await self.request("POST", "/sdapi/v1/interrupt", what="the interrupt",
                               timeout=INTERRUPT_TIMEOUT_SECS)

    async def generate(self, model: str, task: Task, progress: ProgressCallback) -> EngineResult:
        if not isinstance(task, ImageTask):
            raise CannotServe(self.name, task.kind, model)
        if not self._checked and model in self._model_map:
            await self._refresh_models()
        title = self._checkpoints.get(model)
        if title is None:
            raise CannotServe(self.name, task.kind, model)
        payload: dict[str, Any] = {
            "prompt": task.prompt,
            # The job's own negative prompt and CFG first (v2 offers), else the settings'.
            "negative_prompt": task.negative_prompt or self.settings.negative_prompt,
            "width": task.width,
            "height": task.height,
            "steps": task.steps,
            "seed": task.seed if task.seed is not None else -1,
            "cfg_scale": task.cfg_scale if task.cfg_scale is not None
            else self.settings.cfg_scale,
            "batch_size": 1,
            "n_iter": 1,
            "override_settings": {"sd_model_checkpoint": title},
            "override_settings_restore_afterwards": True,
            "send_images": True,
            "save_images": False,
        }
        if self.settings.sampler_name:
            payload["sampler_name"] = self.settings.sampler_name
        report = Progress(progress)
        report(0.0)
        self._unfinished = True
        cut_off = False
        poller = asyncio.create_task(self._poll_progress(report))
        try:
            reply = await self.request_json("POST", "/sdapi/v1/txt2img", what="the txt2img job",
                                            json_body=payload, timeout=None)
        except asyncio.CancelledError:
            # Dropping the request does not stop the web UI: tell it to stop.
            cut_off = True
            with contextlib.suppress(EngineError):
                await self.interrupt()
            raise
        finally:
            self._unfinished = cut_off
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller
        images = reply.get("images") if isinstance(reply, dict) else None
        if not isinstance(images, list) or not images:
            raise EngineError(f"{self.label} finished the job but sent no image")
        data = decode_base64_image(images[0], self.label)
        result = await image_result(data, task.ext, self.label)
        report(1.0)
        return result

    async def _poll_progress(self, report: Progress) -> None:
        while True:
            await asyncio.sleep(self._poll_secs)
            try:
                reply = await self.request_json(
                    "GET", "/sdapi/v1/progress", what="the progress",
                    params={"skip_current_image": "true"},
                )
            except EngineError:
                continue  # the job's own request reports a dead backend
            value = reply.get("progress") if isinstance(reply, dict) else None
            if isinstance(value, int | float) and not isinstance(value, bool):
                report(float(value))
