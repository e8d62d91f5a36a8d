"""Getting a worker id and token: v1 ``register`` with a bootstrap token, or a v2
request an operator approves (docs/PROTOCOL.md §3.1).

``Registrar.step`` does one step and says how long to wait before the next, so the
loops, ``studio-worker register`` and the tests all drive the same code.
"""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from typing import Any

from workerlib.api import Registration, StudioClient
from workerlib.errors import StudioAuthError, StudioError, StudioHTTPError
from workerlib.logs import get_logger
from workerlib.runtime.host import Host
from workerlib.runtime.state import Approval
from workerlib.runtime.timing import Backoff
from workerlib.wire import Approved, Rejected

log = get_logger("register")

POLL_SECS = 30.0
V1_GONE = frozenset({404, 410})
NO_TOKEN = "not registered: set bootstrap_token in the config or use Register"


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


async def register_with_token(
    host: Host, client: StudioClient, token: str, *, also_save: dict[str, Any] | None = None,
) -> Registration:
    """v1: register (or re-register) with a bootstrap token and save the credentials
    (with ``also_save``: what the user typed, kept only once it worked)."""
    config = host.config
    registration = await client.register(token, host.capabilities(), config.worker_id or None)
    host.save_config({**(also_save or {}), "worker_id": registration.worker_id,
                      "auth_token": registration.auth_token})
    host.state.set_unauthorised(False)
    host.state.set_error(None)
    host.state.set_approval(None)
    log.info("registered with %s as worker %s", client.base_url, registration.worker_id)
    return registration


class Registrar:
    def __init__(self, host: Host, *, poll_secs: float = POLL_SECS) -> None:
        self.host = host
        self.poll_secs = poll_secs
        self._refused = False
        self._v1_gone = False
        self._rejected = False
        self._backoff = Backoff()
        self._waiting_since: float | None = None
        self.last_failure: StudioError | None = None
        """The last step's failure (the studio unreachable...), None after a success."""

    def config_changed(self) -> None:
        """A changed config may hold a new token, address or a reset: try again."""
        self._refused = False
        if not self.host.config.registration_request_id:
            self._rejected = False

    async def step(self) -> float:
        """One registration step; returns the seconds to wait before the next one."""
        self.last_failure = None
        config = self.host.config
        if config.is_registered():
            return 0.0
        if config.protocol != "v2" and config.bootstrap_token and not self._v1_gone:
            return await self._v1_step()
        if config.protocol == "v1":
            self.host.state.set_error(NO_TOKEN)
            return self.poll_secs
        return await self._v2_step()

    # -- v1 ----------------------------------------------------------------------------------
    async def _v1_step(self) -> float:
        if self._refused:
            return self.poll_secs  # until the config changes; the refusal is already shown
        try:
            await register_with_token(self.host, self.host.client, self.host.config.bootstrap_token)
        except StudioAuthError as exc:
            self._refused = True
            self.host.state.set_error(str(exc))
            log.error("%s", exc)
            return self.poll_secs
        except StudioHTTPError as exc:
            if exc.status in V1_GONE and self.host.config.protocol == "auto":
                log.info("the studio has no v1 register (%d): asking for approval instead",
                         exc.status)
                self._v1_gone = True
                return 0.0
            return self._failed(exc)
        except StudioError as exc:
            return self._failed(exc)
        self._backoff.reset()
        return 0.0

    def _failed(self, exc: StudioError) -> float:
        self.last_failure = exc
        if not self._backoff.failing:
            log.warning("registration failed, will retry: %s", exc)
        return self._backoff.next_delay()

    # -- v2 ----------------------------------------------------------------------------------
    async def _v2_step(self) -> float:
        if self._rejected:
            return self.poll_secs  # stop asking until a reset
        host = self.host
        config = host.config
        if not config.install_id or not config.registration_secret:
            host.save_config({
                "install_id": config.install_id or str(uuid.uuid4()),
                "registration_secret": secrets.token_hex(32),
                "registration_request_id": "",
            })
            config = host.config
        client = host.client
        try:
            if not config.registration_request_id:
                request_id = await client.register_request(
                    config.install_id, secret_hash(config.registration_secret),
                    host.capabilities())
                host.save_config({"registration_request_id": request_id})
                self._waiting_since = time.time()
                self._show_waiting(request_id)
                log.info("asked the studio at %s to approve this PC; waiting for an operator",
                         config.api_base_url)
                self._backoff.reset()
                return self.poll_secs
            decision = await client.poll_registration(config.registration_request_id,
                                                      config.registration_secret)
        except StudioHTTPError as exc:
            if exc.status == 404 and config.registration_request_id:
                log.warning("the studio forgot this PC's registration request; asking again")
                host.save_config({"registration_request_id": "", "registration_secret": ""})
                host.state.set_approval(None)
                return 0.0
            return self._failed(exc)
        except StudioError as exc:
            return self._failed(exc)
        self._backoff.reset()
        if isinstance(decision, Approved):
            host.save_config({"worker_id": decision.worker_id, "auth_token": decision.auth_token,
                              "registration_request_id": "", "registration_secret": ""})
            host.state.set_approval(None)
            host.state.set_error(None)
            host.state.set_unauthorised(False)
            log.info("the studio approved this PC: registered as worker %s", decision.worker_id)
            return 0.0
        if isinstance(decision, Rejected):
            self._rejected = True
            reason = decision.reason or "no reason given"
            host.state.set_approval(Approval(
                phase="rejected", request_id=config.registration_request_id,
                since=self._waiting_since or time.time(), reason=reason))
            log.warning("the studio rejected this PC's registration: %s", reason)
            return self.poll_secs
        self._show_waiting(config.registration_request_id)
        return self.poll_secs

    def _show_waiting(self, request_id: str) -> None:
        if self._waiting_since is None:
            self._waiting_since = time.time()
        self.host.state.set_approval(Approval(phase="waiting", request_id=request_id,
                                              since=self._waiting_since))


def reset_changes() -> dict[str, str]:
    """What ``register --reset`` / Start over clear (the install id stays: it is this PC)."""
    return {"worker_id": "", "auth_token": "", "registration_request_id": "",
            "registration_secret": ""}
