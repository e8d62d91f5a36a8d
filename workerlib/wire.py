"""Wire models of the studio protocol (STUDIO_API.md §3, §4, §2.7).

Keys on the wire are camelCase for claims and capabilities and snake_case inside a
``Task``; the models below keep the exact spelling through aliases so that
``model_dump(by_alias=True)`` is what goes over the wire.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter

from workerlib.sanitize import has_controls

TaskKind = Literal["image", "llm", "audio_stt", "audio_tts", "video"]
KIND_ORDER: tuple[TaskKind, ...] = ("image", "llm", "audio_stt", "audio_tts", "video")
BINARY_KINDS: frozenset[str] = frozenset({"image", "audio_tts", "video"})
JSON_KINDS: frozenset[str] = frozenset({"llm", "audio_stt"})

# -- validation at the door ---------------------------------------------------------------
MAX_ID_CHARS = 256
MAX_NAME_CHARS = 1024
"""gameId, assetName, model: short names, never free text."""
MAX_TEXT_CHARS = 1_000_000
"""Prompts and other free text: generous, but bounded."""
MAX_TOKEN_CHARS = 4096
_EXT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_+-]{0,15}")
_ID_CHARS = frozenset(chr(c) for c in range(0x21, 0x7F)) - {'"', "\\"}


def check_id(value: str, what: str = "id") -> str:
    """An id from the studio: 1-256 visible ASCII characters, no quote or backslash.

    Ids go into URL paths (percent-encoded) and multipart file names; a tab, CR, LF, NUL
    or escape sequence in one is refused rather than stripped or passed on.
    """
    if not value:
        raise ValueError(f"{what} is empty")
    _check_length(value, what, MAX_ID_CHARS)
    bad = next((ch for ch in value if ch not in _ID_CHARS), None)
    if bad is not None:
        raise ValueError(f"{what} holds the character {bad!r} (allowed: visible ASCII "
                         "without quotes or backslashes)")
    return value


def check_token(value: str, what: str = "token") -> str:
    """A bearer token: visible ASCII only (it goes into an HTTP header as is)."""
    _check_length(value, what, MAX_TOKEN_CHARS)
    for index, ch in enumerate(value):
        if not 0x21 <= ord(ch) <= 0x7E:
            kind = "a space" if ch == " " else "a control character" if ord(ch) < 0x20 or \
                ord(ch) == 0x7F else "a non-ASCII character"
            raise ValueError(f"{what} holds {kind} ({ch!r}) at position {index + 1}; "
                             "copy the token again without it")
    return value


def check_name(value: str, what: str = "name") -> str:
    _check_length(value, what, MAX_NAME_CHARS)
    if has_controls(value):
        raise ValueError(f"{what} holds control characters")
    return value


def check_text(value: str, what: str = "text") -> str:
    _check_length(value, what, MAX_TEXT_CHARS)
    return value


def _check_length(value: str, what: str, limit: int) -> None:
    if len(value) > limit:
        raise ValueError(f"{what} is {len(value)} characters long (at most {limit})")


def check_ext(value: str) -> str:
    """A file extension without the dot: it goes into the result's file name."""
    if _EXT.fullmatch(value) is None:
        raise ValueError("ext must be 1-16 letters, digits, '-', '_' or '+' without a dot, "
                         f"got {value[:40]!r}")
    return value


Ext = Annotated[str, AfterValidator(check_ext)]
Text = Annotated[str, AfterValidator(lambda v: check_text(v, "text"))]
Name = Annotated[str, AfterValidator(lambda v: check_name(v, "name"))]
JobId = Annotated[str, AfterValidator(lambda v: check_id(v, "jobId"))]


class _TaskBase(BaseModel):
    # Unknown keys in a task are ignored, like unknown keys in a claim.
    model_config = ConfigDict(extra="ignore", frozen=True)


class ImageTask(_TaskBase):
    kind: Literal["image"] = "image"
    prompt: Text
    width: int = Field(512, ge=1, le=16384)
    height: int = Field(512, ge=1, le=16384)
    steps: int = Field(20, ge=1, le=10000)
    seed: int | None = None
    ext: Ext = "webp"


class ChatMessage(_TaskBase):
    role: Name
    content: Text


class LlmTask(_TaskBase):
    kind: Literal["llm"] = "llm"
    messages: list[ChatMessage]
    max_tokens: int = Field(512, ge=1)
    temperature: float = 0.7


class AudioSttTask(_TaskBase):
    kind: Literal["audio_stt"] = "audio_stt"
    input_url: Text
    language: str | None = None


class AudioTtsTask(_TaskBase):
    kind: Literal["audio_tts"] = "audio_tts"
    text: Text
    voice: str = "default"
    ext: Ext = "wav"


