"""Config tab: every field by group, inline validation, save / reset, engine restart."""

from __future__ import annotations

import math
import typing
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import ValidationError

from app.viewmodels.errors import describe_error, validation_messages
from workerlib.config import GROUPS, Config, FieldInfo, field_infos, get_value, table_fields
from workerlib.control.handle import WorkerHandle
from workerlib.errors import ConfigError

FieldKind = Literal["bool", "text", "number", "list", "table", "secret"]
ENGINE_GROUP = "Engine"


@dataclass(frozen=True)
class FieldView:
    name: str
    label: str
    help: str
    kind: FieldKind
    text: str
    active: bool
    error: str
    dirty: bool
    password: bool
    """Draw the text masked (a secret that is not revealed)."""


@dataclass(frozen=True)
class GroupView:
    name: str
    fields: tuple[FieldView, ...]
    is_engine: bool


@dataclass(frozen=True)
class ConfigView:
    groups: tuple[GroupView, ...] = ()
    dirty: bool = False
    can_save: bool = False
    message: str = ""
    message_is_error: bool = False
    restart_note: str = ""
    restarting: bool = False
    path: str = ""


TABLE_NAMES = {"a1111": "A1111", "comfyui": "ComfyUI", "gradio": "Gradio",
               "diffusers": "Diffusers", "synthetic": "Synthetic"}
"""How a settings table (``comfyui.url``) is named in front of its fields."""
WORDS = {"api": "API", "url": "URL", "vram": "VRAM", "cfg": "CFG", "http": "HTTP",
         "secs": "(seconds)", "gb": "(GiB)", "dtype": "data type"}


def label_for(name: str) -> str:
    """``comfyui.url`` -> "ComfyUI URL", ``heartbeat_interval_secs`` -> "Heartbeat
    interval (seconds)"."""
    table, _, field = name.rpartition(".")
    words = [WORDS.get(word, word) for word in field.split("_")]
    if table:
        words.insert(0, TABLE_NAMES.get(table, table.capitalize()))
    text = " ".join(words)
    return text[:1].upper() + text[1:]


def annotation_of(name: str) -> Any:
    """The type of a field, also of a dotted one inside a settings table (``a1111.url``)."""
    if "." in name:
        table, sub = name.split(".", 1)
        return table_fields()[table].model_fields[sub].annotation
    return Config.model_fields[name].annotation


def _kind(info: FieldInfo) -> FieldKind:
    annotation = annotation_of(info.name)
    if info.secret:
        return "secret"
    if annotation is bool:
        return "bool"
    if annotation in (int, float):
        return "number"
    if typing.get_origin(annotation) is list:
        return "list"
    if typing.get_origin(annotation) is dict:
        return "table"
    return "text"


def candidate(saved: Config, changes: dict[str, Any]) -> dict[str, Any]:
    """The saved config's data with ``changes`` (dotted keys go into their table)."""
    data = saved.model_dump()
    for key, value in changes.items():
        if "." in key:
            table, sub = key.split(".", 1)
            data[table] = {**data[table], sub: value}
        else:
            data[key] = value
    return data


def separator_of(name: str) -> str:
    """Lists are edited on one line: entries split at commas, or at the field's own
    separator (a schedule line may hold commas)."""
    extra = None if "." in name else Config.model_fields[name].json_schema_extra
    return str(extra.get("separator", ",")) if isinstance(extra, dict) else ","


def to_text(value: Any, separator: str = ",") -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    if isinstance(value, list):
        return f"{separator} ".join(str(item) for item in value)
    if isinstance(value, dict):
        return ", ".join(f"{key} = {item}" for key, item in value.items())
    return str(value)


def parse(name: str, text: str) -> Any:
    """The typed value for ``text``; ValueError with a plain reason when it is not one."""
    annotation = annotation_of(name)
    raw = text.strip()
    if annotation is float:
        try:
            number = float(raw)
        except ValueError:
            raise ValueError("must be a number") from None
        if not math.isfinite(number):
            raise ValueError("must be a finite number")
        return number
    if annotation is int:
        try:
            return int(raw)
        except ValueError:
            raise ValueError("must be a whole number") from None
    if typing.get_origin(annotation) is list:
        return [item.strip() for item in raw.split(separator_of(name)) if item.strip()]
    if typing.get_origin(annotation) is dict:
        table: dict[str, str] = {}
        for entry in (item.strip() for item in raw.split(",")):
            if not entry:
                continue
            key, sep, value = entry.partition("=")
            if not sep or not key.strip() or not value.strip():
                raise ValueError("write entries as studio-model = local-name, separated by "
                                 "commas")
            table[key.strip()] = value.strip()
        return table
    return raw


