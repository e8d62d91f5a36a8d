"""Wire models of the studio protocol (docs/PROTOCOL.md §3, §4, §5, §2.8).

Keys on the wire are camelCase for claims and capabilities; inside a ``Task`` they
are snake_case in v1 claims and camelCase in v2 offers (docs/PROTOCOL.md), so task
fields accept both spellings. The models below keep the exact spelling through
aliases so that ``model_dump(by_alias=True)`` is what goes over the wire.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AliasChoices,
    AliasGenerator,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
)
from pydantic.alias_generators import to_camel as _to_pascal

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


def camel(name: str) -> str:
    """``max_tokens`` → ``maxTokens`` (v2 spelling)."""
    pascal = _to_pascal(name)
    return pascal[:1].lower() + pascal[1:]


def _both_spellings(name: str) -> AliasChoices | str:
    spelled = camel(name)
    return name if spelled == name else AliasChoices(name, spelled)


Url = Annotated[str, Field(max_length=4096)]


class _TaskBase(BaseModel):
    # Unknown keys in a task are ignored, like unknown keys in a claim; every field is
    # read in its v1 (snake_case) and v2 (camelCase) spelling.
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True,
                              alias_generator=AliasGenerator(validation_alias=_both_spellings))


class ImageTask(_TaskBase):
    kind: Literal["image"] = "image"
    prompt: Text
    width: int = Field(512, ge=1, le=16384)
    height: int = Field(512, ge=1, le=16384)
    steps: int = Field(20, ge=1, le=10000)
    seed: int | None = None
    ext: Ext = "webp"
    negative_prompt: Text | None = None
    cfg_scale: float | None = Field(None, ge=0, le=100)
    sampling_method: Name | None = None
    denoise: float | None = Field(None, ge=0, le=1)
    init_image_url: Url | None = None
    mask_url: Url | None = None
    ref_image_url: Url | None = None


class ChatMessage(_TaskBase):
    role: Name
    content: Text


class LlmTask(_TaskBase):
    kind: Literal["llm"] = "llm"
    messages: list[ChatMessage]
    max_tokens: int = Field(512, ge=1)
    temperature: float = 0.7
    system: str | None = None
    top_p: float | None = Field(None, ge=0, le=1)
    stop: list[str] | str | None = None
    json_schema: dict[str, Any] | None = None


class AudioSttTask(_TaskBase):
    kind: Literal["audio_stt"] = "audio_stt"
    input_url: Url
    language: str | None = None
    translate: bool = False
    prompt: str | None = None


class AudioTtsTask(_TaskBase):
    kind: Literal["audio_tts"] = "audio_tts"
    text: Text
    voice: str = "default"
    ext: Ext = "wav"
    speed: float | None = Field(None, gt=0, le=10)
    language: str | None = None


class VideoTask(_TaskBase):
    kind: Literal["video"] = "video"
    prompt: Text
    seconds: float = Field(2.0, gt=0, le=600)
    width: int = Field(512, ge=1, le=16384)
    height: int = Field(512, ge=1, le=16384)
    ext: Ext = "mp4"
    negative_prompt: Text | None = None
    init_image_url: Url | None = None
    fps: int | None = Field(None, ge=1, le=240)


Task = Annotated[
    ImageTask | LlmTask | AudioSttTask | AudioTtsTask | VideoTask,
    Field(discriminator="kind"),
]
TASK_ADAPTER: TypeAdapter[Task] = TypeAdapter(Task)


def task_prompt(task: Task) -> str:
    """The text sent back as ``prompt`` with a result (docs/PROTOCOL.md §4.3)."""
    if isinstance(task, ImageTask | VideoTask):
        return task.prompt
    if isinstance(task, LlmTask):
        return task.messages[-1].content if task.messages else ""
    if isinstance(task, AudioSttTask):
        return task.input_url
    return task.text


class ModelFile(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    role: Name
    url: Url
    filename: Name
    approx_bytes: int | None = Field(None, alias="approxBytes", ge=0)
    sha256: str | None = Field(None, max_length=128)


class ModelSource(BaseModel):
    """How the Rust worker would fetch and run a model (v2 offers). We never download it;
    only ``cli_defaults`` is used, as defaults for what the task leaves out."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    engine: Name = ""
    files: list[ModelFile] = Field(default_factory=list, max_length=64)
    cli_defaults: dict[str, Any] = Field(default_factory=dict, alias="cliDefaults")


def _number(value: Any, *, integer: bool) -> float | int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value) if integer else float(value)


def apply_cli_defaults(task: Task, defaults: Mapping[str, Any]) -> Task:
    """Fill steps, size and CFG from ``cliDefaults`` where the task left them out."""
    if not isinstance(task, ImageTask | VideoTask) or not defaults:
        return task
    wanted: dict[str, Any] = {}
    fields = (("steps", ("steps",), True), ("width", ("width", "w"), True),
              ("height", ("height", "h"), True),
              ("cfg_scale", ("cfgScale", "cfg_scale", "cfg"), False))
    for field, keys, integer in fields:
        if field not in type(task).model_fields or field in task.model_fields_set:
            continue
        for key in keys:
            value = _number(defaults.get(key), integer=integer)
            if value is not None:
                wanted[field] = value
                break
    if not wanted:
        return task
    data = {name: getattr(task, name) for name in task.model_fields_set | {"kind"}}
    try:
        return TASK_ADAPTER.validate_python({**data, **wanted})
    except ValueError:
        return task  # a default out of range is ignored, the task stands as sent


