"""Errors are data: every user-facing error has a short title and a plain message.

    WorkerError
    ├── ConfigError            the config file is unreadable, malformed or invalid
    ├── StudioError            a studio call did not succeed
    │   ├── StudioUnreachable  connection refused, DNS, reset, timeout
    │   └── StudioHTTPError    a non-2xx reply
    │       └── StudioAuthError    401/403: the token was refused
    └── BadClaim               a claim reply that is not a valid JobClaim

The GUI shows ``title`` and ``str(error)`` verbatim; code branches on the class and
on attributes, never on message text.
"""

from __future__ import annotations

from pathlib import Path


class WorkerError(Exception):
    title: str = "Error"


class ConfigError(WorkerError):
    title = "Configuration problem"

    def __init__(
        self, path: Path, message: str, *, key: str | None = None, line: int | None = None
    ) -> None:
        where = str(path)
        if line is not None:
            where += f", line {line}"
        if key is not None:
            where += f", key '{key}'"
        super().__init__(f"{where}: {message}")
        self.path = path
        self.key = key
        self.line = line
        self.reason = message


class StudioError(WorkerError):
    title = "Studio request failed"

    def __init__(self, operation: str, message: str) -> None:
        super().__init__(message)
        self.operation = operation

    @property
    def transient(self) -> bool:
        """Worth retrying: the studio was unreachable, busy, broken or redirected us,
        rather than refusing (a 4xx)."""
        return True


class StudioUnreachable(StudioError):
    title = "Studio unreachable"


class StudioHTTPError(StudioError):
    def __init__(self, operation: str, status: int, reason: str, body: str) -> None:
        detail = f" — {body}" if body else ""
        super().__init__(operation, f"{operation} failed: {status} {reason}{detail}")
        self.status = status
        self.body = body

    @property
    def transient(self) -> bool:
        return 300 <= self.status < 400 or self.status >= 500 or self.status in (408, 425, 429)


class StudioAuthError(StudioHTTPError):
    title = "Not authorised"


class BadClaim(WorkerError):
    title = "Invalid job from the studio"

    def __init__(self, message: str, job_id: str | None, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.job_id = job_id
        self.retryable = retryable
        """True when the job is fine but its reply was lost on the way (cut off)."""
