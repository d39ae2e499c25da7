"""Each compression check tells both states apart on the reference server.

The passing state is the reference as shipped (websockets' own permessage-deflate); the
failing ones switch compression off or a deliberately defective mode on
(``gaps.reference.compression``).  A raw TCP server stands in for the answers the
reference never gives (a 5xx, a dropped connection, RSV1 without an agreement, a bomb).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import zlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from gaps.manifest import EndpointSpec, Manifest
from gaps.model import CheckResult, Verdict
from gaps.probe import ProbeContext
from gaps.targets import Instance
from gaps.wire.frames import encode_frame
from tests.conftest import reference_ctx
from wsgaps_probes import compression

pytestmark = pytest.mark.asyncio(loop_scope="session")

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


async def run(ctx: ProbeContext, name: str) -> CheckResult:
    return await getattr(compression, name)(ctx)


def offers(outcome: CheckResult) -> dict[str, dict[str, Any]]:
    return {o["offer"]: o for o in outcome.evidence["offers"]}


async def test_reference_passes_every_check(full: ProbeContext) -> None:
    for name in ("negotiates", "round_trip", "parameters", "malformed_offer"):
        outcome = await run(full, name)
        assert outcome.verdict is Verdict.PASS, (name, outcome)
    outcome = await run(full, "parameters")
    by_offer = offers(outcome)
    assert len(by_offer) == len(compression.OFFERS)
    # websockets cannot deflate with 8 bits and declines; it grants 9 and shows it.
    assert "declined" in by_offer["permessage-deflate; server_max_window_bits=8"]["line"]
    assert "server_max_window_bits=9 shown" in \
        by_offer["permessage-deflate; server_max_window_bits=9"]["line"]
    assert "server_no_context_takeover shown" in \
        by_offer["permessage-deflate; server_no_context_takeover"]["line"]


async def test_switched_off_fails_capabilities_and_passes_conformance() -> None:
    async with reference_ctx("--without", "compression") as ctx:
        negotiates = await run(ctx, "negotiates")
        trip = await run(ctx, "round_trip")
        params = await run(ctx, "parameters")
        malformed = await run(ctx, "malformed_offer")
    assert negotiates.verdict is Verdict.FAIL and "declined" in negotiates.summary
    assert trip.verdict is Verdict.FAIL and "not agreed" in trip.summary
    assert params.verdict is Verdict.PASS, params  # declining is always conformant
    assert params.summary.startswith(f"{len(compression.OFFERS)} offers: 0 agreed")
    assert malformed.verdict is Verdict.PASS, malformed


async def test_window_ignored_fails_parameters() -> None:
    async with reference_ctx("--defect", "window-ignored") as ctx:
        outcome = await compression.parameters(ctx)
    assert outcome.verdict is Verdict.FAIL, outcome
    line = offers(outcome)["permessage-deflate; server_max_window_bits=9"]["line"]
    assert "window" in line and "does not inflate" in line, line


async def test_context_kept_fails_parameters() -> None:
    async with reference_ctx("--defect", "context-kept") as ctx:
        outcome = await compression.parameters(ctx)
    assert outcome.verdict is Verdict.FAIL, outcome
    line = offers(outcome)["permessage-deflate; server_no_context_takeover"]["line"]
    assert "does not inflate" in line or "compressed differently" in line, line


async def test_rsv1_uncompressed_fails_round_trip() -> None:
    async with reference_ctx("--defect", "rsv1-uncompressed") as ctx:
        outcome = await compression.round_trip(ctx)
    assert outcome.verdict is Verdict.FAIL, outcome
    assert "22-byte" in outcome.summary, outcome.summary


async def test_malformed_accepted_fails_malformed_offer() -> None:
    async with reference_ctx("--defect", "malformed-accepted") as ctx:
        outcome = await run(ctx, "malformed_offer")
    assert outcome.verdict is Verdict.FAIL, outcome
    assert outcome.summary.count("accepted with") == len(compression.MALFORMED), outcome.summary


async def test_window_messages_need_their_window() -> None:
    for bits in range(8, 15):
        assert compression.needs_window(bits)
        assert compression.window_message(bits) == compression.window_message(bits)


# -- answers the reference never gives: a raw server --------------------------------------


def _accept(head: bytes) -> str:
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"sec-websocket-key:"):
            key = line.split(b":", 1)[1].strip().decode()
            return base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
    return ""


def upgrade(extensions: str | None) -> Callable[[bytes], bytes]:
    """A 101 answer to any head, with ``extensions`` as its Sec-WebSocket-Extensions."""
    def answer(head: bytes) -> bytes:
        lines = ["HTTP/1.1 101 Switching Protocols", "Upgrade: websocket",
                 "Connection: Upgrade", f"Sec-WebSocket-Accept: {_accept(head)}"]
        if extensions is not None:
            lines.append(f"Sec-WebSocket-Extensions: {extensions}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode()
    return answer


@contextlib.asynccontextmanager
async def raw_server(answer: Callable[[bytes], bytes | None],
                     frames: bytes = b"") -> AsyncIterator[ProbeContext]:
    """A TCP server answering each request head with ``answer(head)`` (None: it closes
    without a byte), writing ``frames`` after a 101; a URL target, so the probe is gentle."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            reply = answer(head)
            if reply is not None:
                writer.write(reply + (frames if reply.startswith(b"HTTP/1.1 101") else b""))
                await writer.drain()
                await asyncio.sleep(0.2)
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    url = f"ws://127.0.0.1:{port}/echo"
    manifest = Manifest(name="raw", path=None, url=url,
                        endpoints={"echo": EndpointSpec("echo", url=url)})
    try:
        async with server:
            yield ProbeContext(manifest, Instance(manifest), seed=1)
    finally:
        server.close()


