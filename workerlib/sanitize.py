"""Text from outside (the studio, a backend, an error) made safe to show or store.

Three steps, in this order, for every string that reaches a log line, the status file,
``studio-worker status`` or the window:

1. :func:`redact` — every secret the process knows (``auth_token``, ``bootstrap_token``,
   registered by :func:`remember_secrets`), any ``Bearer …`` value, the password of a
   URL's user-info and token-like query parameters become ``[redacted]``;
2. :func:`escape_controls` — control characters (ESC and the rest of C0/C1, DEL, the
   bidi overrides) are written as ``\\xNN`` / ``\\uNNNN``, so a job id cannot clear the
   terminal, set its title or forge a log line;
3. :func:`truncate` — long strings are cut with ``…`` and the number of characters left
   out.

Secrets are kept process-wide: a value once known stays redacted even after the config
forgets it (a rotated token in an old error message must not show either).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable

REDACTED = "[redacted]"
DISPLAY_CHARS = 2000
"""The longest single value shown in status, the status file or the window."""
MIN_SECRET_CHARS = 4
"""Shorter values would redact ordinary words; real tokens are long."""

_BEARER = re.compile(r"(Bearer\s+)[^\s\"',;]+", re.IGNORECASE)
_URL_PASSWORD = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^/\s:@]*:)[^@\s/]+(@)", re.IGNORECASE)
_TOKEN_PARAM = re.compile(
    r"([?&](?:token|access_token|auth_token|bootstrap_token|api_key|apikey|key|secret|"
    r"password)=)[^&#\s\"']+", re.IGNORECASE)
# C0 controls, DEL, C1 controls, and the Unicode format characters that reorder or hide
# text (bidi overrides and isolates, zero-width joiners, BOM).
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")
_CONTROLS_BUT_NEWLINES = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")

_lock = threading.Lock()
_secrets: frozenset[str] = frozenset()


def remember_secrets(values: Iterable[str]) -> None:
    """Add values that must never be shown (they are never forgotten)."""
    global _secrets
    new = {v for v in values if v and len(v) >= MIN_SECRET_CHARS}
    if new - _secrets:
        with _lock:
            _secrets = _secrets | new


def redact(text: str, extra: Iterable[str] = ()) -> str:
    for secret in (*_secrets, *extra):
        if secret in text:
            text = text.replace(secret, REDACTED)
    if "earer" in text or "://" in text or "=" in text:
        text = _BEARER.sub(rf"\g<1>{REDACTED}", text)
        text = _URL_PASSWORD.sub(rf"\g<1>{REDACTED}\g<2>", text)
        text = _TOKEN_PARAM.sub(rf"\g<1>{REDACTED}", text)
    return text


def _escape_char(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape_controls(text: str, *, keep_newlines: bool = False) -> str:
    """Control characters as visible escapes; ``keep_newlines`` keeps ``\\n`` and ``\\t``."""
    pattern = _CONTROLS_BUT_NEWLINES if keep_newlines else _CONTROLS
    if pattern.search(text) is None:
        return text
    return pattern.sub(_escape_char, text)


def has_controls(text: str) -> bool:
    return _CONTROLS.search(text) is not None


def truncate(text: str, limit: int = DISPLAY_CHARS) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text)} characters in all)"


def display(text: str, limit: int = DISPLAY_CHARS, *, keep_newlines: bool = False) -> str:
    """Redacted, escaped and truncated: ready for a screen, a terminal or a file."""
    original = len(text)
    # Only the head is worked on (cheap on a 1 MB string); the margin keeps a secret
    # that straddles the limit recognisable.
    head = text if original <= limit + 512 else text[: limit + 512]
    shown = escape_controls(redact(head), keep_newlines=keep_newlines)
    if len(shown) <= limit and len(head) == original:
        return shown
    return f"{shown[:limit]}… ({original} characters in all)"
