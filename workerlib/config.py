"""``config.toml``: a pydantic schema plus a tomlkit store.

The store edits the document it loaded, so the user's comments, ordering and
unknown keys survive a save. Writes are atomic (temp file, fsync, rename),
owner-only on POSIX, and serialised by a lock file so that a CLI edit and a
running worker never tear the file.
"""

from __future__ import annotations

import contextlib
import glob
import json
import math
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import tomlkit
import tomlkit.exceptions
from filelock import FileLock, Timeout
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from workerlib.atomic import write_atomic
from workerlib.engines.settings import (
    A1111Settings,
    ComfyUISettings,
    DiffusersSettings,
    GradioSettings,
    SyntheticSettings,
)
from workerlib.errors import ConfigError
from workerlib.files import FileTooLarge, read_bounded
from workerlib.policy.schedule import validate_schedule
from workerlib.urls import is_loopback_url
from workerlib.wire import check_token

SECRET_KEYS: frozenset[str] = frozenset(
    {"auth_token", "bootstrap_token", "install_id", "registration_secret"}
)
MAX_CONFIG_BYTES = 1024 * 1024
"""A config file is a few KB; a larger one is refused unread."""
GROUPS: tuple[str, ...] = (
    "Connection",
    "Worker",
    "Politeness",
    "Engine",
    "Auto-update",
    "Models",
    "Notifications",
    "Background mode",
)
MAX_PROGRAMS = 100
MAX_PROGRAM_CHARS = 200
DEFAULT_FEED = "https://api.github.com/repos/minis-gg/studio-worker/releases"
RUST_FEEDS: frozenset[str] = frozenset({
    "https://api.github.com/repos/webbertakken/studio-worker/releases",
    "https://api.github.com/repos/webbertakken/studio-worker/releases/latest",
})
"""The Rust worker's own release feeds: its releases are not ours to install."""
RUST_ONLY_ENGINES: frozenset[str] = frozenset({"llama", "whisper", "image-candle", "video", "tts"})
"""Engine names only the Rust worker has (see ``rust_engine_message``)."""
PROTOCOLS: tuple[str, ...] = ("auto", "v1", "v2")


def _field(default: Any, description: str, group: str, **kwargs: Any) -> Any:
    extra: dict[str, Any] = {"group": group}
    if kwargs.pop("secret", False):
        extra["secret"] = True
    separator = kwargs.pop("separator", None)
    if separator:
        extra["separator"] = separator  # a list edited on one line (the Config tab)
    return Field(default, description=description, json_schema_extra=extra, **kwargs)


