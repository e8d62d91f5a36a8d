import asyncio
import json
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


# -- hostile feeds (issue 12: item 7, item 14) ---------------------------------------------
@pytest.mark.parametrize("url", ["http://127.evil.example/feed", "http://127.0.0.1.nip.io/f",
                                 "http://localhost.evil.example/f", "http://0x7f.example/f"])
def test_a_host_that_only_looks_like_loopback_is_not(url: str) -> None:
    with pytest.raises(ValueError):
        check_url_allowed(url)


@pytest.mark.parametrize("url", ["http://127.0.0.2:9/f", "http://[::1]:9/f", "http://localhost/f",
                                 "http://LOCALHOST./f"])
def test_loopback_addresses_are_parsed(url: str) -> None:
    check_url_allowed(url)


async def _serve(handler: Any) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


@pytest.mark.parametrize(("releases", "piece"), [(60, 4096), (3000, 65536)])
async def test_a_feed_sent_in_pieces_is_read_to_its_end(releases: int, piece: int) -> None:
    """12 KB in 4 KB pieces with pauses, and a 600 KB feed: what TLS and GitHub send."""
    feed = [_release(f"v0.{i}.0") for i in range(releases)]
    feed[0]["body"] = "release notes " * (releases * 10)
    body = json.dumps(feed).encode()

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.content_type = "application/json"
        await response.prepare(request)
        for start in range(0, len(body), piece):
            await response.write(body[start:start + piece])
            await asyncio.sleep(0.005)
        await response.write_eof()
        return response

    runner, url = await _serve(handler)
    try:
        async with aiohttp.ClientSession() as session:
            info = await check_for_update(session, url + "/releases", allow_prerelease=False,
                                          current="0.0.1")
    finally:
        await runner.cleanup()
    assert info.error is None, info.error
    assert info.latest == f"0.{releases - 1}.0"
    assert len(body) > (10_000 if piece == 4096 else 500_000)


async def test_check_update_refuses_a_redirect_to_plain_http() -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("http://example.invalid/releases")

    runner, url = await _serve(handler)
    try:
        async with aiohttp.ClientSession() as session:
            info = await check_for_update(session, url + "/releases", allow_prerelease=False)
    finally:
        await runner.cleanup()
    assert info.error is not None and "plain http" in info.error
