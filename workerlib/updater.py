"""Applying updates (STUDIO_API.md §6): download, verify, swap the bundle, restart.

:mod:`workerlib.update` answers *whether* a newer release exists; this module installs
it, and only into a frozen bundle (a pip install is told to upgrade with pip). The
steps, each of which leaves the running version untouched when it fails:

1. the caller says no job runs (``can_start``) and holds claiming until we return;
2. the release's ``SHA256SUMS`` and this platform's artefact are fetched over https
   (plain http only to loopback) into a temp folder next to the installed bundle;
3. the artefact's SHA-256 must match its ``SHA256SUMS`` line;
4. it is unpacked (archives) and the new executable must report the release's
   version when run with ``--version``;
5. the swap is two renames in one folder: the installed bundle moves aside to
   ``<name>.old`` (Windows allows renaming a running exe, not replacing it) and the
   new one takes its place; ``.old`` is removed at the next start;
6. after the caller has shut down cleanly, :func:`restart_if_pending` re-executes the
   new version with the same arguments.

Release artefact names live here, and nowhere else: ``python -m workerlib.updater``
prints them and writes ``SHA256SUMS`` for the build scripts and the release workflow.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import platform
import re
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path, PurePosixPath
from typing import Any, Literal, NoReturn

import aiohttp
from yarl import URL

from workerlib import __version__
from workerlib.api import USER_AGENT
from workerlib.logs import get_logger
from workerlib.update import (
    MAX_FEED_BYTES,
    Release,
    Version,
    check_url_allowed,
    parse_version,
    pick_latest,
)

log = get_logger("auto-update")

CHECKSUMS_ASSET = "SHA256SUMS"
MAX_ARTEFACT_BYTES = 512 * 1024 * 1024
MAX_CHECKSUMS_BYTES = 1024 * 1024
MAX_UNPACKED_BYTES = 2 * 1024 * 1024 * 1024
VERIFY_TIMEOUT_SECS = 120.0
MAX_REDIRECTS = 5
_CHUNK = 256 * 1024
_VERSION_OUT = re.compile(r"(\d+\.\d+\.\d+\S*)")
_SUM_LINE = re.compile(r"^([0-9a-fA-F]{64}) [ *](.+)$")


# -- release artefacts --------------------------------------------------------------------
@dataclass(frozen=True)
class Artefact:
    """One platform's self-update artefact, as attached to every release."""

    system: str
    machine: str
    name: str

    @property
    def archive(self) -> Literal["tar.gz", "zip"] | None:
        if self.name.endswith(".tar.gz"):
            return "tar.gz"
        if self.name.endswith(".zip"):
            return "zip"
        return None


ARTEFACTS: tuple[Artefact, ...] = (
    # The one-file executable in a folder with the installer scripts and the icon.
    Artefact("linux", "x86_64", "StudioWorker-linux-x86_64.tar.gz"),
    # The bare one-file executable (the setup program installs this same file).
    Artefact("windows", "x86_64", "StudioWorker-windows-x86_64.exe"),
    # StudioWorker.app, zipped with ditto (keeps the symlinks inside the .app).
    Artefact("macos", "arm64", "StudioWorker-macos-arm64.zip"),
)
WINDOWS_SETUP = "StudioWorker-windows-x86_64-setup.exe"
"""The Inno Setup installer: attached to releases for people, never used for updates."""
EXECUTABLE = "StudioWorker"


def current_system(plat: str = sys.platform) -> str:
    if plat.startswith("linux"):
        return "linux"
    if plat == "win32":
        return "windows"
    if plat == "darwin":
        return "macos"
    return plat


def current_machine(machine: str | None = None) -> str:
    name = (machine if machine is not None else platform.machine()).lower()
    return {"amd64": "x86_64", "x64": "x86_64", "aarch64": "arm64"}.get(name, name)


def artefact_for(system: str | None = None, machine: str | None = None) -> Artefact | None:
    system = system or current_system()
    machine = current_machine(machine)
    return next((a for a in ARTEFACTS if (a.system, a.machine) == (system, machine)), None)


