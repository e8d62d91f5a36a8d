"""How a face reaches its worker: in this process, or attached to another one."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Link(BaseModel):
    model_config = ConfigDict(frozen=True)

    attached: bool
    """The worker runs in another process (the service, or a headless ``run``)."""
    connected: bool
    """False once that process stopped answering (the face offers to start it)."""
    pid: int
    version: str
    """The worker's version (a window may be newer or older than the service)."""
    problem: str = ""
    """Why the face is not connected, in a sentence."""
