"""Self-update, part 2: fetching over the network, bounded and https-only.

Every GET — the feed (``check-update`` too), ``SHA256SUMS`` and the artefact — follows
redirects by hand so that each hop is checked to be https (plain http only to a
loopback address, for tests) *before* it is connected to, and every body is read to its
end within a bound: ``content.read(n)`` returns only what happens to be buffered, which
over TLS or a slow link is a fraction of a feed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
from yarl import URL

from workerlib.api import USER_AGENT, CutOff, ReplyTooLarge, read_capped
from workerlib.logs import get_logger
from workerlib.urls import is_loopback_url

log = get_logger("auto-update")

MAX_REDIRECTS = 5
CHUNK = 256 * 1024
SMALL_TIMEOUT_SECS = 60.0


class UpdateError(Exception):
    """An update step failed; the message is shown to the user as is."""


def check_url_allowed(url: str) -> None:
    """https, or plain http to this machine only; raises ValueError otherwise."""
    scheme = urlsplit(url).scheme
    if scheme == "https" or (scheme == "http" and is_loopback_url(url)):
        return
    raise ValueError(f"update feed must use https (got {url!r})")


@contextlib.asynccontextmanager
async def get_checked(session: aiohttp.ClientSession, url: str, what: str, *, accept: str,
                      timeout: aiohttp.ClientTimeout, identity: bool = False
                      ) -> AsyncIterator[aiohttp.ClientResponse]:
    """GET following redirects by hand: GitHub redirects asset downloads, and every hop
    must be https (or loopback) *before* it is connected to. The body is not
    decompressed by aiohttp (read it with :func:`read_capped`); ``identity`` asks for
    the bytes as stored (an artefact must hash to its checksum)."""
    headers = {"Accept": accept, "User-Agent": USER_AGENT,
               "Accept-Encoding": "identity" if identity else "gzip, deflate"}
    for _ in range(MAX_REDIRECTS + 1):
        try:
            check_url_allowed(url)
        except ValueError:
            raise UpdateError(f"refusing to fetch {what} over plain http ({url})") from None
        async with session.get(url, headers=headers, timeout=timeout, allow_redirects=False,
                               auto_decompress=False) as resp:
            location = resp.headers.get("Location")
            if resp.status in (301, 302, 303, 307, 308) and location:
                url = str(resp.url.join(URL(location)))
                continue
            if resp.status != 200:
                raise UpdateError(f"{what} answered {resp.status} {resp.reason or ''}".rstrip())
            yield resp
            return
    raise UpdateError(f"{what}: too many redirects")


async def fetch_small(session: aiohttp.ClientSession, url: str, limit: int, what: str,
                      accept: str = "*/*") -> bytes:
    """A small document (feed, SHA256SUMS), whole, at most ``limit`` bytes."""
    try:
        async with get_checked(session, url, what, accept=accept,
                               timeout=aiohttp.ClientTimeout(total=SMALL_TIMEOUT_SECS)) as resp:
            return await read_capped(resp, limit)
    except ReplyTooLarge:
        raise UpdateError(f"{what} is too large (more than {limit} bytes)") from None
    except CutOff:
        raise UpdateError(f"{what} was cut off in transit") from None
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise UpdateError(f"{what} could not be fetched ({type(exc).__name__})") from None


async def download(session: aiohttp.ClientSession, url: str, dest: Path, max_bytes: int) -> str:
    """Stream ``url`` into ``dest`` (at most ``max_bytes``); returns the SHA-256."""
    name = dest.name
    digest = hashlib.sha256()
    size = 0
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=60)
    try:
        async with get_checked(session, url, name, accept="application/octet-stream",
                               timeout=timeout, identity=True) as resp:
            if (resp.content_length or 0) > max_bytes:
                raise UpdateError(f"{name} is larger than {max_bytes} bytes")
            out = await asyncio.to_thread(dest.open, "wb")
            try:
                async for chunk in resp.content.iter_chunked(CHUNK):
                    size += len(chunk)
                    if size > max_bytes:
                        raise UpdateError(f"{name} is larger than {max_bytes} bytes")
                    digest.update(chunk)
                    out.write(chunk)
            finally:
                await asyncio.to_thread(out.close)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise UpdateError(f"{name} could not be downloaded ({type(exc).__name__})") from None
    log.info("downloaded %s (%d bytes)", name, size)
    return digest.hexdigest()
