"""The engine protocol every backend implements."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from workerlib.wire import Task

ProgressCallback = Callable[[float], None]
"""Called with a fraction in [0, 1] while a job runs; cheap and thread-safe."""


@dataclass(frozen=True)
class BinaryResult:
    """Bytes plus the extension (no dot) that names what they are."""

    data: bytes
    ext: str


@dataclass(frozen=True)
class JsonResult:
    """A JSON-serialisable value, sent with ``complete-json``."""

    value: Any


@dataclass(frozen=True)
class DeferredResult:
    """A binary result not encoded yet: ``encode`` is CPU work (an image to WebP, say) the
    caller runs in a thread of its own. The job runner runs it off the engine's thread,
    so the engine can start the next job meanwhile (v1 overlaps it with that job)."""

    encode: Callable[[], BinaryResult]


EngineResult = BinaryResult | JsonResult | DeferredResult


def resolve(result: EngineResult) -> BinaryResult | JsonResult:
    """The result in its final form (encodes a ``DeferredResult``; blocking)."""
    return result.encode() if isinstance(result, DeferredResult) else result


class EngineError(Exception):
    """A job the engine could not finish. ``retryable`` goes to the studio as is."""

    retryable: bool = True

    def __init__(self, message: str, *, retryable: bool | None = None) -> None:
        super().__init__(message)
        if retryable is not None:
            self.retryable = retryable


class CannotServe(EngineError):
    """The engine does not serve this kind or model: retrying here is pointless."""

    retryable = False

    def __init__(self, engine: str, kind: str, model: str) -> None:
        super().__init__(f"engine '{engine}' cannot serve kind '{kind}' with model '{model}'")
        self.engine = engine
        self.kind = kind
        self.model = model


class EngineConfigError(ValueError):
    """The configured engine cannot be built; ``key`` is the config key at fault."""

    def __init__(self, message: str, *, key: str) -> None:
        super().__init__(message)
        self.key = key


@runtime_checkable
class Engine(Protocol):
    """A local backend that turns a task into a result."""

    @property
    def name(self) -> str: ...

    def models_per_kind(self) -> dict[str, list[str]]:
        """Model ids this engine can really run, per task kind it serves."""
        ...

    async def start(self) -> None:
        """Connect or load; called once before the first job."""
        ...

    async def close(self) -> None:
        """Release what ``start`` took; called once at shutdown or on restart."""
        ...

    async def check(self) -> str | None:
        """Probe the backend and refresh the models it really has.

        Returns None when it answers, else one plain sentence for the user, e.g.
        "ComfyUI at http://127.0.0.1:8188 is not answering". The worker does not
        claim while this returns a problem. Called at start and on a slow timer.
        """
        ...

    async def interrupt(self) -> None:
        """Ask the backend to stop the running job (after a timeout); best effort."""
        ...

    async def generate(self, model: str, task: Task, progress: ProgressCallback) -> EngineResult:
        """Run one task. Raise ``EngineError`` (or ``CannotServe``) on failure.

        Blocking work must go through ``asyncio.to_thread`` so the loop keeps running.
        """
        ...
