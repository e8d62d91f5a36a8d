"""Smoke tests of a built bundle (scripts/build-bundle). Skipped unless
``STUDIO_WORKER_BUNDLE`` names the bundle's executable, e.g.

    scripts/build-bundle onedir
    STUDIO_WORKER_BUNDLE=dist/onedir/StudioWorker/StudioWorker .venv/bin/pytest tests/bundle -q
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

BUNDLE_ENV = "STUDIO_WORKER_BUNDLE"
HERE = Path(__file__).resolve().parent


def bundle_path() -> Path | None:
    value = os.environ.get(BUNDLE_ENV)
    if not value:
        return None
    path = Path(value).expanduser().resolve()
    return path if path.is_file() and os.access(path, os.X_OK) else None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if bundle_path() is not None:
        return
    reason = (f"{BUNDLE_ENV} is not set to a built bundle (scripts/build-bundle)"
              if not os.environ.get(BUNDLE_ENV) else
              f"{BUNDLE_ENV}={os.environ[BUNDLE_ENV]} is not an executable file")
    skip = pytest.mark.skip(reason=reason)
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(skip)


@pytest.fixture
def bundle() -> Path:
    path = bundle_path()
    assert path is not None
    return path
