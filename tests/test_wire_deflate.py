"""permessage-deflate in the wire client: the negotiation judged against RFC 7692 7, the
codec strict and bounded, and misbehaving servers caught as violations."""

from __future__ import annotations

import asyncio
import os
import tracemalloc
import zlib

import pytest

from gaps.wire.client import WireClient, attempt
from gaps.wire.deflate import (
    Deflater,
    HeaderError,
    InflateError,
    Inflater,
    Params,
    State,
    negotiate,
    parse_extensions,
)
from gaps.wire.errors import ProtocolViolation
from gaps.wire.frames import FrameParser, Opcode, close_payload, encode_frame
from tests.rawserver import Script, raw_server, read_request, serving, switching

PMD = "permessage-deflate"

# (offer, answer, state, what the problem says or what was agreed)
NEGOTIATIONS = [
    (PMD, None, State.DECLINED, ""),
    (PMD, PMD, State.AGREED, Params()),
    (PMD, f"{PMD}; server_no_context_takeover", State.AGREED,
     Params(server_no_context_takeover=True)),
    (PMD, f"{PMD}; client_no_context_takeover", State.AGREED,
     Params(client_no_context_takeover=True)),
    (PMD, f"{PMD}; server_max_window_bits=9", State.AGREED, Params(server_max_window_bits=9)),
    (f"{PMD}; client_max_window_bits", f"{PMD}; client_max_window_bits=10", State.AGREED,
     Params(client_max_window_bits=10)),
    (f"{PMD}; client_max_window_bits=9", PMD, State.AGREED, Params(client_max_window_bits=9)),
    (f"{PMD}; client_no_context_takeover", PMD, State.AGREED,
     Params(client_no_context_takeover=True)),
    (f"{PMD}; server_max_window_bits=10", f'{PMD}; server_max_window_bits="9"', State.AGREED,
     Params(server_max_window_bits=9)),
    # several offers: the answer accepts the second
    (f"{PMD}; server_no_context_takeover, {PMD}; client_max_window_bits",
     f"{PMD}; client_max_window_bits=11", State.AGREED, Params(client_max_window_bits=11)),
    (PMD, f"{PMD}; client_max_window_bits=10", State.INVALID, "did not include it"),
    (f"{PMD}; client_max_window_bits=9", f"{PMD}; client_max_window_bits=10", State.INVALID,
     "larger than the offered 9"),
    (f"{PMD}; server_max_window_bits=10", f"{PMD}; server_max_window_bits=12", State.INVALID,
     "larger than the offered 10"),
    (f"{PMD}; server_max_window_bits=10", PMD, State.INVALID, "not in the answer"),
    (f"{PMD}; server_no_context_takeover", PMD, State.INVALID, "not in the answer"),
    (PMD, f"{PMD}; x-unknown", State.INVALID, "unknown parameter"),
    (PMD, f"{PMD}; server_no_context_takeover; server_no_context_takeover", State.INVALID,
     "twice"),
    (PMD, f"{PMD}; server_max_window_bits=010", State.INVALID, "not a value from 8 to 15"),
    (PMD, f"{PMD}; server_max_window_bits=16", State.INVALID, "not a value from 8 to 15"),
    (PMD, f"{PMD}; server_no_context_takeover=1", State.INVALID, "takes no value"),
    (f"{PMD}; client_max_window_bits", f"{PMD}; client_max_window_bits", State.INVALID,
     "not a value"),
    (PMD, f"{PMD}, {PMD}", State.INVALID, "at most one"),
    (PMD, "x-webkit-deflate-frame", State.INVALID, "was not offered"),
    (None, PMD, State.INVALID, "was not offered"),
    (PMD, f"{PMD};;", State.INVALID, "breaks RFC 6455 9.1"),
    # offers a server must decline: accepting them is wrong whatever the answer says
    (f"{PMD}; server_max_window_bits=7", f"{PMD}; server_max_window_bits=7", State.INVALID,
     "must be declined"),
    (f"{PMD}; server_max_window_bits", PMD, State.INVALID, "must be declined"),
    (f"{PMD}; bogus_param", PMD, State.INVALID, "must be declined"),
    (f"{PMD}; x=\"a b\"", PMD, State.INVALID, "must be declined"),
    (f"{PMD}; bogus_param, {PMD}", PMD, State.AGREED, Params()),
]


@pytest.mark.parametrize(("offer", "answer", "state", "detail"), NEGOTIATIONS)
def test_negotiation_follows_rfc_7692(offer, answer, state, detail) -> None:
    result = negotiate(offer, answer)
    assert result.state is state, result
    if isinstance(detail, Params):
        assert result.agreed == detail
    else:
        assert detail in result.problem, result.problem
    assert result.evidence()["state"] == str(state)


def test_header_grammar() -> None:
    (one, two) = parse_extensions(' a ; b="c" ;d=1, , e')
    assert one.name == "a" and one.params == (("b", "c"), ("d", "1"))
    assert two.name == "e" and two.params == ()
    for bad in ("a; b=", "a b", 'a; b="c d"', 'a; b="c', "; b", ""):
        with pytest.raises(HeaderError):
            parse_extensions(bad)


