"""A local Gradio app: called through ``gradio_client``, or ``POST /run/<api_name>`` for
Gradio 3 apps, whose protocol the client no longer speaks."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import importlib
import importlib.util
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from workerlib.engines._common import (
    START_PROBE_SECS,
    HttpBackend,
    HttpStatusError,
    Progress,
    checked_url,
    decode_base64_image,
    describe_names,
    image_result,
)
from workerlib.engines.base import (
    CannotServe,
    EngineConfigError,
    EngineError,
    EngineResult,
    ProgressCallback,
)
from workerlib.engines.settings import GRADIO_ARGUMENTS, GradioSettings
from workerlib.wire import ImageTask, Task

DEFAULT_GRADIO_URL = "http://127.0.0.1:7860"
# Config protocols gradio_client speaks (Gradio 4 and later); older apps go the raw way.
CLIENT_PROTOCOLS = frozenset({"sse", "sse_v1", "sse_v2", "sse_v2.1", "sse_v3"})
STATUS_POLL_SECS = 0.1
_CLIENT_EXTRA = "pip install 'studio-worker[gradio]'"

Mode = Literal["client", "raw"]


def gradio_client_available() -> bool:
    return importlib.util.find_spec("gradio_client") is not None


def _choices(param: Any) -> list[str] | None:
    """The values a Dropdown/Radio input accepts, from /info or a Gradio 3 config."""
    if not isinstance(param, dict):
        return None
    schema = param.get("type")
    if isinstance(schema, dict) and isinstance(schema.get("enum"), list):
        return [str(v) for v in schema["enum"]]
    props = param.get("props")
    if isinstance(props, dict) and isinstance(props.get("choices"), list):
        values: list[str] = []
        for choice in props["choices"]:
            # Gradio 4+ configs store [label, value] pairs; Gradio 3 plain values.
            values.append(str(choice[-1]) if isinstance(choice, list) and choice else str(choice))
        return values
    return None


class GradioEngine(HttpBackend):
    """Image jobs through one endpoint of a Gradio app."""

    label = "the Gradio app"

    def __init__(
        self,
        url: str = DEFAULT_GRADIO_URL,
        *,
        settings: GradioSettings | None = None,
        model_map: Mapping[str, str] | None = None,
        poll_secs: float = STATUS_POLL_SECS,
    ) -> None:
        self.settings = settings or GradioSettings()
        base = checked_url(url, "gradio_endpoint_url", "the Gradio app")
        super().__init__(base, timeout_secs=self.settings.timeout_secs)
        api_name = self.settings.api_name.strip()
        if not api_name.strip("/"):
            raise EngineConfigError("config key 'gradio.api_name' must name an endpoint, "
                                    "like /predict", key="gradio.api_name")
        self.api_name = "/" + api_name.strip("/")
        self.arg_order = [a.strip().lower() for a in self.settings.arg_order]
        unknown = [a for a in self.arg_order if a not in GRADIO_ARGUMENTS]
        if unknown or "prompt" not in self.arg_order:
            raise EngineConfigError(
                "config key 'gradio.arg_order' must list 'prompt' and only these: "
                f"{', '.join(GRADIO_ARGUMENTS)} (got {', '.join(self.settings.arg_order)})",
                key="gradio.arg_order",
            )
        model_map = dict(model_map or {})
        # studio model id -> the name the app knows it by
        self._wanted: dict[str, str] = (
            {m: model_map.get(m, m) for m in self.settings.models}
            if self.settings.models else model_map
        )
        self._poll_secs = poll_secs
        self._models: dict[str, str] = {}
        self._mode: Mode | None = None
        self._api_prefix = ""
        self._client: Any = None
        self._job: Any = None
        self._interrupted = False
        self._download_dir: Path | None = None

    @property
    def name(self) -> str:
        return "gradio"

    def models_per_kind(self) -> dict[str, list[str]]:
        return {"image": sorted(self._models)} if self._models else {}

    async def start(self) -> None:
        self.session()
        # Best effort, so the models are known when the worker registers; check() reports
        # a backend that does not answer.
        with contextlib.suppress(EngineError, TimeoutError):
            await asyncio.wait_for(self._probe(), START_PROBE_SECS)

    async def close(self) -> None:
        await self._drop_client()
        if self._download_dir is not None:
            await asyncio.to_thread(shutil.rmtree, self._download_dir, True)
            self._download_dir = None
        await self.close_session()

    # -- probing -----------------------------------------------------------------------------

    async def check(self) -> str | None:
        try:
            await self._probe()
        except EngineError as exc:
            self._models = {}
            self._mode = None
            await self._drop_client()
            return str(exc)
        if not self._wanted:
            return ("the gradio engine has no models: list studio model ids in gradio.models "
                    "or model_map")
        if not self._models:
            return (f"{self.label} at {self.url} offers none of the configured models "
                    f"(looked for: {describe_names(self._wanted.values())})")
        return None

    async def _probe(self) -> None:
        """Find the app's protocol and endpoint, and the configured models it accepts."""
        config = await self.request_json("GET", "/config", what="its config")
        if not isinstance(config, dict):
            raise EngineError(f"{self.label} at {self.url} sent a config that is not an object")
        protocol = config.get("protocol")
        params: list[Any] | None
        if protocol in CLIENT_PROTOCOLS:
            if not gradio_client_available():
                raise EngineError(
                    f"{self.label} at {self.url} is a Gradio 4+ app; calling it needs the "
                    f"gradio_client package: {_CLIENT_EXTRA}"
                )
            prefix = config.get("api_prefix")
            self._api_prefix = "/" + prefix.strip("/") if isinstance(prefix, str) and \
                prefix.strip("/") else ""
            params = await self._client_params()
            mode: Mode = "client"
        else:
            params = self._raw_params(config)
            mode = "raw"
        choices = None
        if "model" in self.arg_order and params is not None:
            index = self.arg_order.index("model")
            if index < len(params):
                choices = _choices(params[index])
        self._models = {
            model_id: name for model_id, name in self._wanted.items()
            if choices is None or name in choices
        }
        self._mode = mode

    async def _client_params(self) -> list[Any]:
        info = await self.request_json("GET", f"{self._api_prefix}/info",
                                       what="its API description",
                                       params={"serialize": "False"})
        endpoints = info.get("named_endpoints") if isinstance(info, dict) else None
        if not isinstance(endpoints, dict):
            raise EngineError(f"{self.label} at {self.url} sent an API description without "
                              "named_endpoints")
        endpoint = endpoints.get(self.api_name)
        if not isinstance(endpoint, dict):
            raise self._no_endpoint(endpoints)
        params = endpoint.get("parameters")
        return params if isinstance(params, list) else []

    def _raw_params(self, config: Mapping[str, Any]) -> list[Any] | None:
        dependencies = config.get("dependencies")
        if not isinstance(dependencies, list):
            raise EngineError(f"{self.label} at {self.url} sent a config without dependencies")
        wanted = self.api_name.lstrip("/")
        for dependency in dependencies:
            if isinstance(dependency, dict) and dependency.get("api_name") == wanted:
                components = {
                    c.get("id"): c for c in config.get("components", []) if isinstance(c, dict)
                }
                inputs = dependency.get("inputs")
                if not isinstance(inputs, list):
                    return None
                return [components.get(i) for i in inputs]
        names = {
            "/" + d["api_name"] for d in dependencies
            if isinstance(d, dict) and isinstance(d.get("api_name"), str)
        }
        raise self._no_endpoint(names)

    def _no_endpoint(self, names: Any) -> EngineError:
        return EngineError(
            f"{self.label} at {self.url} has no endpoint {self.api_name} (it has: "
            f"{describe_names(str(n) for n in names)}); set gradio.api_name"
        )

    # -- jobs --------------------------------------------------------------------------------

    async def interrupt(self) -> None:
        job = self._job
        if job is not None:
            self._interrupted = True
            await asyncio.to_thread(job.cancel)

    async def generate(self, model: str, task: Task, progress: ProgressCallback) -> EngineResult:
        if not isinstance(task, ImageTask):
            raise CannotServe(self.name, task.kind, model)
        if self._mode is None and model in self._wanted:
            await self._probe()
        app_model = self._models.get(model)
        if app_model is None:
            raise CannotServe(self.name, task.kind, model)
        values: dict[str, Any] = {
            "prompt": task.prompt,
            "model": app_model,
            "width": task.width,
            "height": task.height,
            "steps": task.steps,
            "seed": task.seed if task.seed is not None else -1,
            # For apps whose function takes them (named in gradio.arg_order).
            "negative_prompt": task.negative_prompt or "",
            "cfg_scale": task.cfg_scale if task.cfg_scale is not None else 7.0,
        }
        args = [values[name] for name in self.arg_order]
        report = Progress(progress)
        report(0.0)
        if self._mode == "client":
            output = await self._call_client(args, report)
        else:
            output = await self._call_raw(args)
        data = await self._find_image(output)
        if data is None:
            raise EngineError(f"{self.label} answered {self.api_name} without an image")
        result = await image_result(data, task.ext, self.label)
        report(1.0)
        return result

    async def _call_raw(self, args: Sequence[Any]) -> Any:
        try:
            reply = await self.request_json("POST", f"/run{self.api_name}", what="the job",
                                            json_body={"data": list(args)}, timeout=None)
        except HttpStatusError as exc:
            reason = f": {exc.reason}" if exc.reason else ""
            raise EngineError(f"{self.label} failed the job (HTTP {exc.status}){reason}",
                              retryable=exc.retryable) from None
        if not isinstance(reply, dict) or not isinstance(reply.get("data"), list):
            error = reply.get("error") if isinstance(reply, dict) else None
            raise EngineError(f"{self.label} failed the job: {error}" if error else
                              f"{self.label} answered the job without data")
        return reply["data"]

    def _new_client(self) -> Any:
        # Keep the client from phoning home (it checks the variable at every start).
        os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
        os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
        gradio_client = importlib.import_module("gradio_client")
        httpx = importlib.import_module("httpx")
        if self._download_dir is None:
            self._download_dir = Path(tempfile.mkdtemp(prefix="studio-worker-gradio-"))
        return gradio_client.Client(
            self.url + "/",
            verbose=False,
            download_files=str(self._download_dir),
            analytics_enabled=False,
            # A job may stream for as long as it runs: only connecting is bounded.
            httpx_kwargs={"timeout": httpx.Timeout(self.settings.timeout_secs, read=None)},
        )

    async def _drop_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                await asyncio.to_thread(client.close)
            except Exception:  # a client that died with its app may fail to close
                pass

    async def _call_client(self, args: Sequence[Any], report: Progress) -> Any:
        try:
            if self._client is None:
                self._client = await asyncio.to_thread(self._new_client)
            job = await asyncio.to_thread(self._client.submit, *args, api_name=self.api_name)
        except Exception as exc:
            await self._drop_client()
            raise self._client_error(exc) from None
        # Kept until the job ends by itself: a job cut off by the worker (timeout, shutdown)
        # may still run in the app, and interrupt() must reach it.
        self._job = job
        self._interrupted = False
        try:
            while not job.done():
                report(_fraction(job.status()))
                await asyncio.sleep(self._poll_secs)
        except asyncio.CancelledError:
            await asyncio.to_thread(job.cancel)
            raise
        self._job = None
        try:
            return job.result()
        except Exception as exc:
            # A cancelled job ends in assorted errors (CancelledError, a reply without data).
            if self._interrupted or isinstance(exc, concurrent.futures.CancelledError):
                raise EngineError(f"{self.label} job was interrupted") from None
            error = self._client_error(exc)
            if error.retryable:
                await self._drop_client()
            raise error from None

    def _client_error(self, exc: Exception) -> EngineError:
        httpx = importlib.import_module("httpx")
        if isinstance(exc, httpx.TransportError | OSError):
            return self.down(exc)
        if type(exc).__name__ == "AppError":
            return EngineError(f"{self.label} failed the job: {exc}", retryable=True)
        return EngineError(f"{self.label} call failed: {type(exc).__name__}: {exc}")

    # -- results -----------------------------------------------------------------------------

    async def _find_image(self, value: Any, depth: int = 0) -> bytes | None:
        """The bytes of the first image in an output, whatever shape Gradio gave it."""
        if depth > 4 or value is None:
            return None
        if isinstance(value, str):
            return await self._from_string(value)
        if isinstance(value, dict):
            data = value.get("data")
            if isinstance(data, str) and data.startswith("data:"):
                return decode_base64_image(data, self.label)
            path = value.get("path") or value.get("name")
            if isinstance(path, str) and await asyncio.to_thread(os.path.isfile, path):
                return await self._read_local(path)
            url = value.get("url")
            if isinstance(url, str) and url:
                return await self._from_string(url)
            if isinstance(path, str) and path:
                return await self._download(f"{self._api_prefix}/file={path}")
            for key in ("image", "value"):
                found = await self._find_image(value.get(key), depth + 1)
                if found is not None:
                    return found
            return None
        if isinstance(value, list | tuple):
            for item in value:
                found = await self._find_image(item, depth + 1)
                if found is not None:
                    return found
        return None

    async def _from_string(self, text: str) -> bytes | None:
        text = text.strip()
        if text.startswith("data:"):
            return decode_base64_image(text, self.label)
        if text.startswith(("http://", "https://")):
            return await self._download(text)
        relative = text.lstrip("/")
        if relative.startswith("file="):
            return await self._download(f"{self._api_prefix}/{relative}")
        if relative.startswith("gradio_api/file="):
            return await self._download(f"/{relative}")
        if await asyncio.to_thread(os.path.isfile, text):
            return await self._read_local(text)
        if text.startswith("/"):
            return await self._download(f"{self._api_prefix}/file={text}")
        return None  # plain text, like a caption

    async def _download(self, path: str) -> bytes:
        try:
            return await self.request("GET", path, what="the image download")
        except HttpStatusError as exc:
            raise EngineError(f"{self.label} could not hand over its image: {exc}") from None

    async def _read_local(self, path: str) -> bytes:
        file = Path(path)
        data = await asyncio.to_thread(file.read_bytes)
        if self._download_dir is not None:
            await asyncio.to_thread(_forget_download, file, self._download_dir)
        return data


def _forget_download(file: Path, download_dir: Path) -> None:
    """Delete a file the client downloaded for us (in its own folder), so none pile up."""
    top = download_dir.resolve()
    parent = file.resolve().parent
    if parent == top:
        file.unlink(missing_ok=True)
    elif parent.is_relative_to(top):
        shutil.rmtree(parent, ignore_errors=True)


def _fraction(status: Any) -> float:
    units = getattr(status, "progress_data", None)
    if not units:
        return 0.0
    unit = units[0]
    value = getattr(unit, "progress", None)
    if isinstance(value, int | float):
        return float(value)
    index, length = getattr(unit, "index", None), getattr(unit, "length", None)
    if isinstance(index, int) and isinstance(length, int) and length > 0:
        return index / length
    return 0.0
