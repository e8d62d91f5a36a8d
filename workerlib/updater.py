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
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import aiohttp

from workerlib import __version__
from workerlib.logs import get_logger
from workerlib.update import Release, fetch_latest, parse_version
from workerlib.update_bundle import (
    ARTEFACTS,
    EXECUTABLE,
    WINDOWS_SETUP,
    Artefact,
    Installation,
    artefact_for,
    cleanup_previous,
    current_machine,
    current_system,
    detect_installation,
    remove_path,
    restart,
    restart_environment,
    swap,
)
from workerlib.update_fetch import UpdateError, check_url_allowed, download, fetch_small
from workerlib.update_unpack import (
    parse_sha256sums,
    sha256sums_text,
    unpack,
    verify_version,
)

__all__ = [
    "ARTEFACTS", "CHECKSUMS_ASSET", "EXECUTABLE", "WINDOWS_SETUP", "Artefact", "Installation",
    "UpdateError", "UpdateOutcome", "UpdateStatus", "apply_update", "artefact_for",
    "cleanup_previous", "current_machine", "current_system", "detect_installation",
    "fetch_latest", "parse_sha256sums", "pending_restart", "restart", "restart_environment",
    "restart_if_pending", "sha256sums_text",
]

log = get_logger("auto-update")

CHECKSUMS_ASSET = "SHA256SUMS"
MAX_ARTEFACT_BYTES = 512 * 1024 * 1024
MAX_CHECKSUMS_BYTES = 1024 * 1024


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
            swap(installation, staged.candidate)
        except OSError as exc:
            return outcome(UpdateStatus.FAILED,
                           f"update to {latest} failed: could not replace "
                           f"{installation.root} ({exc.strerror or exc}); {current} keeps running")
    finally:
        remove_path(staged.workdir)
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
    sums_text = (await fetch_small(session, sums_url, MAX_CHECKSUMS_BYTES, CHECKSUMS_ASSET)
                 ).decode("utf-8", "replace")
    expected = parse_sha256sums(sums_text).get(artefact.name)
    if expected is None:
        raise UpdateError(f"{CHECKSUMS_ASSET} has no line for {artefact.name}")
    workdir = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix=installation.staging_prefix,
                                           dir=parent))
    try:
        downloaded = workdir / artefact.name
        digest = await download(session, url, downloaded, max_bytes)
        if digest != expected:
            raise UpdateError(f"checksum mismatch for {artefact.name} (expected {expected[:12]}…,"
                              f" got {digest[:12]}…)")
        candidate = await asyncio.to_thread(unpack, downloaded, artefact, installation, workdir)
        await verify_version(installation, candidate, release.version)
    except BaseException:
        remove_path(workdir)
        raise
    return _Staged(workdir, candidate)


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
