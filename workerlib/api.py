"""The studio client: every endpoint of STUDIO_API.md §2 over one aiohttp session."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
from pydantic import ValidationError

from workerlib import __version__
from workerlib.errors import (
    BadClaim,
    StudioAuthError,
    StudioError,
    StudioHTTPError,
    StudioUnreachable,
)
from workerlib.wire import Capabilities, JobClaim, LogEntry, content_type_for

API_PREFIX = "/graphics/api"
USER_AGENT = f"studio-worker/{__version__}"
REQUEST_TIMEOUT_SECS = 60.0
MAX_CLAIM_BYTES = 4 * 1024 * 1024
ONE_BUFFER_UPLOAD_BYTES = 1024 * 1024
"""A result up to this size is sent as one buffer (one write to the socket, and one
read for the studio) rather than a write per multipart piece; larger ones stream."""
"""A claim is a small JSON object; anything larger is refused unread."""
ERROR_BODY_CHARS = 300


def api_root(base_url: str) -> str:
    """``api_base_url`` → ``<base>/graphics/api`` without doubling the prefix (§1)."""
    base = base_url.strip().rstrip("/")
    if base.endswith(API_PREFIX):
        return base
    return base + API_PREFIX


@dataclass(frozen=True)
class Registration:
    worker_id: str
    auth_token: str

    def __repr__(self) -> str:  # never print the token by accident
        return f"Registration(worker_id={self.worker_id!r}, auth_token=<hidden>)"


def _upload_timeout(size: int) -> float:
    # 60 s covers a few MB on a slow uplink; beyond that allow ~1 MB/s.
    return max(REQUEST_TIMEOUT_SECS, size / 1_000_000)



class StudioClient:
    """Stateless apart from the session; credentials are passed per call."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str) -> None:
        self._session = session
        self.base_url = base_url
        self.root = api_root(base_url)

    async def _post(
        self,
        operation: str,
        path: str,
        token: str,
        *,
        json_body: Any = None,
        data: aiohttp.FormData | aiohttp.payload.Payload | None = None,
        timeout: float | None = None,
        read_limit: int | None = None,
    ) -> tuple[int, bytes]:
        if timeout is None:
            timeout = REQUEST_TIMEOUT_SECS
        headers = {"Authorization": f"Bearer {token}", "User-Agent": USER_AGENT}
        url = self.root + path
        body_kwargs: dict[str, Any] = {}
        if json_body is not None:
            body_kwargs["json"] = json_body
        elif data is not None:
            body_kwargs["data"] = data
        try:
            async with self._session.post(
                url,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=timeout),
                **body_kwargs,
            ) as resp:
                body = await self._read(resp, read_limit)
                if 200 <= resp.status < 300:
                    return resp.status, body
                text = body[:4096].decode("utf-8", "replace").strip()
                if len(text) > ERROR_BODY_CHARS:
                    text = text[:ERROR_BODY_CHARS] + "…"
                cls = StudioAuthError if resp.status in (401, 403) else StudioHTTPError
                raise cls(operation, resp.status, resp.reason or "", text)
        except StudioError:
            raise
        except TimeoutError:
            raise StudioUnreachable(
                operation, f"{operation} failed: the studio at {self.base_url} did not answer "
                f"within {timeout:.0f} s"
            ) from None
        except aiohttp.ClientError as exc:
            raise StudioUnreachable(
                operation,
                f"{operation} failed: the studio could not be reached at {self.base_url} "
                f"({type(exc).__name__}: {exc})",
            ) from None

    @staticmethod
    async def _read(resp: aiohttp.ClientResponse, limit: int | None) -> bytes:
        if limit is None:
            return await resp.read()
        if resp.content_length is not None and resp.content_length > limit:
            raise _TooLarge(resp.content_length)
        chunks: list[bytes] = []
        total = 0
        try:
            async for chunk in resp.content.iter_chunked(65536):
                total += len(chunk)
                if total > limit:
                    raise _TooLarge(total)
                chunks.append(chunk)
        except aiohttp.ClientPayloadError:
            if 200 <= resp.status < 300:
                raise _CutOff(b"".join(chunks)) from None
            raise
        return b"".join(chunks)

    # -- endpoints ---------------------------------------------------------------
    async def register(
        self, bootstrap_token: str, capabilities: Capabilities, worker_id: str | None
    ) -> Registration:
        body: dict[str, Any] = {
            "bootstrapToken": bootstrap_token,
            "capabilities": capabilities.to_wire(),
        }
        if worker_id:
            body["workerId"] = worker_id
        try:
            _, raw = await self._post("register", "/workers/register", bootstrap_token,
                                      json_body=body)
        except StudioAuthError as exc:
            raise StudioAuthError(
                "register", exc.status, "",
                "the studio refused the bootstrap token (config key 'bootstrap_token'); "
                "get a fresh one from the studio",
            ) from None
        try:
            reply = json.loads(raw)
            return Registration(worker_id=str(reply["workerId"]),
                                auth_token=str(reply["authToken"]))
        except (ValueError, KeyError, TypeError):
            raise StudioError(
                "register", "register failed: the studio's reply has no workerId/authToken"
            ) from None

    async def heartbeat(
        self, worker_id: str, token: str, capabilities: Capabilities, current_job_id: str | None
    ) -> None:
        body: dict[str, Any] = {"capabilities": capabilities.to_wire()}
        if current_job_id:
            body["currentJobId"] = current_job_id
        await self._post("heartbeat", f"/workers/{worker_id}/heartbeat", token, json_body=body)

    async def claim(self, worker_id: str, token: str) -> JobClaim | None:
        """``None`` on 204. Raises ``BadClaim`` for a reply that is not a JobClaim."""
        try:
            status, raw = await self._post(
                "claim", f"/workers/{worker_id}/claim", token, read_limit=MAX_CLAIM_BYTES
            )
        except _TooLarge as exc:
            raise BadClaim(
                f"claim reply of {exc.size} bytes is larger than the {MAX_CLAIM_BYTES} byte limit",
                None,
            ) from None
        except _CutOff as exc:
            # The studio has marked the job as ours; if its id made it through, hand it
            # back at once rather than leave it claimed by nobody.
            match = _JOB_ID.search(exc.partial)
            raise BadClaim(
                "claim reply was cut off in transit", match.group(1).decode() if match else None,
                retryable=True,
            ) from None
        if status == 204:
            return None
        return parse_claim(raw)

    async def complete(
        self, worker_id: str, token: str, job_id: str, prompt: str, data: bytes, ext: str
    ) -> None:
        form = aiohttp.FormData(quote_fields=False)
        form.add_field("prompt", prompt, content_type="text/plain; charset=utf-8")
        form.add_field("ext", ext, content_type="text/plain; charset=utf-8")
        ctype = content_type_for(ext)
        small = len(data) <= ONE_BUFFER_UPLOAD_BYTES
        form.add_field(
            "image", data if small else
            StreamedBytes(data, content_type=ctype, filename=f"{job_id}.{ext}"),
            filename=f"{job_id}.{ext}", content_type=ctype,
        )
        body: aiohttp.FormData | aiohttp.payload.Payload = form
        if small:
            writer = form()
            body = aiohttp.payload.BytesPayload(await writer.as_bytes(),
                                                content_type=writer.content_type)
        await self._post(
            "complete", f"/workers/{worker_id}/jobs/{job_id}/complete", token, data=body,
            timeout=_upload_timeout(len(data)),
        )

    async def complete_json(
        self, worker_id: str, token: str, job_id: str, prompt: str, result: Any
    ) -> None:
        body = {"jobId": job_id, "prompt": prompt, "result": result, "resultKind": "json"}
        await self._post(
            "complete-json", f"/workers/{worker_id}/jobs/{job_id}/complete-json", token,
            json_body=body,
        )

    async def fail(
        self, worker_id: str, token: str, job_id: str, error: str, retryable: bool
    ) -> None:
        await self._post(
            "fail", f"/workers/{worker_id}/jobs/{job_id}/fail", token,
            json_body={"error": error, "retryable": retryable},
        )

    async def ship_logs(self, worker_id: str, token: str, entries: Sequence[LogEntry]) -> None:
        await self._post(
            "logs", f"/workers/{worker_id}/logs", token,
            json_body={"entries": [entry.to_wire() for entry in entries]},
        )


