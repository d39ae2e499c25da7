"""Sans-I/O WebSocket frame codec (RFC 6455 section 5.2).

The encoder writes whatever it is told, including frames a conforming client never sends
(unmasked, reserved bits, reserved opcodes, fragmented control frames), because probes
need them.  The parser checks structure only and enforces a size bound; it never rejects
a frame for its content, so the probe sees exactly what the server sent.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from enum import IntEnum


class Opcode(IntEnum):
    CONT = 0x0
    TEXT = 0x1
    BINARY = 0x2
    CLOSE = 0x8
    PING = 0x9
    PONG = 0xA


CONTROL_OPCODES = frozenset({Opcode.CLOSE, Opcode.PING, Opcode.PONG})
OPCODES = frozenset(Opcode)  # the rest (0x3-0x7, 0xB-0xF) are reserved (RFC 6455 5.2)


def opcode_name(opcode: int) -> str:
    try:
        return Opcode(opcode).name
    except ValueError:
        return f"reserved-0x{opcode:X}"


class FrameTooLarge(Exception):
    """The server announced a frame larger than the reader's bound.

    ``frames`` are the complete frames parsed before it, so no evidence is lost.
    """

    def __init__(self, message: str, frames: list[Frame] | None = None) -> None:
        super().__init__(message)
        self.frames = frames or []


@dataclass(frozen=True)
class Frame:
    opcode: int
    payload: bytes
    fin: bool = True
    rsv1: bool = False
    rsv2: bool = False
    rsv3: bool = False
    masked: bool = False

    @property
    def name(self) -> str:
        return opcode_name(self.opcode)

    @property
    def is_control(self) -> bool:
        return self.opcode >= 0x8


def apply_mask(data: bytes, key: bytes) -> bytes:
    """XOR ``data`` with the 4-byte ``key`` (masking and unmasking are the same operation)."""
    if not data:
        return b""
    repeated = (key * (len(data) // 4 + 1))[: len(data)]
    return (int.from_bytes(data, "big") ^ int.from_bytes(repeated, "big")).to_bytes(
        len(data), "big"
    )


def encode_frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv1: bool = False,
    rsv2: bool = False,
    rsv3: bool = False,
    mask: bool | bytes = True,
) -> bytes:
    """Encode one frame.  ``mask`` is True (random key), False (unmasked) or a 4-byte key."""
    head = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | (0x20 if rsv2 else 0)
    head |= (0x10 if rsv3 else 0) | (opcode & 0x0F)
    mask_bit = 0x80 if mask is not False else 0
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", head, mask_bit | length)
    elif length < 1 << 16:
        header = struct.pack("!BBH", head, mask_bit | 126, length)
    else:
        header = struct.pack("!BBQ", head, mask_bit | 127, length)
    if mask is False:
        return header + payload
    key = os.urandom(4) if mask is True else mask
    if len(key) != 4:
        raise ValueError("a masking key has 4 bytes")
    return header + key + apply_mask(payload, key)


class CloseCode(IntEnum):
    """Close status codes with a meaning (RFC 6455 7.4.1 and the IANA registry of 7.4.2)."""

    NORMAL_CLOSURE = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    RESERVED = 1004
    NO_STATUS_RCVD = 1005  # never on the wire (7.4.1)
    ABNORMAL_CLOSURE = 1006  # never on the wire (7.4.1)
    INVALID_DATA = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    MANDATORY_EXTENSION = 1010
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013
    BAD_GATEWAY = 1014
    TLS_HANDSHAKE = 1015  # never on the wire (7.4.1)


# 7.4.1: "MUST NOT be set as a status code in a Close control frame by an endpoint".
NEVER_ON_WIRE = frozenset({CloseCode.NO_STATUS_RCVD, CloseCode.ABNORMAL_CLOSURE,
                           CloseCode.TLS_HANDSHAKE})


def code_problem(code: int) -> str:
    """Why ``code`` may not appear in a Close frame, or "" when it may (RFC 6455 7.4)."""
    if code in NEVER_ON_WIRE:
        return (f"code {code} ({CloseCode(code).name}) on the wire: RFC 6455 7.4.1 says it MUST "
                "NOT be set as a status code in a Close frame")
    if not 1000 <= code <= 4999:
        return f"code {code}, outside the ranges of RFC 6455 7.4.2 (1000-4999)"
    if code == CloseCode.RESERVED or 1016 <= code <= 2999:
        return (f"code {code}, reserved for the protocol and not assigned in the registry "
                "(RFC 6455 7.4.2)")
    return ""


@dataclass(frozen=True)
class Close:
    """A Close frame's body as a value: ``code`` (None for an empty body) and raw ``reason``.

    ``parse`` never raises, whatever arrived; ``problem`` says what is wrong with it.  A
    one-byte body has no code and keeps its byte in ``reason`` with ``truncated`` set.
    """

    code: int | None = None
    reason: bytes = b""
    truncated: bool = False

    @classmethod
    def parse(cls, payload: bytes) -> Close:
        if not payload:
            return cls()
        if len(payload) == 1:
            return cls(None, payload, truncated=True)
        return cls(struct.unpack("!H", payload[:2])[0], payload[2:])

    def encode(self) -> bytes:
        return close_payload(self.code, self.reason)

    def problem(self) -> str:
        """Why this body breaks RFC 6455, or "" when it is valid (empty bodies are valid)."""
        if self.truncated:
            return "a one-byte Close body (RFC 6455 5.5.1: a body starts with a two-byte code)"
        if self.code is None:
            return ""
        if problem := code_problem(self.code):
            return problem
        try:
            self.reason.decode("utf-8")
        except UnicodeDecodeError:
            return (f"a close reason that is not UTF-8 ({self.reason[:40]!r}; "
                    "RFC 6455 5.5.1)")
        return ""

    def __str__(self) -> str:
        if self.code is None:
            return "Close (one-byte body)" if self.truncated else "Close (no code)"
        return f"Close {self.code} {self.reason[:120]!r}"


def close_payload(code: int | None = None, reason: bytes | str = b"") -> bytes:
    if isinstance(reason, str):
        reason = reason.encode()
    if code is None:
        return b""
    return struct.pack("!H", code) + reason


def parse_close(payload: bytes) -> tuple[int | None, bytes]:
    """Close code and raw reason; (None, b"") for an empty body.  A 1-byte body gives (None, it)."""
    close = Close.parse(payload)
    return close.code, close.reason


class FrameParser:
    """Incremental parser: feed bytes, get complete frames.  Bounds each frame's payload."""

    def __init__(self, max_payload: int) -> None:
        self.max_payload = max_payload
        self._buffer = bytearray()

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Frame]:
        """Complete frames in the bytes so far; FrameTooLarge (with them) past the bound."""
        self._buffer += data
        frames: list[Frame] = []
        while True:
            try:
                frame = self._next()
            except FrameTooLarge as exc:
                raise FrameTooLarge(str(exc), frames) from None
            if frame is None:
                return frames
            frames.append(frame)

    def _next(self) -> Frame | None:
        buf = self._buffer
        if len(buf) < 2:
            return None
        head, second = buf[0], buf[1]
        masked = bool(second & 0x80)
        length = second & 0x7F
        offset = 2
        if length == 126:
            if len(buf) < 4:
                return None
            length = struct.unpack_from("!H", buf, 2)[0]
            offset = 4
        elif length == 127:
            if len(buf) < 10:
                return None
            length = struct.unpack_from("!Q", buf, 2)[0]
            offset = 10
        if length > self.max_payload:
            raise FrameTooLarge(f"frame of {length} bytes exceeds the bound of {self.max_payload}")
        key = b""
        if masked:
            if len(buf) < offset + 4:
                return None
            key = bytes(buf[offset : offset + 4])
            offset += 4
        if len(buf) < offset + length:
            return None
        payload = bytes(buf[offset : offset + length])
        del buf[: offset + length]
        if masked:
            payload = apply_mask(payload, key)
        return Frame(
            opcode=head & 0x0F,
            payload=payload,
            fin=bool(head & 0x80),
            rsv1=bool(head & 0x40),
            rsv2=bool(head & 0x20),
            rsv3=bool(head & 0x10),
            masked=masked,
        )
