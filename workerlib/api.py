"""The studio client: every endpoint of docs/PROTOCOL.md §2 and §3.1 over one aiohttp session."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
from pydantic import ValidationError
from yarl import URL

from workerlib import __version__
from workerlib.errors import (
    BadClaim,
    StudioAuthError,
    StudioError,
    StudioHTTPError,
    StudioUnreachable,
)
from workerlib.wire import (
    DECISION_ADAPTER,
    MAX_ID_CHARS,
    Capabilities,
    JobClaim,
    LogEntry,
    RegisterRequestReply,
    RegistrationDecision,
    check_id,
    check_token,
    content_type_for,
)

API_PREFIX = "/graphics/api"
USER_AGENT = f"studio-worker/{__version__}"
REQUEST_TIMEOUT_SECS = 60.0
MAX_CLAIM_BYTES = 4 * 1024 * 1024
"""A claim is a small JSON object; anything larger is refused unread."""
ONE_BUFFER_UPLOAD_BYTES = 1024 * 1024
"""A result up to this size is sent as one buffer (one write to the socket, and one
read for the studio) rather than a write per multipart piece; larger ones stream."""
MAX_REPLY_BYTES = 256 * 1024
"""Every other reply (register, heartbeat, complete, fail, logs) is tiny or ignored."""
ERROR_BODY_BYTES = 4096
ERROR_BODY_CHARS = 300
ACCEPT_ENCODING = "gzip, deflate"
"""What we can decode within a bound ourselves (aiohttp would also offer br)."""


def api_root(base_url: str) -> str:
    """``api_base_url`` → ``<base>/graphics/api`` without doubling the prefix (docs/PROTOCOL.md)."""
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

    def _url(self, path: str) -> URL:
        # ``path`` is already percent-encoded (see _seg); encoded=True keeps yarl from
        # normalising ``..`` or decoding %2F.
        return URL(str(URL(self.root)) + path, encoded=True)

    async def _post(
        self,
        operation: str,
        path: str,
        token: str | None,
        *,
        json_body: Any = None,
        data: aiohttp.FormData | aiohttp.payload.Payload | None = None,
        timeout: float | None = None,
        read_limit: int | None = None,
        method: str = "POST",
    ) -> tuple[int, bytes]:
        """POST (or ``method``) without following redirects; every reply read to the end
        within a bound; ``token=None`` sends no Authorization header.

        A 3xx is an error (StudioHTTPError, transient): a redirected ``complete`` would
        otherwise be re-sent as a GET to a login page and "succeed", or send the result
        to another host. ``read_limit=None``: the body is not used, at most
        MAX_REPLY_BYTES of it are read (the connection is dropped after that).
        """
        if timeout is None:
            timeout = REQUEST_TIMEOUT_SECS
        headers = {"User-Agent": USER_AGENT, "Accept-Encoding": ACCEPT_ENCODING}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        body_kwargs: dict[str, Any] = {}
        if json_body is not None:
            body_kwargs["json"] = json_body
        elif data is not None:
            body_kwargs["data"] = data
        try:
            async with self._session.request(
                method,
                self._url(path),
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=timeout),
                allow_redirects=False,
                auto_decompress=False,
                **body_kwargs,
            ) as resp:
                if 200 <= resp.status < 300:
                    if read_limit is None:
                        with contextlib.suppress(ReplyTooLarge, aiohttp.ClientPayloadError):
                            await read_capped(resp, MAX_REPLY_BYTES, partial=True)
                        return resp.status, b""
                    try:
                        return resp.status, await read_capped(resp, read_limit)
                    except (ReplyTooLarge, CutOff) as exc:
                        if operation == "claim":
                            raise
                        problem = (f"is larger than {read_limit} bytes"
                                   if isinstance(exc, ReplyTooLarge) else "was cut off")
                        raise StudioUnreachable(
                            operation, f"{operation} failed: the studio's reply {problem}"
                        ) from None
                if 300 <= resp.status < 400:
                    where = resp.headers.get("Location", "")[:200] or "nowhere"
                    raise StudioHTTPError(operation, resp.status, resp.reason or "",
                                          f"redirected to {where}; studio calls never follow "
                                          "redirects")
                try:
                    body = await read_capped(resp, ERROR_BODY_BYTES, partial=True)
                except (ReplyTooLarge, CutOff, aiohttp.ClientPayloadError):
                    body = b""
                text = body.decode("utf-8", "replace").strip()
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
                                      json_body=body, read_limit=MAX_REPLY_BYTES)
        except StudioAuthError as exc:
            raise StudioAuthError(
                "register", exc.status, "",
                "the studio refused the bootstrap token (config key 'bootstrap_token'); "
                "get a fresh one from the studio",
            ) from None
        try:
            reply = strict_json(raw)
            worker_id, auth_token = reply["workerId"], reply["authToken"]
        except (ValueError, KeyError, TypeError, RecursionError):
            raise StudioError(
                "register", "register failed: the studio's reply has no workerId/authToken"
            ) from None
        try:
            if not isinstance(worker_id, str) or not isinstance(auth_token, str):
                raise ValueError("workerId and authToken must be strings")
            check_id(worker_id, "workerId")
            if not auth_token:
                raise ValueError("authToken is empty")
            check_token(auth_token, "authToken")
        except ValueError as exc:
            raise StudioError(
                "register", f"register failed: the studio's reply is unusable: {exc}"
            ) from None
        return Registration(worker_id=worker_id, auth_token=auth_token)

    async def register_request(
        self, install_id: str, secret_hash: str, capabilities: Capabilities
    ) -> str:
        """v2: ask the studio's operators to approve this PC; returns the request id."""
        body = {"installId": install_id, "registrationSecretHash": secret_hash,
                "capabilities": capabilities.to_wire(v2=True), "userAgent": USER_AGENT}
        _, raw = await self._post("register-request", "/workers/register-request", None,
                                  json_body=body, read_limit=MAX_REPLY_BYTES)
        try:
            return RegisterRequestReply.model_validate(strict_json(raw)).request_id
        except (ValueError, RecursionError) as exc:
            raise StudioError("register-request", "register-request failed: the studio's "
                              f"reply is not a request: {_problem(exc)}") from None

    async def poll_registration(self, request_id: str, secret: str) -> RegistrationDecision:
        """v2: the studio's decision on a request; ``StudioHTTPError`` 404 = forgotten."""
        _, raw = await self._post(
            "register-poll", f"/workers/register-requests/{_seg(request_id)}", secret,
            method="GET", read_limit=MAX_REPLY_BYTES)
        try:
            return DECISION_ADAPTER.validate_python(strict_json(raw))
        except (ValueError, RecursionError) as exc:
            raise StudioError("register-poll", "register-poll failed: the studio's reply is "
                              f"not a decision: {_problem(exc)}") from None

    async def heartbeat(
        self, worker_id: str, token: str, capabilities: Capabilities, current_job_id: str | None
    ) -> None:
        body: dict[str, Any] = {"capabilities": capabilities.to_wire()}
        if current_job_id:
            body["currentJobId"] = current_job_id
        await self._post("heartbeat", f"/workers/{_seg(worker_id)}/heartbeat", token,
                         json_body=body)

    async def claim(self, worker_id: str, token: str) -> JobClaim | None:
        """``None`` on 204. Raises ``BadClaim`` for a reply that is not a JobClaim."""
        try:
            status, raw = await self._post(
                "claim", f"/workers/{_seg(worker_id)}/claim", token, read_limit=MAX_CLAIM_BYTES
            )
        except ReplyTooLarge as exc:
            raise BadClaim(
                f"claim reply of {exc.size} bytes is larger than the {MAX_CLAIM_BYTES} byte limit",
                None,
            ) from None
        except CutOff as exc:
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
            "complete", f"/workers/{_seg(worker_id)}/jobs/{_seg(job_id)}/complete", token,
            data=body, timeout=_upload_timeout(len(data)),
        )

    async def complete_json(
        self, worker_id: str, token: str, job_id: str, prompt: str, result: Any
    ) -> None:
        body = {"jobId": job_id, "prompt": prompt, "result": result, "resultKind": "json"}
        await self._post(
            "complete-json", f"/workers/{_seg(worker_id)}/jobs/{_seg(job_id)}/complete-json", token,
            json_body=body,
        )

    async def fail(
        self, worker_id: str, token: str, job_id: str, error: str, retryable: bool
    ) -> None:
        await self._post(
            "fail", f"/workers/{_seg(worker_id)}/jobs/{_seg(job_id)}/fail", token,
            json_body={"error": error, "retryable": retryable},
        )

    async def ship_logs(self, worker_id: str, token: str, entries: Sequence[LogEntry]) -> None:
        await self._post(
            "logs", f"/workers/{_seg(worker_id)}/logs", token,
            json_body={"entries": [entry.to_wire() for entry in entries]},
        )


