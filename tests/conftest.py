"""Shared fixtures: a real local studio on loopback and services wired to it."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

# Nothing a test does may touch the real user's config, logs or state.
os.environ.pop("STUDIO_WORKER_CONFIG", None)
os.environ.pop("STUDIO_WORKER_VRAM_GB", None)

from tests.fakes._server import WAIT_FLOOR_SECS

BOOTSTRAP = "boot-TOKEN-8c1f5e0d7a"
"""Recognisable so secret scans can look for it."""


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STUDIO_WORKER_HOME", str(tmp_path / "home"))


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    from workerlib.runtime import job

    monkeypatch.setattr(job, "RETRY_BASE_SECS", 0.01)


@pytest.fixture
async def studio() -> AsyncIterator[Any]:
    from workerlib.devstudio import DevStudio

    server = DevStudio(bootstrap_token=BOOTSTRAP)
    server.wait_floor_secs = WAIT_FLOOR_SECS
    await server.start()
    yield server
    await server.stop()


ServiceFactory = Callable[..., Awaitable[Any]]


@pytest.fixture
async def make_service(
    tmp_path: Path, studio: Any, fast_retries: None
) -> AsyncIterator[ServiceFactory]:
    from workerlib.config import ConfigStore
    from workerlib.engines.synthetic import SyntheticEngine
    from workerlib.paths import Paths
    from workerlib.service import WorkerService

    services: list[WorkerService] = []

    async def factory(
        *, register: bool = True, engine: Any = None, name: str = "w", vram: float = 16.0,
        policy_probes: Any = None, loop_options: dict[str, float] | None = None,
        **config: Any,
    ) -> WorkerService:
        root = tmp_path / name
        paths = Paths(config_file=root / "config.toml", log_dir=root / "logs",
                      state_dir=root / "state", cache_dir=root / "cache")
        settings = {
            "api_base_url": studio.url,
            "bootstrap_token": BOOTSTRAP,
            "heartbeat_interval_secs": 0.2,
            "claim_interval_secs": 0.1,
            "auto_update_enabled": False,
            # The v1 suites pin v1; the v2 suites (test_channel.py) ask for v2 or auto.
            "protocol": "v1",
        }
        settings.update(config)
        if isinstance(engine, str):  # a config engine name rather than an instance
            settings["engine"], engine = engine, None
        ConfigStore(paths.config_file).update(settings)
        service = WorkerService(
            paths,
            engine_factory=(lambda _c: engine) if engine is not None else (
                lambda c: SyntheticEngine() if c.engine == "synthetic" else _factory(c)),
            vram_probe=lambda: vram,
            policy_probes=policy_probes,
            loop_options=loop_options,
        )
        services.append(service)
        await service.open()
        if register:
            await service.register()
        return service

    def _factory(c: Any) -> Any:
        from workerlib.engines import build_engine

        return build_engine(c)

    yield factory
    for service in services:
        await service.close(drain_secs=0.2)
