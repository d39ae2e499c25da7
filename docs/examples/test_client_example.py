"""Example: testing a WebSocket client with gaps.testing's mock server (docs/testing.md).

The client under test is ``Greeter`` below, a small client written on websockets: it says
hello, collects what the server sends until the server closes, and dials again (up to
three times) when a handshake is refused with 503.  Each test scripts the server side
with ``wsgaps_mock`` and checks what the client made of it.

    pytest docs/examples/test_client_example.py
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from gaps.testing import Drop, Expect, ExpectClosed, MockServer, Ping, Refuse, Send, Shut

pytestmark = pytest.mark.asyncio


@dataclass
class Greeter:
    """The client under test."""

    url: str
    received: list[str] = field(default_factory=list)
    close_code: int | None = None
    dropped: bool = False

    async def run(self, tries: int = 3) -> None:
        for attempt in range(1, tries + 1):
            try:
                async with connect(self.url, open_timeout=5) as ws:
                    await ws.send("hello")
                    await self._listen(ws)
                    return
            except InvalidStatus as exc:
                if exc.response.status_code != 503 or attempt == tries:
                    raise
                await asyncio.sleep(0.1 * attempt)

    async def _listen(self, ws) -> None:
        try:
            async for message in ws:
                self.received.append(str(message))
                if message == "bye?":
                    await ws.close(1000, "bye")
        except ConnectionClosed:
            self.dropped = ws.close_code is None or ws.close_code == 1006
        self.close_code = ws.close_code


async def test_client_greets_and_collects_until_close(wsgaps_mock) -> None:
    mock: MockServer = await wsgaps_mock(
        Expect("hello"), Send("news 1"), Send("news 2"), Shut(1001, "going away"))
    greeter = Greeter(mock.url)
    await asyncio.wait_for(greeter.run(), 10)
    await mock.done()
    assert greeter.received == ["news 1", "news 2"]
    assert greeter.close_code == 1001


async def test_client_retries_a_refused_handshake(wsgaps_mock) -> None:
    mock = await wsgaps_mock(Refuse(2, status=503), Expect("hello"), Shut(1000))
    await asyncio.wait_for(Greeter(mock.url).run(), 10)
    await mock.done()
    assert mock.attempts == ["503", "503", "accepted"]


async def test_client_gives_up_on_a_403(wsgaps_mock) -> None:
    mock = await wsgaps_mock(Refuse(1, status=403))
    with pytest.raises(InvalidStatus):
        await asyncio.wait_for(Greeter(mock.url).run(), 10)
    assert mock.attempts == ["403"]


async def test_client_answers_pings_and_closes_when_asked(wsgaps_mock) -> None:
    mock = await wsgaps_mock(Expect("hello"), Ping(b"are you there 1"), Send("bye?"),
                             ExpectClosed(code=1000))
    greeter = Greeter(mock.url)
    await asyncio.wait_for(greeter.run(), 10)
    await mock.done()
    assert greeter.received == ["bye?"]


async def test_client_notices_a_dropped_connection(wsgaps_mock) -> None:
    mock = await wsgaps_mock(Expect("hello"), Drop())
    greeter = Greeter(mock.url)
    await asyncio.wait_for(greeter.run(), 10)
    await mock.done()
    assert greeter.dropped
    assert greeter.received == []


async def test_mock_reports_what_the_client_sent_instead(wsgaps_mock) -> None:
    mock = await wsgaps_mock(Expect("good morning"), timeout=2)
    task = asyncio.create_task(Greeter(mock.url).run())
    with pytest.raises(AssertionError, match="expected 'good morning', got 'hello'"):
        await mock.done()
    task.cancel()
