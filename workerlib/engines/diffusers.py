"""Local diffusers text-to-image pipelines, one folder per model under ``models_root``.

torch and diffusers are imported only when a job runs, or in the background at start
when there is a single pipeline to preload (the ``diffusers`` extra), so the worker
starts and runs other engines without them. Nothing is ever downloaded.

The pipeline runs on one thread of the engine's own, so the event loop's thread stays
free, and stays quiet: step progress is reported at most ``PROGRESS_INTERVAL_SECS``
apart, not on every step (each report wakes the loop and takes the GIL from the
pipeline). Opt-in speed-ups (``compile``, ``channels_last``, ``fuse_qkv``) are applied
when a pipeline loads; the defaults are the safe ones.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import gc
import importlib
import importlib.util
import inspect
import os
import secrets
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from workerlib.engines._common import Progress, describe_names, save_image
from workerlib.engines.base import (
    CannotServe,
    DeferredResult,
    EngineConfigError,
    EngineError,
    EngineResult,
    ProgressCallback,
)
from workerlib.engines.settings import DiffusersSettings
from workerlib.wire import ImageTask, Task

EXTRA_HINT = "pip install 'studio-worker[diffusers]'"
PIPELINE_MARKER = "model_index.json"
DEVICES = ("auto", "cpu", "cuda", "mps")
DTYPES = ("auto", "float16", "bfloat16", "float32")
_SEED_RANGE = 2**32
PROGRESS_INTERVAL_SECS = 0.25
"""Step progress at most 4 times a second: what a person can see, and no more hops."""
WARM_UP_STEPS = 1


class _Interrupted(Exception):
    """Raised inside the pipeline's step callback to stop a job between two steps."""


def dependencies_missing() -> list[str]:
    return [name for name in ("torch", "diffusers") if importlib.util.find_spec(name) is None]


def is_pipeline(folder: Path) -> bool:
    return (folder / PIPELINE_MARKER).is_file()


def check_settings(settings: DiffusersSettings) -> None:
    device = settings.device.strip().lower()
    if device not in DEVICES and not (device.startswith("cuda:") and device[5:].isdigit()):
        raise EngineConfigError(
            f"config key 'diffusers.device' must be one of {', '.join(DEVICES)} or cuda:N "
            f"(got {settings.device!r})",
            key="diffusers.device",
        )
    if settings.dtype.strip().lower() not in DTYPES:
        raise EngineConfigError(
            f"config key 'diffusers.dtype' must be one of {', '.join(DTYPES)} "
            f"(got {settings.dtype!r})",
            key="diffusers.dtype",
        )


def _import_backend() -> tuple[Any, Any]:
    # Set before huggingface_hub is first imported: it reads the variable once.
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    try:
        torch = importlib.import_module("torch")
        diffusers = importlib.import_module("diffusers")
    except ImportError as exc:
        raise EngineError(
            f"the diffusers engine needs torch and diffusers ({exc}): {EXTRA_HINT}",
            retryable=True,
        ) from None
    # Loading bars belong to a terminal; the worker has its log instead.
    for name in ("diffusers.utils.logging", "transformers.utils.logging"):
        try:
            importlib.import_module(name).disable_progress_bar()
        except Exception:  # an older or newer library without it
            continue
    return torch, diffusers