def _seg(value: str) -> str:
    """One path segment, percent-encoded: ``../x`` stays inside its segment."""
    return quote(value, safe="")


def strict_json(raw: bytes | str) -> Any:
    """``json.loads`` that refuses duplicate keys (which copy would the studio mean?)."""
    return json.loads(raw, object_pairs_hook=_no_duplicates)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise DuplicateKey(key)
        result[key] = value
    return result


class DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(f"the key {key[:60]!r} appears twice")
        self.key = key


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


class CutOff(Exception):
    """The connection ended before the whole body arrived; ``partial`` is what did."""

    def __init__(self, partial: bytes) -> None:
        super().__init__(len(partial))
        self.partial = partial


class ReplyTooLarge(Exception):
    """A body larger than the limit, on the wire or once decompressed."""

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.size = size


def _decoder(encoding: str) -> Any:
    if encoding in ("", "identity"):
        return None
    if encoding in ("gzip", "x-gzip", "deflate"):
        return zlib.decompressobj(zlib.MAX_WBITS | 32)  # gzip or zlib header
    raise aiohttp.ClientPayloadError(f"unsupported Content-Encoding {encoding[:40]!r}")


async def read_capped(resp: aiohttp.ClientResponse, limit: int, *, partial: bool = False
                      ) -> bytes:
    """The whole body, to its end, but never more than ``limit`` bytes on the wire nor
    ``limit`` bytes once decompressed (a gzip bomb stops at the limit).

    The response must have been requested with ``auto_decompress=False``. Raises
    ReplyTooLarge past the limit (``partial=True``: returns the first ``limit`` bytes
    instead) and CutOff when the connection ends early. ``content.read(n)`` would return
    only what happens to be buffered, not the body.
    """
    if not partial and resp.content_length is not None and resp.content_length > limit:
        raise ReplyTooLarge(resp.content_length)
    decoder = _decoder(resp.headers.get("Content-Encoding", "").strip().lower())
    out = bytearray()
    wire = 0
    try:
        async for chunk in resp.content.iter_chunked(65536):
            wire += len(chunk)
            if decoder is None:
                out += chunk
            else:
                # Never more than one byte past the limit comes out of the decoder.
                out += decoder.decompress(chunk, limit + 1 - len(out))
            if wire > limit or len(out) > limit:
                if partial:
                    return bytes(out[:limit])
                raise ReplyTooLarge(max(wire, len(out)))
        if decoder is not None:
            out += decoder.flush()
    except zlib.error as exc:
        raise CutOff(bytes(out[:limit])) from exc
    except aiohttp.ClientPayloadError as exc:
        raise CutOff(bytes(out[:limit])) from exc
    if len(out) > limit:
        if partial:
            return bytes(out[:limit])
        raise ReplyTooLarge(len(out))
    return bytes(out)


