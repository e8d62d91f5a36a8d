"""Strict checks of what a worker sends, written from STUDIO_API.md.

The dev studio plays the real studio, so it validates requests by its own rules
instead of reusing the worker's wire models: a mistake in those models must show
up as a refused request, not pass silently on both sides.
"""

from __future__ import annotations

import datetime as dt
import email.message
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp.multipart import content_disposition_filename, parse_content_disposition
from multidict import CIMultiDict

from workerlib.wire import KIND_ORDER

CAPABILITY_KEYS: tuple[str, ...] = (
    "machineName",
    "username",
    "agentVersion",
    "engine",
    "vramTotalGb",
    "vramThresholdGb",
    "autoEnabled",
    "autoStart",
    "supportedModels",
    "taskKinds",
    "supportedModelsPerKind",
)
OPTIONAL_CAPABILITY_KEYS: tuple[str, ...] = ("onlyWhenIdle", "userPresence")
"""Newer workers add these after the v1 keys, in this order (STUDIO_API_V2.md §3)."""
V2_CAPABILITY_EXTRAS: tuple[str, ...] = ("autoUpdate", "startMinimised",
                                          *OPTIONAL_CAPABILITY_KEYS)
"""v2 capabilities: these may follow the v1 keys, in this order, each left out when unknown."""
USER_PRESENCE: frozenset[str] = frozenset({"idle", "active"})
LOG_LEVELS: frozenset[str] = frozenset({"info", "warn", "error"})
LOG_TS_RE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")
_LOG_REQUIRED: tuple[str, ...] = ("ts", "level", "category", "message")
_LOG_OPTIONAL: tuple[str, ...] = ("jobId",)


