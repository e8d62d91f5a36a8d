"""Which worker the window shows, in words (no window needed)."""

from __future__ import annotations

from app.viewmodels.link import compare, render_link, window_title
from workerlib.runtime.link import Link


def link(**changes: object) -> Link:
    base = {"attached": True, "connected": True, "pid": 4242, "version": "0.2.0"}
    return Link.model_validate({**base, **changes})


def test_its_own_worker_needs_no_words() -> None:
    own = link(attached=False)
    assert not render_link(own, "0.2.0").shown
    assert window_title(own) == "Studio Worker"


def test_attached_to_the_same_version() -> None:
    view = render_link(link(), "0.2.0")
    assert view.shown and view.tone == "ok" and view.action == ""
    assert view.text == "Connected to the background worker (pid 4242)."
    assert window_title(link()) == "Studio Worker — connected to the background worker (pid 4242)"


def test_a_window_newer_or_older_than_the_worker_offers_a_restart() -> None:
    newer = render_link(link(version="0.1.9"), "0.2.0")
    assert "It runs studio-worker 0.1.9; this window is 0.2.0 (newer)." in newer.text
    assert newer.action == "restart" and newer.action_label == "Restart it into 0.2.0"
    older = render_link(link(version="0.3.0-rc.1"), "0.2.0")
    assert "(older)" in older.text and older.tone == "warn"
    assert compare("0.2.0", "0.2.0-rc.1") == "newer"
    assert compare("dev", "0.2.0") == "different"


def test_a_stopped_worker_is_said_and_offered_a_start() -> None:
    gone = link(connected=False)
    view = render_link(gone, "0.2.0")
    assert view.tone == "error" and view.action == "start"
    assert view.text.startswith("The background worker stopped. This window shows")
    broken = render_link(link(connected=False, problem="the connection broke: OSError"), "0")
    assert broken.text.startswith("The background worker stopped (the connection broke: OSE")
    assert window_title(gone) == "Studio Worker — the background worker stopped"