TASK_SHAPES_HINT = " (the task shapes: docs/PROTOCOL.md §4.2)"
"""Where a person who queued a malformed task can look the right shape up."""


def parse_claim(raw: bytes) -> JobClaim:
    """Validate a 2xx claim body; ``BadClaim.job_id`` is set when one can be read."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadClaim("claim reply is not UTF-8 text", None) from None
    try:
        data = strict_json(text)
    except DuplicateKey as exc:
        # A duplicated jobId cannot be trusted; any other duplicate leaves the id readable.
        raw_id = None if exc.key == "jobId" else _readable_id(json.loads(text))
        raise BadClaim(f"invalid job: {exc}", raw_id) from None
    except (ValueError, RecursionError):
        raise BadClaim(f"claim reply is not JSON: {text[:120]!r}", None) from None
    if not isinstance(data, dict):
        raise BadClaim(f"claim reply is a JSON {type(data).__name__}, not an object", None)
    try:
        return JobClaim.model_validate(data)
    except (ValidationError, RecursionError) as exc:
        raise BadClaim(f"invalid job: {_describe(exc)}{TASK_SHAPES_HINT}",
                       _readable_id(data)) from None


def _readable_id(data: Any) -> str | None:
    """The claim's jobId when it can address the job (percent-encoded), even if invalid."""
    raw_id = data.get("jobId") if isinstance(data, dict) else None
    if isinstance(raw_id, str) and raw_id.strip() and len(raw_id) <= MAX_ID_CHARS:
        return raw_id
    return None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ValidationError):
        parts = []
        for error in exc.errors()[:3]:
            loc = ".".join(str(p) for p in error["loc"]) or "(root)"
            parts.append(f"{loc}: {error['msg']}")
        more = exc.error_count() - 3
        return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")
    return "payload nested too deeply"


def _problem(exc: BaseException) -> str:
    if isinstance(exc, ValidationError | RecursionError):
        return _describe(exc)
    return f"not a JSON object without duplicate keys ({exc})"


async def close_quietly(session: aiohttp.ClientSession) -> None:
    await session.close()
    # Give the connector a tick to close transports (avoids ResourceWarnings).
    await asyncio.sleep(0)
