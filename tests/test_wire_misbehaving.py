"""What a misbehaving server sends becomes evidence or a clean error, never a hang or a lie."""

from __future__ import annotations

import asyncio

import pytest

from gaps.model import Verdict
from gaps.wire.client import WireClient, open_handshake
from gaps.wire.errors import MalformedAnswer, NoAnswer, ProtocolViolation
from gaps.wire.frames import Opcode, close_payload, encode_frame
from tests.rawserver import raw_server, read_request, switching

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_close_and_tcp_end_are_seen_behind_thousands_of_unread_frames() -> None:
    async def script(reader, writer) -> None:
        writer.write(switching(await read_request(reader)))
        writer.write(encode_frame(Opcode.TEXT, b"x", mask=False) * 5000)
        writer.write(encode_frame(Opcode.CLOSE, close_payload(1001), mask=False))
        await writer.drain()
        writer.close()

    async with raw_server(script) as url:
        client = await WireClient.connect(url, timeout=5)
        assert await client.wait_closed(5)
        assert client.close_code == 1001
        await client.aclose()


async def test_new_data_frame_inside_a_fragmented_message_is_a_violation() -> None:
    async def script(reader, writer) -> None:
        writer.write(switching(await read_request(reader)))
        writer.write(encode_frame(Opcode.TEXT, b"one ", fin=False, mask=False))
        writer.write(encode_frame(Opcode.TEXT, b"two", mask=False))
        await writer.drain()
        await asyncio.sleep(5)

    async with raw_server(script) as url:
        client = await WireClient.connect(url, timeout=5)
        with pytest.raises(ProtocolViolation, match="continuation"):
            await client.recv_message(5)
        await client.aclose()


async def test_auto_pong_answers_valid_pings_only_and_records_them() -> None:
    async def script(reader, writer) -> None:
        writer.write(switching(await read_request(reader)))
        writer.write(encode_frame(Opcode.PING, b"ok", mask=False))
        writer.write(encode_frame(Opcode.PING, b"x" * 1000, mask=False))
        await writer.drain()
        await asyncio.sleep(5)

    async with raw_server(script) as url:
        client = await WireClient.connect(url, timeout=5, auto_pong=True)
        await asyncio.sleep(0.3)
        records = client.records
        await client.aclose()
    pongs = [r for r in records if r.direction == "out" and r.opcode == "PONG"]
    assert [p.length for p in pongs] == [2]
    assert any("invalid Ping" in r.note for r in records if r.length == 1000)


@pytest.mark.parametrize(("answer", "error"), [
    (b"", NoAnswer),
    (b"SSH-2.0-OpenSSH_9.0\r\n", MalformedAnswer),
    (b"HTTP/1.1 101 OK\r\n" + b"X-Pad: " + b"a" * 20000 + b"\r\n\r\n", MalformedAnswer),
])
async def test_non_http_answers_are_told_apart_from_no_answer(answer: bytes, error: type) -> None:
    async def script(reader, writer) -> None:
        await read_request(reader)
        writer.write(answer)
        await writer.drain()
        writer.close()

    async with raw_server(script) as url:
        with pytest.raises(error) as info:
            await open_handshake(url, timeout=5)
    assert type(info.value) is error


async def test_a_slow_refusal_body_does_not_hide_the_status() -> None:
    async def script(reader, writer) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 2000\r\n\r\nslow")
        await writer.drain()
        for _ in range(50):
            await asyncio.sleep(0.1)
            writer.write(b".")
            await writer.drain()

    async with raw_server(script) as url:
        response = await open_handshake(url, timeout=1.0)
    assert response.status == 400
    assert response.body.startswith(b"slow")


async def test_send_to_a_closed_peer_is_a_closed_error() -> None:
    from gaps.wire.errors import ClosedError

    async def script(reader, writer) -> None:
        writer.write(switching(await read_request(reader)))
        await writer.drain()

    async with raw_server(script) as url:
        client = await WireClient.connect(url, timeout=5)
        assert await client.wait_closed(5)
        with pytest.raises(ClosedError):
            for _ in range(20):  # the first writes may still land in the kernel buffer
                await client.send_text(b"x" * 65536)
                await asyncio.sleep(0.01)
        await client.aclose()


async def test_garbage_answer_fails_refuses_bogus() -> None:
    import dataclasses

    from gaps.manifest import EndpointSpec
    from gaps.probe import ProbeContext
    from gaps.targets import Instance
    from tests.conftest import reference_manifest
    from wsgaps_probes import subprotocols

    async def script(reader, writer) -> None:
        headers = await read_request(reader)
        offered = headers.get("sec-websocket-protocol", "")
        writer.write(switching(headers, f"Sec-WebSocket-Protocol: {offered}\r\n")[:-2]
                     + b"X-Pad: " + b"a" * 20000 + b"\r\n\r\n")
        await writer.drain()

    async with raw_server(script) as url:
        base = reference_manifest()
        manifest = dataclasses.replace(base, endpoints={
            "echo": EndpointSpec("echo", url=url),
            "subprotocols": EndpointSpec("subprotocols", url=url,
                                         extra={"subprotocols": ("a.v1",)}),
        })
        ctx = ProbeContext(manifest, Instance(manifest), seed=1)
        result = await subprotocols.refuses_bogus(ctx)
    assert result.verdict is Verdict.FAIL, result
    assert "malformed answer" in result.summary


async def test_an_empty_protocol_header_is_not_a_refusal() -> None:
    import dataclasses

    from gaps.manifest import EndpointSpec
    from gaps.probe import ProbeContext
    from gaps.targets import Instance
    from tests.conftest import reference_manifest
    from wsgaps_probes import subprotocols

    async def script(reader, writer) -> None:
        writer.write(switching(await read_request(reader), "Sec-WebSocket-Protocol: \r\n"))
        await writer.drain()
        await asyncio.sleep(2)

    async with raw_server(script) as url:
        manifest = dataclasses.replace(reference_manifest(), endpoints={
            "echo": EndpointSpec("echo", url=url),
            "subprotocols": EndpointSpec("subprotocols", url=url,
                                         extra={"subprotocols": ("a.v1",)}),
        })
        ctx = ProbeContext(manifest, Instance(manifest), seed=1)
        bogus = await subprotocols.refuses_bogus(ctx)
        unoffered = await subprotocols.never_unoffered(ctx)
    assert bogus.verdict is Verdict.FAIL, bogus
    assert unoffered.verdict is Verdict.FAIL, unoffered
