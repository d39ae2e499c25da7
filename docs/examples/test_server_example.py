"""Example: testing a WebSocket server with gaps.testing (docs/testing.md).

Run it against any server whose manifest has an echo endpoint, e.g. the reference:

    pytest docs/examples/test_server_example.py --gaps-server reference

or name the server in the file with ``@pytest.mark.wsgaps_server("path/to/target.toml")``
(or a command: ``@pytest.mark.wsgaps_server(["./my-server", "--port", "{port}"],
endpoints={"echo": "/ws"})``).  The tests whose names contain ``raw`` work at the frame
level with the raw-frame client.
"""

from __future__ import annotations

import pytest

from gaps.testing import CloseCode, Opcode, Server, encode_frame, raw_connect

pytestmark = pytest.mark.asyncio


async def test_echo_answers_each_message_in_order(wsgaps_server: Server, wsgaps_client) -> None:
    client = await wsgaps_client(wsgaps_server.url("echo"))
    for n in range(1, 4):
        await client.send_text(f"hello {n}")
    answers = [(await client.recv_message(timeout=5)).data for _ in range(3)]
    assert answers == [b"hello 1", b"hello 2", b"hello 3"]


async def test_echo_keeps_binary_messages_binary(wsgaps_server: Server, wsgaps_client) -> None:
    client = await wsgaps_client(wsgaps_server.url("echo"))
    await client.send_binary(b"\x00\x01 bytes 1")
    message = await client.recv_message(timeout=5)
    assert message.opcode == Opcode.BINARY
    assert message.data == b"\x00\x01 bytes 1"


async def test_server_answers_a_close_with_the_same_code(wsgaps_server: Server,
                                                         wsgaps_client) -> None:
    client = await wsgaps_client(wsgaps_server.url("echo"))
    await client.close(1000, "done")
    assert await client.wait_closed(timeout=5)
    assert client.close_code == CloseCode.NORMAL_CLOSURE


async def test_server_is_running_and_its_output_is_captured(wsgaps_server: Server) -> None:
    assert wsgaps_server.exit_status() is None  # still running
    assert wsgaps_server.url("echo").startswith("ws://127.0.0.1:")
    assert isinstance(wsgaps_server.logs(), str)


async def test_raw_fragmented_message_comes_back_whole(wsgaps_server: Server) -> None:
    async with await raw_connect(wsgaps_server.url("echo"), auto_pong=True) as client:
        await client.send_frame(Opcode.TEXT, b"frag 1 ", fin=False)
        await client.send_frame(Opcode.CONT, b"frag 2")
        message = await client.recv_message(timeout=5)
        assert message.data == b"frag 1 frag 2"
        assert client.violation is None  # every frame the server sent followed RFC 6455


async def test_raw_unmasked_frame_is_a_protocol_error(wsgaps_server: Server) -> None:
    async with await raw_connect(wsgaps_server.url("echo")) as client:
        # RFC 6455 5.1: a server must close the connection on an unmasked client frame.
        await client.send_raw(encode_frame(Opcode.TEXT, b"unmasked 1", mask=False))
        assert await client.wait_closed(timeout=5)
        assert client.close_code == CloseCode.PROTOCOL_ERROR
