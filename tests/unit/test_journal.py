"""The in-flight journal: what a restarted worker reads back, written in place."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from workerlib.runtime.journal import Journal


def reread(path: Path) -> list[tuple[str, str | None, bool]]:
    return [(e.job_id, e.error, e.retryable) for e in Journal(path).entries()]


def test_entries_survive_a_new_process_and_leave_no_temp_files(tmp_path: Path) -> None:
    path = tmp_path / "state" / "inflight.json"
    journal = Journal(path)
    journal.begin("job-1")
    assert reread(path) == [("job-1", None, True)]
    journal.pending_fail("job-0", "engine crashed", retryable=False)
    assert reread(path) == [("job-1", None, True), ("job-0", "engine crashed", False)]
    journal.done("job-1")
    assert reread(path) == [("job-0", "engine crashed", False)]
    journal.done("job-0")
    assert reread(path) == []
    assert [p.name for p in path.parent.iterdir()] == ["inflight.json"]


def test_a_shorter_document_is_padded_and_an_empty_journal_truncated(tmp_path: Path) -> None:
    path = tmp_path / "inflight.json"
    journal = Journal(path)
    journal.begin("a-long-job-id-" + "x" * 40)
    journal.begin("b")
    long = path.stat().st_size
    journal.done("a-long-job-id-" + "x" * 40)
    text = path.read_text()
    assert len(text) == long and text.endswith(" ")  # padded, still one JSON document
    assert json.loads(text)["jobs"][0]["job_id"] == "b"
    journal.done("b")
    assert path.stat().st_size == 0
    assert reread(path) == []
    journal.begin("c")  # and the next job starts from the front
    assert json.loads(path.read_text())["jobs"][0]["job_id"] == "c"


def test_an_existing_journal_is_read_once_and_rewritten_in_place(tmp_path: Path) -> None:
    path = tmp_path / "inflight.json"
    path.write_text(json.dumps({"jobs": [
        {"job_id": "old", "claimed_at": 1.0, "error": None, "retryable": True},
        {"claimed_at": 2.0}, "not an entry"]}) + " " * 100)
    journal = Journal(path)
    assert [e.job_id for e in journal.entries()] == ["old"]
    journal.done("old")
    assert path.stat().st_size == 0


@pytest.mark.parametrize("content", ["", "{not json", "[1, 2]", "\xff\xfe"])
def test_an_unreadable_journal_counts_as_empty(tmp_path: Path, content: str) -> None:
    path = tmp_path / "inflight.json"
    path.write_text(content, encoding="latin-1")
    journal = Journal(path)
    assert journal.entries() == []
    journal.begin("fresh")
    assert reread(path) == [("fresh", None, True)]


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_the_journal_is_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "inflight.json"
    path.write_text("")
    path.chmod(0o644)
    Journal(path).begin("job")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    fresh = tmp_path / "new" / "inflight.json"
    Journal(fresh).begin("job")
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o600
