"""A stand-in for the ``pynvml`` module: GPUs whose readings a test sets."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any


class NVMLError(Exception):
    pass


@dataclass
class FakeGpu:
    name: str = "NVIDIA GeForce RTX 4090"
    utilisation: int = 40
    temperature: int = 60
    used: int = 2 * 10**9
    total: int = 24 * 10**9
    power_mw: int = 150_000
    limit_mw: int = 450_000
    broken: set[str] = field(default_factory=set)
    """Readings this GPU refuses (NVMLError), e.g. {"power"}."""


class FakeNvml:
    def __init__(self, gpus: list[FakeGpu] | None = None, *, init_error: bool = False) -> None:
        self.gpus = gpus if gpus is not None else [FakeGpu()]
        self.init_error = init_error
        self.inits = 0
        self.shutdowns = 0
        self.samples = 0

    def nvmlInit(self) -> None:
        self.inits += 1
        if self.init_error:
            raise NVMLError("NVML Shared Library Not Found")

    def nvmlShutdown(self) -> None:
        self.shutdowns += 1

    def nvmlDeviceGetCount(self) -> int:
        self.samples += 1
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeGpu:
        return self.gpus[index]

    @staticmethod
    def _check(gpu: FakeGpu, reading: str) -> None:
        if reading in gpu.broken:
            raise NVMLError(f"{reading}: Not Supported")

    def nvmlDeviceGetName(self, gpu: FakeGpu) -> bytes:
        return gpu.name.encode()

    def nvmlDeviceGetUtilizationRates(self, gpu: FakeGpu) -> Any:
        self._check(gpu, "utilisation")
        return SimpleNamespace(gpu=gpu.utilisation, memory=10)

    def nvmlDeviceGetTemperature(self, gpu: FakeGpu, sensor: int) -> int:
        self._check(gpu, "temperature")
        assert sensor == 0
        return gpu.temperature

    def nvmlDeviceGetMemoryInfo(self, gpu: FakeGpu) -> Any:
        self._check(gpu, "memory")
        return SimpleNamespace(used=gpu.used, total=gpu.total, free=gpu.total - gpu.used)

    def nvmlDeviceGetPowerUsage(self, gpu: FakeGpu) -> int:
        self._check(gpu, "power")
        return gpu.power_mw

    def nvmlDeviceGetEnforcedPowerLimit(self, gpu: FakeGpu) -> int:
        self._check(gpu, "power")
        return gpu.limit_mw
