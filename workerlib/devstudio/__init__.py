"""A local, strict studio for tests, the demo and ``studio-worker dev-studio``."""

from workerlib.devstudio.records import JobRecord, RequestRecord, WorkerRecord
from workerlib.devstudio.server import DevStudio, run_dev_studio

__all__ = ["DevStudio", "JobRecord", "RequestRecord", "WorkerRecord", "run_dev_studio"]