class Rejected(Exception):
    """A request the studio refuses: answered with ``status`` and ``reason`` as plain text."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def bad(reason: str) -> Rejected:
    return Rejected(400, reason)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_json_object(content_type: str, body: bytes) -> dict[str, Any]:
    """The body as a JSON object, keys in the order they were sent."""
    if content_type != "application/json":
        raise bad(f"Content-Type must be application/json, got {content_type or 'none'!r}")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise bad("body is not UTF-8") from None
    try:
        value = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except ValueError as exc:
        raise bad(f"body is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise bad(f"body must be a JSON object, got {type(value).__name__}")
    return value


def check_keys(
    obj: Mapping[str, Any], required: Iterable[str], optional: Iterable[str], where: str
) -> None:
    required = tuple(required)
    allowed = set(required) | set(optional)
    for key in required:
        if key not in obj:
            raise bad(f"{where}: missing key {key!r}")
    for key in obj:
        if key not in allowed:
            raise bad(f"{where}: unexpected key {key!r} (allowed: {sorted(allowed)})")


def require_str(obj: Mapping[str, Any], key: str, where: str, *, non_empty: bool = True) -> str:
    value = obj[key]
    if not isinstance(value, str):
        raise bad(f"{where}: {key!r} must be a string, got {_type(value)}")
    if non_empty and not value:
        raise bad(f"{where}: {key!r} must not be empty")
    return value


def _type(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _is_number(value: Any) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value))


def _str_list(value: Any, where: str) -> list[str]:
    if not isinstance(value, list):
        raise bad(f"{where} must be a list of strings, got {_type(value)}")
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item:
            raise bad(f"{where}[{i}] must be a non-empty string, got {item!r}")
    return value


def validate_capabilities(caps: Any, *, v2: bool = False) -> dict[str, Any]:
    """Capabilities exactly as STUDIO_API.md §4 describes them (with ``v2``: plus the
    optional v2 keys of STUDIO_API_V2.md §3, after them and in their order)."""
    where = "capabilities"
    if not isinstance(caps, dict):
        raise bad(f"{where} must be an object, got {_type(caps)}")
    extras = V2_CAPABILITY_EXTRAS if v2 else OPTIONAL_CAPABILITY_KEYS
    check_keys(caps, CAPABILITY_KEYS, extras, where)
    expected = CAPABILITY_KEYS + tuple(k for k in extras if k in caps)
    if tuple(caps) != expected:
        raise bad(f"{where}: keys out of order: got {list(caps)}, expected {list(expected)}")
    for key in ("autoUpdate", "startMinimised"):
        if key in caps and not isinstance(caps[key], bool):
            raise bad(f"{where}: {key!r} must be a boolean, got {caps[key]!r}")
    if "onlyWhenIdle" in caps and not isinstance(caps["onlyWhenIdle"], bool):
        raise bad(f"{where}: 'onlyWhenIdle' must be a boolean, got {caps['onlyWhenIdle']!r}")
    if "userPresence" in caps and caps["userPresence"] not in USER_PRESENCE:
        raise bad(f"{where}: 'userPresence' must be one of {sorted(USER_PRESENCE)} (or left "
                  f"out when unknown), got {caps['userPresence']!r}")
    for key in ("machineName", "username", "agentVersion", "engine"):
        require_str(caps, key, where)
    for key in ("vramTotalGb", "vramThresholdGb"):
        if not _is_number(caps[key]) or caps[key] < 0:
            raise bad(f"{where}: {key!r} must be a finite number >= 0, got {caps[key]!r}")
    for key in ("autoEnabled", "autoStart"):
        if not isinstance(caps[key], bool):
            raise bad(f"{where}: {key!r} must be a boolean, got {caps[key]!r}")
    models = _str_list(caps["supportedModels"], f"{where}.supportedModels")
    if models != sorted(set(models)):
        raise bad(f"{where}: 'supportedModels' must be sorted and de-duplicated, got {models}")
    kinds = _str_list(caps["taskKinds"], f"{where}.taskKinds")
    for kind in kinds:
        if kind not in KIND_ORDER:
            raise bad(f"{where}: 'taskKinds' has unknown kind {kind!r} (known: {list(KIND_ORDER)})")
    in_order = [k for k in KIND_ORDER if k in kinds]
    if kinds != in_order:
        raise bad(f"{where}: 'taskKinds' must be in kind order without repeats: "
                  f"got {kinds}, expected {in_order}")
    per_kind = caps["supportedModelsPerKind"]
    if not isinstance(per_kind, dict):
        raise bad(f"{where}: 'supportedModelsPerKind' must be an object, got {_type(per_kind)}")
    if list(per_kind) != kinds:
        raise bad(f"{where}: 'supportedModelsPerKind' keys {list(per_kind)} must equal "
                  f"'taskKinds' {kinds}, in the same order")
    union: set[str] = set()
    for kind, kind_models in per_kind.items():
        union.update(_str_list(kind_models, f"{where}.supportedModelsPerKind.{kind}"))
    if models != sorted(union):
        raise bad(f"{where}: 'supportedModels' {models} must be the sorted union of "
                  f"'supportedModelsPerKind' values {sorted(union)}")
    return caps


def validate_log_entries(body: Mapping[str, Any], *, frame: bool = False) -> list[dict[str, Any]]:
    check_keys(body, ("type", "entries") if frame else ("entries",), (), "logs")
    entries = body["entries"]
    if not isinstance(entries, list) or not entries:
        raise bad("logs: 'entries' must be a non-empty list")
    for i, entry in enumerate(entries):
        where = f"logs: entries[{i}]"
        if not isinstance(entry, dict):
            raise bad(f"{where} must be an object, got {_type(entry)}")
        check_keys(entry, _LOG_REQUIRED, _LOG_OPTIONAL, where)
        ts = require_str(entry, "ts", where)
        if not LOG_TS_RE.fullmatch(ts):
            raise bad(f"{where}: 'ts' {ts!r} must be UTC with exactly millisecond precision, "
                      "like 2026-05-16T00:00:00.000Z")
        try:
            dt.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ")
        except ValueError:
            raise bad(f"{where}: 'ts' {ts!r} is not a real date and time") from None
        level = require_str(entry, "level", where)
        if level not in LOG_LEVELS:
            raise bad(f"{where}: 'level' must be one of info, warn, error; got {level!r}")
        require_str(entry, "category", where)
        require_str(entry, "message", where, non_empty=False)
        if "jobId" in entry:
            require_str(entry, "jobId", where)
    return entries


def task_kind(task: Mapping[str, Any] | None) -> str | None:
    """The kind of a job's task; legacy jobs (no task) are images. None when unusable."""
    if task is None:
        return "image"
    kind = task.get("kind")
    return kind if isinstance(kind, str) and kind in KIND_ORDER else None


