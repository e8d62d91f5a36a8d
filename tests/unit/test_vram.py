"""VRAM detection: every probe on injected data, fallback order, caching, overrides."""

from __future__ import annotations

import os
import shutil
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import workerlib.vram as vram
from workerlib.vram import (
    ENV_OVERRIDE,
    Probe,
    detect_vram_gb,
    probe_nvidia_smi,
    probe_nvml,
    probe_proc,
    reset_cache,
)

MIB = 1024 * 1024
GIB = 1024 * MIB


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv(ENV_OVERRIDE, raising=False)
    reset_cache()
    yield
    reset_cache()


# --- NVML -------------------------------------------------------------------------------


class FakeNvml(types.ModuleType):
    def __init__(
        self, totals: list[int | None], *, init_error: bool = False, count_error: bool = False
    ) -> None:
        super().__init__("pynvml")
        self.totals = totals
        self.init_error = init_error
        self.count_error = count_error
        self.shutdowns = 0

    def nvmlInit(self) -> None:
        if self.init_error:
            raise RuntimeError("NVML Shared Library Not Found")

    def nvmlShutdown(self) -> None:
        self.shutdowns += 1

    def nvmlDeviceGetCount(self) -> int:
        if self.count_error:
            raise RuntimeError("driver gone")
        return len(self.totals)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> Any:
        total = self.totals[handle]
        if total is None:
            raise RuntimeError("GPU is lost")
        return types.SimpleNamespace(total=total, free=0, used=total)


