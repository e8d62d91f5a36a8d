"""Detect the GPU memory advertised as ``vramTotalGb`` (STUDIO_API.md §4).

Probes run in order (NVML, ``nvidia-smi``, ``/proc/driver/nvidia``) and the first
that knows wins. The result is in GiB (MiB / 1024, 2**30 bytes) rounded to 0.1, for
the largest GPU, the unit the studio counts ``vramGbEstimate`` and
``vramThresholdGb`` in (a 24 GiB card is 24.0, not 25.8); 0.0 means unknown. Nothing
here raises. ``STUDIO_WORKER_VRAM_GB`` (also in GiB) overrides detection, e.g. for
GPUs none of the probes understands.

Detection may block for a few seconds (``nvidia-smi``); async callers should use
``asyncio.to_thread``.
"""

from __future__ import annotations

import functools
import math
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

ENV_OVERRIDE = "STUDIO_WORKER_VRAM_GB"
NVIDIA_SMI_TIMEOUT_S = 5.0
PROC_GPUS_DIR = Path("/proc/driver/nvidia/gpus")

Probe = Callable[[], float | None]
"""Returns the largest GPU's memory in bytes, or None when it cannot tell."""

_MIB = 1024 * 1024
GIB = 1024 * _MIB
"""Bytes per unit of every VRAM figure the worker shows or sends."""
_UNITS: dict[str, int] = {
    "b": 1,
    "kb": 1024,
    "kib": 1024,
    # NVIDIA's tools say MB and mean MiB.
    "mb": _MIB,
    "mib": _MIB,
    "gb": 1024 * _MIB,
    "gib": 1024 * _MIB,
}
_VIDEO_MEMORY_RE = re.compile(
    r"^\s*Video Memory:\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]+)?\s*$", re.MULTILINE
)


def _largest(values: Sequence[float]) -> float | None:
    usable = [v for v in values if math.isfinite(v) and v > 0]
    return max(usable) if usable else None


def probe_nvml() -> float | None:
    """Total memory of the largest GPU according to NVML (``pynvml``)."""
    try:
        import pynvml
    except Exception:
        return None
    try:
        pynvml.nvmlInit()
    except Exception:
        return None
    try:
        totals: list[float] = []
        for index in range(int(pynvml.nvmlDeviceGetCount())):
            try:
                handle = pynvml.nvmlDeviceGetHandleByIndex(index)
                totals.append(float(pynvml.nvmlDeviceGetMemoryInfo(handle).total))
            except Exception:
                # One broken or inaccessible device must not hide the others.
                continue
        return _largest(totals)
    except Exception:
        return None
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:
            pass


def probe_nvidia_smi(timeout: float = NVIDIA_SMI_TIMEOUT_S) -> float | None:
    """Total memory of the largest GPU according to ``nvidia-smi`` (MiB per line)."""
    try:
        exe = shutil.which("nvidia-smi")
        if exe is None:
            return None
        done = subprocess.run(
            [exe, "--query-gpu=memory.total", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            return None
        totals: list[float] = []
        for line in done.stdout.splitlines():
            try:
                totals.append(float(line.strip()) * _MIB)
            except ValueError:
                continue
        return _largest(totals)
    except Exception:
        return None


def probe_proc(root: Path | None = None) -> float | None:
    """Total memory of the largest GPU from ``<root>/*/information``.

    Only older drivers write a ``Video Memory:`` line there; on recent ones this
    probe cannot tell and returns None.
    """
    base = PROC_GPUS_DIR if root is None else root
    try:
        totals: list[float] = []
        for info in sorted(base.glob("*/information")):
            try:
                text = info.read_text(encoding="utf-8", errors="replace")
            except OSError:
                continue
            for match in _VIDEO_MEMORY_RE.finditer(text):
                unit = (match.group(2) or "MB").lower()
                factor = _UNITS.get(unit)
                if factor is not None:
                    totals.append(float(match.group(1)) * factor)
        return _largest(totals)
    except Exception:
        return None


DEFAULT_PROBES: tuple[Probe, ...] = (probe_nvml, probe_nvidia_smi, probe_proc)


def _env_override() -> float | None:
    raw = os.environ.get(ENV_OVERRIDE, "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        return None
    if not math.isfinite(value) or value < 0:
        return None
    return round(value, 1)


def env_override_problem() -> str | None:
    """Why ``STUDIO_WORKER_VRAM_GB`` is set but not used, or None."""
    raw = os.environ.get(ENV_OVERRIDE, "").strip()
    if raw and _env_override() is None:
        shown = raw if len(raw) <= 40 else raw[:39] + "…"
        return (f"{ENV_OVERRIDE}={shown!r} is not a number of GiB (0 or more): ignored, "
                "the GPU is detected instead")
    return None


def vram_source() -> str:
    """How ``detect_vram_gb`` got its answer, for people: "detected" or "set by ..."."""
    return f"set by {ENV_OVERRIDE}" if _env_override() is not None else "detected"


def _run_probes(probes: tuple[Probe, ...]) -> float:
    for probe in probes:
        try:
            total = probe()
        except Exception:
            continue
        if (
            isinstance(total, int | float)
            and not isinstance(total, bool)
            and math.isfinite(total)
            and total > 0
        ):
            return round(total / GIB, 1)
    return 0.0


_detect = functools.cache(_run_probes)


def detect_vram_gb(probes: Sequence[Probe] | None = None) -> float:
    """Total VRAM of the largest GPU in GiB (2**30 bytes, rounded to 0.1); 0.0 if unknown.

    ``STUDIO_WORKER_VRAM_GB`` (a number >= 0) wins over detection; an invalid value
    is ignored. Detection results are cached per probe sequence (``reset_cache``).
    """
    override = _env_override()
    if override is not None:
        return override
    chosen = tuple(DEFAULT_PROBES if probes is None else probes)
    try:
        return _detect(chosen)
    except TypeError:
        # A probe object that is not hashable cannot be a cache key.
        return _run_probes(chosen)


def reset_cache() -> None:
    """Forget cached detection results (tests, or after a GPU was hot-plugged)."""
    _detect.cache_clear()