def expected_prompt(task: Mapping[str, Any] | None, legacy_prompt: str | None) -> str | None:
    """The prompt a result must carry (§3.3), or None when the task is malformed."""
    kind = task_kind(task)
    if task is None:
        return legacy_prompt or ""
    value: Any
    if kind in ("image", "video"):
        value = task.get("prompt")
    elif kind == "llm":
        messages = task.get("messages")
        if not isinstance(messages, list):
            return None
        if not messages:
            return ""
        last = messages[-1]
        value = last.get("content") if isinstance(last, dict) else None
    elif kind == "audio_stt":
        value = task.get("input_url", task.get("inputUrl"))
    elif kind == "audio_tts":
        value = task.get("text")
    else:
        return None
    return value if isinstance(value, str) else None


@dataclass(frozen=True)
class Part:
    name: str
    filename: str | None
    content_type: str | None
    content: bytes


def multipart_boundary(content_type_header: str) -> str:
    message = email.message.Message()
    message["content-type"] = content_type_header
    if message.get_content_type() != "multipart/form-data":
        raise bad(f"Content-Type must be multipart/form-data, got {content_type_header!r}")
    boundary = message.get_param("boundary")
    if not isinstance(boundary, str) or not boundary:
        raise bad("multipart Content-Type has no boundary")
    return boundary


def parse_multipart(body: bytes, boundary: str) -> list[Part]:
    """Parse a multipart/form-data body (RFC 7578) strictly enough to catch malformed uploads."""
    delimiter = b"--" + boundary.encode("latin-1")
    start = body.find(delimiter)
    if start < 0 or (start > 0 and body[start - 2:start] != b"\r\n"):
        raise bad("multipart body does not start with its boundary")
    pos = start + len(delimiter)
    parts: list[Part] = []
    while True:
        if body[pos:pos + 2] == b"--":
            return parts
        line_end = body.find(b"\r\n", pos)
        if line_end < 0 or body[pos:line_end].strip(b" \t"):
            raise bad("multipart boundary line is malformed")
        pos = line_end + 2
        end = body.find(b"\r\n" + delimiter, pos)
        if end < 0:
            raise bad("multipart body is truncated: no closing boundary")
        parts.append(_parse_part(body[pos:end], len(parts)))
        pos = end + 2 + len(delimiter)


def _parse_part(raw: bytes, index: int) -> Part:
    where = f"multipart part {index}"
    if raw.startswith(b"\r\n"):
        head, content = b"", raw[2:]
    else:
        head, sep, content = raw.partition(b"\r\n\r\n")
        if not sep:
            raise bad(f"{where} has no blank line after its headers")
    headers: CIMultiDict[str] = CIMultiDict()
    for line in head.split(b"\r\n") if head else []:
        name, colon, value = line.decode("latin-1").partition(":")
        if not colon or not name.strip():
            raise bad(f"{where} has a malformed header line {line!r}")
        headers.add(name.strip(), value.strip())
    disposition = headers.getall("Content-Disposition", [])
    if len(disposition) != 1:
        raise bad(f"{where} must have exactly one Content-Disposition header")
    disptype, params = parse_content_disposition(disposition[0])
    if disptype != "form-data" or not params.get("name"):
        raise bad(f"{where}: Content-Disposition must be form-data with a name, "
                  f"got {disposition[0]!r}")
    encoding = headers.get("Content-Transfer-Encoding", "binary").lower()
    if encoding not in ("binary", "8bit", "7bit"):
        raise bad(f"{where}: Content-Transfer-Encoding {encoding!r} is not supported")
    filename = content_disposition_filename(params, "filename")
    content_type = headers.get("Content-Type")
    return Part(name=params["name"], filename=filename, content_type=content_type,
                content=content)


def text_part(part: Part) -> str:
    where = f"multipart part {part.name!r}"
    if part.filename is not None:
        raise bad(f"{where} must be a text field, not a file (it has filename {part.filename!r})")
    if part.content_type is not None:
        message = email.message.Message()
        message["content-type"] = part.content_type
        charset = message.get_content_charset() or "utf-8"
        if message.get_content_type() != "text/plain" or charset.lower() not in ("utf-8", "utf8"):
            raise bad(f"{where} must be text/plain UTF-8, got {part.content_type!r}")
    try:
        return part.content.decode("utf-8")
    except UnicodeDecodeError:
        raise bad(f"{where} is not UTF-8") from None


