"""The worker's one-off exchanges beyond its loops: registering with a bootstrap token,
checking the release feed and installing an update between jobs."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from workerlib import __version__
from workerlib.api import Registration, StudioClient
from workerlib.config import SECRET_KEYS, Config
from workerlib.errors import ConfigError
from workerlib.runtime.registration import register_with_token
from workerlib.runtime.state import UpdateInfo
from workerlib.update import check_for_update
from workerlib.updater import UpdateError, UpdateOutcome, UpdateStatus, apply_update, fetch_latest

if TYPE_CHECKING:
    from workerlib.service.core import WorkerService


async def register(service: WorkerService, bootstrap_token: str | None,
                   api_base_url: str | None) -> Registration:
    """Register (or re-register) with the studio and save the credentials."""
    changes: dict[str, Any] = {}
    if bootstrap_token:
        changes["bootstrap_token"] = bootstrap_token.strip()
    if api_base_url:
        changes["api_base_url"] = api_base_url.strip()
    config = service.config
    if changes:
        # Validate (and keep) what the user typed before talking to the studio.
        Config.model_validate(config.model_copy(update=changes).model_dump())
        known = [getattr(config, k) for k in SECRET_KEYS]
        service.redactor.set_secrets([*known, changes.get("bootstrap_token", "")])
    token = changes.get("bootstrap_token") or config.bootstrap_token
    url = changes.get("api_base_url") or config.api_base_url
    if not token:
        raise ConfigError(service.paths.config_file, "no bootstrap token to register with",
                          key="bootstrap_token")
    return await register_with_token(service, StudioClient(service.http, url), token,
                                     also_save=changes)


async def check_update(service: WorkerService) -> UpdateInfo:
    config = service.config
    info = await check_for_update(service.http, config.auto_update_feed,
                                  allow_prerelease=config.auto_update_prerelease)
    service.state.set_update(info)
    return info


async def install_update(service: WorkerService, can_start: Callable[[], bool]) -> UpdateOutcome:
    """Install the newest release over this bundle when it is newer (see updater)."""
    config = service.config
    try:
        release = await fetch_latest(service.http, config.auto_update_feed,
                                     allow_prerelease=config.auto_update_prerelease)
    except UpdateError as exc:
        return UpdateOutcome(UpdateStatus.FAILED, __version__, None,
                             f"update check failed: {exc}")
    outcome = await apply_update(service.http, release, service.installation,
                                 can_start=can_start)
    if outcome.restart:
        service.restart_requested.set()
    return outcome
