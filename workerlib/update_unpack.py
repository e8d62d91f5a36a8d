"""Self-update, part 3: checksums, unpacking an artefact safely, and running the new
build's ``--version`` before it may replace the installed one."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import shutil
import stat
import tarfile
import zipfile
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from workerlib.update import Version, parse_version
from workerlib.update_bundle import Artefact, Installation, restart_environment
from workerlib.update_fetch import CHUNK, UpdateError

MAX_UNPACKED_BYTES = 2 * 1024 * 1024 * 1024
VERIFY_TIMEOUT_SECS = 120.0
_VERSION_OUT = re.compile(r"(\d+\.\d+\.\d+\S*)")
_SUM_LINE = re.compile(r"^([0-9a-fA-F]{64}) [ *](.+)$")


def parse_sha256sums(text: str) -> dict[str, str]:
    """``sha256sum`` output (``<hex>  <name>``, or `` *<name>`` in binary mode)."""
    sums: dict[str, str] = {}
    for line in text.splitlines():
        match = _SUM_LINE.match(line.strip())
        if match:
            sums[match.group(2).strip()] = match.group(1).lower()
    return sums


def sha256sums_text(files: Iterable[Path]) -> str:
    return "".join(f"{sha256_file(path)}  {path.name}\n" for path in sorted(files))


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


# -- unpacking ----------------------------------------------------------------------------------
def unpack(download: Path, artefact: Artefact, installation: Installation,
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
                shutil.copyfileobj(src, out, CHUNK)
            perms = stat.S_IMODE(mode) & 0o755
            target.chmod(perms | 0o600 if perms else 0o644)


def _make_executable(path: Path) -> None:
    if os.name == "posix":
        path.chmod(path.stat().st_mode | 0o755)


async def verify_version(installation: Installation, candidate: Path, expected: Version) -> None:
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

