"""Update checks against a GitHub Releases feed (STUDIO_API.md §6). Check only."""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from workerlib import __version__
from workerlib.api import USER_AGENT
from workerlib.runtime.state import UpdateInfo

_TAG = re.compile(r"^(?:studio-worker-)?v?(\d+)\.(\d+)\.(\d+)(?:[-+.]?([0-9A-Za-z.-]+))?$")
MAX_FEED_BYTES = 5 * 1024 * 1024


@dataclass(frozen=True, order=True)
class Version:
    major: int
    minor: int
    patch: int
    # A release sorts after its pre-releases: (1, "") > (0, "rc.1").
    release_rank: tuple[int, str]
    text: str

    def __str__(self) -> str:
        return self.text


def parse_version(tag: str) -> Version | None:
    match = _TAG.match(tag.strip())
    if match is None:
        return None
    major, minor, patch, pre = match.groups()
    text = f"{int(major)}.{int(minor)}.{int(patch)}" + (f"-{pre}" if pre else "")
    return Version(int(major), int(minor), int(patch), (0, pre) if pre else (1, ""), text)


def is_loopback_url(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    return host in {"localhost", "::1"} or host.startswith("127.")


def check_url_allowed(url: str) -> None:
    scheme = urlsplit(url).scheme
    if scheme == "https" or (scheme == "http" and is_loopback_url(url)):
        return
    raise ValueError(f"update feed must use https (got {url!r})")


@dataclass(frozen=True)
class Release:
    version: Version
    prerelease: bool
    assets: dict[str, str]


def pick_latest(feed: Any, *, allow_prerelease: bool) -> Release | None:
    items = feed if isinstance(feed, list) else [feed]
    best: Release | None = None
    for item in items:
        if not isinstance(item, dict) or item.get("draft"):
            continue
        prerelease = bool(item.get("prerelease"))
        if prerelease and not allow_prerelease:
            continue
        version = parse_version(str(item.get("tag_name", "")))
        if version is None:
            continue
        assets = {
            str(a.get("name")): str(a.get("browser_download_url"))
            for a in item.get("assets") or []
            if isinstance(a, dict) and a.get("name") and a.get("browser_download_url")
        }
        if best is None or version > best.version:
            best = Release(version, prerelease, assets)
    return best


async def check_for_update(
    session: aiohttp.ClientSession,
    feed_url: str,
    *,
    allow_prerelease: bool,
    current: str = __version__,
) -> UpdateInfo:
    now = time.time()
    current_version = parse_version(current)
    try:
        check_url_allowed(feed_url)
        async with session.get(
            feed_url,
            headers={"Accept": "application/vnd.github+json", "User-Agent": USER_AGENT},
            timeout=aiohttp.ClientTimeout(total=60),
        ) as resp:
            if resp.status != 200:
                return UpdateInfo(checked_at=now, current=current,
                                  error=f"feed answered {resp.status} {resp.reason or ''}".strip())
            body = await resp.content.read(MAX_FEED_BYTES + 1)
        if len(body) > MAX_FEED_BYTES:
            return UpdateInfo(checked_at=now, current=current, error="feed is too large")
        latest = pick_latest(json.loads(body), allow_prerelease=allow_prerelease)
    except ValueError as exc:
        return UpdateInfo(checked_at=now, current=current, error=str(exc))
    except (aiohttp.ClientError, TimeoutError) as exc:
        return UpdateInfo(checked_at=now, current=current,
                          error=f"feed could not be reached ({type(exc).__name__})")
    if latest is None:
        return UpdateInfo(checked_at=now, current=current)
    available = current_version is None or latest.version > current_version
    return UpdateInfo(
        checked_at=now, current=current, latest=str(latest.version), available=available,
    )