# -- the installed bundle -----------------------------------------------------------------
@dataclass(frozen=True)
class Installation:
    """What a self-update replaces.

    ``onefile``: ``root`` is the executable itself. ``onedir``: ``root`` is the folder
    that is swapped whole (the bundle folder, or the ``.app`` on macOS) and
    ``executable`` lies inside it. ``source``: a pip install, never self-replaced.
    """

    kind: Literal["onefile", "onedir", "source"]
    root: Path
    executable: Path
    artefact: Artefact | None
    frozen: bool = True

    @property
    def previous(self) -> Path:
        """Where the replaced bundle waits to be deleted at the next start."""
        return self.root.with_name(self.root.name + ".old")

    @property
    def staging_prefix(self) -> str:
        return f".{self.root.name}.update-"


def detect_installation() -> Installation:
    """This process's installation: frozen by PyInstaller (one-file or one-folder) or not."""
    artefact = artefact_for()
    meipass = getattr(sys, "_MEIPASS", None)
    if not getattr(sys, "frozen", False) or not meipass:
        exe = Path(sys.executable)
        return Installation("source", exe.parent, exe, artefact, frozen=False)
    exe = Path(sys.executable).resolve()
    internal = Path(meipass).resolve()
    app = exe.parents[2] if len(exe.parents) > 2 else None
    if (app is not None and app.suffix == ".app" and exe.parent.name == "MacOS"
            and internal.is_relative_to(app)):
        return Installation("onedir", app, exe, artefact)
    if internal.is_relative_to(exe.parent):
        return Installation("onedir", exe.parent, exe, artefact)
    # One-file: the bootloader unpacked itself into a temp _MEI folder.
    return Installation("onefile", exe, exe, artefact)


def cleanup_previous(installation: Installation | None = None) -> None:
    """Remove what an earlier update left behind (the ``.old`` bundle, stale temp dirs).

    Called at start. On Windows the old exe may still be running for a moment after a
    restart: whatever cannot be removed now is removed at a later start.
    """
    inst = installation or detect_installation()
    if inst.kind == "source":
        return
    with contextlib.suppress(OSError):
        for entry in inst.root.parent.iterdir():
            name = entry.name
            if name.startswith(inst.previous.name) or name.startswith(inst.staging_prefix):
                _remove(entry)


# -- outcome ------------------------------------------------------------------------------
class UpdateStatus(StrEnum):
    UP_TO_DATE = "up-to-date"
    APPLIED = "applied"
    DEFERRED = "deferred"
    MANUAL = "manual"
    FAILED = "failed"


@dataclass(frozen=True)
class UpdateOutcome:
    """What :func:`apply_update` did; ``message`` is a plain sentence for logs and the GUI.

    ``applied``: the new bundle is in place; shut down cleanly, then call
    :func:`restart_if_pending`. ``deferred`` (a job runs) and ``failed`` (nothing was
    changed) are retried at the next check. ``manual``: the user has to upgrade.
    """

    status: UpdateStatus
    current: str
    latest: str | None
    message: str

    @property
    def restart(self) -> bool:
        return self.status is UpdateStatus.APPLIED


class UpdateError(Exception):
    """An update step failed; the message is shown to the user as is."""


# -- feed -----------------------------------------------------------------------------------
async def fetch_latest(
    session: aiohttp.ClientSession, feed_url: str, *, allow_prerelease: bool
) -> Release | None:
    """The newest usable release in the feed (drafts and unparsable tags skipped)."""
    body = await _fetch_small(session, feed_url, MAX_FEED_BYTES, "the update feed",
                              accept="application/vnd.github+json")
    try:
        return pick_latest(json.loads(body), allow_prerelease=allow_prerelease)
    except ValueError as exc:
        raise UpdateError("the update feed is not valid JSON") from exc


def parse_sha256sums(text: str) -> dict[str, str]:
    """``sha256sum`` output (``<hex>  <name>``, or `` *<name>`` in binary mode)."""
    sums: dict[str, str] = {}
    for line in text.splitlines():
        match = _SUM_LINE.match(line.strip())
        if match:
            sums[match.group(2).strip()] = match.group(1).lower()
    return sums


def sha256sums_text(files: Iterable[Path]) -> str:
    return "".join(f"{_sha256_file(path)}  {path.name}\n" for path in sorted(files))