class ConfigViewModel:
    def __init__(self, service: WorkerHandle) -> None:
        self.service = service
        self.infos = field_infos()
        self.kinds = {info.name: _kind(info) for info in self.infos}
        self.saved: Config = service.config.model_copy()
        self.texts: dict[str, str] = {}
        """Unsaved text edits, exactly as typed."""
        self.flags: dict[str, bool] = {}
        """Unsaved switch edits."""
        self.revealed: set[str] = set()
        self.errors: dict[str, str] = {}
        self.message = ""
        self.message_is_error = False
        self.restarting = False

    # -- edits ------------------------------------------------------------------------------
    def saved_value(self, name: str) -> Any:
        return get_value(self.saved, name)

    def set_text(self, name: str, text: str) -> None:
        if text == to_text(self.saved_value(name), separator_of(name)):
            self.texts.pop(name, None)
        else:
            self.texts[name] = text
        self._validate()

    def set_flag(self, name: str, value: bool) -> None:
        if value == self.saved_value(name):
            self.flags.pop(name, None)
        else:
            self.flags[name] = value
        self._validate()

    def toggle_reveal(self, name: str) -> None:
        self.revealed ^= {name}

    def reset(self) -> None:
        """Drop every unsaved edit."""
        self.texts.clear()
        self.flags.clear()
        self.errors.clear()
        self.message, self.message_is_error = "Unsaved changes discarded.", False

    @property
    def dirty(self) -> bool:
        return bool(self.texts or self.flags)

    def changes(self) -> dict[str, Any]:
        """The typed edits that differ from the saved config (only valid ones)."""
        changes: dict[str, Any] = dict(self.flags)
        for name, text in self.texts.items():
            try:
                value = parse(name, text)
            except ValueError:
                continue
            if value != self.saved_value(name):
                changes[name] = value
        return changes

    def _validate(self) -> None:
        errors: dict[str, str] = {}
        for name, text in self.texts.items():
            try:
                parse(name, text)
            except ValueError as exc:
                errors[name] = f"{name}: {exc}"
        try:
            Config.model_validate(candidate(self.saved, self.changes()))
        except ValidationError as exc:
            for key, message in validation_messages(exc).items():
                errors.setdefault(self.field_for(key), message)
        self.errors = errors

    def field_for(self, key: str) -> str:
        """The field an error key belongs to (``engines.0`` → ``engines``)."""
        parts = key.split(".")
        while parts:
            name = ".".join(parts)
            if name in self.kinds:
                return name
            parts.pop()
        return key

    # -- commands ---------------------------------------------------------------------------
    def save(self) -> bool:
        self._validate()
        if self.errors:
            names = ", ".join(sorted(self.errors))
            self.message, self.message_is_error = f"Not saved: fix {names} first.", True
            return False
        changes = self.changes()
        if not changes:
            self.texts.clear()
            self.message, self.message_is_error = "Nothing to save.", False
            return True
        try:
            config = self.service.save_config(changes)
        except ConfigError as exc:
            if exc.key:
                self.errors[self.field_for(exc.key)] = f"{exc.key}: {exc.reason}"
            self.message, self.message_is_error = f"Not saved: {describe_error(exc)}", True
            return False
        except OSError as exc:
            self.message, self.message_is_error = f"Not saved: {exc}", True
            return False
        self.saved = config.model_copy()
        self.texts.clear()
        self.flags.clear()
        self.errors.clear()
        self.message = f"Saved {len(changes)} setting{'s' if len(changes) != 1 else ''}."
        self.message_is_error = False
        return True

    async def apply_and_restart(self) -> None:
        """Save pending edits, then restart the loops (the running job finishes first)."""
        if self.dirty and not self.save():
            return
        self.restarting = True
        self.message, self.message_is_error = "Restarting: the running job finishes first…", False
        try:
            await self.service.restart_loops(start_if_stopped=False)
        except Exception as exc:  # shown in the tab; the worker logs the details
            self.message, self.message_is_error = f"Restart failed: {describe_error(exc)}", True
        else:
            self.message = "Worker loops restarted with the new engine settings."
        finally:
            self.restarting = False

    def sync(self) -> None:
        """The config changed outside this tab: take it, keep edits that still differ."""
        self.saved = self.service.config.model_copy()
        for name in list(self.texts):
            self.set_text(name, self.texts[name])
        for name in list(self.flags):
            self.set_flag(name, self.flags[name])
        self._validate()

    # -- view -------------------------------------------------------------------------------
    def field_view(self, info: FieldInfo) -> FieldView:
        name = info.name
        kind = self.kinds[name]
        saved = self.saved_value(name)
        text = self.texts.get(name, to_text(saved, separator_of(name))) if kind != "bool" else ""
        active = self.flags.get(name, saved) if kind == "bool" else False
        help_text = info.description
        if kind == "list":
            help_text += (" Separate entries with semicolons." if separator_of(name) == ";"
                          else " Separate entries with commas.")
        elif kind == "table":
            help_text += " Write entries as studio-model = local-name, separated by commas."
        return FieldView(
            name=name,
            label=label_for(name),
            help=help_text,
            kind=kind,
            text=text,
            active=bool(active),
            error=self.errors.get(name, ""),
            dirty=name in self.texts or name in self.flags,
            password=kind == "secret" and name not in self.revealed,
        )

    def view(self) -> ConfigView:
        groups = []
        for group in GROUPS:
            members = tuple(self.field_view(i) for i in self.infos if i.group == group)
            if members:
                groups.append(GroupView(group, members, group == ENGINE_GROUP))
        note = ""
        if self.service.status().restart_pending:
            note = ("Engine settings changed: they take effect after the current job, or now "
                    "with Apply and restart loops.")
        return ConfigView(
            groups=tuple(groups),
            dirty=self.dirty,
            can_save=self.dirty and not self.errors,
            message=self.message,
            message_is_error=self.message_is_error,
            restart_note=note,
            restarting=self.restarting,
            path=str(self.service.paths.config_file),
        )
