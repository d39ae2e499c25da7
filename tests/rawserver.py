"""A scriptable raw TCP server on 127.0.0.1 for feeding the harness misbehaviour."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

from gaps.wire.handshake import accept_for

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> dict[str, str]:
    """Read an HTTP request head; header names lower-cased."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name:
            headers[name.strip().lower()] = value.strip()
    return headers


def switching(headers: dict[str, str], extra: str = "") -> bytes:
    """A valid 101 answer to ``headers``, with ``extra`` header lines (each ending CRLF)."""
    accept = accept_for(headers["sec-websocket-key"])
    return (f"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept}\r\n{extra}\r\n").encode()


@contextlib.asynccontextmanager
async def raw_server(script: Script, *, scheme: str = "ws",
                     path: str = "/echo") -> AsyncIterator[str]:
    """Serve ``script`` per connection; yields the URL (``scheme``, ``path``) to reach it."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await script(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.transport.abort()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"{scheme}://127.0.0.1:{port}{path}"
    finally:
        server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 2)


def serving(data: bytes, extra: str = "") -> Script:
    """A script that accepts the handshake (``extra`` header lines in the 101), writes
    ``data`` and holds the connection open for 5 s."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(switching(await read_request(reader), extra))
        writer.write(data)
        await writer.drain()
        await asyncio.sleep(5)

    return script
