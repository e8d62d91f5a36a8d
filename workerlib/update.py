"""Update checks against a GitHub Releases feed (STUDIO_API.md §6). Check only.

Installing is :mod:`workerlib.updater`'s job; fetching is :mod:`workerlib.update_fetch`'s.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from typing import Any

import aiohttp

from workerlib import __version__
from workerlib.runtime.state import UpdateInfo
from workerlib.update_fetch import UpdateError, check_url_allowed, fetch_small

__all__ = ["Release", "Version", "check_for_update", "check_url_allowed", "fetch_latest",
           "parse_version", "pick_latest"]

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


async def fetch_latest(
    session: aiohttp.ClientSession, feed_url: str, *, allow_prerelease: bool
) -> Release | None:
    """The newest usable release in the feed (drafts and unparsable tags skipped).

    Read to its end (bounded), redirects followed by hand, each hop https-only."""
    body = await fetch_small(session, feed_url, MAX_FEED_BYTES, "the update feed",
                             accept="application/vnd.github+json")
    try:
        return pick_latest(json.loads(body), allow_prerelease=allow_prerelease)
    except (ValueError, RecursionError) as exc:
        raise UpdateError("the update feed is not valid JSON") from exc


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
        latest = await fetch_latest(session, feed_url, allow_prerelease=allow_prerelease)
    except (ValueError, UpdateError) as exc:
        return UpdateInfo(checked_at=now, current=current, error=str(exc))
    if latest is None:
        return UpdateInfo(checked_at=now, current=current)
    available = current_version is None or latest.version > current_version
    return UpdateInfo(
        checked_at=now, current=current, latest=str(latest.version), available=available,
    )