class VideoTask(_TaskBase):
    kind: Literal["video"] = "video"
    prompt: Text
    seconds: float = Field(2.0, gt=0, le=600)
    width: int = Field(512, ge=1, le=16384)
    height: int = Field(512, ge=1, le=16384)
    ext: Ext = "mp4"


Task = Annotated[
    ImageTask | LlmTask | AudioSttTask | AudioTtsTask | VideoTask,
    Field(discriminator="kind"),
]
TASK_ADAPTER: TypeAdapter[Task] = TypeAdapter(Task)


def task_prompt(task: Task) -> str:
    """The text sent back as ``prompt`` with a result (STUDIO_API.md §3.3)."""
    if isinstance(task, ImageTask | VideoTask):
        return task.prompt
    if isinstance(task, LlmTask):
        return task.messages[-1].content if task.messages else ""
    if isinstance(task, AudioSttTask):
        return task.input_url
    return task.text


class JobClaim(BaseModel):
    """A claim reply (STUDIO_API.md §3.1)."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    job_id: JobId = Field(alias="jobId")
    game_id: Name = Field(alias="gameId")
    asset_name: Name = Field(alias="assetName")
    model: Name
    vram_gb_estimate: float = Field(alias="vramGbEstimate")
    prompt: Text = ""
    ext: Ext = "webp"
    task: Task | None = None

    def effective_task(self) -> Task:
        """The task to run: ``task`` when present, else the legacy image task."""
        if self.task is not None:
            return self.task
        return ImageTask(prompt=self.prompt, ext=self.ext)


class Capabilities(BaseModel):
    """What the worker advertises in ``register`` and every ``heartbeat`` (§4).

    Field order is the wire order.
    """

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    machine_name: str = Field(alias="machineName")
    username: str
    agent_version: str = Field(alias="agentVersion")
    engine: str
    vram_total_gb: float = Field(alias="vramTotalGb")
    vram_threshold_gb: float = Field(alias="vramThresholdGb")
    auto_enabled: bool = Field(alias="autoEnabled")
    auto_start: bool = Field(alias="autoStart")
    supported_models: list[str] = Field(alias="supportedModels")
    task_kinds: list[TaskKind] = Field(alias="taskKinds")
    supported_models_per_kind: dict[str, list[str]] = Field(alias="supportedModelsPerKind")
    only_when_idle: bool = Field(False, alias="onlyWhenIdle")
    user_presence: Literal["idle", "active"] | None = Field(None, alias="userPresence")
    """Left out when unknown (STUDIO_API_V2.md §3)."""

    def to_wire(self) -> dict[str, Any]:
        data = self.model_dump(by_alias=True, mode="json")
        if data.get("userPresence") is None:
            data.pop("userPresence", None)
        return data


def build_capabilities(
    *,
    machine_name: str,
    username: str,
    agent_version: str,
    engine: str,
    vram_total_gb: float,
    vram_threshold_gb: float,
    auto_enabled: bool,
    auto_start: bool,
    models_per_kind: Mapping[str, Sequence[str]],
    override: Sequence[str] = (),
    only_when_idle: bool = False,
    user_presence: Literal["idle", "active"] | None = None,
) -> Capabilities:
    """Assemble capabilities with the ordering and override rules of §4."""
    kinds = [k for k in KIND_ORDER if k in models_per_kind]
    per_kind: dict[str, list[str]] = {}
    override_list = sorted(set(override))
    for kind in kinds:
        models = override_list or sorted(set(models_per_kind[kind]))
        per_kind[kind] = list(models)
    union = sorted({m for models in per_kind.values() for m in models})
    return Capabilities(
        machine_name=machine_name,
        username=username,
        agent_version=agent_version,
        engine=engine,
        vram_total_gb=vram_total_gb,
        vram_threshold_gb=vram_threshold_gb,
        auto_enabled=auto_enabled,
        auto_start=auto_start,
        supported_models=union,
        task_kinds=kinds,
        supported_models_per_kind=per_kind,
        only_when_idle=only_when_idle,
        user_presence=user_presence,
    )


LogLevel = Literal["info", "warn", "error"]


class LogEntry(BaseModel):
    """One shipped log entry (§2.7)."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    ts: str
    level: LogLevel
    category: str
    message: str
    job_id: str | None = Field(default=None, alias="jobId")

    def to_wire(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True)


CONTENT_TYPES: dict[str, str] = {
    "png": "image/png",
    "webp": "image/webp",
    "gif": "image/gif",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "wav": "audio/wav",
    "mp3": "audio/mpeg",
    "mp4": "video/mp4",
}


def content_type_for(ext: str) -> str:
    return CONTENT_TYPES.get(ext.lower(), "application/octet-stream")
