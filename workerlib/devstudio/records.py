"""What the dev studio remembers about jobs, workers and requests."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal

JobStatus = Literal["queued", "claimed", "completed", "failed"]
JOB_STATUSES: tuple[JobStatus, ...] = ("queued", "claimed", "completed", "failed")


@dataclass
class JobRecord:
    job_id: str
    game_id: str
    asset_name: str
    model: str
    vram_gb_estimate: float
    task: dict[str, Any] | None
    prompt: str | None
    ext: str | None
    status: JobStatus = "queued"
    attempts: int = 0
    worker_id: str | None = None
    claimed_at: float | None = None
    finished_at: float | None = None
    result_bytes: bytes | None = None
    result_ext: str | None = None
    result_content_type: str | None = None
    result_filename: str | None = None
    result_prompt: str | None = None
    result_json: Any = None
    error: str | None = None
    retryable: bool | None = None
    fail_history: list[dict[str, Any]] = field(default_factory=list)
    model_source: dict[str, Any] | None = None
    offered_to: str | None = None
    """v2: the worker an offer is out to (no one else gets the job meanwhile)."""
    rejects: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """Admin view: everything but the result bytes."""
        return {
            "jobId": self.job_id,
            "gameId": self.game_id,
            "assetName": self.asset_name,
            "model": self.model,
            "vramGbEstimate": self.vram_gb_estimate,
            "task": self.task,
            "prompt": self.prompt,
            "ext": self.ext,
            "status": self.status,
            "attempts": self.attempts,
            "workerId": self.worker_id,
            "claimedAt": self.claimed_at,
            "finishedAt": self.finished_at,
            "resultSize": None if self.result_bytes is None else len(self.result_bytes),
            "resultExt": self.result_ext,
            "resultContentType": self.result_content_type,
            "resultFilename": self.result_filename,
            "resultPrompt": self.result_prompt,
            "resultJson": self.result_json,
            "error": self.error,
            "retryable": self.retryable,
            "failHistory": self.fail_history,
            "offeredTo": self.offered_to,
            "rejects": self.rejects,
        }


@dataclass
class WorkerRecord:
    worker_id: str
    auth_token: str
    capabilities: dict[str, Any]
    registered_at: float = field(default_factory=time.time)
    # Monotonic seconds of the last accepted heartbeat; None until the first one.
    last_heartbeat: float | None = None
    heartbeats: int = 0
    current_job_id: str | None = None
    claims: int = 0
    claims_while_paused: int = 0
    # Monotonic seconds of the last register or heartbeat: what staleness is measured from.
    last_seen: float = field(default_factory=time.monotonic)

    def summary(self) -> dict[str, Any]:
        """Admin view. The auth token is deliberately absent."""
        return {
            "workerId": self.worker_id,
            "capabilities": self.capabilities,
            "registeredAt": self.registered_at,
            "lastHeartbeatAgoSecs": (
                None if self.last_heartbeat is None
                else round(time.monotonic() - self.last_heartbeat, 3)
            ),
            "heartbeats": self.heartbeats,
            "currentJobId": self.current_job_id,
            "claims": self.claims,
            "claimsWhilePaused": self.claims_while_paused,
        }


@dataclass
class RequestRecord:
    """One request to the worker API (``/graphics/api``), as answered."""

    endpoint: str
    method: str
    path: str
    status: int
    time: float
    worker_id: str | None
    job_id: str | None = None
    # The request body, capped (see ``BODY_RECORD_CAP``), so tests can inspect what was sent.
    body: bytes = b""
    # The plain-text reason given with a refusal, None on success.
    reason: str | None = None
    user_agent: str | None = None


RegistrationStatus = Literal["pending", "approved", "rejected"]


@dataclass
class RegistrationRecord:
    """A v2 registration request (STUDIO_API_V2.md §1)."""

    request_id: str
    install_id: str
    secret_hash: str
    capabilities: dict[str, Any]
    user_agent: str
    status: RegistrationStatus = "pending"
    reason: str | None = None
    worker_id: str | None = None
    created_at: float = field(default_factory=time.time)
    polls: int = 0

    def summary(self) -> dict[str, Any]:
        """Admin view; the secret's hash stays out."""
        return {
            "requestId": self.request_id,
            "installId": self.install_id,
            "status": self.status,
            "reason": self.reason,
            "workerId": self.worker_id,
            "machineName": self.capabilities.get("machineName"),
            "userAgent": self.user_agent,
            "createdAt": self.created_at,
            "polls": self.polls,
        }


@dataclass
class FrameRecord:
    """One v2 frame, as sent or received by the studio (tests check what workers send)."""

    direction: Literal["in", "out"]
    worker_id: str
    text: str
    time: float = field(default_factory=time.time)
    refusal: str | None = None
    """Why the studio refused this (incoming) frame, None when it was accepted."""
