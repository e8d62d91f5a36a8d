"""The stats store: summaries, bounds, a damaged file, and a kill -9 in mid-write."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from datetime import datetime
from pathlib import Path

import pytest

import workerlib.stats as stats_module
from workerlib.stats import StatsStore, summarise, text_report

NOW = datetime(2026, 11, 25, 12, 30).timestamp()


def test_summary_buckets_means_and_breakdown(tmp_path: Path) -> None:
    store = StatsStore(tmp_path / "stats.sqlite3")
    store.record("a", "image", "sdxl", "completed", 4.0, NOW - 60)
    store.record("b", "image", "sdxl", "completed", 6.0, NOW - 90)
    store.record("c", "image", "sdxl", "failed", 1.0, NOW - 120)
    store.record("d", "llm", "llama", "completed", 2.0, NOW - 3 * 3600)
    store.record("e", "llm", "llama", "completed", 2.0, NOW - 3 * 86400)  # this week only
    store.record("f", "llm", "llama", "completed", 2.0, NOW - 30 * 86400)  # too old to show
    summary = store.summary(NOW)
    assert (summary.day.completed, summary.day.failed) == (3, 1)
    assert (summary.week.completed, summary.week.failed) == (4, 1)
    assert summary.day.mean_secs == 4.0
    assert summary.day.jobs_per_hour == 3 / 24
    assert len(summary.day.buckets) == 24 and len(summary.week.buckets) == 7
    assert summary.day.buckets[-1].completed == 2 and summary.day.buckets[-1].failed == 1
    assert summary.day.buckets[-4].completed == 1
    assert summary.week.buckets[-1].completed == 3 and summary.week.buckets[-4].completed == 1
    first = summary.by_kind_model[0]
    assert (first.kind, first.model, first.completed, first.failed, first.mean_secs) == (
        "image", "sdxl", 2, 1, 5.0)
    text = text_report(summary)
    assert "last 24 hours: 3 completed, 1 failed" in text
    assert "image · sdxl" in text and "mean 5.0 s" in text
    assert store.count() == 6
    store.close()


def test_empty_summary_and_json_round_trip() -> None:
    summary = summarise([], NOW)
    assert summary.empty and summary.day.mean_secs is None
    assert "no jobs in the last 7 days" in text_report(summary)
    assert type(summary).model_validate_json(summary.model_dump_json()) == summary


def test_a_damaged_file_is_moved_aside(tmp_path: Path) -> None:
    path = tmp_path / "stats.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    store = StatsStore(path)
    store.record("a", "image", "m", "completed", 1.0, NOW)
    assert store.count() == 1
    assert [p.name for p in tmp_path.glob("stats.sqlite3.broken-*")]
    store.close()


def test_long_fields_are_cut(tmp_path: Path) -> None:
    store = StatsStore(tmp_path / "stats.sqlite3")
    store.record("j" * 5000, "image", "m" * 5000, "completed", 1.0, NOW)
    assert len(store.summary(NOW).by_kind_model[0].model) == 200
    store.close()


WRITER = textwrap.dedent("""
    import sqlite3, sys
    from workerlib.stats import StatsStore
    store = StatsStore(__import__("pathlib").Path(sys.argv[1]))
    for i in range(200):
        store.record(f"job-{i}", "image", "sdxl", "completed", 1.0, float(sys.argv[2]) - i)
    print("committed 200", flush=True)
    # Now a big write that never commits: pages spill into the WAL while we are killed.
    db = store._open()
    db.execute("BEGIN IMMEDIATE")
    for i in range(20000):
        db.execute("INSERT INTO jobs (job_id, kind, model, outcome, duration_secs, finished_at)"
                   " VALUES (?, 'image', ?, 'completed', 1.0, ?)",
                   (f"x{i}", "m" * 150, float(sys.argv[2])))
    print("mid-write", flush=True)
    sys.stdin.read()
""")


def test_the_store_survives_kill_9_in_mid_write(tmp_path: Path) -> None:
    path = tmp_path / "stats.sqlite3"
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(NOW)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=root,
                            env={**os.environ, "PYTHONPATH": str(root)})
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "committed 200"
    assert proc.stdout.readline().strip() == "mid-write"
    assert Path(f"{path}-wal").stat().st_size > 0  # the uncommitted pages are on disk
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    store = StatsStore(path)
    assert store.count() == 200  # every committed job, none of the half-written ones
    store.record("after", "image", "sdxl", "completed", 1.0, NOW)
    assert store.count() == 201
    store.close()


async def test_rows_recorded_on_the_loop_are_written_together(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stats_module, "FLUSH_SECS", 0.0)
    path = tmp_path / "stats.sqlite3"
    store = StatsStore(path)
    reader = StatsStore(path)
    for i in range(3):
        store.record(f"job-{i}", "image", "m", "completed", 1.0, NOW)
    assert reader.count() == 0  # one transaction for the three, after this turn of the loop
    for _ in range(500):
        await asyncio.sleep(0.01)
        if reader.count() == 3:
            break
    assert reader.count() == 3
    store.record("job-3", "image", "m", "failed", 1.0, NOW)
    assert store.summary(NOW).day.failed == 1  # reading writes the pending rows first
    store.record("job-4", "image", "m", "failed", 1.0, NOW)
    store.close()  # and so does closing
    assert reader.count() == 5
    reader.close()