def raw_deflate(data: bytes, bits: int = 15) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -bits)
    out = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    return out[:-4]


def test_rfc_7692_examples_inflate() -> None:
    inflater = Inflater(Params())
    # 7.2.3.1 "Hello" in one message, then 7.2.3.2 the same again, with context taken over
    assert inflater.feed(bytes.fromhex("f248cdc9c90700"), True) == b"Hello"
    assert inflater.feed(bytes.fromhex("f200110000"), True) == b"Hello"
    # 7.2.3.3 fragmented over two frames; 7.2.3.4 a block with BFINAL set
    fresh = Inflater(Params())
    assert fresh.feed(bytes.fromhex("f248cd"), False) is None
    assert fresh.feed(bytes.fromhex("c9c90700"), True) == b"Hello"
    assert fresh.feed(bytes.fromhex("f348cdc9c9070000"), True) == b"Hello"
    assert fresh.feed(bytes.fromhex("f200110000"), True) == b"Hello"  # still in the window
    # 7.2.3.6 an empty message
    assert Inflater(Params()).feed(b"\x00", True) == b""


def test_deflater_round_trips_as_agreed() -> None:
    text = b"wsgaps compression " * 500
    for params in (Params(), Params(client_no_context_takeover=True),
                   Params(client_max_window_bits=9), Params(client_max_window_bits=8)):
        deflater = Deflater(params)
        inflater = Inflater(Params(server_max_window_bits=params.client_max_window_bits,
                                   server_no_context_takeover=params.client_no_context_takeover))
        for _ in range(3):
            payload = deflater.compress(text)
            assert inflater.feed(payload, True) == text
            if params.client_max_window_bits > 8:
                assert len(payload) < len(text) // 10, params
    assert Deflater(Params()).compress(b"") == b"\x00"


def test_a_server_past_its_agreed_window_or_context_does_not_inflate() -> None:
    block = os.urandom(4000)
    far = raw_deflate(block + os.urandom(16000) + block)  # refers 20,000 bytes back
    assert Inflater(Params()).feed(far, True) is not None
    with pytest.raises(InflateError, match="1024-byte window"):
        Inflater(Params(server_max_window_bits=10)).feed(far, True)
    # context taken over although server_no_context_takeover was agreed
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = compressor.compress(block) + compressor.flush(zlib.Z_SYNC_FLUSH)
    second = compressor.compress(block) + compressor.flush(zlib.Z_SYNC_FLUSH)
    taking = Inflater(Params())
    assert taking.feed(first[:-4], True) == block and taking.feed(second[:-4], True) == block
    strict = Inflater(Params(server_no_context_takeover=True))
    assert strict.feed(first[:-4], True) == block
    with pytest.raises(InflateError, match="does not inflate"):
        strict.feed(second[:-4], True)
    with pytest.raises(InflateError, match="already lost"):
        strict.feed(first[:-4], True)


def test_a_decompression_bomb_stops_at_the_bound_in_bounded_memory() -> None:
    bomb = raw_deflate(b"\x00" * (200 * 1024 * 1024))  # 200 MiB in about 200 KB
    assert len(bomb) < 300_000
    tracemalloc.start()
    try:
        with pytest.raises(InflateError, match="inflating past 1048576 bytes"):
            Inflater(Params(), max_size=1024 * 1024).feed(bomb, True)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * 1024 * 1024, peak


# -- against servers -----------------------------------------------------------------------


def unmasked(opcode: int, payload: bytes = b"", **flags: bool) -> bytes:
    return encode_frame(opcode, payload, mask=False, **flags)


def serving_with(answer: str | None, data: bytes = b"") -> Script:
    """Accept with ``answer`` as Sec-WebSocket-Extensions (None: none), then send ``data``."""
    return serving(data, f"Sec-WebSocket-Extensions: {answer}\r\n" if answer is not None else "")


async def settled(client: WireClient) -> None:
    for _ in range(50):
        if client.violation is not None:
            return
        await asyncio.sleep(0.02)


