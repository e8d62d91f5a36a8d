"""Where a worker's control API listens, and who may talk to it.

One endpoint per state folder (so per config file and per user), described by
``control.json`` in that folder, written owner-only:

- Linux and macOS: a Unix domain socket, ``control.sock`` in the state folder (or,
  when that path is too long for a socket, in a private folder under the temp dir),
  mode 0600. The server checks the peer's uid (SO_PEERCRED / LOCAL_PEERCRED); the
  client checks that the socket and the file belong to it before it says anything.
- Windows: 127.0.0.1 on a random port. Never another interface.

Every request also carries the random token from ``control.json``: without the file's
permissions there is no token, and without the token there is no answer.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import socket
import stat
import struct
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

API_VERSION = 1
"""Bumped on any incompatible change; the path prefix is ``/v{API_VERSION}``."""
ENDPOINT_FILE = "control.json"
SOCKET_FILE = "control.sock"
MAX_ENDPOINT_BYTES = 4096
SOCKET_PATH_LIMIT = 100
"""sun_path holds 108 bytes on Linux and 104 on macOS, the terminating NUL included."""
Transport = Literal["unix", "tcp"]


class EndpointError(Exception):
    """The endpoint file or socket cannot be trusted or read (see the message)."""


def default_transport() -> Transport:
    return "tcp" if sys.platform == "win32" or not hasattr(socket, "AF_UNIX") else "unix"


def endpoint_file(state_dir: Path) -> Path:
    return state_dir / ENDPOINT_FILE


def socket_path(state_dir: Path) -> Path:
    """``control.sock`` in the state folder, or a private short path when that is too long."""
    path = state_dir / SOCKET_FILE
    if len(os.fsencode(path)) <= SOCKET_PATH_LIMIT:
        return path
    digest = hashlib.sha256(os.fsencode(state_dir.resolve())).hexdigest()[:16]
    uid = os.getuid() if hasattr(os, "getuid") else 0
    return Path(tempfile.gettempdir()) / f"studio-worker-{uid}" / f"{digest}.sock"


def private_dir(path: Path) -> None:
    """Create ``path`` owner-only, or make sure an existing one is ours and private."""
    path.mkdir(parents=True, exist_ok=True)
    if not hasattr(os, "getuid"):
        return
    info = path.stat()
    if info.st_uid != os.getuid():
        raise EndpointError(f"{path} belongs to uid {info.st_uid}, not to this user")
    if stat.S_IMODE(info.st_mode) & 0o077:
        os.chmod(path, 0o700)


@dataclass(frozen=True)
class Endpoint:
    """What ``control.json`` says: how to reach the worker and prove who we are."""

    transport: Transport
    token: str
    pid: int
    version: str
    api: int
    path: str = ""
    """The socket (unix)."""
    port: int = 0
    """The port on 127.0.0.1 (tcp)."""

    def to_json(self) -> dict[str, Any]:
        return {"transport": self.transport, "token": self.token, "pid": self.pid,
                "version": self.version, "api": self.api, "path": self.path, "port": self.port}

    @classmethod
    def from_json(cls, data: Any) -> Endpoint:
        if not isinstance(data, dict):
            raise EndpointError("the endpoint file does not hold an object")
        try:
            transport = data["transport"]
            token, version = str(data["token"]), str(data["version"])
            pid, api, port = int(data["pid"]), int(data["api"]), int(data.get("port", 0))
            path = str(data.get("path", ""))
        except (KeyError, TypeError, ValueError) as exc:
            raise EndpointError(f"the endpoint file is incomplete ({exc})") from None
        if transport not in ("unix", "tcp") or not token or len(token) > 256:
            raise EndpointError("the endpoint file names no usable transport or token")
        if transport == "tcp" and not 0 < port < 65536:
            raise EndpointError(f"the endpoint file names port {port}")
        return cls(transport=transport, token=token, pid=pid, version=version, api=api,
                   path=path, port=port)


def new_token() -> str:
    return secrets.token_urlsafe(32)


def write_endpoint(state_dir: Path, endpoint: Endpoint) -> Path:
    """Write ``control.json`` atomically, owner-only (0600 from creation, never wider)."""
    private_dir(state_dir)
    target = endpoint_file(state_dir)
    fd, tmp = tempfile.mkstemp(prefix=".control.", dir=state_dir)  # mkstemp: mode 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(endpoint.to_json(), handle)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return target


def _check_owned(path: Path, what: str) -> None:
    """Refuse a file or socket another user owns or can write: it could be an impostor
    (a config write through it would hand them the tokens)."""
    if not hasattr(os, "getuid"):
        return  # Windows: the per-user profile folder's ACLs are the owner check
    info = path.lstat()
    if info.st_uid != os.getuid():
        raise EndpointError(f"{what} {path} belongs to uid {info.st_uid}, not to you "
                            f"(uid {os.getuid()}): not talking to it")
    if stat.S_IMODE(info.st_mode) & 0o077:
        raise EndpointError(f"{what} {path} is open to other users "
                            f"(mode {stat.S_IMODE(info.st_mode):o}): not talking to it")


def read_endpoint(state_dir: Path) -> Endpoint | None:
    """The endpoint a worker published in ``state_dir``; None when there is none.

    Raises EndpointError when the file or the socket it names is not the user's own.
    """
    path = endpoint_file(state_dir)
    try:
        _check_owned(path, "the endpoint file")
        with path.open("rb") as handle:
            raw = handle.read(MAX_ENDPOINT_BYTES + 1)
    except FileNotFoundError:
        return None
    if len(raw) > MAX_ENDPOINT_BYTES:
        raise EndpointError(f"{path} is larger than {MAX_ENDPOINT_BYTES} bytes")
    try:
        endpoint = Endpoint.from_json(json.loads(raw))
    except ValueError as exc:
        raise EndpointError(f"{path} is not valid JSON ({exc})") from None
    if endpoint.transport == "unix":
        try:
            _check_owned(Path(endpoint.path), "the control socket")
        except FileNotFoundError:
            return None
    return endpoint


def remove_endpoint(state_dir: Path, endpoint: Endpoint) -> None:
    """Remove our own ``control.json`` (not a successor's) and socket."""
    current: Endpoint | None
    try:
        current = Endpoint.from_json(json.loads(endpoint_file(state_dir).read_bytes()))
    except (OSError, ValueError, EndpointError):
        current = None
    if current is not None and current.token == endpoint.token:
        with contextlib.suppress(OSError):
            endpoint_file(state_dir).unlink()
    if endpoint.transport == "unix" and endpoint.path:
        with contextlib.suppress(OSError):
            os.unlink(endpoint.path)


def bind_unix(path: Path) -> socket.socket:
    """A listening-ready Unix socket at ``path``, 0600 before anyone can connect.

    Called by the process holding the instance lock, so a socket already there is a
    leftover of a worker that died.
    """
    private_dir(path.parent)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(path))
        os.chmod(path, 0o600)  # before listen(): until then a connect is refused anyway
    except BaseException:
        sock.close()
        raise
    return sock


def bind_loopback() -> socket.socket:
    """127.0.0.1 on a port the system picks: never another interface."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", 0))
    except BaseException:
        sock.close()
        raise
    return sock


def peer_uid(sock: Any) -> int | None:
    """The uid of the process at the other end of a Unix socket (a socket, or asyncio's
    TransportSocket around one), None where the platform cannot tell."""
    try:
        if sys.platform.startswith("linux"):
            creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                    struct.calcsize("3i"))
            _pid, uid, _gid = struct.unpack("3i", creds)
            return int(uid)
        if sys.platform == "darwin":
            # struct xucred: u_int cr_version; uid_t cr_uid; short cr_ngroups; gid_t[16]
            local_peercred, sol_local = 0x001, 0
            creds = sock.getsockopt(sol_local, local_peercred, 76)
            _version, uid = struct.unpack_from("2I", creds)
            return int(uid)
    except OSError:
        return None
    return None
