from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from workerlib.update import check_for_update, check_url_allowed, parse_version, pick_latest


@pytest.mark.parametrize(
    ("tag", "text"),
    [("v1.2.3", "1.2.3"), ("1.2.3", "1.2.3"), ("studio-worker-v1.2.3", "1.2.3"),
     ("v2.0.0-rc.1", "2.0.0-rc.1")],
)
def test_parse_version(tag: str, text: str) -> None:
    version = parse_version(tag)
    assert version is not None and str(version) == text


@pytest.mark.parametrize("tag", ["latest", "v1.2", "release-5", ""])
def test_unparsable_tags(tag: str) -> None:
    assert parse_version(tag) is None


def test_prerelease_sorts_before_release() -> None:
    pre, rel = parse_version("1.0.0-rc.1"), parse_version("1.0.0")
    assert pre is not None and rel is not None and pre < rel


def _release(tag: str, *, pre: bool = False, draft: bool = False) -> dict[str, Any]:
    return {"tag_name": tag, "prerelease": pre, "draft": draft,
            "assets": [{"name": "SHA256SUMS", "browser_download_url": "https://x/SHA256SUMS"}]}


def test_pick_latest_skips_drafts_prereleases_and_junk() -> None:
    feed = [_release("v0.3.0"), _release("v9.0.0", draft=True), _release("v0.5.0-beta", pre=True),
            _release("nightly"), {"no": "tag"}, "junk", _release("studio-worker-v0.4.1")]
    latest = pick_latest(feed, allow_prerelease=False)
    assert latest is not None and str(latest.version) == "0.4.1"
    assert latest.assets == {"SHA256SUMS": "https://x/SHA256SUMS"}
    with_pre = pick_latest(feed, allow_prerelease=True)
    assert with_pre is not None and str(with_pre.version) == "0.5.0-beta"
    single = pick_latest(_release("v1.0.0"), allow_prerelease=False)
    assert single is not None and str(single.version) == "1.0.0"


def test_only_https_or_loopback_http() -> None:
    check_url_allowed("https://api.github.com/x")
    check_url_allowed("http://127.0.0.1:8000/feed")
    check_url_allowed("http://localhost/feed")
    with pytest.raises(ValueError):
        check_url_allowed("http://example.com/feed")


@pytest.fixture
async def feed_server() -> AsyncIterator[tuple[str, dict[str, Any]]]:
    state: dict[str, Any] = {"body": [], "status": 200, "headers": {}}

    async def handler(request: web.Request) -> web.Response:
        state["headers"] = dict(request.headers)
        return web.json_response(state["body"], status=state["status"])

    app = web.Application()
    app.router.add_get("/releases", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}/releases", state
    await runner.cleanup()


async def test_check_against_a_local_feed(feed_server: tuple[str, dict[str, Any]]) -> None:
    url, state = feed_server
    async with aiohttp.ClientSession() as session:
        state["body"] = [_release("v0.2.0"), _release("v0.1.9")]
        same = await check_for_update(session, url, allow_prerelease=False, current="0.2.0")
        assert same.describe() == "up to date: 0.2.0"
        assert state["headers"]["Accept"] == "application/vnd.github+json"
        assert state["headers"]["User-Agent"].startswith("studio-worker/")
        state["body"] = [_release("v0.3.0")]
        newer = await check_for_update(session, url, allow_prerelease=False, current="0.2.0")
        assert newer.available and newer.describe() == "update available: 0.2.0 -> 0.3.0"
        state["body"] = [_release("v0.1.0")]
        older = await check_for_update(session, url, allow_prerelease=False, current="0.2.0")
        assert not older.available
        state["status"] = 500
        broken = await check_for_update(session, url, allow_prerelease=False, current="0.2.0")
        assert broken.error and "500" in broken.error
        insecure = await check_for_update(session, "http://example.com/f", allow_prerelease=False)
        assert insecure.error and "https" in insecure.error
