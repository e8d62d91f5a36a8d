"""The CPU form of bench/gpu.py as rows of `make bench` (the tiny pipeline, no GPU)."""

from __future__ import annotations

import json
import subprocess

from bench.common import PY, ROOT, Row, Stat

GPU_NOTE = ("CPU form only: a tiny random-weight pipeline on this machine's CPU shows that "
            "bench/gpu.py runs; the goal is for a GPU, where `python3 bench/gpu.py --shape "
            "sd15` (and `--shape sdxl`, `--variants compile,channels_last,fuse_qkv`) measures it")


def run(quick: bool) -> list[Row]:
    argv = [PY, str(ROOT / "bench" / "gpu.py"), "--shape", "tiny", "--device", "cpu",
            # Enough rounds to see past a shared machine's noise (3 × 4 images did not).
            "--rounds", "2" if quick else "6", "--jobs", "3" if quick else "6",
            "--cold-starts", "1" if quick else "3"]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=1800,
                          check=True)
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    phases = {line["phase"]: line for line in lines}
    bare, first = phases["bare"], phases["first_result"]
    load = float(first["bare_start_to_pipeline_loaded_s"])
    start = float(first["worker_start_to_first_result_s"])
    rows = []
    for protocol, how in (("v1", "the result uploads while the next job runs"),
                          ("v2", "the studio offers the next job only once it has the result")):
        worker = phases[f"worker-{protocol}"]
        ratio = float(worker["throughput_vs_bare"])
        rows.append(Row(
            f"diffusers, tiny pipeline on the CPU (bench/gpu.py CPU form): images/s, worker "
            f"over {protocol} vs bare loop with WebP encode", "bare loop",
            Stat([1 / v for v in bare["s_per_image_per_round"]]),
            Stat([1 / v for v in worker["s_per_image_per_round"]]), " images/s",
            "≥ 0.97 of bare (on a GPU)", ratio >= 0.97, "{:.2f}", ratio,
            note=f"{GPU_NOTE}; {protocol}: {how}; engine alone (encoding in line): "
                 f"{phases['engine']['throughput_vs_bare']:.2f} of bare"))
    rows.append(
        Row("diffusers, tiny pipeline on the CPU: start to first result",
            "bare script: start to pipeline loaded", Stat([load]), Stat([start]), " s",
            "≤ load + 2 s (on a GPU)", start <= load + 2.0, "{:.1f}", start / load,
            note=f"bare script's start to its first image: "
                 f"{first['bare_start_to_first_image_s']:.1f} s"))
    return rows