class DiffusersEngine:
    """Image jobs on pipeline folders (with model_index.json) under ``models_root``."""

    def __init__(
        self,
        models_root: str | Path = "",
        *,
        model_map: Mapping[str, str] | None = None,
        settings: DiffusersSettings | None = None,
    ) -> None:
        self.settings = settings or DiffusersSettings()
        check_settings(self.settings)
        text = str(models_root).strip()
        self.models_root = Path(text).expanduser() if text else None
        self._model_map = dict(model_map or {})
        self._folders: dict[str, Path] = {}
        self._loaded: tuple[Path, Any] | None = None
        self._call_params: frozenset[str] = frozenset()
        # One thread runs every pipeline call: a job cut off keeps it until its next step,
        # and thread-bound state (CUDA graphs, compiled code) stays on one thread.
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._closing = threading.Event()
        self.preload: asyncio.Future[None] | None = None
        """The background load of the only pipeline, started by ``start()``."""
        # Held by the thread that runs a pipeline: a job the worker cut off keeps running
        # until its next step, and the next job must wait for it.
        self._thread_lock = threading.Lock()
        # The stop flag of the latest job; each job has its own, so that clearing it for a
        # new job never revives one that was told to stop.
        self._stop: threading.Event | None = None
        self._scan()

    @property
    def name(self) -> str:
        return "diffusers"

    def models_per_kind(self) -> dict[str, list[str]]:
        return {"image": sorted(self._folders)} if self._folders else {}

    def _folder_for(self, value: str) -> Path | None:
        path = Path(value).expanduser()
        if not path.is_absolute():
            if self.models_root is None:
                return None
            path = self.models_root / path
        return path

    def _scan(self) -> None:
        """Studio ids whose folder is really a pipeline: mapped ones, then folders whose name
        is used as the id itself."""
        found: dict[str, Path] = {}
        for model_id, value in self._model_map.items():
            folder = self._folder_for(value)
            if folder is not None and is_pipeline(folder):
                found[model_id] = folder
        mapped = {p.resolve() for p in found.values()}
        if self.models_root is not None and self.models_root.is_dir():
            try:
                children = sorted(self.models_root.iterdir())
            except OSError:
                children = []
            for child in children:
                if child.name not in found and child.resolve() not in mapped and \
                        child.name not in self._model_map and is_pipeline(child):
                    found[child.name] = child
        self._folders = found

    def _pool(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="diffusers")
        return self._executor

    async def _in_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool(), fn, *args)

    async def start(self) -> None:
        """With a single pipeline, load it (and warm its first call on a GPU) now, in the
        background: the first job then waits for the load only, not for imports,
        CUDA's start-up and the first call's one-off costs on top of it."""
        folders = set(self._folders.values())
        if len(folders) == 1 and not dependencies_missing():
            self._closing.clear()
            self.preload = asyncio.ensure_future(self._in_thread(self._warm, folders.pop()))

    def _warm(self, folder: Path) -> None:
        try:
            torch, diffusers = _import_backend()
            with self._thread_lock:
                if self._closing.is_set():
                    return
                pipe = self._pipeline(torch, diffusers, folder)
                device = str(getattr(pipe, "device", "cpu"))
                if device != "cpu" or self.settings.compile:
                    self._warm_up(torch, pipe)
        except Exception:  # the first job loads it again and reports what is wrong
            return

    def _warm_up(self, torch: Any, pipe: Any) -> None:
        """One step at the pipeline's own size: CUDA's lazy start-up, kernel loading and
        a compilation happen here rather than in the first job."""
        call: dict[str, Any] = {"prompt": "warm up", "num_inference_steps": WARM_UP_STEPS,
                                "generator": torch.Generator(device="cpu").manual_seed(0),
                                "output_type": "pil"}
        if "guidance_scale" in self._call_params:
            call["guidance_scale"] = self.settings.guidance_scale
        pipe(**call)

    async def close(self) -> None:
        self._closing.set()
        if self._stop is not None:
            self._stop.set()
        await self._in_thread(self._unload)
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None

    def _unload(self) -> None:
        with self._thread_lock:
            if self._loaded is not None:
                self._loaded = None
                _free_memory()

    async def check(self) -> str | None:
        await asyncio.to_thread(self._scan)
        missing = dependencies_missing()
        if missing:
            return (f"the diffusers engine needs {' and '.join(missing)}, which are not "
                    f"installed: {EXTRA_HINT}")
        if self._folders:
            return None
        if self.models_root is None and not self._model_map:
            return "the diffusers engine has no models: set models_root to your models folder"
        if self.models_root is not None and not self.models_root.is_dir():
            return f"the diffusers models folder {self.models_root} does not exist"
        where = self.models_root if self.models_root is not None else "models_root"
        wanted = describe_names(self._model_map.values()) if self._model_map else "any"
        return (f"no diffusers pipeline (a folder with {PIPELINE_MARKER}) found in {where} "
                f"(looked for: {wanted})")

    async def interrupt(self) -> None:
        if self._stop is not None:
            self._stop.set()

    async def generate(self, model: str, task: Task, progress: ProgressCallback) -> EngineResult:
        if not isinstance(task, ImageTask):
            raise CannotServe(self.name, task.kind, model)
        if model not in self._folders:
            await asyncio.to_thread(self._scan)
        folder = self._folders.get(model)
        if folder is None:
            raise CannotServe(self.name, task.kind, model)
        report = Progress(progress)
        report(0.0)
        stop = self._stop = threading.Event()
        try:
            result: EngineResult = await self._in_thread(self._run, folder, task, report, stop)
        except asyncio.CancelledError:
            # The thread cannot be cancelled: make it stop at its next step.
            stop.set()
            raise
        report(1.0)
        return result

    # -- in the worker thread ------------------------------------------------------------------

    def _device(self, torch: Any) -> str:
        device = self.settings.device.strip().lower()
        if device != "auto":
            return device
        if torch.cuda.is_available():
            return "cuda"
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return "mps"
        return "cpu"

    def _dtype(self, torch: Any, device: str) -> Any:
        name = self.settings.dtype.strip().lower()
        if name == "auto":
            name = "float16" if device.startswith("cuda") else "float32"
        return getattr(torch, name)

    def _pipeline(self, torch: Any, diffusers: Any, folder: Path) -> Any:
        if self._loaded is not None and self._loaded[0] == folder:
            return self._loaded[1]
        if self._loaded is not None:
            # Only one pipeline at a time: two rarely fit in a GPU together.
            self._loaded = None
            _free_memory()
        device = self._device(torch)
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise EngineError("diffusers.device is cuda but torch sees no CUDA device")
        dtype = self._dtype(torch, device)
        options: dict[str, Any] = {"local_files_only": True, _dtype_keyword(): dtype}
        try:
            pipe = diffusers.DiffusionPipeline.from_pretrained(str(folder), **options)
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
            raise EngineError(f"the diffusers pipeline in {folder} cannot be loaded: {exc}",
                              retryable=True) from None
        pipe = pipe.to(device)
        if hasattr(pipe, "set_progress_bar_config"):
            pipe.set_progress_bar_config(disable=True)
        self._speed_ups(torch, pipe, folder)
        self._call_params = frozenset(inspect.signature(pipe.__call__).parameters)
        self._loaded = (folder, pipe)
        return pipe

    def _speed_ups(self, torch: Any, pipe: Any, folder: Path) -> None:
        """The opt-in speed-ups a user would otherwise hand-write, where the pipeline has
        the parts they apply to."""
        settings = self.settings
        key = ""
        try:
            if settings.fuse_qkv and hasattr(pipe, "fuse_qkv_projections"):
                key = "fuse_qkv"
                pipe.fuse_qkv_projections()
            if settings.channels_last:
                key = "channels_last"
                for name in ("unet", "vae"):
                    module = getattr(pipe, name, None)
                    if module is not None:
                        module.to(memory_format=torch.channels_last)
            if settings.compile:
                key = "compile"
                for name in ("unet", "transformer"):
                    module = getattr(pipe, name, None)
                    if module is not None:
                        setattr(pipe, name, torch.compile(module))
        except Exception as exc:
            raise EngineError(f"config key 'diffusers.{key}' cannot be applied to the pipeline "
                              f"in {folder}: {type(exc).__name__}: {exc}",
                              retryable=False) from None

    def _run(self, folder: Path, task: ImageTask, report: Progress,
             stop: threading.Event) -> EngineResult:
        torch, diffusers = _import_backend()
        with self._thread_lock:
            if stop.is_set():
                raise EngineError("the job was interrupted before it started")
            pipe = self._pipeline(torch, diffusers, folder)
            return self._call(torch, pipe, task, report, stop)

    def _call(self, torch: Any, pipe: Any, task: ImageTask, report: Progress,
              stop: threading.Event) -> EngineResult:
        steps = task.steps
        seed = task.seed if task.seed is not None else secrets.randbelow(_SEED_RANGE)

        last_report = time.monotonic()

        def on_step(index: int) -> None:
            nonlocal last_report
            if stop.is_set():
                raise _Interrupted
            total = max(1, int(getattr(pipe, "num_timesteps", None) or steps))
            now = time.monotonic()
            if index + 1 >= total or now - last_report >= PROGRESS_INTERVAL_SECS:
                last_report = now
                report(0.98 * (index + 1) / total)

        def on_step_end(_pipe: Any, index: int, _timestep: Any,
                        kwargs: dict[str, Any]) -> dict[str, Any]:
            on_step(index)
            return kwargs

        def legacy(index: int, _timestep: Any, _latents: Any) -> None:
            on_step(index)

        call: dict[str, Any] = {
            "prompt": task.prompt,
            "width": task.width,
            "height": task.height,
            "num_inference_steps": steps,
            "generator": torch.Generator(device="cpu").manual_seed(seed),
            "output_type": "pil",
        }
        params = self._call_params
        negative = task.negative_prompt or self.settings.negative_prompt  # the job's first
        if negative and "negative_prompt" in params:
            call["negative_prompt"] = negative
        if "guidance_scale" in params:
            call["guidance_scale"] = task.cfg_scale if task.cfg_scale is not None \
                else self.settings.guidance_scale
        if "callback_on_step_end" in params:
            call["callback_on_step_end"] = on_step_end
        elif "callback" in params:
            call["callback"] = legacy
            call["callback_steps"] = 1
        try:
            output = pipe(**call)
        except _Interrupted:
            raise EngineError("the job was interrupted") from None
        except ValueError as exc:
            # The pipeline refuses the task itself (a size it cannot make, ...).
            raise EngineError(f"the diffusers pipeline refused the job: {exc}",
                              retryable=False) from None
        except Exception as exc:
            if "OutOfMemory" in type(exc).__name__:
                raise EngineError(f"the diffusers pipeline ran out of memory: {exc}") from None
            raise EngineError(f"the diffusers pipeline failed: {type(exc).__name__}: {exc}") \
                from None
        images = getattr(output, "images", None)
        if not images:
            raise EngineError("the diffusers pipeline returned no image")
        # Encoded by the caller, off this thread: the next job can start meanwhile.
        return DeferredResult(functools.partial(save_image, images[0], task.ext))


def _dtype_keyword() -> str:
    """Newer diffusers renamed ``torch_dtype`` to ``dtype`` and warn about the old name."""
    try:
        module = importlib.import_module("diffusers.utils.deprecation_utils")
    except ImportError:
        return "torch_dtype"
    return "dtype" if hasattr(module, "_resolve_dtype") else "torch_dtype"


def _free_memory() -> None:
    """Give the memory of a pipeline nobody refers to any more back to the device."""
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