# -- apply ------------------------------------------------------------------------------------
_pending_restart: Installation | None = None


async def apply_update(
    session: aiohttp.ClientSession,
    release: Release | None,
    installation: Installation,
    *,
    can_start: Callable[[], bool],
    current: str = __version__,
    max_bytes: int = MAX_ARTEFACT_BYTES,
) -> UpdateOutcome:
    """Install ``release`` over ``installation`` if it is newer. Never raises for a
    failed update (the outcome says what happened); cancelling it cleans up too.

    ``can_start`` is asked before anything is downloaded and again just before the
    swap: False defers the update (a job is running). The caller holds claiming from
    a True answer until this returns.
    """
    global _pending_restart
    current_version = parse_version(current)
    if release is None or (current_version is not None and release.version <= current_version):
        return UpdateOutcome(UpdateStatus.UP_TO_DATE, current, None, f"up to date: {current}")
    latest = str(release.version)

    def outcome(status: UpdateStatus, message: str) -> UpdateOutcome:
        return UpdateOutcome(status, current, latest, message)

    if current_version is None:
        return outcome(UpdateStatus.FAILED,
                       f"update to {latest} skipped: the running version {current!r} "
                       "cannot be compared")
    available = f"update available: {current} -> {latest}"
    if installation.kind == "source":
        return outcome(UpdateStatus.MANUAL,
                       f"{available}: upgrade with pip (pip install --upgrade studio-worker)")
    artefact = installation.artefact
    if artefact is None:
        return outcome(UpdateStatus.MANUAL,
                       f"{available}: there is no build for {current_system()}-"
                       f"{current_machine()}; install it by hand")
    if not can_start():
        return outcome(UpdateStatus.DEFERRED, f"update to {latest} deferred: a job is running")
    try:
        staged = await _stage(session, release, installation, artefact, max_bytes)
    except UpdateError as exc:
        return outcome(UpdateStatus.FAILED, f"update to {latest} failed: {exc}; "
                                            f"{current} keeps running")
    except OSError as exc:  # disk full, permissions: nothing was replaced
        return outcome(UpdateStatus.FAILED,
                       f"update to {latest} failed: {exc.strerror or exc} "
                       f"({exc.filename or installation.root.parent}); {current} keeps running")
    try:
        if not can_start():
            return outcome(UpdateStatus.DEFERRED,
                           f"update to {latest} deferred: a job is running")
        try:
            _swap(installation, staged.candidate)
        except OSError as exc:
            return outcome(UpdateStatus.FAILED,
                           f"update to {latest} failed: could not replace "
                           f"{installation.root} ({exc.strerror or exc}); {current} keeps running")
    finally:
        _remove(staged.workdir)
    _pending_restart = installation
    log.info("installed %s over %s (the previous bundle is %s)", latest, installation.root,
             installation.previous)
    return outcome(UpdateStatus.APPLIED, f"updated {current} -> {latest}; restarting")


@dataclass(frozen=True)
class _Staged:
    workdir: Path
    candidate: Path


async def _stage(
    session: aiohttp.ClientSession,
    release: Release,
    installation: Installation,
    artefact: Artefact,
    max_bytes: int,
) -> _Staged:
    """Download, verify and unpack next to the installed bundle; the new bundle's path."""
    url = release.assets.get(artefact.name)
    if url is None:
        raise UpdateError(f"the release has no {artefact.name}")
    sums_url = release.assets.get(CHECKSUMS_ASSET)
    if sums_url is None:
        raise UpdateError(f"the release has no {CHECKSUMS_ASSET}, so {artefact.name} "
                          "cannot be verified")
    for asset_url in (sums_url, url):
        try:
            check_url_allowed(asset_url)
        except ValueError:
            raise UpdateError(f"refusing to download over plain http ({asset_url})") from None
    parent = installation.root.parent
    if not os.access(parent, os.W_OK):
        raise UpdateError(f"{parent} is not writable (reinstall to update)")
    sums_text = (await _fetch_small(session, sums_url, MAX_CHECKSUMS_BYTES, CHECKSUMS_ASSET)
                 ).decode("utf-8", "replace")
    expected = parse_sha256sums(sums_text).get(artefact.name)
    if expected is None:
        raise UpdateError(f"{CHECKSUMS_ASSET} has no line for {artefact.name}")
    workdir = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix=installation.staging_prefix,
                                           dir=parent))
    try:
        download = workdir / artefact.name
        digest = await _download(session, url, download, max_bytes)
        if digest != expected:
            raise UpdateError(f"checksum mismatch for {artefact.name} (expected {expected[:12]}…,"
                              f" got {digest[:12]}…)")
        candidate = await asyncio.to_thread(_unpack, download, artefact, installation, workdir)
        await _verify_version(installation, candidate, release.version)
    except BaseException:
        _remove(workdir)
        raise
    return _Staged(workdir, candidate)