class JobClaim(BaseModel):
    """A claim reply (docs/PROTOCOL.md §4.1) or the ``claim`` of a v2 offer."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    job_id: JobId = Field(alias="jobId")
    game_id: Name = Field(alias="gameId")
    asset_name: Name = Field(alias="assetName")
    model: Name
    vram_gb_estimate: float = Field(alias="vramGbEstimate")
    prompt: Text = ""
    ext: Ext = "webp"
    task: Task | None = None
    model_source: ModelSource | None = Field(None, alias="modelSource")

    def effective_task(self) -> Task:
        """The task to run: ``task`` when present (with the model source's defaults),
        else the legacy image task."""
        if self.task is None:
            return ImageTask(prompt=self.prompt, ext=self.ext)
        if self.model_source is None:
            return self.task
        return apply_cli_defaults(self.task, self.model_source.cli_defaults)


class Capabilities(BaseModel):
    """What the worker advertises in ``register`` and every ``heartbeat`` (docs/PROTOCOL.md §5).

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
    # Newer keys, after the v1 ones in this order (docs/PROTOCOL.md §5); None = unknown,
    # left out. autoUpdate and startMinimised go to v2 studios only.
    auto_update: bool | None = Field(None, alias="autoUpdate")
    start_minimised: bool | None = Field(None, alias="startMinimised")
    only_when_idle: bool = Field(False, alias="onlyWhenIdle")
    user_presence: Literal["idle", "active"] | None = Field(None, alias="userPresence")

    def to_wire(self, *, v2: bool = False) -> dict[str, Any]:
        data = self.model_dump(by_alias=True, mode="json")
        v2_only = ("autoUpdate", "startMinimised")
        return {key: value for key, value in data.items()
                if value is not None and (v2 or key not in v2_only)}


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
    auto_update: bool | None = None,
    start_minimised: bool | None = None,
    only_when_idle: bool = False,
    user_presence: Literal["idle", "active"] | None = None,
) -> Capabilities:
    """Assemble capabilities with the ordering and override rules of docs/PROTOCOL.md §5."""
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
        auto_update=auto_update,
        start_minimised=start_minimised,
        only_when_idle=only_when_idle,
        user_presence=user_presence,
    )


V1_CAPABILITY_KEYS: tuple[str, ...] = (
    "machineName", "username", "agentVersion", "engine", "vramTotalGb", "vramThresholdGb",
    "autoEnabled", "autoStart", "supportedModels", "taskKinds", "supportedModelsPerKind",
)
V2_CAPABILITY_KEYS: tuple[str, ...] = (
    *V1_CAPABILITY_KEYS, "autoUpdate", "startMinimised", "onlyWhenIdle", "userPresence",
)
"""Every key a v2 capabilities object may have, in wire order (docs/PROTOCOL.md §5)."""


# -- v2 registration (docs/PROTOCOL.md §3.1) ----------------------------------------------
class _Reply(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


class RegisterRequestReply(_Reply):
    request_id: JobId = Field(alias="requestId")
    status: Literal["pending"]


class Pending(_Reply):
    status: Literal["pending"]


class Approved(_Reply):
    status: Literal["approved"]
    worker_id: JobId = Field(alias="workerId")
    auth_token: str = Field(alias="authToken", min_length=1, max_length=4096)

    def __repr__(self) -> str:  # never print the token by accident
        return f"Approved(worker_id={self.worker_id!r}, auth_token=<hidden>)"

    __str__ = __repr__


class Rejected(_Reply):
    status: Literal["rejected"]
    reason: str | None = Field(None, max_length=2000)


RegistrationDecision = Annotated[Pending | Approved | Rejected, Field(discriminator="status")]
DECISION_ADAPTER: TypeAdapter[RegistrationDecision] = TypeAdapter(RegistrationDecision)


# -- v2 frames from the studio (docs/PROTOCOL.md §3) ---------------------------------------
ErrorCode = Literal["auth_failed", "protocol_violation", "duplicate_worker", "worker_deleted",
                    "internal_error"]


class Welcome(_Reply):
    type: Literal["welcome"]
    worker_id: JobId = Field(alias="workerId")
    server_time: str = Field(alias="serverTime", max_length=100)


class Offer(_Reply):
    type: Literal["offer"]
    claim: dict[str, Any]
    """Read as a ``JobClaim`` on its own, so a bad claim with a usable id can be refused."""


class HeartbeatAck(_Reply):
    type: Literal["heartbeatAck"]


class CompleteAck(_Reply):
    type: Literal["completeAck"]
    job_id: JobId = Field(alias="jobId")


class FailAck(_Reply):
    type: Literal["failAck"]
    job_id: JobId = Field(alias="jobId")


class ErrorFrame(_Reply):
    type: Literal["error"]
    code: ErrorCode | str = Field(max_length=100)
    message: str = Field("", max_length=2000)


StudioFrame = Annotated[Welcome | Offer | HeartbeatAck | CompleteAck | FailAck | ErrorFrame,
                        Field(discriminator="type")]
FRAME_ADAPTER: TypeAdapter[StudioFrame] = TypeAdapter(StudioFrame)


LogLevel = Literal["info", "warn", "error"]


class LogEntry(BaseModel):
    """One shipped log entry (docs/PROTOCOL.md §2.8)."""

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
