"""Secrets never leak; the config file survives concurrent writers."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from tests.conftest import BOOTSTRAP, ServiceFactory
from workerlib.cli import main
from workerlib.config import ConfigStore
from workerlib.engines.base import EngineError, ProgressCallback
from workerlib.engines.synthetic import SyntheticEngine
from workerlib.paths import resolve_paths
from workerlib.wire import Task


class LeakyEngine(SyntheticEngine):
    """An engine whose errors quote the token, as a careless backend might."""

    token = ""

    async def generate(self, model: str, task: Task, progress: ProgressCallback) -> Any:
        if "fail" in getattr(task, "prompt", ""):
            raise EngineError(f"backend said: token {self.token} refused", retryable=False)
        return await super().generate(model, task, progress)


async def test_a_whole_session_writes_no_secret_anywhere(
    studio: Any, make_service: ServiceFactory, tmp_path: Path, capsys: Any
) -> None:
    engine = LeakyEngine()
    service = await make_service(engine=engine)
    token = service.config.auth_token
    engine.token = token
    snapshots: list[str] = []
    service.subscribe(lambda event: snapshots.append(service.status().model_dump_json())
                      if event.kind == "status" else None)
    # An error page that quotes the request's Authorization header (status, status.json,
    # the window), and fail reports the studio will not take yet (the journal keeps them).
    studio.inject_fault("heartbeat", status=502, count=3,
                        body=f"bad gateway; request had Authorization: Bearer {token}")
    studio.inject_fault("fail", status=503, count=1000, body="later")
    for prompt in ("ok one", "please fail", "ok two"):
        studio.enqueue(model="synthetic", task={"kind": "image", "prompt": prompt})
    await service.start(until_idle=True)

    def failing_heartbeat_published() -> bool:
        # Once the worker has taken in the error page (not just once the studio sent it),
        # write status.json as the worker does while the error is the latest heartbeat.
        heartbeat = service.state.last_heartbeat
        if heartbeat is None or heartbeat.ok:
            return False
        service.publish_status_file(force=True)
        return True

    await studio.wait_for(failing_heartbeat_published)
    live_status = service.paths.status_file.read_text()
    where = resolve_paths(str(service.paths.config_file)).status_file
    where.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(service.paths.status_file, where)  # `status` below shows it live
    assert main(["--config", str(service.paths.config_file), "status"]) == 0
    loops = service.loops
    assert loops is not None
    await asyncio.wait_for(asyncio.shield(loops.claim_task()), 20)
    await service.close()
    journal = service.paths.journal_file.read_bytes()
    shutil.copyfile(service.paths.status_file, where)
    assert main(["--config", str(service.paths.config_file), "status"]) == 0
    assert main(["--config", str(service.paths.config_file), "config"]) == 0
    out = capsys.readouterr()

    secrets = [token, BOOTSTRAP]
    blobs: dict[str, bytes] = {"stdout+stderr": (out.out + out.err).encode()}
    for path in tmp_path.rglob("*"):
        if path.is_file() and path != service.paths.config_file and \
                not path.name.startswith("config.toml"):
            blobs[str(path)] = path.read_bytes()
    blobs["shipped logs"] = json.dumps(studio.logs).encode()
    blobs["ui ring"] = "\n".join(line.message for line in service.log_lines()).encode()
    blobs["status snapshot"] = service.status().model_dump_json().encode()
    blobs["every snapshot"] = "\n".join(snapshots).encode()
    blobs["live status file"] = live_status.encode()
    blobs["journal"] = journal
    # What reached the studio other than the credentials themselves (headers, register).
    blobs["fail reports"] = b"".join(r.body for r in studio.requests if r.endpoint == "fail")
    assert any("log" in name for name in blobs)
    for name, blob in blobs.items():
        for secret in secrets:
            assert secret.encode() not in blob, f"{secret[:4]}… leaked into {name}"
    assert b"token [redacted] refused" in blobs["fail reports"]
    assert b"token [redacted] refused" in journal  # the undelivered fail, kept for later
    assert "[redacted]" in live_status and "bad gateway" in live_status


def test_concurrent_writers_never_tear_the_file(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("# my settings — keep this comment\nengine = \"synthetic\"\n")
    writer = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from workerlib.config import ConfigStore
        store = ConfigStore(Path({str(path)!r}))
        for i in range(400):
            if sys.argv[1] == "cli":
                store.update({{"vram_threshold_gb": float(i % 24), "auto_enabled": i % 2 == 0}})
            else:
                config = store.load()
                config.claim_interval_secs = 1 + i % 7
                store.save(config)
    """)
    reader = textwrap.dedent(f"""
        import time
        from pathlib import Path
        from workerlib.config import ConfigStore
        store = ConfigStore(Path({str(path)!r}))
        reads = 0
        deadline = time.monotonic() + 120
        while not Path({str(tmp_path / "done")!r}).exists() and time.monotonic() < deadline:
            store.load()  # raises (and fails the test) on a torn file
            reads += 1
        print(reads)
    """)
    procs = [subprocess.Popen([sys.executable, "-c", writer, role]) for role in ("cli", "app")]
    read_proc = subprocess.Popen([sys.executable, "-c", reader], stdout=subprocess.PIPE, text=True)
    # The third writer is this process, like the CLI's `disable` next to a running app.
    store = ConfigStore(path)
    for i in range(200):
        store.update({"auto_update_prerelease": i % 2 == 1})
    assert all(p.wait(timeout=300) == 0 for p in procs)
    (tmp_path / "done").touch()
    out, _ = read_proc.communicate(timeout=60)
    assert read_proc.returncode == 0
    assert int(out) > 10
    final = ConfigStore(path).load()
    assert final.vram_threshold_gb == 399 % 24 and final.auto_enabled is False
    assert final.claim_interval_secs == 1 + 399 % 7
    assert final.auto_update_prerelease is True
    assert path.read_text().startswith("# my settings — keep this comment\n")