async def _fetch_small(session: aiohttp.ClientSession, url: str, limit: int, what: str,
                       accept: str = "*/*") -> bytes:
    try:
        async with _get(session, url, what, accept=accept,
                        timeout=aiohttp.ClientTimeout(total=60)) as resp:
            body = await resp.content.read(limit + 1)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise UpdateError(f"{what} could not be fetched ({type(exc).__name__})") from None
    if len(body) > limit:
        raise UpdateError(f"{what} is too large")
    return body


@contextlib.asynccontextmanager
async def _get(session: aiohttp.ClientSession, url: str, what: str, *, accept: str,
               timeout: aiohttp.ClientTimeout) -> AsyncIterator[aiohttp.ClientResponse]:
    """GET following redirects by hand: GitHub redirects asset downloads, and every hop
    must be https (or loopback) *before* it is connected to."""
    for _ in range(MAX_REDIRECTS + 1):
        try:
            check_url_allowed(url)
        except ValueError:
            raise UpdateError(f"refusing to fetch {what} over plain http ({url})") from None
        async with session.get(url, headers={"Accept": accept, "User-Agent": USER_AGENT},
                               timeout=timeout, allow_redirects=False) as resp:
            location = resp.headers.get("Location")
            if resp.status in (301, 302, 303, 307, 308) and location:
                url = str(resp.url.join(URL(location)))
                continue
            if resp.status != 200:
                raise UpdateError(f"{what} answered {resp.status} {resp.reason or ''}".rstrip())
            yield resp
            return
    raise UpdateError(f"{what}: too many redirects")


async def _download(session: aiohttp.ClientSession, url: str, dest: Path, max_bytes: int) -> str:
    """Stream ``url`` into ``dest`` (at most ``max_bytes``); returns the SHA-256."""
    name = dest.name
    digest = hashlib.sha256()
    size = 0
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=60)
    try:
        async with _get(session, url, name, accept="application/octet-stream",
                        timeout=timeout) as resp:
            if (resp.content_length or 0) > max_bytes:
                raise UpdateError(f"{name} is larger than {max_bytes} bytes")
            out = await asyncio.to_thread(dest.open, "wb")
            try:
                async for chunk in resp.content.iter_chunked(_CHUNK):
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


# -- unpacking ----------------------------------------------------------------------------------
def _unpack(download: Path, artefact: Artefact, installation: Installation,
            workdir: Path) -> Path:
    """The new bundle (an executable, or a folder) inside ``workdir``."""
    if artefact.archive is None:
        if installation.kind != "onefile":
            raise UpdateError(f"{artefact.name} is a single file; this installation is a folder")
        _make_executable(download)
        return download
    tree = workdir / "unpacked"
    tree.mkdir()
    try:
        if artefact.archive == "tar.gz":
            _extract_tar(download, tree)
        else:
            _extract_zip(download, tree)
    except (OSError, tarfile.TarError, zipfile.BadZipFile, EOFError) as exc:
        raise UpdateError(f"{artefact.name} could not be unpacked ({exc})") from None
    download.unlink()
    candidate = _locate(tree, installation)
    if candidate is None:
        raise UpdateError(f"{artefact.name} holds no {_relative_exe(installation)}")
    exe = candidate if installation.kind == "onefile" else candidate / _relative_exe(installation)
    _make_executable(exe)
    return candidate


