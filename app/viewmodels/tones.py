"""Semantic colours the view-models name and the kv files map to RGBA."""

from __future__ import annotations

from typing import Literal

Tone = Literal["ok", "busy", "paused", "error", "muted", "warn"]

BADGE_TONES: dict[str, Tone] = {
    "Idle": "ok",
    "Busy": "busy",
    "Paused": "paused",
    "Disconnected": "error",
    "Not authorised": "error",
    "Not registered": "muted",
    "Engine offline": "error",
    "Cooling down": "paused",
    "Waiting for approval": "warn",
    "Rejected": "error",
}

LEVEL_TONES: dict[str, Tone] = {"info": "muted", "warn": "warn", "error": "error"}