class Config(BaseModel):
    """Every setting of the worker; the descriptions are the Config tab's help text."""

    model_config = ConfigDict(extra="ignore", validate_assignment=True, frozen=False)

    api_base_url: str = _field(
        "https://studio.minis.gg", "Address of the studio this worker serves.", "Connection"
    )
    allow_insecure_http: bool = _field(
        False, "Allow plain http to a studio that is not on this machine (tokens travel "
        "unencrypted).", "Connection",
    )
    bootstrap_token: str = _field(
        "", "One-time token from the studio used to register this worker.", "Connection",
        secret=True,
    )
    worker_id: str = _field(
        "", "This worker's id, given by the studio at registration.", "Connection"
    )
    auth_token: str = _field(
        "", "This worker's secret token, given by the studio at registration.", "Connection",
        secret=True,
    )
    protocol: Literal["auto", "v1", "v2"] = _field(
        "auto", "Studio protocol: auto (v2 channel when the studio has it, else v1 polling), "
        "v1 (HTTP polling) or v2 (WebSocket channel). See docs/PROTOCOL.md.", "Connection",
    )
    install_id: str = _field(
        "", "This installation's id for v2 registration requests (created on first use).",
        "Connection", secret=True,
    )
    registration_request_id: str = _field(
        "", "The pending v2 registration request, as the studio's operators see it (cleared "
        "once approved). Not a secret: polling it needs registration_secret.", "Connection",
    )
    registration_secret: str = _field(
        "", "Secret proving this PC made the pending v2 registration request.", "Connection",
        secret=True,
    )
    ws_reconnect_attempts: int = _field(
        0, "v2: give up after this many failed reconnects in a row (0 = never give up).",
        "Connection", ge=0, le=1_000_000,
    )
    vram_threshold_gb: float = _field(
        12.0, "Largest job (GiB of VRAM) this worker accepts.", "Worker", ge=0, le=4096
    )
    auto_start: bool = _field(
        True, "Start the worker loops as soon as the program starts.", "Worker"
    )
    auto_enabled: bool = _field(
        True, "Claim new jobs; turn off to pause claiming (heartbeats go on).", "Worker"
    )
    heartbeat_interval_secs: float = _field(
        5.0, "Seconds between heartbeats to the studio.", "Worker", ge=0.05, le=300
    )
    claim_interval_secs: float = _field(
        5.0, "Seconds to wait before asking again after the studio had no job.", "Worker",
        ge=0.05, le=3600,
    )
    failure_cooldown_secs: float = _field(
        180.0, "After 3 failed jobs in a row, stop claiming for this many seconds.", "Worker",
        ge=0, le=86400,
    )
    shutdown_drain_secs: float = _field(
        5.0, "On quit, how long a running job may take to finish before it is handed back.",
        "Worker", ge=0, le=3600,
    )
    only_when_idle: bool = _field(
        False, "Claim only while you are away: no keyboard or mouse input for idle_minutes "
        "(X11, Windows, macOS; where it cannot tell, e.g. Wayland, it does not claim).",
        "Politeness",
    )
    idle_minutes: float = _field(
        5.0, "Minutes without keyboard or mouse input before you count as away "
        "(only_when_idle).", "Politeness", ge=0.5, le=1440,
    )
    pause_while_running: list[str] = _field(
        [], "Do not claim while one of these programs runs: names or globs, like "
        "eldenring.exe or *.exe (checked every few seconds).", "Politeness",
    )
    pause_while_fullscreen: bool = _field(
        False, "Do not claim while a full-screen app is in front on the primary display "
        "(X11 and Windows).",
        "Politeness",
    )
    schedule: list[str] = _field(
        [], "Weekly windows when the worker may claim, local time, like "
        "\"mon-fri 18:00-08:00\" or \"sat-sun all\"; empty: any time.", "Politeness",
        separator=";",  # a line may list days with commas ("sat,sun all")
    )
    max_gpu_temp_c: float = _field(
        0.0, "Do not claim while a GPU is hotter than this (°C; resumes 5 °C below); "
        "0: no limit.", "Politeness", ge=0, le=150,
    )
    max_gpu_power_w: float = _field(
        0.0, "Do not claim while a GPU draws more than this (W; resumes 10% below); "
        "0: no limit.", "Politeness", ge=0, le=5000,
    )
    engine: str = _field(
        "synthetic",
        "Engine that runs jobs: synthetic, gradio, a1111, comfyui, diffusers, or multi to "
        "combine several.", "Engine"
    )
    engines: list[str] = _field(
        [], "Engines combined by the multi engine, in routing order.", "Engine"
    )
    gradio_endpoint_url: str = _field(
        "http://127.0.0.1:7860", "Address of the local Gradio app (gradio engine).", "Engine"
    )
    job_timeout_secs: float = _field(
        600.0, "A job running longer than this is stopped and handed back to the studio.",
        "Engine", ge=1, le=86400,
    )
    synthetic: SyntheticSettings = _field(
        SyntheticSettings(), "Settings of the synthetic engine.", "Engine"
    )
    gradio: GradioSettings = _field(
        GradioSettings(), "Settings of the gradio engine.", "Engine"
    )
    a1111: A1111Settings = _field(
        A1111Settings(), "Settings of the a1111 engine (AUTOMATIC1111 / Forge).", "Engine"
    )
    comfyui: ComfyUISettings = _field(
        ComfyUISettings(), "Settings of the comfyui engine.", "Engine"
    )
    diffusers: DiffusersSettings = _field(
        DiffusersSettings(), "Settings of the diffusers engine.", "Engine"
    )
    auto_update_enabled: bool = _field(
        True, "Check for new versions of the worker in the background.", "Auto-update"
    )
    auto_update_interval_secs: int = _field(
        1800, "Seconds between update checks (at least 60).", "Auto-update", ge=60
    )
    auto_update_feed: str = _field(
        DEFAULT_FEED, "Releases feed (GitHub Releases JSON) to check for updates.", "Auto-update"
    )
    auto_update_prerelease: bool = _field(
        False, "Also offer pre-release versions.", "Auto-update"
    )
    supported_models_override: list[str] = _field(
        [], "If not empty, advertise exactly these model ids instead of the engine's.", "Models"
    )
    models_root: str = _field(
        "", "Folder holding local model files (engines that load models).", "Models"
    )
    model_map: dict[str, str] = _field(
        {}, "Maps studio model ids to local model names (checkpoint file, folder or "
        "backend name).", "Models",
    )
    notify_on_completion: bool = _field(
        False, "Show a desktop notification when a job completes.", "Notifications"
    )
    notify_on_failure: bool = _field(
        False, "Show a desktop notification when a job fails.", "Notifications"
    )
    autostart_on_login: bool = _field(
        False, "Start the worker when you log in to your computer.", "Background mode"
    )
    start_minimised: bool = _field(
        True, "When started at login, start hidden in the tray.", "Background mode"
    )

    @field_validator("api_base_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        value = value.strip()
        if not re.match(r"^https?://[^\s/]+", value):
            raise ValueError("must start with http:// or https:// followed by a host")
        return value

    @field_validator("auto_update_feed")
    @classmethod
    def _our_feed(cls, value: str) -> str:
        # A config taken over from the Rust worker names the Rust releases: never offer
        # those as our updates.
        return DEFAULT_FEED if value.strip().rstrip("/") in RUST_FEEDS else value

    @field_validator("engine")
    @classmethod
    def _not_rust_only(cls, value: str) -> str:
        if value.strip() in RUST_ONLY_ENGINES:
            raise PydanticCustomError("rust_engine", rust_engine_message(value.strip()))
        return value

    @field_validator("vram_threshold_gb", "heartbeat_interval_secs", "claim_interval_secs",
                     "idle_minutes", "max_gpu_temp_c", "max_gpu_power_w")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value

    @field_validator("auth_token", "bootstrap_token")
    @classmethod
    def _token(cls, value: str, info: ValidationInfo) -> str:
        # A token goes into an HTTP header: a pasted CR or a space would stop every call.
        return check_token(value, str(info.field_name)) if value else value

    @field_validator("engines", "supported_models_override")
    @classmethod
    def _no_blank(cls, value: list[str]) -> list[str]:
        if any(not item.strip() for item in value):
            raise ValueError("entries must not be empty")
        return value

    @field_validator("pause_while_running")
    @classmethod
    def _program_names(cls, value: list[str]) -> list[str]:
        if len(value) > MAX_PROGRAMS:
            raise ValueError(f"at most {MAX_PROGRAMS} programs")
        for item in value:
            if not item.strip() or len(item) > MAX_PROGRAM_CHARS:
                raise ValueError(f"{item[:40]!r}: each entry is a program name or glob of "
                                 f"1 to {MAX_PROGRAM_CHARS} characters")
        return [item.strip() for item in value]

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: list[str]) -> list[str]:
        return validate_schedule(value)

    @model_validator(mode="after")
    def _https_unless_loopback(self) -> Config:
        parts = urlsplit(self.api_base_url)
        loopback = is_loopback_url(self.api_base_url)
        if parts.scheme == "http" and not loopback and not self.allow_insecure_http:
            raise PydanticCustomError(
                "insecure_url",
                "api_base_url uses plain http to another machine; use https, or set "
                "allow_insecure_http = true if you really mean it",
            )
        return self

    def is_registered(self) -> bool:
        return bool(self.worker_id and self.auth_token)