def _relative_exe(installation: Installation) -> Path:
    if installation.kind == "onefile":
        return Path(installation.executable.name)
    return installation.executable.relative_to(installation.root)


def _locate(tree: Path, installation: Installation) -> Path | None:
    relative = _relative_exe(installation)
    if installation.kind == "onefile":
        for folder in (tree, *sorted(p for p in tree.iterdir() if p.is_dir())):
            exe = folder / relative
            if exe.is_file() and not exe.is_symlink():
                return exe
        return None
    tops = sorted(p for p in tree.iterdir() if p.is_dir() and not p.is_symlink())
    named = tree / installation.root.name
    for folder in (named, *tops):
        if (folder / relative).is_file():
            return folder
    return None


def _extract_tar(archive: Path, dest: Path) -> None:
    data_filter = getattr(tarfile, "data_filter", None)
    if data_filter is None:  # pragma: no cover - Python < 3.11.4
        raise UpdateError("unpacking updates safely needs Python 3.11.4 or newer")
    with tarfile.open(archive, "r:gz") as tar:
        members = tar.getmembers()
        for member in members:
            _safe_member_path(dest, member.name)
        if sum(m.size for m in members) > MAX_UNPACKED_BYTES:
            raise UpdateError(f"{archive.name} unpacks to more than {MAX_UNPACKED_BYTES} bytes")
        try:
            tar.extractall(dest, members=members, filter="data")
        except tarfile.FilterError as exc:
            raise UpdateError(f"{archive.name} holds an unsafe entry ({exc})") from None


def _safe_member_path(dest: Path, name: str) -> Path:
    pure = PurePosixPath(name.replace("\\", "/"))
    if pure.is_absolute() or ".." in pure.parts or (pure.parts and ":" in pure.parts[0]):
        raise UpdateError(f"the archive holds an unsafe path: {name!r}")
    return dest.joinpath(*pure.parts)


def _extract_zip(archive: Path, dest: Path) -> None:
    """Like ``zipfile.extractall``, but keeps Unix modes and symlinks (a macOS .app
    needs both) and refuses paths and links that leave ``dest``."""
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        if sum(i.file_size for i in infos) > MAX_UNPACKED_BYTES:
            raise UpdateError(f"{archive.name} unpacks to more than {MAX_UNPACKED_BYTES} bytes")
        root = dest.resolve()
        for info in infos:
            target = _safe_member_path(dest, info.filename)
            mode = info.external_attr >> 16 if info.create_system == 3 else 0
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            if stat.S_ISLNK(mode):
                link = zf.read(info).decode("utf-8")
                resolved = (target.parent / link).resolve()
                if PurePosixPath(link).is_absolute() or not resolved.is_relative_to(root):
                    raise UpdateError(f"the archive holds a link out of it: {info.filename!r}")
                os.symlink(link, target)
                continue
            with zf.open(info) as src, target.open("wb") as out:
                shutil.copyfileobj(src, out, _CHUNK)
            perms = stat.S_IMODE(mode) & 0o755
            target.chmod(perms | 0o600 if perms else 0o644)


def _make_executable(path: Path) -> None:
    if os.name == "posix":
        path.chmod(path.stat().st_mode | 0o755)


async def _verify_version(installation: Installation, candidate: Path, expected: Version) -> None:
    """The new build must run here and be the release it claims to be: a mislabelled
    build would otherwise be installed again at every check."""
    exe = candidate if installation.kind == "onefile" else candidate / _relative_exe(installation)
    env = restart_environment(os.environ, frozen=installation.frozen)
    try:
        proc = await asyncio.create_subprocess_exec(
            str(exe), "--version", stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env)
    except OSError as exc:
        raise UpdateError(f"the new version does not start here ({exc.strerror or exc})"
                          ) from None
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), VERIFY_TIMEOUT_SECS)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise UpdateError("the new version did not answer --version in time") from None
    finally:
        if proc.returncode is None:  # cancelled
            proc.kill()
            await proc.wait()
    text = out.decode("utf-8", "replace").strip()
    if proc.returncode != 0:
        raise UpdateError(f"the new version does not start here (exit {proc.returncode}: "
                          f"{text[-200:]!r})")
    match = _VERSION_OUT.search(text)
    found = parse_version(match.group(1)) if match else None
    if found is None or found != expected:
        raise UpdateError(f"the new build reports {text[-80:]!r}, not version {expected}")


