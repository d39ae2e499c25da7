"""The harness's own WebSocket client: sees and records every frame, answers nothing by itself.

``frames`` is a sans-I/O codec that encodes any frame, malformed ones included, and parses
what a server sends without judging it; ``handshake`` builds and reads the opening
handshake; ``client`` drives both over an asyncio stream with bounded reads and waits;
``errors`` is the one family of exceptions the wire raises for what a target does.
"""

from gaps.wire.client import Attempt, Message, WireClient, attempt
from gaps.wire.errors import (
    ClosedError,
    HandshakeFailed,
    HandshakeRefused,
    ReceiveError,
    WireError,
)
from gaps.wire.frames import Close, CloseCode, Frame, Opcode, encode_frame
from gaps.wire.handshake import HandshakeResponse

__all__ = [
    "Attempt",
    "Close",
    "CloseCode",
    "ClosedError",
    "Frame",
    "HandshakeFailed",
    "HandshakeRefused",
    "HandshakeResponse",
    "Message",
    "Opcode",
    "ReceiveError",
    "WireClient",
    "WireError",
    "attempt",
    "encode_frame",
]
