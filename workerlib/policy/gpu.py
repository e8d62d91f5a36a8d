"""GPU health from NVML (utilisation, temperature, memory, power per GPU) and the heat
and power rules built on it.

Without an NVIDIA GPU (or without NVML) there is simply nothing to show: the sampler
logs once at debug level and tries again only every few minutes.
"""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

from workerlib.policy.hold import Hold
from workerlib.sanitize import display

log = logging.getLogger("workerlib.gpu")
RETRY_INIT_SECS = 300.0
TEMP_HYSTERESIS_C = 5.0
"""Claiming resumes once every GPU is this much below ``max_gpu_temp_c``."""
POWER_HYSTERESIS = 0.10
"""... and draws at most this fraction below ``max_gpu_power_w``."""
_NVML_TEMPERATURE_GPU = 0


class GpuHealth(BaseModel):
    """One GPU, one sample; a reading the driver would not give is None."""

    model_config = ConfigDict(frozen=True)

    index: int
    name: str
    utilisation_pct: float | None = None
    temperature_c: float | None = None
    memory_used_bytes: int | None = None
    memory_total_bytes: int | None = None
    power_w: float | None = None
    power_limit_w: float | None = None

    @field_validator("name")
    @classmethod
    def _safe(cls, value: str) -> str:
        return display(value, 120)

    def describe(self) -> str:
        parts = [f"GPU {self.index} {self.name}"]
        if self.utilisation_pct is not None:
            parts.append(f"{self.utilisation_pct:.0f}%")
        if self.temperature_c is not None:
            parts.append(f"{self.temperature_c:.0f} °C")
        if self.memory_used_bytes is not None and self.memory_total_bytes:
            parts.append(f"{self.memory_used_bytes / 2**30:.1f} / "
                         f"{self.memory_total_bytes / 2**30:.1f} GiB")
        if self.power_w is not None:
            parts.append(f"{self.power_w:.0f} W")
        return " · ".join(parts)


def _load_pynvml() -> ModuleType | None:
    try:
        return importlib.import_module("pynvml")
    except Exception:
        return None


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class GpuSampler:
    """Keeps NVML initialised between samples; ``sample()`` never raises."""

    def __init__(self, nvml: Any = None, clock: Callable[[], float] = time.monotonic) -> None:
        """``nvml``: the pynvml module or an object like it (tests); None loads pynvml."""
        self._loader: Callable[[], Any] = (lambda: nvml) if nvml is not None else _load_pynvml
        self._nvml: Any = None
        self._clock = clock
        self._next_try = 0.0
        self._failed_once = False

    def _init(self) -> Any:
        if self._nvml is not None:
            return self._nvml
        now = self._clock()
        if now < self._next_try:
            return None
        self._next_try = now + RETRY_INIT_SECS
        module = self._loader()
        if module is None:
            return None
        try:
            module.nvmlInit()
        except Exception as exc:
            if not self._failed_once:
                log.debug("no GPU health: NVML did not start (%s)", exc)
                self._failed_once = True
            return None
        self._nvml = module
        return module

    def sample(self) -> list[GpuHealth]:
        nvml = self._init()
        if nvml is None:
            return []
        try:
            count = int(nvml.nvmlDeviceGetCount())
        except Exception as exc:
            log.debug("NVML stopped answering (%s); trying again later", exc)
            self.close()
            return []
        gpus: list[GpuHealth] = []
        for index in range(count):
            try:
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
            except Exception:
                continue
            gpus.append(self._one(nvml, index, handle))
        return gpus

    @staticmethod
    def _one(nvml: Any, index: int, handle: Any) -> GpuHealth:
        def read(fn: Callable[[], Any]) -> Any:
            try:
                return fn()
            except Exception:  # a reading this GPU or driver does not offer
                return None

        name = read(lambda: _text(nvml.nvmlDeviceGetName(handle))) or f"GPU {index}"
        util = read(lambda: float(nvml.nvmlDeviceGetUtilizationRates(handle).gpu))
        temp = read(lambda: float(nvml.nvmlDeviceGetTemperature(handle, _NVML_TEMPERATURE_GPU)))
        memory = read(lambda: nvml.nvmlDeviceGetMemoryInfo(handle))
        power = read(lambda: nvml.nvmlDeviceGetPowerUsage(handle) / 1000.0)
        limit = read(lambda: nvml.nvmlDeviceGetEnforcedPowerLimit(handle) / 1000.0)
        return GpuHealth(
            index=index, name=name, utilisation_pct=util, temperature_c=temp,
            memory_used_bytes=int(memory.used) if memory is not None else None,
            memory_total_bytes=int(memory.total) if memory is not None else None,
            power_w=power, power_limit_w=limit,
        )

    def close(self) -> None:
        nvml, self._nvml = self._nvml, None
        if nvml is not None:
            try:
                nvml.nvmlShutdown()
            except Exception:
                pass


class ThermalGuard:
    """``max_gpu_temp_c`` / ``max_gpu_power_w`` with hysteresis: a hold starts above the
    limit and lifts only once every GPU is clearly below it, so a GPU hovering at the
    limit does not flap between claiming and not."""

    def __init__(self) -> None:
        self.hot = False
        self.power_hungry = False

    def update(self, gpus: Sequence[GpuHealth], max_temp_c: float,
               max_power_w: float) -> Hold | None:
        temps = [(g, g.temperature_c) for g in gpus if g.temperature_c is not None]
        powers = [(g, g.power_w) for g in gpus if g.power_w is not None]
        if max_temp_c <= 0 or not temps:
            self.hot = False
        elif self.hot:
            self.hot = any(t > max_temp_c - TEMP_HYSTERESIS_C for _g, t in temps)
        else:
            self.hot = any(t > max_temp_c for _g, t in temps)
        if max_power_w <= 0 or not powers:
            self.power_hungry = False
        elif self.power_hungry:
            self.power_hungry = any(p > max_power_w * (1 - POWER_HYSTERESIS) for _g, p in powers)
        else:
            self.power_hungry = any(p > max_power_w for _g, p in powers)
        if self.hot:
            gpu, temp = max(temps, key=lambda pair: pair[1])
            return Hold(rule="heat", text=f"Paused: GPU {gpu.index} is hot ({temp:.0f} °C, "
                        f"limit {max_temp_c:g} °C); resumes below "
                        f"{max_temp_c - TEMP_HYSTERESIS_C:g} °C")
        if self.power_hungry:
            gpu, power = max(powers, key=lambda pair: pair[1])
            return Hold(rule="power", text=f"Paused: GPU {gpu.index} draws {power:.0f} W "
                        f"(limit {max_power_w:g} W); resumes below "
                        f"{max_power_w * (1 - POWER_HYSTERESIS):.0f} W")
        return None
