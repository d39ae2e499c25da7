"""The half handshake: a request head that never ends, dropped or not."""

from __future__ import annotations

import asyncio
import socket

import pytest

from gaps.wire.errors import Unreachable
from gaps.wire.stall import half_handshake, partial_request
from tests.rawserver import raw_server

pytestmark = pytest.mark.asyncio(loop_scope="session")


def head_timer(limit: float, *, answer: bytes = b"", idle: bool = False):
    """A server that drops a connection whose head has not ended after ``limit`` s (from
    the last byte with ``idle``, as a timer restarted on every read), saying ``answer``."""
    async def script(reader, writer) -> None:
        head = b""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        while b"\r\n\r\n" not in head:
            try:
                async with asyncio.timeout(deadline - loop.time()):
                    chunk = await reader.read(4096)
            except TimeoutError:
                writer.write(answer)
                await writer.drain()
                writer.close()
                return
            if not chunk:
                return
            head += chunk
            if idle:
                deadline = loop.time() + limit
        await asyncio.sleep(30)  # a complete head: never happens here

    return script


async def test_partial_request_has_no_end() -> None:
    full = partial_request("ws://127.0.0.1:1/echo")
    assert full.startswith(b"GET /echo HTTP/1.1\r\nHost: 127.0.0.1:1\r\n")
    assert full.endswith(b"\r\n") and not full.endswith(b"\r\n\r\n")
    assert b"Sec-WebSocket-Key" in full
    assert partial_request("ws://127.0.0.1:1/echo", lines=1) == (
        b"GET /echo HTTP/1.1\r\nHost: 127.0.0.1:1\r\n")


async def test_dropped_with_and_without_an_answer() -> None:
    async with raw_server(head_timer(0.3)) as url:
        quiet = await half_handshake(url, wait=5)
    assert quiet.dropped and quiet.how == "closed" and 0.2 < quiet.dropped_after < 2, quiet
    assert quiet.describe().startswith("closed after")

    async with raw_server(head_timer(0.3, answer=b"HTTP/1.1 408 Request Timeout\r\n\r\n")) as url:
        told = await half_handshake(url, wait=5, lines=2)
    assert told.dropped and told.status == 408 and told.answered_after is not None
    assert "after HTTP 408" in told.describe() and told.evidence()["status"] == 408


async def test_not_dropped_within_the_wait() -> None:
    async with raw_server(head_timer(30)) as url:
        held = await half_handshake(url, wait=0.5)
    assert not held.dropped and held.dropped_after is None
    assert held.describe() == "not dropped within 0.5 s"
    assert held.evidence()["dropped"] is False


async def test_trickling_defeats_an_idle_timer_but_not_a_head_timer() -> None:
    async with raw_server(head_timer(0.4, idle=True)) as url:
        kept = await half_handshake(url, wait=1.2, trickle=0.1)
        silent = await half_handshake(url, wait=1.2)
    assert not kept.dropped and kept.trickled >= 5, kept
    assert silent.dropped, silent
    async with raw_server(head_timer(0.4)) as url:
        total = await half_handshake(url, wait=3, trickle=0.1)
    assert total.dropped and total.dropped_after < 2, total


async def test_no_server_is_unreachable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"ws://127.0.0.1:{sock.getsockname()[1]}/echo"
    with pytest.raises(Unreachable):
        await half_handshake(url, wait=1)


async def test_the_reference_drops_an_unfinished_handshake(full) -> None:
    # The reference passes its --handshake-timeout (Config.handshake_timeout, 2 s;
    # limits, gap 10) to websockets' serve(open_timeout=...), which drops a handshake that
    # is not complete by then
    from gaps.reference.config import Config
    limit = Config(port=0).handshake_timeout
    result = await half_handshake(full.url("echo"), wait=full.scaled(20))
    assert result.dropped and 0.8 * limit < result.dropped_after < limit + 5, result
