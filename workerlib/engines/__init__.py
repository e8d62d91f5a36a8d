"""Engines turn a task into a result; ``create_engine`` builds one from its config name."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from workerlib.engines.base import (
    BinaryResult,
    CannotServe,
    Engine,
    EngineError,
    EngineResult,
    JsonResult,
    ProgressCallback,
)
from workerlib.engines.multi import MultiEngine
from workerlib.engines.synthetic import SyntheticEngine

__all__ = [
    "ENGINE_CONSTRUCTORS",
    "KNOWN_ENGINES",
    "MULTI_ENGINE",
    "BinaryResult",
    "CannotServe",
    "Engine",
    "EngineConfigError",
    "EngineError",
    "EngineResult",
    "JsonResult",
    "MultiEngine",
    "ProgressCallback",
    "SyntheticEngine",
    "UnknownEngine",
    "create_engine",
]

MULTI_ENGINE = "multi"

# One entry per single backend; a new engine only needs a line here.
ENGINE_CONSTRUCTORS: dict[str, Callable[[], Engine]] = {
    "synthetic": SyntheticEngine,
}

KNOWN_ENGINES: tuple[str, ...] = (*sorted(ENGINE_CONSTRUCTORS), MULTI_ENGINE)


class EngineConfigError(ValueError):
    """The configured engine cannot be built; ``key`` is the config key at fault."""

    def __init__(self, message: str, *, key: str) -> None:
        super().__init__(message)
        self.key = key


class UnknownEngine(EngineConfigError):
    """The name in the config is not an engine this worker knows."""

    def __init__(self, name: str, *, key: str = "engine") -> None:
        # A multi engine's members cannot be 'multi' themselves.
        names = KNOWN_ENGINES if key == "engine" else tuple(sorted(ENGINE_CONSTRUCTORS))
        known = ", ".join(names)
        super().__init__(
            f"unknown engine {name!r} in config key '{key}'; known engines: {known}",
            key=key,
        )
        self.name = name


def _normalise(name: str) -> str:
    return name.strip().lower()


def create_engine(name: str, *, members: Sequence[str] = ()) -> Engine:
    """Build the engine called ``name`` (config key ``engine``).

    ``"multi"`` fronts the engines named in ``members`` (config key ``engines``),
    each built by this factory; a multi engine cannot contain another one.
    """
    key = _normalise(name)
    if key == MULTI_ENGINE:
        if not members:
            raise EngineConfigError(
                "engine 'multi' needs at least one member engine in config key 'engines'",
                key="engines",
            )
        built: list[Engine] = []
        for member in members:
            member_key = _normalise(member)
            if member_key == MULTI_ENGINE:
                raise EngineConfigError(
                    "engine 'multi' cannot contain another 'multi' engine (config key 'engines')",
                    key="engines",
                )
            constructor = ENGINE_CONSTRUCTORS.get(member_key)
            if constructor is None:
                raise UnknownEngine(member, key="engines")
            built.append(constructor())
        return MultiEngine(built)
    constructor = ENGINE_CONSTRUCTORS.get(key)
    if constructor is None:
        raise UnknownEngine(name)
    return constructor()
