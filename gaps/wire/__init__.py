"""The harness's own WebSocket client: sees and records every frame, answers nothing by itself.

``frames`` is a sans-I/O codec that encodes any frame, malformed ones included, and parses
what a server sends without judging it; ``handshake`` builds and reads the opening
handshake; ``client`` drives both over an asyncio stream with bounded reads and waits.
"""

from gaps.wire.client import ClosedError, HandshakeRefused, Message, WireClient
from gaps.wire.frames import Frame, Opcode, encode_frame
from gaps.wire.handshake import HandshakeResponse

__all__ = [
    "ClosedError",
    "Frame",
    "HandshakeRefused",
    "HandshakeResponse",
    "Message",
    "Opcode",
    "WireClient",
    "encode_frame",
]
