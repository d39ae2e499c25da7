"""The wire decides: every received frame is judged against RFC 6455, and a connection that
broke it never earns a pass."""

from __future__ import annotations

import asyncio
import dataclasses
import random

import pytest

from gaps.manifest import url_manifest
from gaps.model import Verdict
from gaps.probe import ProbeContext, check, passed
from gaps.targets import Instance
from gaps.wire.client import WireClient
from gaps.wire.deflate import Deflater, Params
from gaps.wire.frames import Opcode, close_payload, encode_frame
from tests.rawserver import raw_server, read_request, serving, switching
from wsgaps_probes import heartbeat

pytestmark = pytest.mark.asyncio(loop_scope="session")


def unmasked(opcode: int, payload: bytes = b"", **flags: bool) -> bytes:
    return encode_frame(opcode, payload, mask=False, **flags)


VIOLATIONS = {
    "reserved-opcode": (unmasked(0x3, b"x"), "reserved opcode 0x3"),
    "reserved-control-opcode": (unmasked(0xB), "reserved opcode 0xB"),
    "rsv1-without-extension": (unmasked(Opcode.TEXT, b"x", rsv1=True), "RSV1 set"),
    "rsv2": (unmasked(Opcode.TEXT, b"x", rsv2=True), "RSV2 set"),
    "masked-server-frame": (encode_frame(Opcode.TEXT, b"x", mask=True), "masked frame"),
    "fragmented-ping": (unmasked(Opcode.PING, b"p", fin=False), "fragmented PING"),
    "long-ping": (unmasked(Opcode.PING, b"p" * 126), "126 bytes"),
    "stray-continuation": (unmasked(Opcode.CONT, b"x"), "continuation frame with no message"),
    "data-inside-fragments": (unmasked(Opcode.TEXT, b"a", fin=False)
                              + unmasked(Opcode.BINARY, b"b"), "new BINARY frame inside"),
    "one-byte-close": (unmasked(Opcode.CLOSE, b"\x03"), "one-byte Close body"),
    "close-1006": (unmasked(Opcode.CLOSE, close_payload(1006)), "1006"),
    "close-code-999": (unmasked(Opcode.CLOSE, close_payload(999)), "outside the ranges"),
    "close-reason-not-utf8": (unmasked(Opcode.CLOSE, close_payload(1000, b"\xff")),
                              "not UTF-8"),
    "frame-after-close": (unmasked(Opcode.CLOSE, close_payload(1000))
                          + unmasked(Opcode.TEXT, b"late"), "after the server's Close"),
}


@pytest.mark.parametrize("name", list(VIOLATIONS))
async def test_each_violation_class_marks_the_connection(name: str) -> None:
    data, rule = VIOLATIONS[name]
    # A valid frame first: the connection is fine until the offending frame arrives.
    async with raw_server(serving(unmasked(Opcode.TEXT, b"fine") + data)) as url:
        client = await WireClient.connect(url, timeout=5)
        try:
            for _ in range(100):
                if client.violation is not None:
                    break
                await asyncio.sleep(0.01)
            assert client.violation is not None, client.records
            assert rule in client.violation.rule
            assert client.violation.frame.note.endswith("violation")
            assert client.records[0].note == ""  # the valid first frame is not blamed
            assert client.evidence()["violation"]["rule"] == client.violation.rule
        finally:
            await client.aclose()


async def test_valid_frames_and_negotiated_rsv1_are_not_violations() -> None:
    compressed = Deflater(Params()).compress(b"c")
    frames = (unmasked(Opcode.TEXT, b"a", fin=False) + unmasked(Opcode.PING, b"p")
              + unmasked(Opcode.CONT, b"b") + unmasked(Opcode.BINARY, compressed, rsv1=True)
              + unmasked(Opcode.CLOSE, close_payload(4000, "bye")))
    extra = "Sec-WebSocket-Extensions: permessage-deflate\r\n"
    async with raw_server(serving(frames, extra)) as url:
        client = await WireClient.connect(url, timeout=5, extensions="permessage-deflate")
        try:
            assert await client.wait_closed(1) or client.close_frame is not None
            await asyncio.sleep(0.1)
            assert client.violation is None, client.violation
        finally:
            await client.aclose()


async def test_a_violated_connection_turns_a_pass_into_a_fail() -> None:
    @check("message-types.text")
    async def trusting(ctx: ProbeContext):
        client = await ctx.connect("echo")
        await client.recv(5)
        await asyncio.sleep(0.1)
        return passed("saw a frame")

    async with raw_server(serving(unmasked(Opcode.TEXT, b"x", rsv3=True))) as url:
        manifest = url_manifest(url)
        result = await trusting(ProbeContext(manifest, Instance(manifest), seed=1))
    assert result.verdict is Verdict.FAIL, result
    assert "broke RFC 6455" in result.summary and "RSV3" in result.summary
    assert result.evidence["verdict_before"] == "pass"
    assert result.evidence["violation"]["frame"][2] == "TEXT"


async def test_random_bytes_never_pass_the_heartbeat() -> None:
    """The issue's case: garbage after the handshake once read as Pings and reaping."""
    noise = random.Random(7)

    async def script(reader, writer) -> None:
        writer.write(switching(await read_request(reader)))
        for _ in range(20):
            writer.write(noise.randbytes(64))
            await writer.drain()
            await asyncio.sleep(0.05)
        writer.write(unmasked(Opcode.PING, b"", rsv2=True) + unmasked(Opcode.PING, b""))
        await writer.drain()
        await asyncio.sleep(0.2)

    async with raw_server(script) as url:
        manifest = dataclasses.replace(url_manifest(url), hints={
            "ping_interval": 0.5, "ping_timeout": 0.5, "close_timeout": 0.5})
        ctx = ProbeContext(manifest, Instance(manifest), seed=1)
        pings = await heartbeat.server_pings(ctx)
        reaped = await heartbeat.reaps_silent_peer(ctx)
    assert pings.verdict is Verdict.FAIL, pings
    assert reaped.verdict is Verdict.FAIL, reaped
