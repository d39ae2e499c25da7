"""The harness's own WebSocket client: sees and records every frame, answers nothing by itself.

``frames`` is a sans-I/O codec that encodes any frame, malformed ones included, and parses
what a server sends without judging it; ``handshake`` builds and reads the opening
handshake; ``client`` drives both over an asyncio stream with bounded reads and waits;
``errors`` is the one family of exceptions the wire raises for what a target does.
``deflate`` is permessage-deflate (negotiation as a value, a strict bounded codec), ``http``
a bounded plain GET, ``stall`` a handshake that stops half-way.
"""

from gaps.wire.client import Attempt, Message, WireClient, attempt
from gaps.wire.deflate import Negotiation, Params, State
from gaps.wire.errors import (
    ClosedError,
    HandshakeFailed,
    HandshakeRefused,
    ReceiveError,
    WireError,
)
from gaps.wire.frames import Close, CloseCode, Frame, Opcode, encode_frame
from gaps.wire.handshake import HandshakeResponse
from gaps.wire.http import HttpAnswer, HttpFailure, http_get
from gaps.wire.stall import HalfHandshake, half_handshake

__all__ = [
    "Attempt",
    "Close",
    "CloseCode",
    "ClosedError",
    "Frame",
    "HalfHandshake",
    "HandshakeFailed",
    "HandshakeRefused",
    "HandshakeResponse",
    "HttpAnswer",
    "HttpFailure",
    "Message",
    "Negotiation",
    "Opcode",
    "Params",
    "ReceiveError",
    "State",
    "WireClient",
    "WireError",
    "attempt",
    "encode_frame",
    "half_handshake",
    "http_get",
]