def rust_engine_message(name: str) -> str:
    """One line saying what to change when a Rust-worker config names a Rust-only engine."""
    return (f"engine = \"{name}\" is an engine of the Rust worker that this worker does not "
            "have; set engine to one of synthetic, gradio, a1111, comfyui, diffusers or multi "
            "(see the README's engine section)")


@dataclass(frozen=True)
class FieldInfo:
    name: str
    description: str
    group: str
    secret: bool
    default: Any
    type_name: str


def _type_name(annotation: Any) -> str:
    if getattr(annotation, "__origin__", None) is Literal:
        return "one of " + ", ".join(str(a) for a in annotation.__args__)
    text = str(annotation)
    if text.startswith("list"):
        return "list of strings"
    if text.startswith("dict"):
        return "table of strings"
    name = getattr(annotation, "__name__", text)
    return {"str": "string", "float": "number", "int": "integer", "bool": "true/false"}.get(
        name, name)


def table_fields() -> dict[str, type[BaseModel]]:
    """Fields that are TOML tables of settings (``[a1111]``...), by name."""
    return {
        name: field.annotation
        for name, field in Config.model_fields.items()
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)
    }


def field_infos() -> list[FieldInfo]:
    """The schema as plain data, for the Config tab, the README and ``config``.

    Settings tables are flattened to dotted names (``a1111.url``).
    """
    infos: list[FieldInfo] = []
    tables = table_fields()
    for name, field in Config.model_fields.items():
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        group = str(extra.get("group", "Worker"))
        if name in tables:
            for sub_name, sub_field in tables[name].model_fields.items():
                infos.append(FieldInfo(
                    name=f"{name}.{sub_name}", description=sub_field.description or "",
                    group=group, secret=False, default=sub_field.default,
                    type_name=_type_name(sub_field.annotation),
                ))
            continue
        infos.append(
            FieldInfo(
                name=name,
                description=field.description or "",
                group=group,
                secret=bool(extra.get("secret", False)),
                default=field.default,
                type_name=_type_name(field.annotation),
            )
        )
    return infos