# -- swap and restart ---------------------------------------------------------------------------
def _swap(installation: Installation, candidate: Path) -> None:
    """Two renames in one folder: the installed bundle aside, the new one in place."""
    root = installation.root
    previous = installation.previous
    if os.path.lexists(previous):
        _remove(previous)
    if os.path.lexists(previous):  # still there (a Windows exe that has not exited yet)
        previous = previous.with_name(f"{previous.name}-{os.getpid()}")
    os.rename(root, previous)
    try:
        os.rename(candidate, root)
    except OSError:
        os.rename(previous, root)
        raise


def restart_environment(environ: Mapping[str, str], *, frozen: bool) -> dict[str, str]:
    """The environment for starting a (new) bundle as an independent process.

    A PyInstaller one-file child sees ``_PYI_*`` variables from its bootloader: passed
    on, they would make the new bootloader think it is that child and run the old,
    unpacked code. The bootloader also prepends its folder to ``LD_LIBRARY_PATH``.
    """
    env = {k: v for k, v in environ.items() if not k.startswith("_PYI_") and k != "_MEIPASS2"}
    if frozen:
        env["PYINSTALLER_RESET_ENVIRONMENT"] = "1"
        original = env.pop("LD_LIBRARY_PATH_ORIG", None)
        if original is not None:
            env["LD_LIBRARY_PATH"] = original
        else:
            env.pop("LD_LIBRARY_PATH", None)
    return env


def restart(installation: Installation, argv: Sequence[str]) -> NoReturn:
    """Replace this process by the installed bundle run with ``argv`` (POSIX: same pid);
    on Windows, start it and exit. Call only after a clean shutdown (locks released)."""
    exe = str(installation.executable)
    env = restart_environment(os.environ, frozen=installation.frozen)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    if sys.platform == "win32":  # pragma: no cover - Windows only
        flags = subprocess.CREATE_NEW_PROCESS_GROUP | subprocess.CREATE_NO_WINDOW
        subprocess.Popen([exe, *argv], env=env, creationflags=flags, close_fds=True)
        raise SystemExit(0)
    os.execve(exe, [exe, *argv], env)


def pending_restart() -> Installation | None:
    """The installation an update was applied to in this process, if any."""
    return _pending_restart


def restart_if_pending(argv: Sequence[str]) -> None:
    """After a clean shutdown: start the freshly installed version with ``argv``."""
    if _pending_restart is not None:
        log.info("restarting into the new version")
        try:
            restart(_pending_restart, argv)
        except OSError as exc:  # the new version is installed: the next start uses it
            print(f"studio-worker: could not start {_pending_restart.executable} "
                  f"({exc.strerror or exc}); start it again", file=sys.stderr)
            raise SystemExit(1) from None


# -- helpers ------------------------------------------------------------------------------------
def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


# -- build helper: python -m workerlib.updater ----------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workerlib.updater",
                                     description="release artefact names and SHA256SUMS")
    sub = parser.add_subparsers(dest="command", required=True)
    name = sub.add_parser("artefact-name", help="the self-update artefact for a platform")
    name.add_argument("--system", help="linux, windows or macos (default: this one)")
    name.add_argument("--machine", help="x86_64 or arm64 (default: this one)")
    sub.add_parser("artefacts", help="every artefact name, one a line")
    sums = sub.add_parser("sha256sums", help="print SHA256SUMS lines for the files")
    sums.add_argument("files", nargs="+", type=Path)
    args: Any = parser.parse_args(argv)
    if args.command == "artefact-name":
        artefact = artefact_for(args.system, args.machine)
        if artefact is None:
            print(f"no artefact for {args.system or current_system()}-"
                  f"{current_machine(args.machine)}", file=sys.stderr)
            return 1
        print(artefact.name)
    elif args.command == "artefacts":
        print("\n".join([*(a.name for a in ARTEFACTS), WINDOWS_SETUP, CHECKSUMS_ASSET]))
    else:
        sys.stdout.write(sha256sums_text(args.files))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
