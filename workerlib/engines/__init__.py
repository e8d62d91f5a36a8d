"""Engines turn a task into a result.

``build_engine`` builds the configured engine from the whole config (addresses, tables,
model_map, models_root); ``create_engine`` builds one by name with default settings.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from workerlib.engines.a1111 import A1111Engine
from workerlib.engines.base import (
    BinaryResult,
    CannotServe,
    Engine,
    EngineConfigError,
    EngineError,
    EngineResult,
    JsonResult,
    ProgressCallback,
)
from workerlib.engines.comfyui import ComfyUIEngine
from workerlib.engines.diffusers import DiffusersEngine
from workerlib.engines.gradio import GradioEngine
from workerlib.engines.multi import MultiEngine
from workerlib.engines.synthetic import SyntheticEngine

if TYPE_CHECKING:  # config imports this package: importing it back at run time would loop
    from workerlib.config import Config

__all__ = [
    "ENGINE_CONSTRUCTORS",
    "KNOWN_ENGINES",
    "MULTI_ENGINE",
    "A1111Engine",
    "BinaryResult",
    "CannotServe",
    "ComfyUIEngine",
    "DiffusersEngine",
    "Engine",
    "EngineConfigError",
    "EngineError",
    "EngineResult",
    "GradioEngine",
    "JsonResult",
    "MultiEngine",
    "ProgressCallback",
    "SyntheticEngine",
    "UnknownEngine",
    "build_engine",
    "create_engine",
]

MULTI_ENGINE = "multi"

# One entry per single backend, built with default settings; a new engine needs a line
# here and one in _CONFIGURED below.
ENGINE_CONSTRUCTORS: dict[str, Callable[[], Engine]] = {
    "a1111": A1111Engine,
    "comfyui": ComfyUIEngine,
    "diffusers": DiffusersEngine,
    "gradio": GradioEngine,
    "synthetic": SyntheticEngine,
}

KNOWN_ENGINES: tuple[str, ...] = (*sorted(ENGINE_CONSTRUCTORS), MULTI_ENGINE)


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


def _build(name: str, members: Sequence[str], single: Callable[[str, str], Engine]) -> Engine:
    """``single(normalised_name, original_name)`` builds each single engine."""
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
            if member_key not in ENGINE_CONSTRUCTORS:
                raise UnknownEngine(member, key="engines")
            built.append(single(member_key, member))
        return MultiEngine(built)
    if key not in ENGINE_CONSTRUCTORS:
        raise UnknownEngine(name)
    return single(key, name)


def create_engine(name: str, *, members: Sequence[str] = ()) -> Engine:
    """Build the engine called ``name`` (config key ``engine``) with default settings.

    ``"multi"`` fronts the engines named in ``members`` (config key ``engines``),
    each built by this factory; a multi engine cannot contain another one.
    """
    return _build(name, members, lambda key, _name: ENGINE_CONSTRUCTORS[key]())


def build_engine(config: Config) -> Engine:
    """Build the configured engine (and a multi engine's members) from the whole config.

    Raises EngineConfigError (UnknownEngine for a bad name) naming the config key at fault.
    """

    def single(key: str, _name: str) -> Engine:
        return _CONFIGURED[key](config)

    return _build(config.engine, config.engines, single)


def _gradio(config: Config) -> Engine:
    return GradioEngine(config.gradio_endpoint_url, settings=config.gradio,
                        model_map=config.model_map)


def _a1111(config: Config) -> Engine:
    return A1111Engine(config.a1111, model_map=config.model_map)


def _comfyui(config: Config) -> Engine:
    return ComfyUIEngine(config.comfyui, model_map=config.model_map)


def _diffusers(config: Config) -> Engine:
    return DiffusersEngine(config.models_root, model_map=config.model_map,
                           settings=config.diffusers)


def _synthetic(config: Config) -> Engine:
    return SyntheticEngine(delay_secs=config.synthetic.delay_secs)


_CONFIGURED: dict[str, Callable[[Config], Engine]] = {
    "a1111": _a1111,
    "comfyui": _comfyui,
    "diffusers": _diffusers,
    "gradio": _gradio,
    "synthetic": _synthetic,
}
