"""A hostile mode for the local studio: replies a misbehaving studio or proxy really sends.

Installed on a :class:`~workerlib.devstudio.server.DevStudio` as aiohttp middleware (so
the studio itself stays strict and unchanged), it answers chosen requests instead of
the studio: redirects (to a login page, another host), raw bodies (HTML, huge, a gzip
bomb, sent in small pieces), error bodies that echo the request's Authorization header,
and requests that hang until released. Every request it sees is recorded, so a test can
tell what the worker did — e.g. that it never followed a redirect.

    studio = DevStudio(...)
    hostile = Hostile(studio)          # before studio.start()
    hostile.redirect("complete", "/login", count=4)
    hostile.hang("logs")
"""

from __future__ import annotations

import asyncio
import gzip
import re
import zlib
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from workerlib.devstudio.server import DevStudio

_ENDPOINT = re.compile(
    r"/graphics/api/workers/(?:register|[^/]+/(heartbeat|claim|logs)|[^/]+/jobs/[^/]+/"
    r"(complete|complete-json|fail))$")
LOGIN_PAGE = b"<html><body><h1>Sign in</h1><form>...</form></body></html>"
FOREVER = 1 << 60

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class _Rule:
    endpoint: str
    remaining: int
    answer: Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Seen:
    """One request as the hostile layer saw it (before the studio, if it got that far)."""

    endpoint: str
    method: str
    raw_path: str
    served_by: str
    """``hostile`` when a rule answered, ``studio`` when it was passed on."""


@dataclass
class Hostile:
    studio: DevStudio
    seen: list[Seen] = field(default_factory=list)
    login_gets: int = 0
    bytes_sent: int = 0
    _rules: list[_Rule] = field(default_factory=list)
    _released: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.studio.app.middlewares.append(self._middleware)

    # -- misbehaviours --------------------------------------------------------------------
    def redirect(self, endpoint: str, location: str, *, status: int = 302,
                 count: int = 1) -> None:
        """Answer with a redirect (``/login``, another host, plain http)."""
        async def answer(_request: web.Request) -> web.StreamResponse:
            return web.Response(status=status, headers={"Location": location})
        self._add(endpoint, count, answer)

    def reply(self, endpoint: str, body: bytes | Callable[[], Iterator[bytes]], *,
              status: int = 200, content_type: str = "application/json",
              gzipped: bool = False, encoded: str | None = None, piece: int = 0,
              count: int = 1) -> None:
        """Answer with ``body``: gzip-compressed here when ``gzipped``, or already encoded
        (``encoded="gzip"``, e.g. :func:`gzip_bomb`); written in pieces of ``piece``
        bytes with a pause between them when ``piece`` > 0; or made on the fly by a
        generator (:func:`endless`). ``bytes_sent`` counts what left the server: a
        client that stops reading at its limit makes the server stop early."""
        if gzipped and isinstance(body, bytes):
            body, encoded = gzip.compress(body, compresslevel=9), "gzip"
        self._add(endpoint, count, self._body_answer(body, status, content_type, encoded, piece))

    def echo_auth(self, endpoint: str, *, status: int = 500, count: int = 1) -> None:
        """An error page that quotes the request's headers, Authorization included."""
        async def answer(request: web.Request) -> web.StreamResponse:
            headers = "\n".join(f"{k}: {v}" for k, v in request.headers.items())
            return web.Response(status=status, text=f"upstream error; request was:\n{headers}")
        self._add(endpoint, count, answer)

    def hang(self, endpoint: str, *, count: int = FOREVER) -> None:
        """Never answer (until :meth:`release`); the worker has to give up on its own."""
        async def answer(request: web.Request) -> web.StreamResponse:
            await self._released.wait()
            return web.Response(status=503, text="released")
        self._add(endpoint, count, answer)

    def release(self) -> None:
        """Let hanging requests end and drop every rule: the studio is itself again."""
        self._rules.clear()
        self._released.set()

    def count(self, endpoint: str, served_by: str = "hostile") -> int:
        return sum(1 for s in self.seen if s.endpoint == endpoint and s.served_by == served_by)

    # -- plumbing -------------------------------------------------------------------------
    def _body_answer(self, body: bytes | Callable[[], Iterator[bytes]], status: int,
                     content_type: str, encoded: str | None, piece: int) -> _Handler:
        async def answer(request: web.Request) -> web.StreamResponse:
            response = web.StreamResponse(status=status)
            response.content_type = content_type
            if encoded:
                response.headers["Content-Encoding"] = encoded
            if isinstance(body, bytes):
                response.content_length = len(body)
                step = piece or len(body) or 1
                pieces: Iterator[bytes] = (body[i:i + step] for i in range(0, len(body), step))
            else:
                pieces = body()
            await response.prepare(request)
            try:
                for chunk in pieces:
                    await response.write(chunk)
                    self.bytes_sent += len(chunk)
                    if piece:
                        await asyncio.sleep(0.01)
                await response.write_eof()
            except (ConnectionError, RuntimeError):
                pass  # the client stopped reading: what a bounded reader does
            return response

        return answer

    def _add(self, endpoint: str, count: int, answer: _Handler) -> None:
        self._rules.append(_Rule(endpoint, count, answer))

    def _take(self, endpoint: str) -> _Rule | None:
        for rule in self._rules:
            if rule.endpoint == endpoint and rule.remaining > 0:
                rule.remaining -= 1
                return rule
        return None

    @web.middleware
    async def _middleware(self, request: web.Request, handler: _Handler) -> web.StreamResponse:
        if request.path == "/login":
            self.login_gets += 1
            return web.Response(body=LOGIN_PAGE, content_type="text/html")
        endpoint = endpoint_of(request.raw_path)
        rule = self._take(endpoint) if endpoint else None
        self.seen.append(Seen(endpoint or "other", request.method, request.raw_path,
                              "hostile" if rule else "studio"))
        if rule is None:
            return await handler(request)
        await request.read()
        return await rule.answer(request)


def endpoint_of(raw_path: str) -> str:
    """``heartbeat``, ``complete``… for a studio API path; ``""`` for anything else."""
    match = _ENDPOINT.search(raw_path.split("?", 1)[0])
    if match is None:
        return ""
    return match.group(1) or match.group(2) or "register"


def gzip_bomb(size: int) -> bytes:
    """A gzip stream that unpacks to ``size`` zero bytes (about 1000:1), built without
    ever holding the unpacked bytes. Send it with ``reply(..., encoded="gzip")``."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = bytes(1 << 20)
    parts = [packer.compress(block) for _ in range(size >> 20)]
    parts.append(packer.compress(bytes(size & ((1 << 20) - 1))))
    parts.append(packer.flush())
    return b"".join(parts)


def endless(total: int, piece: int = 64 * 1024) -> Callable[[], Iterator[bytes]]:
    """A body of ``total`` bytes made on the fly (a 3 GiB heartbeat reply costs nothing)."""
    def pieces() -> Iterator[bytes]:
        block = b"x" * piece
        for start in range(0, total, piece):
            yield block[: min(piece, total - start)]
    return pieces


class Catcher:
    """A second host that records whatever reaches it (a redirect's other end)."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, bytes]] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._record)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        self._runner = runner
        self.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        return self.url

    async def _record(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.method, request.raw_path, await request.read()))
        return web.json_response({"ok": True})

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
