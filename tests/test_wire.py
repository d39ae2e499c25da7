"""The frame codec writes any frame, parses without judging, and bounds what it reads."""

from __future__ import annotations

import asyncio
import os

import pytest

from gaps.wire.client import WireClient, open_handshake
from gaps.wire.errors import HandshakeRefused
from gaps.wire.frames import (
    FrameParser,
    FrameTooLarge,
    Opcode,
    apply_mask,
    close_payload,
    encode_frame,
    parse_close,
)
from tests.conftest import reference_ctx


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 300_000])
def test_round_trip_all_length_encodings(size: int) -> None:
    payload = os.urandom(size)
    for mask in (True, False, b"\x01\x02\x03\x04"):
        frames = FrameParser(1 << 20).feed(encode_frame(Opcode.BINARY, payload, mask=mask))
        assert len(frames) == 1
        assert frames[0].payload == payload
        assert frames[0].masked is (mask is not False)


def test_malformed_frames_are_encoded_and_parsed_as_they_are() -> None:
    raw = encode_frame(0xB, b"x", fin=False, rsv1=True, rsv2=True, rsv3=True, mask=False)
    (frame,) = FrameParser(100).feed(raw)
    assert (frame.opcode, frame.fin, frame.rsv1, frame.rsv2, frame.rsv3) == (
        0xB, False, True, True, True)
    assert frame.name == "reserved-0xB"


def test_incremental_feed_and_bound() -> None:
    raw = encode_frame(Opcode.TEXT, b"hello", mask=False) * 3
    parser = FrameParser(100)
    got = [f for byte in raw for f in parser.feed(bytes([byte]))]
    assert [f.payload for f in got] == [b"hello"] * 3
    with pytest.raises(FrameTooLarge):
        FrameParser(10).feed(encode_frame(Opcode.TEXT, b"x" * 11, mask=False)[:4])


def test_mask_and_close_helpers() -> None:
    assert apply_mask(apply_mask(b"abcdef", b"1234"), b"1234") == b"abcdef"
    assert parse_close(close_payload(1000, "bye")) == (1000, b"bye")
    assert parse_close(b"") == (None, b"")


@pytest.mark.asyncio(loop_scope="session")
async def test_client_records_and_does_not_answer_pings() -> None:
    async with reference_ctx() as ctx:
        client = await ctx.connect("echo")
        await client.send_text("héllo")
        message = await client.recv_message(5)
        assert message.is_text and message.data == "héllo".encode()
        await asyncio.sleep(2.5)  # the reference pings every 2 s
        assert client.pings, "no Ping recorded"
        assert not [r for r in client.records if r.direction == "out" and r.opcode == "PONG"]
        refused = None
        try:
            await WireClient.connect(ctx.url("echo").replace("/echo", "/nope"), timeout=5)
        except HandshakeRefused as exc:
            refused = exc
        response = await open_handshake(ctx.url("echo"), timeout=5, key=None)
        await ctx.close_clients()
    assert response.status == 400
    assert refused is None  # websockets accepts any path; the reference closes with 1008