_JOB_ID = re.compile(rb'"jobId"\s*:\s*"([A-Za-z0-9._:-]{1,256})"')


class StreamedBytes(aiohttp.payload.Payload):
    """A bytes body written in 64 KiB slices, awaiting the socket after each.

    aiohttp copies a plain bytes payload whole into the transport's buffer, and a
    BytesIO payload unshares (copies) its buffer: either doubles the memory a large
    result needs. Slicing a memoryview copies nothing.
    """

    CHUNK = 64 * 1024

    def __init__(self, value: bytes, **kwargs: Any) -> None:
        super().__init__(value, **kwargs)

    @property
    def size(self) -> int:
        return len(self._value)

    async def write(self, writer: Any) -> None:
        await self.write_with_length(writer, None)

    async def write_with_length(self, writer: Any, content_length: int | None) -> None:
        view = memoryview(self._value)
        end = len(view) if content_length is None else min(len(view), content_length)
        for start in range(0, end, self.CHUNK):
            await writer.write(view[start:min(end, start + self.CHUNK)])

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        return bytes(self._value).decode(encoding, errors)


class _CutOff(Exception):
    def __init__(self, partial: bytes) -> None:
        super().__init__(len(partial))
        self.partial = partial


class _TooLarge(Exception):
    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.size = size


def parse_claim(raw: bytes) -> JobClaim:
    """Validate a 2xx claim body; ``BadClaim.job_id`` is set when one can be read."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadClaim("claim reply is not UTF-8 text", None) from None
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        raise BadClaim(f"claim reply is not JSON: {text[:120]!r}", None) from None
    if not isinstance(data, dict):
        raise BadClaim(f"claim reply is a JSON {type(data).__name__}, not an object", None)
    raw_id = data.get("jobId")
    job_id = raw_id if isinstance(raw_id, str) and raw_id.strip() and len(raw_id) <= 256 else None
    try:
        return JobClaim.model_validate(data)
    except (ValidationError, RecursionError) as exc:
        raise BadClaim(f"invalid job: {_describe(exc)}", job_id) from None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ValidationError):
        parts = []
        for error in exc.errors()[:3]:
            loc = ".".join(str(p) for p in error["loc"]) or "(root)"
            parts.append(f"{loc}: {error['msg']}")
        more = exc.error_count() - 3
        return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")
    return "payload nested too deeply"


async def close_quietly(session: aiohttp.ClientSession) -> None:
    await session.close()
    # Give the connector a tick to close transports (avoids ResourceWarnings).
    await asyncio.sleep(0)