def test_nvml_reports_the_largest_gpu_and_shuts_down(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeNvml([8 * GIB, 24 * GIB, 12 * GIB])
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    assert probe_nvml() == 24 * GIB
    assert fake.shutdowns == 1
    assert detect_vram_gb(probes=[probe_nvml]) == 24.0


def test_nvml_skips_a_broken_device(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", FakeNvml([None, 16 * GIB]))
    assert probe_nvml() == 16 * GIB


@pytest.mark.parametrize(
    "fake",
    [
        FakeNvml([8 * GIB], init_error=True),
        FakeNvml([8 * GIB], count_error=True),
        FakeNvml([]),
        FakeNvml([None]),
        FakeNvml([0]),
    ],
)
def test_nvml_unknown_when_it_cannot_tell(monkeypatch: pytest.MonkeyPatch, fake: FakeNvml) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    assert probe_nvml() is None


def test_nvml_unknown_without_pynvml(monkeypatch: pytest.MonkeyPatch) -> None:
    # None in sys.modules makes ``import pynvml`` raise ImportError.
    monkeypatch.setitem(sys.modules, "pynvml", None)
    assert probe_nvml() is None


# --- nvidia-smi -------------------------------------------------------------------------


def _fake_smi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "nvidia-smi"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    return tmp_path / "args.txt"


def test_nvidia_smi_reports_the_largest_gpu(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = _fake_smi(
        tmp_path, monkeypatch, f"echo \"$@\" > '{tmp_path}/args.txt'\nprintf '8192\\n24576\\n'"
    )
    assert probe_nvidia_smi() == 24576 * MIB
    assert args.read_text().split() == [
        "--query-gpu=memory.total",
        "--format=csv,noheader,nounits",
    ]
    assert detect_vram_gb(probes=[probe_nvidia_smi]) == 24.0


def test_nvidia_smi_ignores_unparsable_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_smi(tmp_path, monkeypatch, "printf '[N/A]\\n 12288 \\n\\n'")
    assert probe_nvidia_smi() == 12288 * MIB


@pytest.mark.parametrize(
    "body",
    [
        "echo 'NVIDIA-SMI has failed because it could not communicate with the driver'; exit 9",
        "printf '[N/A]\\n'",
        "printf ''",
        "printf '0\\n-5\\nnan\\n'",
    ],
)
def test_nvidia_smi_unknown_on_failure_or_garbage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str
) -> None:
    _fake_smi(tmp_path, monkeypatch, body)
    assert probe_nvidia_smi() is None


def test_nvidia_smi_missing_binary_is_fine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert probe_nvidia_smi() is None


def test_nvidia_smi_hang_is_cut_by_the_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sleep = shutil.which("sleep")
    assert sleep is not None
    pid_file = tmp_path / "pid"
    _fake_smi(tmp_path, monkeypatch, f"echo $$ > {pid_file}; exec {sleep} 600")
    # Returning at all means the timeout cut the hung tool (it would sleep 10 minutes);
    # and the tool was killed and reaped, not left behind.
    assert probe_nvidia_smi(timeout=0.3) is None
    if pid_file.exists():  # (a very slow start may be cut before it wrote its pid)
        with pytest.raises(ProcessLookupError):
            os.kill(int(pid_file.read_text()), 0)


def test_nvidia_smi_default_timeout_is_five_seconds() -> None:
    assert vram.NVIDIA_SMI_TIMEOUT_S == 5.0
    assert probe_nvidia_smi.__defaults__ == (5.0,)


# --- /proc/driver/nvidia ----------------------------------------------------------------


def _gpu_info(root: Path, bus: str, text: str) -> None:
    gpu = root / bus
    gpu.mkdir(parents=True)
    (gpu / "information").write_text(text)


OLD_DRIVER_INFO = """\
Model: \t\t GeForce GTX 1080
IRQ:   \t\t 130
Video BIOS: \t 86.04.17.00.01
Bus Type: \t PCIe
Video Memory: \t {mem}
Bus Location: \t 0000:01:00.0
"""

NEW_DRIVER_INFO = """\
Model: \t\t NVIDIA GeForce RTX 4090
IRQ:   \t\t 190
GPU UUID: \t GPU-00000000-0000-0000-0000-000000000000
Video BIOS: \t 95.02.18.80.5f
Bus Type: \t PCIe
DMA Size: \t 47 bits
Bus Location: \t 0000:01:00.0
"""


def test_proc_reads_video_memory_of_the_largest_gpu(tmp_path: Path) -> None:
    _gpu_info(tmp_path, "0000:01:00.0", OLD_DRIVER_INFO.format(mem="8192 MB"))
    _gpu_info(tmp_path, "0000:02:00.0", OLD_DRIVER_INFO.format(mem="11264 MB"))
    assert probe_proc(tmp_path) == 11264 * MIB


@pytest.mark.parametrize(
    ("mem", "expected"),
    [("4096 MB", 4096 * MIB), ("4 GB", 4 * GIB), ("2048 MiB", 2048 * MIB), ("2048", 2048 * MIB)],
)
def test_proc_understands_units(tmp_path: Path, mem: str, expected: int) -> None:
    _gpu_info(tmp_path, "0000:01:00.0", OLD_DRIVER_INFO.format(mem=mem))
    assert probe_proc(tmp_path) == expected


@pytest.mark.parametrize(
    "text",
    [NEW_DRIVER_INFO, OLD_DRIVER_INFO.format(mem="lots"), OLD_DRIVER_INFO.format(mem="12 XB"), ""],
)
def test_proc_unknown_without_a_usable_line(tmp_path: Path, text: str) -> None:
    _gpu_info(tmp_path, "0000:01:00.0", text)
    assert probe_proc(tmp_path) is None


def test_proc_unknown_without_the_tree(tmp_path: Path) -> None:
    assert probe_proc(tmp_path / "missing") is None


def test_proc_defaults_to_the_driver_tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _gpu_info(tmp_path, "0000:01:00.0", OLD_DRIVER_INFO.format(mem="6144 MB"))
    monkeypatch.setattr(vram, "PROC_GPUS_DIR", tmp_path)
    assert probe_proc() == 6144 * MIB


# --- detect_vram_gb ---------------------------------------------------------------------


class Recorder:
    def __init__(self, value: Any = None, *, error: bool = False) -> None:
        self.value = value
        self.error = error
        self.calls = 0

    def __call__(self) -> Any:
        self.calls += 1
        if self.error:
            raise RuntimeError("probe exploded")
        return self.value


def test_default_probe_order_is_nvml_smi_proc() -> None:
    assert (probe_nvml, probe_nvidia_smi, probe_proc) == vram.DEFAULT_PROBES


def test_first_probe_that_knows_wins() -> None:
    first, second, third = Recorder(None), Recorder(12 * GIB), Recorder(80 * GIB)
    assert detect_vram_gb(probes=[first, second, third]) == 12.0
    assert (first.calls, second.calls, third.calls) == (1, 1, 0)


def test_vram_is_in_gib_as_the_studio_counts_it_rounded_to_a_tenth() -> None:
    # MiB / 1024, like the studio and the Rust worker: a 24 GiB card is 24.0, not 25.8.
    assert vram.GIB == 2**30
    assert detect_vram_gb(probes=[Recorder(8 * GIB)]) == 8.0
    assert detect_vram_gb(probes=[Recorder(80 * 1024 * MIB)]) == 80.0
    assert detect_vram_gb(probes=[Recorder(24_000_000_000)]) == 22.4
    # An H200 as NVML reports it (143 771 MiB): 140.4 GiB, where decimal GB said 150.8.
    assert detect_vram_gb(probes=[Recorder(143_771 * MIB)]) == 140.4
    assert detect_vram_gb(probes=[Recorder(12_288 * MIB - 1)]) == 12.0


def test_unknown_is_zero() -> None:
    assert detect_vram_gb(probes=[Recorder(None), Recorder(None)]) == 0.0
    assert detect_vram_gb(probes=[]) == 0.0


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -1.0, 0, "8", True, object()])
def test_bad_probe_values_are_skipped(bad: Any) -> None:
    fallback = Recorder(4 * GIB)
    assert detect_vram_gb(probes=[Recorder(bad), fallback]) == 4.0
    assert fallback.calls == 1


