import logging
import re

from workerlib.logs import (
    REDACTED,
    LogRing,
    Redactor,
    ShipQueue,
    WorkerLogHandler,
    iso_millis,
)
from workerlib.wire import LogEntry


def test_timestamps_are_utc_millis_with_z() -> None:
    assert iso_millis(0) == "1970-01-01T00:00:00.000Z"
    assert iso_millis(1747353600.1234) == "2025-05-16T00:00:00.123Z"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", iso_millis(1.9999))


def _entry(i: int) -> LogEntry:
    return LogEntry(ts=iso_millis(i), level="info", category="t", message=f"m{i}")


def test_ship_queue_drops_oldest_and_says_how_many() -> None:
    queue = ShipQueue(capacity=3)
    for i in range(5):
        queue.put(_entry(i))
    assert len(queue) == 3 and queue.dropped == 2
    batch = queue.take()
    assert batch[0].level == "warn" and "2 log entries were dropped" in batch[0].message
    assert [e.message for e in batch[1:]] == ["m2", "m3", "m4"]
    assert queue.dropped == 0 and len(queue) == 0


def test_failed_batch_is_put_back_in_front() -> None:
    queue = ShipQueue(capacity=10)
    for i in range(4):
        queue.put(_entry(i))
    batch = queue.take(limit=2)
    queue.put(_entry(9))
    queue.put_back(batch)
    assert [e.message for e in queue.take()] == ["m0", "m1", "m2", "m3", "m9"]


def test_put_back_respects_capacity() -> None:
    queue = ShipQueue(capacity=3)
    batch = [_entry(i) for i in range(2)]
    for i in range(2, 4):
        queue.put(_entry(i))
    queue.put_back(batch)
    assert len(queue) == 3 and queue.dropped == 1


def test_ring_keeps_last_entries_with_sequence() -> None:
    ring = LogRing(capacity=3)
    for i in range(5):
        ring.append(float(i), "info", "c", f"m{i}", None)
    lines = ring.lines()
    assert [line.message for line in lines] == ["m2", "m3", "m4"]
    assert [line.seq for line in lines] == [3, 4, 5]


def test_redactor_scrubs_messages_args_and_tracebacks() -> None:
    ring, queue = LogRing(), ShipQueue()
    handler = WorkerLogHandler(ring, queue)
    redactor = Redactor()
    redactor.set_secrets(["tok-SECRET-123", "boot-XYZ-999", ""])
    handler.addFilter(redactor)
    logger = logging.getLogger("workerlib.testredact")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        logger.info("token is %s", "tok-SECRET-123", extra={"job_id": "j1"})
        logger.warning("header Authorization: Bearer whatever-else-here")
        try:
            raise ValueError("bad boot-XYZ-999")
        except ValueError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    text = "\n".join(line.message for line in ring.lines())
    shipped = " ".join(e.message for e in queue.take())
    for blob in (text, shipped):
        assert "tok-SECRET-123" not in blob and "boot-XYZ-999" not in blob
        assert "whatever-else-here" not in blob
        assert REDACTED in blob
    first = ring.lines()[0]
    assert first.category == "testredact" and first.job_id == "j1"


def test_local_only_lines_are_not_shipped() -> None:
    ring, queue = LogRing(), ShipQueue()
    handler = WorkerLogHandler(ring, queue)
    record = logging.LogRecord("workerlib.logs", logging.WARNING, __file__, 1, "x", None, None)
    record.local_only = True
    handler.handle(record)
    assert len(ring) == 1 and len(queue) == 0
