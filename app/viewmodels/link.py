"""The line that says which worker this window shows: its own, or the background
worker it is attached to (with what to do when that one stopped or differs)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from app.viewmodels.tones import Tone
from workerlib.runtime.link import Link
from workerlib.update import parse_version

TITLE = "Studio Worker"
LinkAction = Literal["", "start", "restart"]


@dataclass(frozen=True)
class LinkView:
    shown: bool = False
    text: str = ""
    tone: Tone = "muted"
    action: LinkAction = ""
    action_label: str = ""


def compare(window: str, worker: str) -> str:
    """'newer' or 'older' (this window against the worker), '' when they are equal."""
    if window == worker:
        return ""
    mine, theirs = parse_version(window), parse_version(worker)
    if mine is None or theirs is None:
        return "different"
    return "newer" if mine > theirs else "older"


def render_link(link: Link, window_version: str) -> LinkView:
    if not link.attached:
        return LinkView()
    if not link.connected:
        why = f" ({link.problem})" if link.problem else ""
        return LinkView(True, f"The background worker stopped{why}. This window shows what it "
                        "last knew; start it again to go on.", "error", "start",
                        "Start background worker")
    text = f"Connected to the background worker (pid {link.pid})."
    relation = compare(window_version, link.version)
    if relation:
        return LinkView(True, f"{text} It runs studio-worker {link.version}; this window is "
                        f"{window_version} ({relation}).", "warn", "restart",
                        f"Restart it into {window_version}")
    return LinkView(True, text, "ok")


def window_title(link: Link) -> str:
    if not link.attached:
        return TITLE
    if not link.connected:
        return f"{TITLE} — the background worker stopped"
    return f"{TITLE} — connected to the background worker (pid {link.pid})"