def get_value(config: Config, dotted: str) -> Any:
    """``get_value(config, "a1111.url")``."""
    value: Any = config
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


def mask_secret(value: str) -> str:
    if not value:
        return "(not set)"
    return "•" * 8


def _key_line(text: str, key: str) -> int | None:
    start = 0
    if "." in key:
        table, key = key.split(".", 1)
        header = re.search(rf"^\s*\[\s*{re.escape(table)}\s*\]", text, re.MULTILINE)
        if header is None:
            return None
        start = header.end()
    pattern = re.compile(rf"^\s*[\"']?{re.escape(key)}[\"']?\s*=", re.MULTILINE)
    match = pattern.search(text, start)
    if match is None:
        return None
    return text.count("\n", 0, match.start()) + 1


def _plain(value: Any) -> Any:
    """tomlkit items → plain Python values."""
    if hasattr(value, "unwrap"):
        return value.unwrap()
    return value


def _error_key(error: Any) -> str | None:
    if error["type"] == "insecure_url":
        return "api_base_url"
    return ".".join(str(part) for part in error["loc"]) if error["loc"] else None


def _expand_dotted(changes: dict[str, Any]) -> dict[str, Any]:
    """``{"a1111.url": u}`` → ``{"a1111": {"url": u}}``."""
    out: dict[str, Any] = {}
    for key, value in changes.items():
        if "." in key:
            table, sub = key.split(".", 1)
            out.setdefault(table, {})[sub] = value
        else:
            out[key] = value
    return out


def _apply_to_document(doc: tomlkit.TOMLDocument, new: Config, changes: dict[str, Any]) -> None:
    """Write only what changed, into the existing document (comments stay).

    A key the file does not have is added only when its value is not the default, so
    saving an unchanged config leaves the file as the user wrote it.
    """
    tables = table_fields()
    for key in changes:
        value = getattr(new, key)
        if key in tables or key == "model_map":
            items = value.model_dump() if isinstance(value, BaseModel) else dict(value)
            defaults = tables[key]().model_dump() if key in tables else {}
            existing: Any = doc.get(key)
            if not isinstance(existing, dict):
                if items == defaults:
                    continue
                doc[key] = tomlkit.table()
                existing = doc[key]
            if key == "model_map":
                for stale in [k for k in existing if k not in items]:
                    del existing[stale]
            for sub, item in items.items():
                if sub in existing:
                    if _plain(existing[sub]) != item:
                        existing[sub] = item
                elif defaults.get(sub, object()) != item:
                    existing[sub] = item
        elif key in doc:
            if _plain(doc[key]) != value:
                doc[key] = value
        elif value != Config.model_fields[key].default:
            doc[key] = value


