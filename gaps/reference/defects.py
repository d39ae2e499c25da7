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
- ``accept-unmasked``: unmasked client frames are accepted (breaks 5.1, "The server MUST
  close the connection upon receiving a frame that is not masked"): ``Unmasker`` gives each
  one a zero masking key before websockets parses it.
- ``accept-invalid-utf8``: a Text message whose first frame is not valid UTF-8 reaches the
  handler as Binary, never checked, and ``/echo`` sends it back as Binary (breaks 8.1);
  valid Text is untouched.
- ``error-closes-others``: a connection failed for a protocol error (1002) or invalid data
  (1007) closes the established clients of its path (open connections that have sent a
  data message) with 1011; the process stays up.  Only established clients, so that the
  connections of protocol-errors and invalid-utf8, which start with their violation, judge
  their own failure, not a neighbour's (this defect is for error-handling.isolation).
- ``error-exits``: the same failure ends the whole process at once, status 2, after a line
  ``fatal error: ...`` on stderr, the way a Go runtime dies of an unrecoverable error.
- ``error-exits-late``: the same failure is answered properly (Close 1002 or 1007), and
  the whole process dies ``LATE_EXIT`` seconds later, like a crash during the clean-up of
  a connection that is already gone (for error-handling.isolation's wait after offenders).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import struct
import sys
import threading
import weakref
from collections.abc import Callable
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.frames import DATA_OPCODES, CloseCode, Frame, Opcode
from websockets.protocol import CONNECTING, OPEN
from websockets.server import ServerProtocol

from gaps.reference.config import Config

FRAME_DEFECTS = ("pong-payload", "no-close-reply", "close-code-1005", "close-linger",
                 "no-fragments", "close-common-codes-only", "accept-unmasked",
                 "accept-invalid-utf8", "error-closes-others", "error-exits",
                 "error-exits-late")
FAILURE_CODES = (CloseCode.PROTOCOL_ERROR, CloseCode.INVALID_DATA)  # error-closes-others
LINGER = 3600.0  # close_timeout used with close-linger: beyond any close wait at any time scale
LATE_EXIT = 0.8  # seconds from a failed connection to the process's end (error-exits-late)


def _exit_late(reason: str) -> None:
    sys.stderr.write(f"fatal error: wsgaps reference defect error-exits-late ({reason})\n")
    sys.stderr.flush()
    os._exit(2)


def other_payload(payload: bytes) -> bytes:
    """A payload of the same length that differs from ``payload`` (one byte when empty)."""
    if not payload:
        return b"x"
    return bytes(b ^ 0x5A for b in payload)


class Unmasker:
    """Rewrites a client's byte stream so that every unmasked frame carries a zero masking
    key (XOR with zeros: the payload is unchanged), which websockets then accepts."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.passing = 0  # bytes of the current frame's payload still to pass through

    def feed(self, data: bytes) -> bytes:
        self.buffer += data
        out = bytearray()
        while self.buffer:
            if self.passing:
                chunk = self.buffer[: self.passing]
                out += chunk
                del self.buffer[: len(chunk)]
                self.passing -= len(chunk)
                continue
            if len(self.buffer) < 2:
                break
            short = self.buffer[1] & 0x7F
            size = 2 + {126: 2, 127: 8}.get(short, 0)
            masked = bool(self.buffer[1] & 0x80)
            if len(self.buffer) < size + (4 if masked else 0):
                break
            length = short if short < 126 else int.from_bytes(self.buffer[2:size], "big")
            head = bytearray(self.buffer[:size])
            del self.buffer[:size]
            if masked:
                head += self.buffer[:4]
                del self.buffer[:4]
            else:
                head[1] |= 0x80
                head += b"\0\0\0\0"
            out += head
            self.passing = length
        return bytes(out)


def _utf8(data: bytes) -> bool:
    try:
        bytes(data).decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _path(connection: ServerConnection) -> str | None:
    request = connection.request
    return None if request is None else request.path.split("?", 1)[0]


class DefectiveProtocol(ServerProtocol):
    """websockets' server protocol with the frame-level defects in ``defects`` switched on."""

    defects: frozenset[str] = frozenset()
    refused_fragments = False
    unmasker: Unmasker | None = None
    established = False  # a data message came in (error-closes-others)
    on_failure: Callable[[], None] | None = None  # error-closes-others

    def receive_data(self, data: bytes) -> None:
        if "accept-unmasked" in self.defects and self.state is not CONNECTING:
            if self.unmasker is None:
                self.unmasker = Unmasker()
            data = self.unmasker.feed(data)
        super().receive_data(data)

    def fail(self, code: int, reason: str = "") -> None:
        if code in FAILURE_CODES and "error-exits" in self.defects:
            # DELIBERATELY DEFECTIVE (tests only): the process dies, no cleanup, no Close.
            sys.stderr.write(f"fatal error: wsgaps reference defect error-exits ({reason})\n")
            sys.stderr.flush()
            os._exit(2)
        super().fail(code, reason)
        if code in FAILURE_CODES and "error-exits-late" in self.defects:
            # DELIBERATELY DEFECTIVE (tests only): a timer thread kills the process later,
            # whatever the event loop is doing (a crash in clean-up code).
            timer = threading.Timer(LATE_EXIT, _exit_late, (reason,))
            timer.daemon = True
            timer.start()
        if (code in FAILURE_CODES and "error-closes-others" in self.defects
                and self.on_failure is not None):
            self.on_failure()

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
        if frame.opcode in DATA_OPCODES:
            self.established = True
        if (frame.opcode is Opcode.TEXT and "accept-invalid-utf8" in self.defects
                and not _utf8(frame.data)):
            frame = dataclasses.replace(frame, opcode=Opcode.BINARY)  # never decoded
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
    live: weakref.WeakSet[DefectiveConnection]  # every connection, for error-closes-others
    closing: set[asyncio.Task[None]] = set()

    def __init__(self, protocol: ServerProtocol, *args: Any, **kwargs: Any) -> None:
        super().__init__(protocol, *args, **kwargs)
        protocol.__class__ = DefectiveProtocol
        assert isinstance(protocol, DefectiveProtocol)
        protocol.defects = self.defects
        protocol.on_failure = self.close_others
        self.live.add(self)

    def close_others(self) -> None:
        """error-closes-others: Close 1011 to the other established clients of this path."""
        path = _path(self)
        for other in list(self.live):
            protocol = other.protocol
            if (other is not self and protocol.state is OPEN and _path(other) == path
                    and isinstance(protocol, DefectiveProtocol) and protocol.established):
                task = asyncio.get_running_loop().create_task(
                    other.close(CloseCode.INTERNAL_ERROR, "another client broke the protocol"))
                self.closing.add(task)
                task.add_done_callback(self.closing.discard)

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
                            {"defects": active, "live": weakref.WeakSet()})
    options: dict[str, Any] = {"create_connection": connection_class}
    if "close-linger" in active:
        options["close_timeout"] = LINGER
    return options
