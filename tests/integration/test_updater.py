"""Self-update (workerlib.updater) against a real release feed on loopback.

The "bundles" are tiny scripts that print a version, installed in a temp folder, so
every step (download, checksum, unpack, --version check, swap, restart) runs for real.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import os
import stat
import sys
import tarfile
import textwrap
import zipfile
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from workerlib import updater
from workerlib.service import WorkerService
from workerlib.update import Release, parse_version
from workerlib.updater import (
    ARTEFACTS,
    CHECKSUMS_ASSET,
    Artefact,
    Installation,
    UpdateStatus,
    apply_update,
    artefact_for,
    cleanup_previous,
    detect_installation,
    fetch_latest,
    parse_sha256sums,
    restart_environment,
)

LINUX = Artefact("linux", "x86_64", "StudioWorker-linux-x86_64.tar.gz")
WINDOWS = Artefact("windows", "x86_64", "StudioWorker-windows-x86_64.exe")
MACOS = Artefact("macos", "arm64", "StudioWorker-macos-arm64.zip")


def fake_exe(version: str, extra: str = "") -> bytes:
    """A one-file "bundle": answers --version like the real one."""
    return textwrap.dedent(f"""\
        #!/bin/sh
        if [ "$1" = "--version" ]; then echo "studio-worker {version}"; exit 0; fi
        {extra}
        echo "running {version}"
        """).encode()


def targz(files: dict[str, bytes], *, links: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return buf.getvalue()


def zipped(files: dict[str, bytes], *, links: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            info = zipfile.ZipInfo(name)
            info.create_system, info.external_attr = 3, (stat.S_IFREG | 0o755) << 16
            zf.writestr(info, data)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.create_system, info.external_attr = 3, (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return buf.getvalue()


def sums(files: dict[str, bytes]) -> bytes:
    return "".join(f"{hashlib.sha256(d).hexdigest()}  {n}\n" for n, d in files.items()).encode()


class FeedServer:
    """A GitHub-Releases-shaped feed plus its asset downloads, on loopback."""

    def __init__(self) -> None:
        self.feed: Any = []
        self.files: dict[str, bytes] = {}
        self.hits: Counter[str] = Counter()
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/releases", self._releases)
        app.router.add_get("/dl/{name}", self._download)
        app.router.add_get("/redirect/{name}", self._redirect)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _releases(self, request: web.Request) -> web.Response:
        self.hits["feed"] += 1
        return web.json_response(self.feed)

    async def _download(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        self.hits[name] += 1
        if name not in self.files:
            raise web.HTTPNotFound()
        return web.Response(body=self.files[name], content_type="application/octet-stream")

    async def _redirect(self, request: web.Request) -> web.Response:
        raise web.HTTPFound(f"http://example.invalid/{request.match_info['name']}")

    def release(self, tag: str, files: dict[str, bytes], *, checksums: bool = True,
                prerelease: bool = False, draft: bool = False,
                bad_sums: bool = False) -> dict[str, Any]:
        """Publish ``files`` (+ SHA256SUMS) under ``tag``; returns the release object."""
        published = dict(files)
        if checksums:
            listed = {n: (b"tampered" if bad_sums else d) for n, d in files.items()}
            published[CHECKSUMS_ASSET] = sums(listed)
        self.files.update(published)
        item = {
            "tag_name": tag, "prerelease": prerelease, "draft": draft,
            "assets": [{"name": n, "browser_download_url": f"{self.url}/dl/{n}"}
                       for n in published],
        }
        self.feed.append(item)
        return item

    @property
    def downloads(self) -> int:
        return sum(n for name, n in self.hits.items() if name != "feed")


@pytest.fixture
async def feed() -> AsyncIterator[FeedServer]:
    server = FeedServer()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture(autouse=True)
def _no_pending_restart(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(updater, "_pending_restart", None)


def onefile(tmp_path: Path, version: str = "1.0.0", artefact: Artefact = LINUX,
            name: str = "StudioWorker") -> Installation:
    folder = tmp_path / "opt" / "studio-worker"
    folder.mkdir(parents=True)
    exe = folder / name
    exe.write_bytes(fake_exe(version))
    exe.chmod(0o755)
    return Installation("onefile", exe, exe, artefact)


def linux_release(version: str) -> dict[str, bytes]:
    tar = targz({"StudioWorker/StudioWorker": fake_exe(version),
                 "StudioWorker/install.sh": b"#!/bin/sh\n"})
    return {LINUX.name: tar}


async def run_version(exe: Path) -> str:
    proc = await asyncio.create_subprocess_exec(str(exe), "--version",
                                                stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    assert proc.returncode == 0
    return out.decode().strip()


def leftovers(inst: Installation) -> list[str]:
    """Temp files an update may leave next to the bundle (none, ever)."""
    return sorted(p.name for p in inst.root.parent.iterdir()
                  if p.name.startswith(inst.staging_prefix))


def always() -> bool:
    return True


async def latest(session: aiohttp.ClientSession, feed: FeedServer, *,
                 allow_prerelease: bool = False) -> Release | None:
    return await fetch_latest(session, f"{feed.url}/releases", allow_prerelease=allow_prerelease)


async def update(session: aiohttp.ClientSession, feed: FeedServer, inst: Installation, *,
                 current: str = "1.0.0", allow_prerelease: bool = False,
                 can_start: Callable[[], bool] = always, **kw: Any) -> updater.UpdateOutcome:
    release = await latest(session, feed, allow_prerelease=allow_prerelease)
    return await apply_update(session, release, inst, can_start=can_start, current=current, **kw)


# -- versions -------------------------------------------------------------------------------------
async def test_newer_release_is_installed(feed: FeedServer, session: aiohttp.ClientSession,
                                          tmp_path: Path) -> None:
    inst = onefile(tmp_path)
    feed.release("v1.0.0", linux_release("1.0.0"))
    feed.release("v1.1.0", linux_release("1.1.0"))
    outcome = await update(session, feed, inst)
    assert outcome.status is UpdateStatus.APPLIED, outcome.message
    assert outcome.restart and outcome.latest == "1.1.0"
    assert outcome.message == "updated 1.0.0 -> 1.1.0; restarting"
    assert await run_version(inst.executable) == "studio-worker 1.1.0"
    assert inst.executable.stat().st_mode & 0o111
    assert inst.previous.read_bytes() == fake_exe("1.0.0")
    assert leftovers(inst) == []
    assert updater.pending_restart() == inst
    assert feed.hits[LINUX.name] == 1 and feed.hits[CHECKSUMS_ASSET] == 1


@pytest.mark.parametrize("tag", ["v1.0.0", "1.0.0", "v0.9.9", "studio-worker-v0.1.0"])
async def test_same_or_older_is_never_installed(feed: FeedServer, session: aiohttp.ClientSession,
                                                tmp_path: Path, tag: str) -> None:
    inst = onefile(tmp_path)
    feed.release(tag, linux_release(tag.rsplit("v", 1)[-1]))
    outcome = await update(session, feed, inst)
    assert outcome.status is UpdateStatus.UP_TO_DATE
    assert outcome.message == "up to date: 1.0.0"
    assert feed.downloads == 0
    assert inst.executable.read_bytes() == fake_exe("1.0.0")
    assert updater.pending_restart() is None


async def test_prereleases_only_when_allowed(feed: FeedServer, session: aiohttp.ClientSession,
                                             tmp_path: Path) -> None:
    inst = onefile(tmp_path)
    feed.release("v2.0.0-rc.1", linux_release("2.0.0-rc.1"), prerelease=True)
    assert (await update(session, feed, inst)).status is UpdateStatus.UP_TO_DATE
    assert feed.downloads == 0
    outcome = await update(session, feed, inst, allow_prerelease=True)
    assert outcome.status is UpdateStatus.APPLIED, outcome.message
    assert await run_version(inst.executable) == "studio-worker 2.0.0-rc.1"


async def test_drafts_are_skipped(feed: FeedServer, session: aiohttp.ClientSession,
                                  tmp_path: Path) -> None:
    inst = onefile(tmp_path)
    feed.release("v9.0.0", linux_release("9.0.0"), draft=True)
    feed.release("v1.0.1", linux_release("1.0.1"))
    outcome = await update(session, feed, inst)
    assert outcome.latest == "1.0.1"
    assert await run_version(inst.executable) == "studio-worker 1.0.1"


async def test_prefixed_tag_and_single_release_object(
    feed: FeedServer, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    inst = onefile(tmp_path)
    feed.feed = feed.release("studio-worker-v1.2.3", linux_release("1.2.3"))  # not a list
    outcome = await update(session, feed, inst)
    assert outcome.status is UpdateStatus.APPLIED, outcome.message
    assert await run_version(inst.executable) == "studio-worker 1.2.3"


# -- refusals: nothing is replaced and the old version still runs ---------------------------------
async def assert_untouched(inst: Installation, version: str = "1.0.0") -> None:
    assert await run_version(inst.executable) == f"studio-worker {version}"
    assert not inst.previous.exists()
    assert leftovers(inst) == []
    assert updater.pending_restart() is None


async def test_checksum_mismatch_replaces_nothing(feed: FeedServer,
                                                  session: aiohttp.ClientSession,
                                                  tmp_path: Path) -> None:
    inst = onefile(tmp_path)
    feed.release("v1.1.0", linux_release("1.1.0"), bad_sums=True)
    outcome = await update(session, feed, inst)
    assert outcome.status is UpdateStatus.FAILED
    assert "checksum mismatch for StudioWorker-linux-x86_64.tar.gz" in outcome.message
    assert outcome.message.endswith("1.0.0 keeps running")
    assert feed.hits[LINUX.name] == 1
    await assert_untouched(inst)


async def test_missing_sha256sums_is_refused(feed: FeedServer, session: aiohttp.ClientSession,
                                             tmp_path: Path) -> None:
    inst = onefile(tmp_path)
    feed.release("v1.1.0", linux_release("1.1.0"), checksums=False)
    outcome = await update(session, feed, inst)
    assert outcome.status is UpdateStatus.FAILED
    assert "has no SHA256SUMS" in outcome.message
    assert feed.downloads == 0
    await assert_untouched(inst)


async def test_sha256sums_without_our_line_is_refused(feed: FeedServer,
                                                      session: aiohttp.ClientSession,
                                                      tmp_path: Path) -> None:
    inst = onefile(tmp_path)
    feed.release("v1.1.0", linux_release("1.1.0"))
    feed.files[CHECKSUMS_ASSET] = sums({"StudioWorker-macos-arm64.zip": b"x"})
    outcome = await update(session, feed, inst)
    assert "SHA256SUMS has no line for StudioWorker-linux-x86_64.tar.gz" in outcome.message
    assert feed.hits[LINUX.name] == 0
    await assert_untouched(inst)


async def test_release_without_our_artefact(feed: FeedServer, session: aiohttp.ClientSession,
                                            tmp_path: Path) -> None:
    inst = onefile(tmp_path)
    feed.release("v1.1.0", {MACOS.name: b"zip"})
    outcome = await update(session, feed, inst)
    assert outcome.status is UpdateStatus.FAILED
    assert "the release has no StudioWorker-linux-x86_64.tar.gz" in outcome.message
    await assert_untouched(inst)


async def test_missing_download_is_a_failure(feed: FeedServer, session: aiohttp.ClientSession,
                                             tmp_path: Path) -> None:
    inst = onefile(tmp_path)
    feed.release("v1.1.0", linux_release("1.1.0"))
    del feed.files[LINUX.name]
    outcome = await update(session, feed, inst)
    assert "StudioWorker-linux-x86_64.tar.gz answered 404" in outcome.message
    await assert_untouched(inst)


async def test_plain_http_to_another_host_is_refused(session: aiohttp.ClientSession,
                                                     feed: FeedServer, tmp_path: Path) -> None:
    inst = onefile(tmp_path)
    with pytest.raises(updater.UpdateError, match="plain http"):
        await fetch_latest(session, "http://example.invalid/releases", allow_prerelease=False)
    release = Release(parse_version("v1.1.0"), False,  # type: ignore[arg-type]
                      {LINUX.name: "http://example.invalid/a.tar.gz",
                       CHECKSUMS_ASSET: "https://example.invalid/SHA256SUMS"})
    outcome = await apply_update(session, release, inst, can_start=always, current="1.0.0")
    assert outcome.status is UpdateStatus.FAILED
    assert "refusing to download over plain http (http://example.invalid/a.tar.gz)" \
        in outcome.message
    await assert_untouched(inst)


async def test_redirect_to_plain_http_is_refused(feed: FeedServer,
                                                 session: aiohttp.ClientSession,
                                                 tmp_path: Path) -> None:
    inst = onefile(tmp_path)
    item = feed.release("v1.1.0", linux_release("1.1.0"))
    item["assets"][0]["browser_download_url"] = f"{feed.url}/redirect/{LINUX.name}"
    outcome = await update(session, feed, inst)
    assert "refusing to fetch StudioWorker-linux-x86_64.tar.gz over plain http " \
           "(http://example.invalid/" in outcome.message
    await assert_untouched(inst)


async def test_size_cap(feed: FeedServer, session: aiohttp.ClientSession, tmp_path: Path) -> None:
    inst = onefile(tmp_path)
    feed.release("v1.1.0", linux_release("1.1.0"))
    outcome = await update(session, feed, inst, max_bytes=100)
    assert "is larger than 100 bytes" in outcome.message
    await assert_untouched(inst)


async def test_mislabelled_build_is_refused(feed: FeedServer, session: aiohttp.ClientSession,
                                            tmp_path: Path) -> None:
    """A build that is not the version its tag says would be installed at every check."""
    inst = onefile(tmp_path)
    feed.release("v1.1.0", linux_release("1.0.0"))
    outcome = await update(session, feed, inst)
    assert "the new build reports 'studio-worker 1.0.0', not version 1.1.0" in outcome.message
    await assert_untouched(inst)


async def test_broken_build_is_refused(feed: FeedServer, session: aiohttp.ClientSession,
                                       tmp_path: Path) -> None:
    inst = onefile(tmp_path)
    feed.release("v1.1.0", {LINUX.name: targz({"StudioWorker/StudioWorker":
                                               b"#!/bin/sh\necho boom >&2\nexit 3\n"})})
    outcome = await update(session, feed, inst)
    assert "does not start here (exit 3" in outcome.message
    await assert_untouched(inst)


@pytest.mark.parametrize("entry", ["../evil", "/tmp/evil"])
async def test_unsafe_archives_are_refused(feed: FeedServer, session: aiohttp.ClientSession,
                                           tmp_path: Path, entry: str) -> None:
    inst = onefile(tmp_path)
    files = {"StudioWorker/StudioWorker": fake_exe("1.1.0"), entry: b"x"}
    feed.release("v1.1.0", {LINUX.name: targz(files)})
    outcome = await update(session, feed, inst)
    assert outcome.status is UpdateStatus.FAILED
    assert "unsafe" in outcome.message
    await assert_untouched(inst)
    assert not (tmp_path / "evil").exists()


async def test_zip_link_out_of_the_archive_is_refused(feed: FeedServer,
                                                      session: aiohttp.ClientSession,
                                                      tmp_path: Path) -> None:
    inst = onedir_app(tmp_path)
    files = {"StudioWorker.app/Contents/MacOS/StudioWorker": fake_exe("1.1.0")}
    links = {"StudioWorker.app/Contents/Resources/x": "../../../../../etc"}
    feed.release("v1.1.0", {MACOS.name: zipped(files, links=links)})
    outcome = await update(session, feed, inst)
    assert "a link out of it" in outcome.message
    assert not inst.previous.exists() and leftovers(inst) == []


# -- busy, source installs, unsupported platforms -------------------------------------------------
async def test_busy_worker_defers_before_downloading(feed: FeedServer,
                                                     session: aiohttp.ClientSession,
                                                     tmp_path: Path) -> None:
    inst = onefile(tmp_path)
    feed.release("v1.1.0", linux_release("1.1.0"))
    outcome = await update(session, feed, inst, can_start=lambda: False)
    assert outcome.status is UpdateStatus.DEFERRED
    assert outcome.message == "update to 1.1.0 deferred: a job is running"
    assert feed.downloads == 0
    await assert_untouched(inst)


async def test_job_started_during_download_defers_the_swap(
    feed: FeedServer, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    inst = onefile(tmp_path)
    feed.release("v1.1.0", linux_release("1.1.0"))
    answers = iter([True, False])
    outcome = await update(session, feed, inst, can_start=lambda: next(answers))
    assert outcome.status is UpdateStatus.DEFERRED
    assert feed.hits[LINUX.name] == 1
    await assert_untouched(inst)


async def test_pip_install_is_told_to_upgrade_with_pip(
    feed: FeedServer, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    feed.release("v1.1.0", linux_release("1.1.0"))
    inst = Installation("source", tmp_path, Path(sys.executable), LINUX, frozen=False)
    outcome = await update(session, feed, inst, can_start=pytest.fail)
    assert outcome.status is UpdateStatus.MANUAL
    assert outcome.message == ("update available: 1.0.0 -> 1.1.0: upgrade with pip "
                               "(pip install --upgrade studio-worker)")
    assert feed.downloads == 0
    assert detect_installation().kind == "source"  # pytest itself is not frozen


async def test_platform_without_a_build(feed: FeedServer, session: aiohttp.ClientSession,
                                        tmp_path: Path) -> None:
    feed.release("v1.1.0", linux_release("1.1.0"))
    inst = onefile(tmp_path)
    inst = Installation("onefile", inst.root, inst.executable, None)
    outcome = await update(session, feed, inst)
    assert outcome.status is UpdateStatus.MANUAL
    assert "there is no build for" in outcome.message
    assert feed.downloads == 0


# -- layouts --------------------------------------------------------------------------------------
async def test_windows_style_bare_executable(feed: FeedServer, session: aiohttp.ClientSession,
                                             tmp_path: Path) -> None:
    inst = onefile(tmp_path, artefact=WINDOWS, name="StudioWorker.exe")
    feed.release("v1.1.0", {WINDOWS.name: fake_exe("1.1.0")})
    outcome = await update(session, feed, inst)
    assert outcome.status is UpdateStatus.APPLIED, outcome.message
    assert await run_version(inst.executable) == "studio-worker 1.1.0"
    assert inst.previous.name == "StudioWorker.exe.old"
    assert leftovers(inst) == []


async def test_onedir_folder_is_swapped_whole(feed: FeedServer, session: aiohttp.ClientSession,
                                              tmp_path: Path) -> None:
    root = tmp_path / "opt" / "studio-worker"
    (root / "_internal").mkdir(parents=True)
    (root / "_internal" / "lib.so").write_bytes(b"old lib")
    (root / "StudioWorker").write_bytes(fake_exe("1.0.0"))
    (root / "StudioWorker").chmod(0o755)
    inst = Installation("onedir", root, root / "StudioWorker", LINUX)
    feed.release("v1.1.0", {LINUX.name: targz(
        {"StudioWorker/StudioWorker": fake_exe("1.1.0"),
         "StudioWorker/_internal/lib.so": b"new lib"},
        links={"StudioWorker/_internal/alias.so": "lib.so"})})
    outcome = await update(session, feed, inst)
    assert outcome.status is UpdateStatus.APPLIED, outcome.message
    assert await run_version(root / "StudioWorker") == "studio-worker 1.1.0"
    assert (root / "_internal" / "alias.so").read_bytes() == b"new lib"
    assert (inst.previous / "_internal" / "lib.so").read_bytes() == b"old lib"
    cleanup_previous(inst)
    assert not inst.previous.exists()
    assert sorted(p.name for p in root.parent.iterdir()) == ["studio-worker"]


def onedir_app(tmp_path: Path) -> Installation:
    app = tmp_path / "Applications" / "StudioWorker.app"
    exe = app / "Contents" / "MacOS" / "StudioWorker"
    exe.parent.mkdir(parents=True)
    exe.write_bytes(fake_exe("1.0.0"))
    exe.chmod(0o755)
    return Installation("onedir", app, exe, MACOS)


async def test_macos_app_from_zip_keeps_links_and_modes(
    feed: FeedServer, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    inst = onedir_app(tmp_path)
    files = {"StudioWorker.app/Contents/MacOS/StudioWorker": fake_exe("1.1.0"),
             "StudioWorker.app/Contents/Frameworks/base_library.zip": b"lib"}
    links = {"StudioWorker.app/Contents/Resources/base_library.zip":
             "../Frameworks/base_library.zip"}
    feed.release("v1.1.0", {MACOS.name: zipped(files, links=links)})
    outcome = await update(session, feed, inst)
    assert outcome.status is UpdateStatus.APPLIED, outcome.message
    assert await run_version(inst.executable) == "studio-worker 1.1.0"
    link = inst.root / "Contents" / "Resources" / "base_library.zip"
    assert link.is_symlink() and link.read_bytes() == b"lib"
    assert (inst.previous / "Contents" / "MacOS" / "StudioWorker").exists()


async def test_cancelled_update_cleans_up(feed: FeedServer, session: aiohttp.ClientSession,
                                          tmp_path: Path) -> None:
    inst = onefile(tmp_path)
    feed.release("v1.1.0", linux_release("1.1.0"))
    release = await latest(session, feed)
    started = asyncio.Event()

    def can_start() -> bool:
        started.set()
        return True

    task = asyncio.create_task(apply_update(session, release, inst, can_start=can_start,
                                            current="1.0.0"))
    await started.wait()
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await assert_untouched(inst)


def test_leftovers_are_removed_at_start(tmp_path: Path) -> None:
    inst = onefile(tmp_path)
    inst.previous.write_bytes(b"old")
    inst.previous.with_name("StudioWorker.old-123").write_bytes(b"older")
    (inst.root.parent / f"{inst.staging_prefix}abc").mkdir()
    (inst.root.parent / "config.toml").write_text("keep")
    cleanup_previous(inst)
    assert sorted(p.name for p in inst.root.parent.iterdir()) == ["StudioWorker", "config.toml"]


# -- detection, names, environment ----------------------------------------------------------------
@pytest.mark.parametrize(("exe", "meipass", "kind", "root"), [
    ("opt/sw/StudioWorker", "tmp/_MEI123", "onefile", "opt/sw/StudioWorker"),
    ("opt/sw/StudioWorker", "opt/sw/_internal", "onedir", "opt/sw"),
    ("A/StudioWorker.app/Contents/MacOS/StudioWorker", "A/StudioWorker.app/Contents/Frameworks",
     "onedir", "A/StudioWorker.app"),
])
def test_detect_frozen_layouts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exe: str,
                               meipass: str, kind: str, root: str) -> None:
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "_MEIPASS", str(tmp_path / meipass), raising=False)
    monkeypatch.setattr(sys, "executable", str(tmp_path / exe))
    inst = detect_installation()
    assert (inst.kind, inst.root, inst.executable) == (kind, tmp_path / root, tmp_path / exe)
    assert inst.frozen


def test_artefact_names_are_defined_once() -> None:
    assert [a.name for a in ARTEFACTS] == [
        "StudioWorker-linux-x86_64.tar.gz", "StudioWorker-windows-x86_64.exe",
        "StudioWorker-macos-arm64.zip"]
    assert artefact_for("linux", "AMD64") == LINUX
    assert artefact_for("windows", "AMD64") == WINDOWS
    assert artefact_for("macos", "arm64") == MACOS
    assert artefact_for("linux", "aarch64") is None
    assert updater.current_system("win32") == "windows"
    assert updater.current_system("darwin") == "macos"


def test_sha256sums_format(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = tmp_path / "b.zip", tmp_path / "a.tar.gz"
    a.write_bytes(b"one")
    b.write_bytes(b"two")
    assert updater.main(["sha256sums", str(a), str(b)]) == 0
    text = capsys.readouterr().out
    assert text == (f"{hashlib.sha256(b'two').hexdigest()}  a.tar.gz\n"
                    f"{hashlib.sha256(b'one').hexdigest()}  b.zip\n")
    assert parse_sha256sums(text + f"{'A' * 64} *bin.exe\nnot a line\n") == {
        "a.tar.gz": hashlib.sha256(b"two").hexdigest(),
        "b.zip": hashlib.sha256(b"one").hexdigest(), "bin.exe": "a" * 64}
    assert updater.main(["artefact-name", "--system", "linux", "--machine", "x86_64"]) == 0
    assert capsys.readouterr().out == "StudioWorker-linux-x86_64.tar.gz\n"
    assert updater.main(["artefact-name", "--system", "linux", "--machine", "riscv64"]) == 1


def test_restart_environment_resets_pyinstaller_state() -> None:
    env = {"PATH": "/bin", "_PYI_APPLICATION_HOME_DIR": "/tmp/_MEI1", "_PYI_ARCHIVE_FILE": "x",
           "LD_LIBRARY_PATH": "/tmp/_MEI1:/usr/local/lib", "LD_LIBRARY_PATH_ORIG": "/usr/local/lib"}
    assert restart_environment(env, frozen=True) == {
        "PATH": "/bin", "LD_LIBRARY_PATH": "/usr/local/lib", "PYINSTALLER_RESET_ENVIRONMENT": "1"}
    assert restart_environment({"LD_LIBRARY_PATH": "/tmp/_MEI1"}, frozen=True) == {
        "PYINSTALLER_RESET_ENVIRONMENT": "1"}
    assert restart_environment({"LD_LIBRARY_PATH": "/x"}, frozen=False) == {
        "LD_LIBRARY_PATH": "/x"}


# -- the whole thing: apply, then restart into the new version with the same arguments ------------
OLD_BUNDLE = """\
#!{python}
# A frozen worker stand-in: version 1.0.0, updates itself through the real updater.
import asyncio, json, os, sys
from pathlib import Path
sys.path.insert(0, {repo!r})
if sys.argv[1:] == ["--version"]:
    print("studio-worker 1.0.0")
    sys.exit(0)
