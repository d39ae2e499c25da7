"""One family of wire errors, so that a probe catches ``WireError`` subclasses and nothing else.

Socket errors are translated where they happen (``gaps.wire.client``), so no probe ever has
to catch ``ConnectionResetError``, ``BrokenPipeError`` or a bare ``Exception``.  Errors that
are the harness's own problem (out of descriptors, memory or buffer space) are *not* in the
family: they stay ``OSError``/``MemoryError`` and end a check as ``error``, never as evidence
about the target.

Hierarchy::

    WireError                      anything the target did (or failed to do) on the wire
    ├── HandshakeFailed            the opening handshake did not give a usable connection
    │   ├── Unreachable            TCP connect failed (refused, unreachable): no server there
    │   ├── NoAnswer               the server ended the connection without a byte of answer
    │   ├── MalformedAnswer        bytes came back, but no valid HTTP response (or a bad 101)
    │   ├── HandshakeRefused       an HTTP answer other than 101 (``response`` attached)
    │   └── HandshakeTimeout       no complete answer within the wait (also a TimeoutError)
    ├── ReceiveError               the probe waited for data and the connection did not give it
    │   ├── ReceiveTimeout         nothing within the wait (also a TimeoutError)
    │   ├── ClosedError            a Close frame or the TCP end (``close_frame`` attached)
    │   └── ProtocolViolation      the server broke RFC 6455 framing
    └── SendTimeout                the target did not read what was sent (also a TimeoutError)

A send on a connection that is gone raises ``ClosedError`` too: for the probe the connection
ended either way.  The timeouts also derive from ``TimeoutError`` so that code which only
cares that time ran out need not know which step it was.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gaps.wire.frames import Frame
    from gaps.wire.handshake import HandshakeResponse


class WireError(Exception):
    """Root of everything a target can do wrong on the wire, as the probe sees it."""


class HandshakeFailed(WireError):
    """The opening handshake did not yield a WebSocket connection."""


class Unreachable(HandshakeFailed):
    """No TCP connection could be made (connection refused, host unreachable)."""


class MalformedAnswer(HandshakeFailed):
    """The server's answer was not an HTTP response we could read within the bounds, or was a
    101 that breaks the handshake rules (wrong ``Sec-WebSocket-Accept``).

    ``received`` holds the first bytes of what did arrive, for evidence.
    """

    def __init__(self, message: str, received: bytes = b"") -> None:
        super().__init__(message)
        self.received = received[:200]


class NoAnswer(HandshakeFailed):
    """The server ended the connection (closed or reset) without sending a single byte."""


class HandshakeRefused(HandshakeFailed):
    """The server answered the opening handshake with something other than 101."""

    def __init__(self, response: HandshakeResponse) -> None:
        super().__init__(f"handshake refused with HTTP {response.status} {response.reason}")
        self.response = response


class HandshakeTimeout(HandshakeFailed, TimeoutError):
    """No complete handshake answer within the wait."""


class ReceiveError(WireError):
    """The probe waited for data and the connection could not deliver it."""


class ReceiveTimeout(ReceiveError, TimeoutError):
    """Nothing (or not the whole message) arrived within the wait."""


class ClosedError(ReceiveError):
    """The connection ended (Close frame or TCP end) while the probe waited or sent."""

    def __init__(self, message: str, close_frame: Frame | None = None) -> None:
        super().__init__(message)
        self.close_frame = close_frame


class ProtocolViolation(ReceiveError):
    """The server broke the framing rules of RFC 6455 (e.g. fragments out of order)."""


class SendTimeout(WireError, TimeoutError):
    """The target did not read what the probe sent within the wait."""


__all__ = [
    "ClosedError",
    "HandshakeFailed",
    "HandshakeRefused",
    "HandshakeTimeout",
    "MalformedAnswer",
    "NoAnswer",
    "ProtocolViolation",
    "ReceiveError",
    "ReceiveTimeout",
    "SendTimeout",
    "Unreachable",
    "WireError",
]
