"""A TCP proxy in front of the local studio that can misbehave on demand.

Modes: ``pass`` (forward), ``reset`` (accept and abort the connection), ``refuse``
(nothing listening), ``truncate`` (forward the request, send back only the start of
the reply, then close). It counts the HTTP requests that clients sent to it, in
every mode, so tests can report how hard the worker knocks during an outage.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket


class FaultyProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.mode = "pass"
        self.truncate_to = 60
        self.requests = 0
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port,
                                                  reuse_address=True)

    async def stop_listening(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        self.drop_connections()

    def drop_connections(self) -> None:
        for writer in list(self._writers):
            with contextlib.suppress(Exception):
                writer.transport.abort()
        self._writers.clear()

    async def set_mode(self, mode: str) -> None:
        self.drop_connections()
        if mode == "refuse":
            await self.stop_listening()
        elif self._server is None:
            await self.start()
        self.mode = mode

    async def close(self) -> None:
        await self.stop_listening()

    def _count(self, data: bytes) -> None:
        self.requests += data.count(b"POST /graphics/api") + data.count(b"GET /")

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        try:
            if self.mode == "reset":
                self._count(await asyncio.wait_for(reader.read(65536), 2))
                writer.transport.abort()
                return
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
            try:
                if self.mode == "truncate":
                    await self._truncate(reader, writer, up_reader, up_writer)
                else:
                    await asyncio.gather(self._pipe(reader, up_writer, count=True),
                                         self._pipe(up_reader, writer, count=False))
            finally:
                up_writer.close()
        except (OSError, TimeoutError, asyncio.IncompleteReadError):
            pass
        finally:
            self._writers.discard(writer)
            with contextlib.suppress(Exception):
                writer.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *,
                    count: bool) -> None:
        try:
            while data := await reader.read(65536):
                if count:
                    self._count(data)
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def _truncate(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                        up_reader: asyncio.StreamReader, up_writer: asyncio.StreamWriter) -> None:
        request = await asyncio.wait_for(reader.read(65536), 5)
        self._count(request)
        up_writer.write(request)
        await up_writer.drain()
        reply = await asyncio.wait_for(up_reader.read(65536), 5)
        head, _, body = reply.partition(b"\r\n\r\n")
        writer.write(head + b"\r\n\r\n" + body[: self.truncate_to])
        await writer.drain()
        writer.transport.abort()
