"""Turn the facade's exceptions into the plain words the tabs show."""

from __future__ import annotations

from pydantic import ValidationError

from workerlib.errors import ConfigError, WorkerError


def validation_messages(exc: ValidationError) -> dict[str, str]:
    """``{field: "field: message"}`` for every field a pydantic error names."""
    messages: dict[str, str] = {}
    for error in exc.errors():
        if error.get("type") == "insecure_url":  # a model-level check about api_base_url
            name = "api_base_url"
        else:
            name = ".".join(str(part) for part in error.get("loc") or ("value",))
        text = str(error.get("msg", "is not valid")).removeprefix("Value error, ")
        messages.setdefault(name, f"{name}: {text}")
    return messages


def describe_error(exc: BaseException) -> str:
    """One line for a refusal: the error's title and its own message."""
    if isinstance(exc, ValidationError):
        return "; ".join(validation_messages(exc).values())
    if isinstance(exc, ConfigError) and exc.key:
        return f"{exc.key}: {exc.reason}"
    if isinstance(exc, WorkerError):
        return f"{exc.title}: {exc}"
    return str(exc) or type(exc).__name__