@pytest.mark.asyncio(loop_scope="session")
@pytest.mark.parametrize(("name", "answer", "data", "rule"), [
    ("rsv1-declined", None, unmasked(Opcode.TEXT, raw_deflate(b"hi"), rsv1=True), "RSV1 set"),
    ("rsv1-continuation", PMD, unmasked(Opcode.TEXT, raw_deflate(b"hi"), fin=False, rsv1=True)
     + unmasked(Opcode.CONT, b"", rsv1=True), "RSV1 on a continuation"),
    ("rsv1-on-ping", PMD, unmasked(Opcode.PING, b"", rsv1=True), "RSV1 on a PING"),
    ("garbage", PMD, unmasked(Opcode.BINARY, b"\xff\xff\xff\xff", rsv1=True),
     "does not inflate"),
    ("bomb", PMD, unmasked(Opcode.BINARY, raw_deflate(b"a" * (3 * 1024 * 1024)), rsv1=True),
     "inflating past"),
    ("window-ignored", f"{PMD}; server_max_window_bits=9",
     unmasked(Opcode.BINARY, raw_deflate(b"x" * 100 + bytes(range(256)) * 8 + b"x" * 100),
              rsv1=True), "512-byte window"),
    ("unoffered-parameter", f"{PMD}; client_max_window_bits=10", b"", "did not include it"),
    ("larger-window", f"{PMD}; server_max_window_bits=12", b"", "larger than the offered 11"),
])
async def test_misbehaving_servers_are_violations(name, answer, data, rule) -> None:
    async with raw_server(serving_with(answer, data)) as url:
        offer = f"{PMD}; server_max_window_bits=11" if name == "larger-window" else PMD
        client = await WireClient.connect(url, timeout=5, max_inflated=1024 * 1024,
                                          extensions=offer)
        try:
            await settled(client)
            assert client.violation is not None, name
            assert rule in client.violation.rule, client.violation
            evidence = client.evidence()
            assert evidence["violation"]["rule"] == client.violation.rule
            assert evidence["extensions"]["offered"].startswith(PMD)
            if name in ("garbage", "bomb", "window-ignored"):
                with pytest.raises(ProtocolViolation, match="does not inflate"):
                    await client.recv_message(1)
        finally:
            await client.aclose()


@pytest.mark.asyncio(loop_scope="session")
async def test_compressed_messages_in_and_out_are_recorded_both_ways() -> None:
    text = b"hello hello hello hello " * 40
    got: list[tuple[bool, bool, int, bytes]] = []  # (rsv1, fin, opcode, payload) per frame

    async def script(reader, writer) -> None:
        writer.write(switching(await read_request(reader), f"Sec-WebSocket-Extensions: {PMD}; "
                                                           "server_no_context_takeover\r\n"))
        writer.write(unmasked(Opcode.TEXT, raw_deflate(text)[:5], fin=False, rsv1=True)
                     + unmasked(Opcode.CONT, raw_deflate(text)[5:])
                     + unmasked(Opcode.TEXT, b"plain"))
        await writer.drain()
        parser = FrameParser(1 << 20)
        while len(got) < 4:
            chunk = await reader.read(65536)
            if not chunk:
                return
            for frame in parser.feed(chunk):
                got.append((frame.rsv1, frame.fin, frame.opcode, frame.payload))
        writer.write(unmasked(Opcode.CLOSE, close_payload(1000)))
        await writer.drain()
        await asyncio.sleep(1)

    async with raw_server(script) as url:
        client = await WireClient.connect(url, timeout=5, extensions=PMD)
        try:
            assert client.negotiation.agreed == Params(server_no_context_takeover=True)
            first = await client.recv_message(5)
            assert first.compressed and first.data == text and first.wire_size < len(text)
            second = await client.recv_message(5)
            assert not second.compressed and second.data == b"plain"
            await client.send_message(text, fragments=3)
            await client.send_message(b"raw", compress=False, binary=True)
            await client.wait_closed(5)
            assert client.violation is None, client.violation
        finally:
            await client.aclose()
    assert [(rsv1, fin, op) for rsv1, fin, op, _ in got] == [
        (True, False, Opcode.TEXT), (False, False, Opcode.CONT), (False, True, Opcode.CONT),
        (False, True, Opcode.BINARY)]
    inflater = Inflater(Params())
    assert inflater.feed(b"".join(p for _, _, _, p in got[:3]), True) == text
    assert got[3][3] == b"raw"
    records = client.evidence()["frames"]
    inbound = [r for r in records if r[1] == "in" and r[2] == "CONT"]
    assert inbound[0][8].startswith(f"inflated {len(text)} B")
    outbound = [r for r in records if r[1] == "out"]
    assert outbound[0][4] == "100" and outbound[0][8].startswith(f"deflated from {len(text)} B")


@pytest.mark.asyncio(loop_scope="session")
async def test_round_trip_with_the_reference_server(full) -> None:
    offers = [f"{PMD}; server_max_window_bits=10; client_max_window_bits", PMD]
    client = await full.connect("echo", extensions=offers)
    text = "wsgaps " * 2000
    await client.send_message(text)
    echo = await client.recv_message(full.scaled(5))
    assert client.negotiation.state is State.AGREED, client.negotiation
    assert client.negotiation.offer == 0  # websockets accepts the first offer
    assert client.negotiation.agreed.server_max_window_bits <= 10
    assert echo.compressed and echo.data == text.encode(), echo.frames[:1]
    assert echo.wire_size < len(text) // 20
    await client.send_message(text, fragments=4)
    assert (await client.recv_message(full.scaled(5))).data == text.encode()
    assert client.violation is None

    declined = await attempt(full.url("echo"), timeout=full.scaled(5),
                             extensions=f"{PMD}; server_max_window_bits=7")
    assert declined.accepted and declined.negotiation.state is State.DECLINED, declined