import aiohttp
from workerlib import updater

exe = Path(__file__).resolve()
inst = updater.Installation("onefile", exe, exe, updater.artefact_for("linux", "x86_64"),
                            frozen=False)

async def main():
    async with aiohttp.ClientSession() as session:
        release = await updater.fetch_latest(session, os.environ["FEED"],
                                             allow_prerelease=False)
        return await updater.apply_update(session, release, inst, can_start=lambda: True,
                                          current="1.0.0")

outcome = asyncio.run(main())
print(json.dumps({{"version": "1.0.0", "pid": os.getpid(), "outcome": outcome.message}}),
      flush=True)
updater.restart_if_pending(sys.argv[1:])
sys.exit(5)  # no update: a distinct exit code
"""

NEW_BUNDLE = """\
#!/bin/sh
if [ "$1" = "--version" ]; then echo "studio-worker 1.1.0"; exit 0; fi
printf '{"version": "1.1.0", "pid": %s, "args": "%s", "reset": "%s"}\\n' \
  "$$" "$*" "$PYINSTALLER_RESET_ENVIRONMENT"
"""


async def test_apply_and_restart_into_the_new_version(feed: FeedServer, tmp_path: Path) -> None:
    repo = str(Path(__file__).resolve().parents[2])
    folder = tmp_path / "opt" / "studio-worker"
    folder.mkdir(parents=True)
    exe = folder / "StudioWorker"
    exe.write_text(OLD_BUNDLE.format(python=sys.executable, repo=repo))
    exe.chmod(0o755)
    feed.release("v1.1.0", {LINUX.name: targz({"StudioWorker/StudioWorker":
                                               NEW_BUNDLE.encode()})})
    proc = await asyncio.create_subprocess_exec(
        str(exe), "--config", "/tmp/some config.toml", "run",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "FEED": f"{feed.url}/releases"})
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    old, new = (json.loads(line) for line in out.decode().splitlines())
    assert old["outcome"] == "updated 1.0.0 -> 1.1.0; restarting"
    assert new == {"version": "1.1.0", "pid": old["pid"],  # execv: the same process
                   "args": "--config /tmp/some config.toml run", "reset": ""}
    assert await run_version(exe) == "studio-worker 1.1.0"
    assert (folder / "StudioWorker.old").read_text().startswith("#!")
    # The next start of the new version clears what the update left.
    cleanup_previous(Installation("onefile", exe, exe, LINUX))
    assert sorted(p.name for p in folder.iterdir()) == ["StudioWorker"]


# -- wired into the worker: applied between jobs, then the worker asks to restart ----------------
WIRED = hasattr(WorkerService, "apply_update")


@pytest.mark.skipif(not WIRED, reason="the updater is not wired into the worker loops yet")
async def test_worker_applies_between_jobs_and_asks_to_restart(
    make_service: Any, studio: Any, feed: FeedServer, tmp_path: Path
) -> None:
    feed.release("v9.0.0", linux_release("9.0.0"))
    service = await make_service(auto_update_enabled=True,
                                 auto_update_feed=f"{feed.url}/releases")
    inst = onefile(tmp_path)
    service.installation = inst
    for _ in range(5):
        studio.enqueue(model="synthetic", prompt="a lighthouse")
    loops = await service.start()
    await asyncio.wait_for(service.restart_requested.wait(), 30)
    # Claiming stopped for good (the session ends, its last logs shipped), and no job
    # was running when the bundle was swapped.
    await asyncio.wait_for(asyncio.shield(loops.claim_task()), 10)
    assert loops.job_task is None
    assert "claimed" not in {job.status for job in studio.jobs.values()}
    assert await run_version(inst.executable) == "studio-worker 9.0.0"
    assert updater.pending_restart() == inst


def cli_has_apply() -> bool:
    from workerlib.cli import build_parser

    with contextlib.redirect_stderr(io.StringIO()):
        try:
            build_parser().parse_args(["check-update", "--apply"])
        except SystemExit:
            return False
    return True


@pytest.mark.skipif(not cli_has_apply(), reason="no `check-update --apply` yet")
async def test_cli_apply_from_a_pip_install_says_upgrade_with_pip(
    feed: FeedServer, tmp_path: Path
) -> None:
    from workerlib import __version__
    from workerlib.config import ConfigStore

    feed.release("v9.0.0", linux_release("9.0.0"))
    config = tmp_path / "config.toml"
    ConfigStore(config).update({"auto_update_feed": f"{feed.url}/releases"})
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "workerlib", "--config", str(config), "check-update", "--apply",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    assert out.decode().splitlines() == [
        f"update available: {__version__} -> 9.0.0",
        f"update available: {__version__} -> 9.0.0: upgrade with pip "
        "(pip install --upgrade studio-worker)"]
    assert feed.downloads == 0


def test_a_failed_restart_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "gone" / "StudioWorker"
    monkeypatch.setattr(updater, "_pending_restart",
                        Installation("onefile", missing, missing, LINUX))
    with pytest.raises(SystemExit) as exit_info:
        updater.restart_if_pending(["run"])
    assert exit_info.value.code == 1
    assert f"could not start {missing}" in capsys.readouterr().err
    updater._pending_restart = None
    updater.restart_if_pending(["run"])  # nothing pending: returns
