import os
import subprocess
import sys
import textwrap
from pathlib import Path

from workerlib.instance import (
    InstanceLock,
    describe_holder,
    request_raise,
    take_raise_request,
)


def test_lock_is_exclusive_and_names_its_holder(tmp_path: Path) -> None:
    first = InstanceLock(tmp_path, "ui")
    assert first.acquire()
    second = InstanceLock(tmp_path, "run")
    assert not second.acquire()
    holder = second.holder()
    assert holder is not None and holder["pid"] == os.getpid() and holder["mode"] == "ui"
    first.release()
    assert second.acquire()
    second.release()


def test_lock_is_released_when_the_holder_is_killed(tmp_path: Path) -> None:
    code = textwrap.dedent(f"""
        import os, signal
        from pathlib import Path
        from workerlib.instance import InstanceLock
        assert InstanceLock(Path({str(tmp_path)!r}), "run").acquire()
        print("locked", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=30)
    assert "locked" in proc.stdout and proc.returncode == -9
    lock = InstanceLock(tmp_path, "ui")
    assert lock.acquire()
    lock.release()


def test_messages_and_raise_requests(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    msg = describe_holder({"pid": 42, "mode": "run"}, config)
    assert "headless" in msg and "42" in msg and "systemctl --user stop" in msg
    assert "42" in describe_holder({"pid": 42, "mode": "ui"}, config)
    assert str(config) in describe_holder(None, config)
    assert not take_raise_request(tmp_path)
    request_raise(tmp_path)
    assert take_raise_request(tmp_path)
    assert not take_raise_request(tmp_path)
