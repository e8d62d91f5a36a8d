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