async def test_5xx_and_dropped_handshakes() -> None:
    error = b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n"
    async with raw_server(lambda head: error) as ctx:
        broken = [await compression.malformed_offer(ctx), await compression.parameters(ctx),
                  await compression.negotiates(ctx)]
    async with raw_server(lambda head: None) as ctx:
        dropped = await compression.malformed_offer(ctx)
    assert [r.verdict for r in broken] == [Verdict.FAIL] * 3, broken
    assert "HTTP 500" in broken[0].summary and "HTTP 500" in broken[1].summary
    assert dropped.verdict is Verdict.NON_STRICT, dropped


async def test_accepting_malformed_offers_and_a_fixed_answer_fail() -> None:
    # gorilla/websocket's fixed answer, whatever was offered (GoFr)
    async with raw_server(upgrade("permessage-deflate; server_no_context_takeover; "
                                  "client_no_context_takeover")) as ctx:
        malformed = await compression.malformed_offer(ctx)
        params = await compression.parameters(ctx)
    assert malformed.verdict is Verdict.FAIL, malformed
    assert params.verdict is Verdict.FAIL, params
    line = offers(params)["permessage-deflate; server_max_window_bits=9"]["line"]
    assert "RFC 7692 7.1.2.1" in line, line


def _bomb() -> bytes:
    """One compressed Text message inflating to 64 MiB of 'a' (about 64 KiB on the wire)."""
    deflater = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = b"a" * 65536
    payload = b"".join(deflater.compress(chunk) for _ in range(1024))
    payload += deflater.flush(zlib.Z_SYNC_FLUSH)
    return encode_frame(0x1, payload[:-4], fin=True, rsv1=True, mask=False)


async def test_bomb_rsv1_without_agreement_and_on_a_continuation_fail() -> None:
    small = zlib.compressobj(6, zlib.DEFLATED, -15)
    part = small.compress(b"hello") + small.flush(zlib.Z_SYNC_FLUSH)
    continuation = (encode_frame(0x1, part[:2], fin=False, rsv1=True, mask=False)
                    + encode_frame(0x0, part[2:-4], fin=True, rsv1=True, mask=False))
    unasked = encode_frame(0x1, part[:-4], fin=True, rsv1=True, mask=False)
    results = {}
    for name, answer, frames in (("bomb", upgrade("permessage-deflate"), _bomb()),
                                 ("continuation", upgrade("permessage-deflate"), continuation),
                                 ("unasked", upgrade(None), unasked)):
        async with raw_server(answer, frames) as ctx:
            results[name] = (await compression.round_trip(ctx)
                             if name != "unasked" else await compression.parameters(ctx))
    for name, result in results.items():
        assert result.verdict is Verdict.FAIL, (name, result)
    assert "bound" in str(results["bomb"].evidence), results["bomb"]
    assert "continuation" in str(results["continuation"].evidence)
    assert "RSV1" in str(results["unasked"].evidence)


async def test_a_url_target_gets_one_connection_at_a_time_and_no_more_than_thirty() -> None:
    live, most, total = 0, 0, 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal live, most, total
        live, total = live + 1, total + 1
        most = max(most, live)
        try:
            with contextlib.suppress(Exception):
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
                writer.write(upgrade(None)(head))
                await writer.drain()
                await asyncio.wait_for(reader.read(1 << 16), 2)  # until the client's Close
        finally:
            live -= 1
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/echo"
    manifest = Manifest(name="raw", path=None, url=url,
                        endpoints={"echo": EndpointSpec("echo", url=url)})
    assert not manifest.managed
    async with server:
        ctx = ProbeContext(manifest, Instance(manifest), seed=1)
        results = await asyncio.gather(
            compression.negotiates(ctx), compression.round_trip(ctx),
            compression.parameters(ctx), compression.malformed_offer(ctx))
    assert [str(r.verdict) for r in results] == ["fail", "fail", "pass", "pass"], results
    assert most == 1, most
    assert total == 2 + len(compression.OFFERS) + len(compression.MALFORMED) <= 30