def media_type(content_type: str | None) -> str | None:
    if content_type is None:
        return None
    return content_type.split(";", 1)[0].strip().lower()


def part_names(parts: Sequence[Part]) -> list[str]:
    return [part.name for part in parts]


# ---- v2 (STUDIO_API_V2.md) ---------------------------------------------------------------

ID_RE = re.compile(r"[A-Za-z0-9._:-]{1,256}")
UUID4_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
SHA256_HEX_RE = re.compile(r"[0-9a-f]{64}")
REJECT_CODES: frozenset[str] = frozenset({"paused", "busy"})
_FRAME_KEYS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "hello": (("type", "authToken", "capabilities"), ()),
    "heartbeat": (("type", "capabilities"), ("currentJobId",)),
    "accept": (("type", "jobId"), ()),
    "reject": (("type", "jobId", "reason"), ("code",)),
    "completeJson": (("type", "jobId", "result", "prompt"), ()),
    "fail": (("type", "jobId", "error", "retryable"), ()),
    "logBatch": (("type", "entries"), ()),
    "readyForMore": (("type",), ()),
}


def validate_register_request(body: Mapping[str, Any]) -> dict[str, Any]:
    where = "register-request"
    check_keys(body, ("installId", "registrationSecretHash", "capabilities", "userAgent"), (),
               where)
    install_id = require_str(body, "installId", where)
    if not UUID4_RE.fullmatch(install_id):
        raise bad(f"{where}: 'installId' must be a lowercase UUID-4, got {install_id!r}")
    if not SHA256_HEX_RE.fullmatch(require_str(body, "registrationSecretHash", where)):
        raise bad(f"{where}: 'registrationSecretHash' must be 64 lowercase hex characters "
                  "(sha256 of the secret)")
    require_str(body, "userAgent", where)
    validate_capabilities(body["capabilities"], v2=True)
    return dict(body)


def parse_frame(text: str) -> dict[str, Any]:
    """A worker's frame, checked against STUDIO_API_V2.md §2 (keys, types, ids)."""
    value = parse_json_object("application/json", text.encode("utf-8"))
    kind = value.get("type")
    if not isinstance(kind, str) or kind not in _FRAME_KEYS:
        raise bad(f"frame: unknown 'type' {kind!r} (known: {sorted(_FRAME_KEYS)})")
    required, optional = _FRAME_KEYS[kind]
    check_keys(value, required, optional, kind)
    for key in ("jobId", "currentJobId"):
        if key in value:
            job_id = require_str(value, key, kind)
            if not ID_RE.fullmatch(job_id):
                raise bad(f"{kind}: {key!r} is not a valid id: {job_id!r}")
    if kind == "hello":
        require_str(value, "authToken", kind)
    if kind in ("hello", "heartbeat"):
        validate_capabilities(value["capabilities"], v2=True)
    if kind == "reject":
        require_str(value, "reason", kind)
        if "code" in value and value["code"] not in REJECT_CODES:
            raise bad(f"reject: 'code' must be one of {sorted(REJECT_CODES)}, "
                      f"got {value['code']!r}")
    if kind == "completeJson":
        require_str(value, "prompt", kind, non_empty=False)
    if kind == "fail":
        require_str(value, "error", kind)
        if not isinstance(value["retryable"], bool):
            raise bad(f"fail: 'retryable' must be a boolean, got {value['retryable']!r}")
    if kind == "logBatch":
        validate_log_entries(value, frame=True)
    return value


def camel_task(task: Mapping[str, Any]) -> dict[str, Any]:
    """A task as v2 offers carry it: camelCase keys (``input_url`` → ``inputUrl``)."""
    return {_camel(key): value for key, value in task.items()}


def snake_task(task: Mapping[str, Any]) -> dict[str, Any]:
    """A task as v1 claims carry it: snake_case keys."""
    return {re.sub(r"(?<!^)([A-Z])", r"_\1", key).lower(): value for key, value in task.items()}


def _camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)
