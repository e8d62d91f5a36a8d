"""Shared helpers for the benchmarks: a studio process, process probes, statistics."""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
TOKEN = "bench-bootstrap-token"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def admin(url: str, path: str, body: object | None = None) -> object:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url + path, data=data, method="POST" if data else "GET",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.loads(resp.read())


@contextmanager
def studio_process(protocol: str = "both") -> Iterator[str]:
    """`studio-worker dev-studio` (speaking ``protocol``) in its own process; yields its URL."""
    port = free_port()
    proc = subprocess.Popen([PY, "-m", "workerlib", "dev-studio", "--port", str(port),
                             "--bootstrap-token", TOKEN, "--protocol", protocol], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                admin(url, "/admin/stats")
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its threads, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def rss_mb(pid: int | str = "self", key: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


@dataclass
class Stat:
    values: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    def text(self, fmt: str = "{:.2f}", unit: str = "") -> str:
        if not self.values:
            return "n/a"
        med = fmt.format(self.median)
        if len(self.values) == 1:
            return f"{med}{unit}"
        return (f"{med}{unit} ({fmt.format(min(self.values))}–"
                f"{fmt.format(max(self.values))})")


@dataclass
class Row:
    metric: str
    baseline_name: str
    baseline: Stat
    ours: Stat
    unit: str
    goal: str
    met: bool
    fmt: str = "{:.2f}"
    ratio: float | None = None
    note: str = ""

    def cells(self) -> list[str]:
        ratio = f"{self.ratio:.2f}" if self.ratio is not None else "—"
        base = f"{self.baseline_name}: {self.baseline.text(self.fmt, self.unit)}" \
            if self.baseline.values else self.baseline_name
        return [self.metric, base, self.ours.text(self.fmt, self.unit), ratio, self.goal,
                "yes" if self.met else "**no**"]


def machine() -> str:
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return f"{os.cpu_count()} cores, {model}, Python {sys.version.split()[0]}"