class ConfigStore:
    """Loads, validates and saves one ``config.toml``."""

    LOCK_TIMEOUT_SECS = 10.0

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = FileLock(str(path) + ".lock", timeout=self.LOCK_TIMEOUT_SECS)
        self._stamp: tuple[int, int] | None = None
        self._last: Config | None = None

    # -- reading ---------------------------------------------------------------
    def _read_text(self) -> str:
        try:
            raw = read_bounded(self.path, MAX_CONFIG_BYTES)
        except FileTooLarge as exc:
            raise ConfigError(self.path, str(exc)) from None
        except OSError as exc:
            raise ConfigError(self.path, f"cannot be read ({exc.strerror or exc})") from None
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = raw[: exc.start].count(b"\n") + 1
            raise ConfigError(self.path, "is not valid UTF-8 text", line=line) from None

    def _parse(self, text: str) -> tomlkit.TOMLDocument:
        try:
            return tomlkit.parse(text)
        except tomlkit.exceptions.ParseError as exc:
            raise ConfigError(
                self.path, f"is not valid TOML ({exc.args[0] if exc.args else exc})",
                line=getattr(exc, "line", None),
            ) from None
        except Exception as exc:  # tomlkit raises assorted errors on odd input
            raise ConfigError(self.path, f"is not valid TOML ({exc})") from None

    def _validate(self, doc: tomlkit.TOMLDocument, text: str) -> Config:
        data = {key: _plain(value) for key, value in doc.items()}
        try:
            return Config.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            key = _error_key(first)
            where = ".".join(key.split(".")[:2]) if key else None
            raise ConfigError(
                self.path, first["msg"], key=key, line=_key_line(text, where) if where else None
            ) from None

    def _current_stamp(self) -> tuple[int, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def exists(self) -> bool:
        return self.path.exists()

    def load(self) -> Config:
        """Read and validate; raises ConfigError naming file, key and line."""
        stamp = self._current_stamp()
        text = self._read_text()
        config = self._validate(self._parse(text), text)
        self._stamp = stamp
        self._last = config.model_copy(deep=True)
        return config

    def load_or_create(self, *, detected_vram_gb: float = 0.0) -> tuple[Config, bool]:
        """Load the file, creating it with defaults when missing. Returns (config, created)."""
        with self._locked():
            if self.path.exists():
                return self.load(), False
            config = Config()
            if 0 < detected_vram_gb < config.vram_threshold_gb:
                config.vram_threshold_gb = detected_vram_gb
            self._write(self._new_document(config))
            return self.load(), True

    def changed_on_disk(self) -> bool:
        return self._current_stamp() != self._stamp

    # -- writing ---------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with self._lock:
                self._clean_stale_temp_files()
                yield
        except Timeout:
            raise ConfigError(self.path, "is locked by another process; try again") from None

    def _new_document(self, config: Config) -> tomlkit.TOMLDocument:
        doc = tomlkit.document()
        doc.add(tomlkit.comment("studio-worker configuration; every key is in the README."))
        tables = table_fields()
        for name, field in Config.model_fields.items():
            if name in tables or name == "model_map":
                continue
            doc.add(tomlkit.comment(field.description or ""))
            doc.add(name, getattr(config, name))
        for name in ["model_map", *tables]:
            table = tomlkit.table()
            table.add(tomlkit.comment(Config.model_fields[name].description or ""))
            value = getattr(config, name)
            items = value.model_dump() if isinstance(value, BaseModel) else value
            for key, item in items.items():
                table.add(key, item)
            doc.add(name, table)
        return doc

    def update(self, changes: dict[str, Any]) -> Config:
        """Apply ``changes`` to the file as it is on disk now, under the lock.

        Re-reading under the lock means two writers never lose each other's keys.
        Validation happens before anything is written; the file is left as it was
        on any error.
        """
        return self.modify(lambda _config: changes)

    def modify(self, compute: Callable[[Config], dict[str, Any]]) -> Config:
        """Like ``update`` but the changes are computed from the current file."""
        with self._locked():
            if self.path.exists():
                text = self._read_text()
                doc = self._parse(text)
                current = self._validate(doc, text)
            else:
                current = Config()
                doc = self._new_document(current)
            changes = _expand_dotted(compute(current))
            merged = current.model_dump()
            for key, value in changes.items():
                if isinstance(value, dict) and isinstance(merged.get(key), dict) and \
                        key in table_fields():
                    merged[key] = {**merged[key], **value}
                else:
                    merged[key] = value
            try:
                new = Config.model_validate(merged)
            except ValidationError as exc:
                bad = _error_key(exc.errors()[0])
                raise ConfigError(self.path, exc.errors()[0]["msg"], key=bad) from None
            _apply_to_document(doc, new, changes)
            self._write(doc)
            self._stamp = self._current_stamp()
            self._last = new.model_copy(deep=True)
            return new

    def save(self, config: Config) -> Config:
        """Write the fields changed since this store last loaded or wrote the file.

        Only those: a key another process changed in the meantime keeps its new value.
        """
        base = self._last or Config()
        changes: dict[str, Any] = {}
        tables = table_fields()
        for name in Config.model_fields:
            new, old = getattr(config, name), getattr(base, name)
            if new == old:
                continue
            if name in tables:
                for sub, value in new.model_dump().items():
                    if value != getattr(old, sub):
                        changes[f"{name}.{sub}"] = value
            else:
                changes[name] = new
        return self.update(changes)

    def _target(self) -> Path:
        """The file to replace: a symlinked config stays a symlink, its target is written."""
        return Path(os.path.realpath(self.path)) if self.path.is_symlink() else self.path

    def _clean_stale_temp_files(self) -> None:
        """Temp files of a writer killed mid-save. Every writer holds the lock while its
        temp file exists, so under the lock any that is left is stale."""
        target = self._target()
        with contextlib.suppress(OSError):
            for leftover in target.parent.glob(f".{glob.escape(target.name)}.*.tmp"):
                with contextlib.suppress(OSError):
                    leftover.unlink()

    def _write(self, doc: tomlkit.TOMLDocument) -> None:
        try:
            # A symlinked config stays a symlink: its target is what gets replaced.
            write_atomic(self._target(), tomlkit.dumps(doc).encode("utf-8"))
        except OSError as exc:
            raise ConfigError(self.path, f"could not be saved ({exc.strerror or exc}); "
                              "the file is unchanged") from None

    def ensure_private(self) -> bool:
        """Make the file owner-only on POSIX. Returns True when it had to be fixed."""
        if os.name != "posix" or not self.path.exists():
            return False
        mode = self.path.stat().st_mode & 0o777
        if mode & 0o077:
            os.chmod(self.path, 0o600)
            return True
        return False


def reference_markdown() -> str:
    """The README's config reference, generated from the schema."""
    infos = field_infos()
    lines: list[str] = []
    for group in GROUPS:
        members = [i for i in infos if i.group == group]
        if not members:
            continue
        lines += [f"**{group}**", "", "| key | type | default | what it does |",
                  "|---|---|---|---|"]
        for info in members:
            default = info.default
            if isinstance(default, bool):
                shown = str(default).lower()
            elif isinstance(default, str):
                shown = f'`"{default}"`' if default else '`""`'
            elif isinstance(default, list):
                shown = f"`{json.dumps(default)}`"  # a TOML array of strings reads the same
            elif isinstance(default, dict) and not default:
                shown = "`{}`"
            else:
                shown = f"`{default}`"
            if shown in ("true", "false"):
                shown = f"`{shown}`"
            secret = " Secret: masked in output." if info.secret else ""
            lines.append(f"| `{info.name}` | {info.type_name} | {shown} | "
                         f"{info.description}{secret} |")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"