def test_a_raising_probe_never_escapes() -> None:
    assert detect_vram_gb(probes=[Recorder(error=True)]) == 0.0
    assert detect_vram_gb(probes=[Recorder(error=True), Recorder(2 * GIB)]) == 2.0


def test_results_are_memoised_until_reset() -> None:
    probe = Recorder(6 * GIB)
    probes: list[Probe] = [probe]
    assert detect_vram_gb(probes=probes) == 6.0
    probe.value = 9 * GIB
    assert detect_vram_gb(probes=probes) == 6.0
    assert probe.calls == 1
    reset_cache()
    assert detect_vram_gb(probes=probes) == 9.0
    assert probe.calls == 2


def test_default_probes_can_be_replaced_at_module_level(monkeypatch: pytest.MonkeyPatch) -> None:
    probe = Recorder(16 * GIB)
    monkeypatch.setattr(vram, "DEFAULT_PROBES", (probe,))
    assert detect_vram_gb() == 16.0
    assert detect_vram_gb() == 16.0
    assert probe.calls == 1


def test_fallback_chain_with_real_probes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # NVML broken, nvidia-smi missing, old driver's /proc file present.
    monkeypatch.setitem(sys.modules, "pynvml", FakeNvml([], init_error=True))
    monkeypatch.setenv("PATH", str(tmp_path))
    proc = tmp_path / "gpus"
    _gpu_info(proc, "0000:01:00.0", OLD_DRIVER_INFO.format(mem="8192 MB"))
    monkeypatch.setattr(vram, "PROC_GPUS_DIR", proc)
    assert detect_vram_gb() == 8.0


def test_nvml_wins_over_later_probes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", FakeNvml([40 * GIB]))
    _fake_smi(tmp_path, monkeypatch, "printf '81920\\n'")
    assert detect_vram_gb() == 40.0


@pytest.mark.parametrize(("raw", "expected"), [("11.04", 11.0), (" 24 ", 24.0), ("0", 0.0)])
def test_env_override_wins_without_probing(
    monkeypatch: pytest.MonkeyPatch, raw: str, expected: float
) -> None:
    probe = Recorder(80 * GIB)
    monkeypatch.setenv(ENV_OVERRIDE, raw)
    assert detect_vram_gb(probes=[probe]) == expected
    assert probe.calls == 0


@pytest.mark.parametrize("raw", ["abc", "-3", "nan", "inf", ""])
def test_invalid_env_override_is_ignored(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv(ENV_OVERRIDE, raw)
    assert detect_vram_gb(probes=[Recorder(3 * GIB)]) == 3.0


def test_env_override_is_read_on_every_call(monkeypatch: pytest.MonkeyPatch) -> None:
    probe = Recorder(5 * GIB)
    assert detect_vram_gb(probes=[probe]) == 5.0
    monkeypatch.setenv(ENV_OVERRIDE, "7")
    assert detect_vram_gb(probes=[probe]) == 7.0


def test_real_machine_never_raises() -> None:
    value = detect_vram_gb()
    assert isinstance(value, float)
    assert value >= 0.0


def test_the_override_names_itself_and_an_invalid_one_is_reported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(vram.ENV_OVERRIDE, raising=False)
    assert vram.vram_source() == "detected" and vram.env_override_problem() is None
    monkeypatch.setenv(vram.ENV_OVERRIDE, "8")
    assert vram.vram_source() == "set by STUDIO_WORKER_VRAM_GB"
    assert vram.env_override_problem() is None
    for bad in ("eight", "-1", "nan"):
        monkeypatch.setenv(vram.ENV_OVERRIDE, bad)
        assert vram.vram_source() == "detected"
        problem = vram.env_override_problem()
        assert problem is not None and f"STUDIO_WORKER_VRAM_GB='{bad}'" in problem
        assert "ignored" in problem
