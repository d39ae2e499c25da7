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


def close_payload(code: int | None = None, reason: bytes | str = b"") -> bytes:
    if isinstance(reason, str):
        reason = reason.encode()
    if code is None:
        return b""
    return struct.pack("!H", code) + reason


def parse_close(payload: bytes) -> tuple[int | None, bytes]:
    """Close code and raw reason; (None, b"") for an empty body.  A 1-byte body gives (None, it)."""
    if len(payload) < 2:
        return None, payload
    return struct.unpack("!H", payload[:2])[0], payload[2:]


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
