"""DELIBERATELY DEFECTIVE MODES of the reference server, for the harness's own tests only.

Every check must be shown to fail (DESIGN.md), but websockets answers Pings and Closes and
reassembles fragments on its own, correctly.  The frame-level defects below therefore hook
into websockets' sans-I/O protocol: ``DefectiveConnection`` (passed to ``serve()`` as
``create_connection``) swaps the class of the connection's ``ServerProtocol`` for
``DefectiveProtocol``, which overrides ``send_frame``/``recv_frame``, and overrides its own
``send_data`` for the TCP-level defect.  None of this runs unless ``--defect`` names it.

- ``pong-payload``: Pongs carry a payload other than the Ping's (breaks RFC 6455 5.5.3).
- ``no-close-reply``: Close frames are never written; a client Close gets a TCP close
  only (breaks 5.5.1, "MUST send a Close frame in response").
- ``close-code-1005``: every Close frame written carries 1005 (breaks 7.4.1).
- ``close-linger``: the server never closes TCP after the closing handshake (breaks 5.5.1,
  "the server MUST close the underlying TCP connection immediately"); websockets then
  aborts it only after ``LINGER`` seconds.
- ``no-fragments``: a fragmented message is answered with Close 1003, like a stack
  without fragmentation support (a missing capability, not an RFC rule).
"""

from __future__ import annotations

import struct
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.frames import DATA_OPCODES, CloseCode, Frame, Opcode
from websockets.protocol import OPEN
from websockets.server import ServerProtocol

from gaps.reference.config import Config

FRAME_DEFECTS = ("pong-payload", "no-close-reply", "close-code-1005", "close-linger",
                 "no-fragments", "close-common-codes-only")
LINGER = 3600.0  # close_timeout used with close-linger: beyond any close wait at any time scale


def other_payload(payload: bytes) -> bytes:
    """A payload of the same length that differs from ``payload`` (one byte when empty)."""
    if not payload:
        return b"x"
    return bytes(b ^ 0x5A for b in payload)


class DefectiveProtocol(ServerProtocol):
    """websockets' server protocol with the frame-level defects in ``defects`` switched on."""

    defects: frozenset[str] = frozenset()
    refused_fragments = False

    def send_frame(self, frame: Frame) -> None:
        if frame.opcode is Opcode.PONG and "pong-payload" in self.defects:
            frame = Frame(Opcode.PONG, other_payload(bytes(frame.data)))
        elif frame.opcode is Opcode.CLOSE:
            if "no-close-reply" in self.defects:
                return  # the state machine goes on as if it had been sent, so TCP ends
            if ("close-common-codes-only" in self.defects and self.close_rcvd is not None
                    and self.close_rcvd.code not in (CloseCode.NORMAL_CLOSURE,
                                                     CloseCode.GOING_AWAY)):
                return
            if "close-code-1005" in self.defects:
                # Frame.serialize checks structure only, so a code that is never valid on
                # the wire (7.4.1) goes through.
                frame = Frame(Opcode.CLOSE, struct.pack("!H", CloseCode.NO_STATUS_RCVD))
        super().send_frame(frame)

    def recv_frame(self, frame: Frame) -> None:
        if "no-fragments" in self.defects:
            if self.refused_fragments:
                return  # later frames of the same read: already failed, drop them
            fragment = frame.opcode is Opcode.CONT or (
                not frame.fin and frame.opcode in DATA_OPCODES)
            if fragment and self.state is OPEN:
                self.refused_fragments = True
                self.fail(CloseCode.UNSUPPORTED_DATA, "fragmented messages not supported")
                return
        super().recv_frame(frame)


class DefectiveConnection(ServerConnection):
    """A ServerConnection whose protocol (and, for close-linger, TCP handling) is defective."""

    defects: frozenset[str] = frozenset()

    def __init__(self, protocol: ServerProtocol, *args: Any, **kwargs: Any) -> None:
        super().__init__(protocol, *args, **kwargs)
        protocol.__class__ = DefectiveProtocol
        assert isinstance(protocol, DefectiveProtocol)
        protocol.defects = self.defects

    def send_data(self) -> None:
        if "close-linger" not in self.defects:
            super().send_data()
            return
        for data in self.protocol.data_to_send():
            if data:  # an empty chunk asks for the TCP half-close: skipped on purpose
                self.transport.write(data)


def serve_options(config: Config) -> dict[str, Any]:
    """``serve()`` keyword arguments for the frame-level defects; none without defects."""
    active = frozenset(d for d in FRAME_DEFECTS if config.defective(d))
    if not active:
        return {}
    connection_class = type("DefectiveConnection", (DefectiveConnection,),
                            {"defects": active})
    options: dict[str, Any] = {"create_connection": connection_class}
    if "close-linger" in active:
        options["close_timeout"] = LINGER
    return options
