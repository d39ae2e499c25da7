"""The wire client's plain HTTP GET: answers and every kind of failure, as values."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from contextlib import AbstractAsyncContextManager

import pytest

from gaps.manifest import EndpointSpec, url_manifest
from gaps.model import Verdict
from gaps.probe import ProbeContext, check, passed
from gaps.targets import Instance
from gaps.wire.http import HttpFailure, http_get
from tests.rawserver import raw_server

pytestmark = pytest.mark.asyncio(loop_scope="session")


def http_server(answer: bytes | None, *, hold: float = 5.0) -> AbstractAsyncContextManager[str]:
    """Answer every request with ``answer`` (None: say nothing), then hold or close."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        if answer is not None:
            writer.write(answer)
            await writer.drain()
            writer.close()
        else:
            await asyncio.sleep(hold)

    return raw_server(script, scheme="http", path="/metrics")


PAGE = b"# TYPE ws_connections gauge\nws_connections 3\n"


async def test_content_length_answer() -> None:
    head = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
            b"Content-Length: %d\r\n\r\n" % len(PAGE))
    async with http_server(head + PAGE) as url:
        answer = await http_get(url, timeout=5)
    assert answer.ok and answer.status == 200 and answer.body == PAGE, answer
    assert answer.content_type == "text/plain"
    assert answer.text().startswith("# TYPE")
    assert answer.evidence()["body_bytes"] == len(PAGE)


async def test_chunked_answer_after_an_interim_one() -> None:
    body = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (PAGE[:10], PAGE[10:]))
    raw = (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
           + body + b"0\r\nX-Trailer: 1\r\n\r\n")
    async with http_server(raw) as url:
        answer = await http_get(url, timeout=5)
    assert answer.ok and answer.status == 200 and answer.body == PAGE, answer


async def test_body_to_the_end_of_the_connection() -> None:
    async with http_server(b"HTTP/1.0 404 Not Found\r\n\r\nnothing here") as url:
        answer = await http_get(url, timeout=5)
    assert answer.ok and answer.status == 404 and answer.body == b"nothing here"


@pytest.mark.parametrize("framing", ["length", "chunked", "to-end"])
async def test_a_body_past_its_bound_is_too_large(framing: str) -> None:
    big = b"x" * 5000
    raw = {
        "length": b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n" + big,
        "chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                   + b"800\r\n" + big[:2048] + b"\r\n" + b"800\r\n" + big[:2048] + b"\r\n0\r\n\r\n",
        "to-end": b"HTTP/1.1 200 OK\r\n\r\n" + big,
    }[framing]
    async with http_server(raw) as url:
        answer = await http_get(url, timeout=5, max_body=4000)
        fits = await http_get(url, timeout=5, max_body=6000)
    assert answer.failure is HttpFailure.TOO_LARGE and answer.status == 200, answer
    assert "4000" in answer.problem and len(answer.body) <= 4000
    assert fits.ok and len(fits.body) in (4096, 5000), fits


async def test_failures_are_values() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}/metrics"
    refused = await http_get(closed, timeout=5)
    assert refused.failure is HttpFailure.REFUSED, refused

    async with http_server(None) as url:
        silent = await http_get(url, timeout=0.3)
    assert silent.failure is HttpFailure.TIMED_OUT and "0.3 s" in silent.problem

    async with http_server(b"") as url:
        dropped = await http_get(url, timeout=5)
    assert dropped.failure is HttpFailure.DROPPED, dropped

    async with http_server(b"SSH-2.0-OpenSSH\r\n\r\n") as url:
        garbage = await http_get(url, timeout=5)
    assert garbage.failure is HttpFailure.MALFORMED and "status line" in garbage.problem
    assert garbage.evidence()["received"].startswith("SSH-2.0")

    async with http_server(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort") as url:
        short = await http_get(url, timeout=5)
    assert short.failure is HttpFailure.MALFORMED and short.status == 200, short

    long_head = b"HTTP/1.1 200 OK\r\n" + b"X-Pad: " + b"a" * 70000 + b"\r\n\r\n"
    async with http_server(long_head) as url:
        huge = await http_get(url, timeout=5)
    assert huge.failure is HttpFailure.TOO_LARGE and "head" in huge.problem, huge


async def test_a_slow_body_times_out_with_its_status_kept() -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nfirst"

    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(head)
        await asyncio.sleep(3)
        writer.transport.abort()

    server = await asyncio.start_server(slow, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/x"
    try:
        answer = await http_get(url, timeout=0.5)
    finally:
        server.close()
    assert answer.failure is HttpFailure.TIMED_OUT and answer.status == 200
    assert "HTTP 200 head" in answer.problem


async def test_probe_context_resolves_the_manifest_url_and_records_the_get() -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n"
    async with http_server(head % len(PAGE) + PAGE) as url:
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        base = url_manifest(f"ws://127.0.0.1:{port}/echo")
        manifest = dataclasses.replace(base, endpoints={
            **base.endpoints,
            "metrics": EndpointSpec("metrics", url="http://127.0.0.1:{metrics_port}/metrics")})
        instance = Instance(manifest, ports={"metrics_port": port, "port": port})

        @check("message-types.text")
        async def reads_metrics(ctx: ProbeContext):
            answer = await ctx.http_get("metrics", wait=ctx.scaled(5))
            assert answer.ok and answer.body == PAGE
            return passed(answer.describe())

        result = await reads_metrics(ProbeContext(manifest, instance, seed=1))
    assert result.verdict is Verdict.PASS, result
    assert result.summary == f"HTTP 200 ({len(PAGE)} bytes, text/plain)"
    (logged,) = result.evidence["http"]
    assert logged["endpoint"] == "metrics" and logged["url"] == url and logged["status"] == 200
