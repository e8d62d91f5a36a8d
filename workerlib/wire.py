"""Wire models of the studio protocol (STUDIO_API.md §3, §4, §2.7).

Keys on the wire are camelCase for claims and capabilities; inside a ``Task`` they
are snake_case in v1 claims and camelCase in v2 offers (docs/PROTOCOL.md), so task
fields accept both spellings. The models below keep the exact spelling through
aliases so that ``model_dump(by_alias=True)`` is what goes over the wire.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, AliasGenerator, BaseModel, ConfigDict, Field, TypeAdapter
from pydantic.alias_generators import to_camel as _to_pascal

TaskKind = Literal["image", "llm", "audio_stt", "audio_tts", "video"]
KIND_ORDER: tuple[TaskKind, ...] = ("image", "llm", "audio_stt", "audio_tts", "video")
BINARY_KINDS: frozenset[str] = frozenset({"image", "audio_tts", "video"})
JSON_KINDS: frozenset[str] = frozenset({"llm", "audio_stt"})


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
    prompt: str
    width: int = Field(512, ge=1, le=16384)
    height: int = Field(512, ge=1, le=16384)
    steps: int = Field(20, ge=1, le=10000)
    seed: int | None = None
    ext: str = "webp"
    negative_prompt: str | None = None
    cfg_scale: float | None = Field(None, ge=0, le=100)
    sampling_method: str | None = Field(None, max_length=200)
    denoise: float | None = Field(None, ge=0, le=1)
    init_image_url: Url | None = None
    mask_url: Url | None = None
    ref_image_url: Url | None = None


class ChatMessage(_TaskBase):
    role: str
    content: str


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
    text: str
    voice: str = "default"
    ext: str = "wav"
    speed: float | None = Field(None, gt=0, le=10)
    language: str | None = None


class VideoTask(_TaskBase):
    kind: Literal["video"] = "video"
    prompt: str
    seconds: float = Field(2.0, gt=0, le=600)
    width: int = Field(512, ge=1, le=16384)
    height: int = Field(512, ge=1, le=16384)
    ext: str = "mp4"
    negative_prompt: str | None = None
    init_image_url: Url | None = None
    fps: int | None = Field(None, ge=1, le=240)


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


JOB_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,256}$"
"""Job, worker and request ids we accept from a studio: they go into URL paths and logs."""
JobId = Annotated[str, Field(pattern=JOB_ID_PATTERN)]


class ModelFile(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    role: str = Field(max_length=200)
    url: Url
    filename: str = Field(max_length=1024)
    approx_bytes: int | None = Field(None, alias="approxBytes", ge=0)
    sha256: str | None = Field(None, max_length=128)


class ModelSource(BaseModel):
    """How the Rust worker would fetch and run a model (v2 offers). We never download it;
    only ``cli_defaults`` is used, as defaults for what the task leaves out."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    engine: str = Field("", max_length=200)
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
    """A claim reply (STUDIO_API.md §3.1) or the ``claim`` of a v2 offer."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    job_id: str = Field(alias="jobId", min_length=1)
    game_id: str = Field(alias="gameId")
    asset_name: str = Field(alias="assetName")
    model: str
    vram_gb_estimate: float = Field(alias="vramGbEstimate")
    prompt: str = ""
    ext: str = "webp"
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
    # v2 only, after the v1 keys, left out when unknown (STUDIO_API_V2.md §3).
    auto_update: bool | None = Field(None, alias="autoUpdate")
    start_minimised: bool | None = Field(None, alias="startMinimised")

    def to_wire(self, *, v2: bool = False) -> dict[str, Any]:
        """The v1 keys exactly (§4); with ``v2`` also the v2 keys that are known."""
        data = self.model_dump(by_alias=True, mode="json")
        return {key: value for key, value in data.items()
                if key in V1_CAPABILITY_KEYS or (v2 and value is not None)}


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
        auto_update=auto_update,
        start_minimised=start_minimised,
    )


V1_CAPABILITY_KEYS: tuple[str, ...] = (
    "machineName", "username", "agentVersion", "engine", "vramTotalGb", "vramThresholdGb",
    "autoEnabled", "autoStart", "supportedModels", "taskKinds", "supportedModelsPerKind",
)
V2_CAPABILITY_KEYS: tuple[str, ...] = (
    *V1_CAPABILITY_KEYS, "autoUpdate", "startMinimised", "onlyWhenIdle", "userPresence",
)
"""Every key a v2 capabilities object may have, in wire order (v2 §3)."""


# -- v2 registration (STUDIO_API_V2.md §1) -------------------------------------------------
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


# -- v2 frames from the studio (STUDIO_API_V2.md §2) ------------------------------------------
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
