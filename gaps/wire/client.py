"""An asyncio WebSocket client for probes: records every frame, answers nothing on its own.

It never answers a Ping unless ``auto_pong`` is switched on (and then only valid Pings, with
the Pong recorded), never answers a Close unless the probe sends one, never validates UTF-8,
never stops reading the socket, and bounds every read in size and every wait in time.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ssl
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from gaps.evidence import show_bytes
from gaps.wire.deflate import (
    DEFAULT_MAX_INFLATED,
    Deflater,
    InflateError,
    Inflater,
    Negotiation,
    State,
    negotiate,
    offer_text,
)
from gaps.wire.errors import (
    ClosedError,
    HandshakeRefused,
    HandshakeTimeout,
    MalformedAnswer,
    NoAnswer,
    ProtocolViolation,
    ReceiveTimeout,
    SendTimeout,
    Unreachable,
)
from gaps.wire.frames import (
    OPCODES,
    Close,
    Frame,
    FrameParser,
    FrameTooLarge,
    Opcode,
    close_payload,
    encode_frame,
    parse_close,
)
from gaps.wire.handshake import (
    Endpoint,
    HandshakeResponse,
    accept_for,
    build_request,
    new_key,
    parse_url,
    read_body,
    read_head,
)

DEFAULT_MAX_PAYLOAD = 32 * 1024 * 1024
MAX_BUFFERED = 64 * 1024 * 1024  # unread payload bytes kept for the probe
RECORD_LIMIT = 2000  # frame records kept per connection (first and last halves)
PREVIEW = 48  # payload bytes kept per frame record
SEND_TIMEOUT = 30.0  # seconds a send may wait for the socket to drain
MAX_CONTROL = 125  # RFC 6455 5.5: control frame payloads are at most 125 bytes
# Running out of these is the harness's problem, never evidence about the target: descriptors,
# memory, buffer space, and local ports (EADDRNOTAVAIL from connect: no free ephemeral port).
HARNESS_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS,
                            errno.EADDRNOTAVAIL})


def harness_side(exc: BaseException) -> bool:
    """Whether ``exc`` is the harness's own trouble (out of descriptors or memory here),
    never evidence about a target; in a group, one such error makes the whole so."""
    if isinstance(exc, BaseExceptionGroup):
        return any(harness_side(e) for e in exc.exceptions)
    return isinstance(exc, MemoryError) or (
        isinstance(exc, OSError) and exc.errno in HARNESS_ERRNOS)


class BufferOverflow(OSError):
    """More unread data arrived than the client keeps; a harness-side limit, not evidence."""

    def __init__(self, message: str) -> None:
        super().__init__(errno.ENOBUFS, message)


@dataclass(frozen=True)
class FrameRecord:
    """One frame as it crossed the wire; ``t`` is seconds since the connection opened."""

    t: float
    direction: str  # "in" or "out"
    opcode: str
    fin: bool
    rsv: str
    masked: bool
    length: int
    preview: str
    note: str = ""

    def as_list(self) -> list[Any]:
        return [round(self.t, 4), self.direction, self.opcode, self.fin, self.rsv, self.masked,
                self.length, self.preview, self.note]


@dataclass(frozen=True)
class Violation:
    """The first frame on a connection that broke RFC 6455, and the rule it broke."""

    t: float  # seconds since the connection opened
    rule: str
    frame: FrameRecord | None  # None: the handshake's answer broke the rule (extensions)

    def __str__(self) -> str:
        if self.frame is None:
            return f"{self.rule} (in the handshake's answer)"
        return f"{self.rule} (frame at {self.t:.3f} s)"

    def evidence(self) -> dict[str, Any]:
        facts: dict[str, Any] = {"rule": self.rule, "at": round(self.t, 3)}
        if self.frame is not None:
            facts["frame"] = self.frame.as_list()
        return facts


def frame_violation(frame: Frame, *, fragmenting: bool, closed: bool, rsv1_allowed: bool) -> str:
    """Which rule of RFC 6455 a frame from a server breaks, or "" when it breaks none.

    ``fragmenting``: a fragmented data message is open; ``closed``: the server already sent
    its Close; ``rsv1_allowed``: an extension using RSV1 (permessage-deflate) was negotiated.
    """
    if closed:
        return "a frame after the server's Close frame (RFC 6455 5.5.1)"
    if frame.masked:
        return "a masked frame from the server (RFC 6455 5.1: a server MUST NOT mask)"
    if frame.opcode not in OPCODES:
        return f"reserved opcode 0x{frame.opcode:X} (RFC 6455 5.2)"
    if rsv1_allowed and frame.rsv1 and not (frame.rsv2 or frame.rsv3):
        if frame.opcode == Opcode.CONT:
            return ("RSV1 on a continuation frame (RFC 7692 6.1: only the first frame of a "
                    "compressed message sets it)")
        if frame.is_control:
            return (f"RSV1 on a {frame.name} frame (RFC 7692 6.1: permessage-deflate "
                    "compresses data messages only)")
    if frame.rsv2 or frame.rsv3 or (frame.rsv1 and not (
            rsv1_allowed and frame.opcode in (Opcode.TEXT, Opcode.BINARY))):
        bits = ",".join(n for n, on in (("RSV1", frame.rsv1), ("RSV2", frame.rsv2),
                                         ("RSV3", frame.rsv3)) if on)
        return f"{bits} set without a negotiated extension that defines it (RFC 6455 5.2)"
    if frame.is_control:
        if not frame.fin:
            return f"a fragmented {frame.name} frame (RFC 6455 5.5: control frames MUST NOT " \
                   "be fragmented)"
        if len(frame.payload) > MAX_CONTROL:
            return (f"a {frame.name} frame with {len(frame.payload)} bytes of payload "
                    "(RFC 6455 5.5: at most 125)")
        if frame.opcode == Opcode.CLOSE:
            return Close.parse(frame.payload).problem()
        return ""
    if frame.opcode == Opcode.CONT and not fragmenting:
        return "a continuation frame with no message to continue (RFC 6455 5.4)"
    if frame.opcode != Opcode.CONT and fragmenting:
        return (f"a new {frame.name} frame inside a fragmented message (RFC 6455 5.4: "
                "later fragments are continuation frames)")
    return ""


@dataclass
class Message:
    opcode: int  # TEXT or BINARY, from the first frame
    data: bytes  # inflated when the message was compressed
    frames: list[Frame] = field(default_factory=list)
    compressed: bool = False  # RSV1 on its first frame, with permessage-deflate agreed

    @property
    def is_text(self) -> bool:
        return self.opcode == Opcode.TEXT

    @property
    def wire_size(self) -> int:
        """Payload bytes on the wire (compressed size for a compressed message)."""
        return sum(len(f.payload) for f in self.frames)


def _preview(payload: bytes, opcode: int | None = None) -> str:
    """The head of a payload as evidence; a Close frame's as its code and then its reason."""
    if opcode == Opcode.CLOSE and len(payload) >= 2:
        code, reason = parse_close(payload)
        return f"{code} {_preview(reason)}".rstrip()
    cut = len(payload) > PREVIEW
    return show_bytes(payload[:PREVIEW], cut=cut) + ("..." if cut else "")


def client_ssl(endpoint_secure: bool, ssl_context: ssl.SSLContext | None):
    return (ssl_context or True) if endpoint_secure else None


class WireClient:
    """One WebSocket connection under the probe's full control."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        response: HandshakeResponse,
        *,
        leftover: bytes = b"",
        max_payload: int = DEFAULT_MAX_PAYLOAD,
        auto_pong: bool = False,
        negotiation: Negotiation | None = None,
        max_inflated: int = DEFAULT_MAX_INFLATED,
    ) -> None:
        self.response = response
        self.auto_pong = auto_pong
        self._reader = reader
        self._writer = writer
        self._loop = asyncio.get_running_loop()
        self.opened_at = self._loop.time()
        self._parser = FrameParser(max_payload)
        # Frames not yet read by the probe; the last frame of a compressed message carries
        # the message inflated (or why it does not inflate), the others None.
        self._frames: deque[tuple[Frame, bytes | str | None]] = deque()
        self._buffered = 0
        self._arrived = asyncio.Event()
        self.overflow: str | None = None
        self._records: list[FrameRecord] = []
        self.records_dropped = 0
        self.pings: list[tuple[float, bytes]] = []  # (time since open, payload) of each Ping
        self.close_frame: Frame | None = None
        self.close_at: float | None = None  # when the server's Close frame arrived
        self.eof_at: float | None = None  # when TCP ended (read side)
        self.read_error: str | None = None
        self.harness_error: OSError | None = None
        self.close_sent = False
        self.violation: Violation | None = None  # the first frame that broke RFC 6455
        self._fragmenting = False
        # What the answer's Sec-WebSocket-Extensions amounts to; RSV1 is allowed only when
        # permessage-deflate was validly agreed, and an invalid answer is the connection's
        # first violation (RFC 6455 4.1: the client must fail such a connection).
        self.negotiation = negotiation or negotiate(
            None, response.get("Sec-WebSocket-Extensions"))
        agreed = self.negotiation.agreed
        self._rsv1_allowed = agreed is not None
        self.deflater = Deflater(agreed) if agreed is not None else None
        self._inflater = Inflater(agreed, max_inflated) if agreed is not None else None
        self._inflating = False  # a compressed message is arriving
        self._inflate_error = ""  # why the compressed message arriving does not inflate
        if self.negotiation.state is State.INVALID:
            self.violation = Violation(0.0, f"Sec-WebSocket-Extensions: {self.negotiation}",
                                       None)
        self._eof = asyncio.Event()
        self._task = asyncio.create_task(self._read_loop(leftover))

    # -- opening -----------------------------------------------------------------------

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        timeout: float = 10.0,
        subprotocols: Iterable[str] = (),
        extensions: str | Sequence[str] | None = None,
        origin: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
        max_payload: int = DEFAULT_MAX_PAYLOAD,
        auto_pong: bool = False,
        ssl_context: ssl.SSLContext | None = None,
        max_inflated: int = DEFAULT_MAX_INFLATED,
    ) -> WireClient:
        """Open a connection; a ``HandshakeFailed`` for anything but a valid 101.

        HandshakeRefused for another status, HandshakeTimeout (saying so) when the handshake
        is not answered within ``timeout``, Unreachable, NoAnswer or MalformedAnswer.
        ``extensions`` is the offer exactly as written (a sequence: several offers in
        preference order); the answer to it is ``client.negotiation``, and an invalid one
        is the connection's violation, not an exception.  ``max_inflated`` bounds one
        inflated message.
        """
        endpoint = parse_url(url)
        key = new_key()
        offered = offer_text(extensions)
        request = build_request(
            endpoint, key=key, subprotocols=subprotocols, extensions=offered,
            origin=origin, headers=headers,
        )
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            async with asyncio.timeout(timeout):
                reader, writer, response, leftover = await _ask(endpoint, request, ssl_context)
        except TimeoutError:
            raise HandshakeTimeout(f"no handshake answer from {url} within {timeout:.1f} s"
                                   ) from None
        response.elapsed = loop.time() - started
        if response.status != 101:
            try:
                await read_body(reader, response, leftover, min(1.0, timeout))
            finally:
                writer.transport.abort()
            raise HandshakeRefused(response)
        if response.get("Sec-WebSocket-Accept") != accept_for(key):
            writer.transport.abort()
            raise MalformedAnswer(
                f"101 with a wrong Sec-WebSocket-Accept: {response.get('Sec-WebSocket-Accept')!r}"
            )
        return cls(reader, writer, response, leftover=leftover, max_payload=max_payload,
                   auto_pong=auto_pong, max_inflated=max_inflated,
                   negotiation=negotiate(offered, response.get("Sec-WebSocket-Extensions")))

    @property
    def subprotocol(self) -> str | None:
        return self.response.get("Sec-WebSocket-Protocol")

    # -- reading -----------------------------------------------------------------------

    def _now(self) -> float:
        return self._loop.time() - self.opened_at

    def _record(self, direction: str, frame: Frame, note: str = "", name: str = "") -> None:
        rsv = "".join("1" if bit else "0" for bit in (frame.rsv1, frame.rsv2, frame.rsv3))
        record = FrameRecord(self._now(), direction, name or frame.name, frame.fin, rsv,
                             frame.masked, len(frame.payload),
                             _preview(frame.payload, frame.opcode), note)
        if len(self._records) >= RECORD_LIMIT:
            # Keep the first half (how it started) and a rolling last half (how it ended).
            del self._records[RECORD_LIMIT // 2]
            self.records_dropped += 1
        self._records.append(record)

    @property
    def records(self) -> list[FrameRecord]:
        return list(self._records)

    async def _read_loop(self, leftover: bytes) -> None:
        # Reads all the time, whatever the probe does, so a Close frame or the TCP end is
        # always seen when it happens; unread data is bounded by MAX_BUFFERED instead.
        try:
            if leftover:
                self._deliver(self._parser.feed(leftover))
            while True:
                chunk = await self._reader.read(65536)
                if not chunk:
                    break
                self._deliver(self._parser.feed(chunk))
        except FrameTooLarge as exc:
            self._deliver(exc.frames)
            self.read_error = str(exc)
            self._writer.transport.abort()
        except OSError as exc:
            if exc.errno in HARNESS_ERRNOS:
                self.harness_error = exc
            self.read_error = f"{type(exc).__name__}: {exc}"
        finally:
            self.eof_at = self._now()
            self._eof.set()
            self._arrived.set()

    def _classify(self, frame: Frame) -> str:
        """Judge one received frame; the first violation marks the whole connection."""
        rule = frame_violation(frame, fragmenting=self._fragmenting,
                               closed=self.close_frame is not None,
                               rsv1_allowed=self._rsv1_allowed)
        if frame.opcode in (Opcode.TEXT, Opcode.BINARY, Opcode.CONT):
            self._fragmenting = not frame.fin
        return rule

    def _deliver(self, frames: list[Frame]) -> None:
        for frame in frames:
            rule = self._classify(frame)
            note, failure, inflated = self._inflate(frame)
            rule = rule or failure
            if frame.opcode == Opcode.PING:
                self.pings.append((self._now(), frame.payload))
                note = self._auto_pong(frame, rule)
            elif frame.opcode == Opcode.CLOSE and self.close_frame is None:
                self.close_frame = frame
                self.close_at = self._now()
            if rule:
                note = f"{note}; violation" if note else "violation"
            self._record("in", frame, note)
            if rule and self.violation is None:
                self.violation = Violation(self._now(), rule, self._records[-1])
            size = len(frame.payload) + (len(inflated) if isinstance(inflated, bytes) else 0)
            if self.overflow is None and self._buffered + size > MAX_BUFFERED:
                self.overflow = (f"more than {MAX_BUFFERED} bytes arrived unread; frames from "
                                 f"{self._now():.3f} s on were not kept")
            if self.overflow is None:
                self._frames.append((frame, inflated))
                self._buffered += size
                self._arrived.set()

    def _inflate(self, frame: Frame) -> tuple[str, str, bytes | str | None]:
        """Feed a data frame of a compressed message to the inflater, in the read loop (so
        a bad message is a violation whether or not the probe reads it, and the shared
        context stays in order): a note for the frame's record, the rule inflating broke
        ("" if none), and at the message's last frame its data, or why there is none."""
        if self._inflater is None or frame.opcode not in (Opcode.TEXT, Opcode.BINARY,
                                                          Opcode.CONT):
            return "", "", None
        if frame.opcode != Opcode.CONT:
            if self._inflating and not self._inflater.broken:  # cut off by a new message
                self._inflater.broken = "a compressed message was cut off by a new one"
            self._inflating, self._inflate_error = frame.rsv1, ""
        if not self._inflating:
            return "", "", None
        failure, data = "", None
        if not self._inflate_error:
            lost_before = bool(self._inflater.broken)
            try:
                data = self._inflater.feed(frame.payload, frame.fin)
            except InflateError as exc:
                self._inflate_error = str(exc)
                failure = "" if lost_before else self._inflate_error
        if not frame.fin:
            return "", failure, None
        self._inflating = False
        if data is None:
            return "not inflated", failure, self._inflate_error
        return f"inflated {len(data)} B: {_preview(data)}", "", data

    def _auto_pong(self, ping: Frame, rule: str) -> str:
        if not self.auto_pong or self.close_sent or self._writer.is_closing():
            return ""
        if rule:
            return "not answered: invalid Ping"
        pong = Frame(Opcode.PONG, ping.payload, masked=True)
        self._record("out", pong, "auto-pong")
        self._writer.write(encode_frame(Opcode.PONG, ping.payload))
        return "answered"

    async def recv(self, timeout: float) -> Frame:
        """The next frame; ReceiveTimeout if none within ``timeout``, ClosedError after TCP end."""
        try:
            async with asyncio.timeout(timeout):
                return await self._next_frame()
        except TimeoutError:
            raise ReceiveTimeout(f"no frame within {timeout:.1f} s") from None

    async def _next_frame(self) -> Frame:
        await self._wait_frame()
        return self._pop()[0]

    async def _wait_frame(self) -> None:
        while not self._frames:
            if self.harness_error is not None:
                raise self.harness_error
            if self.overflow is not None:
                raise BufferOverflow(self.overflow)
            if self._eof.is_set():
                raise ClosedError(self._end_description(), self.close_frame)
            self._arrived.clear()
            await self._arrived.wait()

    def _pop(self) -> tuple[Frame, bytes | str | None]:
        frame, inflated = self._frames.popleft()
        self._buffered -= len(frame.payload) + (
            len(inflated) if isinstance(inflated, bytes) else 0)
        return frame, inflated

    async def recv_message(self, timeout: float, *, max_size: int = DEFAULT_MAX_PAYLOAD) -> Message:
        """The next data message, fragments reassembled; control frames are passed over.

        A Close frame raises ClosedError; fragments out of order (RFC 6455 5.4) raise
        ProtocolViolation.  ``timeout`` bounds the whole message (ReceiveTimeout).  With
        permessage-deflate agreed, a compressed message comes inflated (``compressed``;
        its frames are as on the wire), and one that did not inflate raises
        ProtocolViolation (the connection's violation says why).
        """
        try:
            async with asyncio.timeout(timeout):
                return await self._next_message(max_size)
        except TimeoutError:
            raise ReceiveTimeout(f"no complete message within {timeout:.1f} s") from None

    async def _next_message(self, max_size: int) -> Message:
        parts: list[Frame] = []
        size = 0
        while True:
            await self._wait_frame()
            frame, inflated = self._pop()
            if frame.opcode == Opcode.CLOSE:
                code, reason = parse_close(frame.payload)
                raise ClosedError(f"Close frame {code} {reason[:120]!r}", frame)
            if frame.is_control:
                continue
            if not parts and frame.opcode == Opcode.CONT:
                raise ProtocolViolation("a continuation frame with no message to continue "
                                        "(RFC 6455 5.4)")
            if parts and frame.opcode != Opcode.CONT:
                raise ProtocolViolation(
                    f"a new {frame.name} frame inside a fragmented message; later "
                    "fragments must be continuation frames (RFC 6455 5.4)")
            parts.append(frame)
            size += len(frame.payload)
            if size > max_size:
                raise ProtocolViolation(f"message larger than the bound of {max_size} bytes")
            if not frame.fin:
                continue
            if inflated is None:
                return Message(parts[0].opcode, b"".join(f.payload for f in parts), parts)
            if isinstance(inflated, str):
                raise ProtocolViolation(f"a compressed message that does not inflate: "
                                        f"{inflated}")
            if len(inflated) > max_size:
                raise ProtocolViolation(f"message inflating to {len(inflated)} bytes, past "
                                        f"the bound of {max_size}")
            return Message(parts[0].opcode, inflated, parts, compressed=True)

    def _end_description(self) -> str:
        if self.close_frame is not None:
            code, reason = parse_close(self.close_frame.payload)
            return f"connection closed (Close frame {code} {reason[:120]!r})"
        return "connection closed (TCP, no Close frame)" + (
            f" after {self.read_error}" if self.read_error else ""
        )

    @property
    def close_code(self) -> int | None:
        return parse_close(self.close_frame.payload)[0] if self.close_frame else None

    async def wait_closed(self, timeout: float) -> bool:
        """Wait for the TCP connection to end; True if it did within ``timeout``."""
        try:
            async with asyncio.timeout(timeout):
                await self._eof.wait()
        except TimeoutError:
            return False
        return True

    @property
    def closed(self) -> bool:
        return self._eof.is_set()

    # -- writing -----------------------------------------------------------------------

    async def _send(self, data: bytes, timeout: float = SEND_TIMEOUT) -> None:
        """Write and drain within ``timeout``; a lost connection is a ClosedError."""
        try:
            self._writer.write(data)
            async with asyncio.timeout(timeout):
                await self._writer.drain()
        except TimeoutError:
            raise SendTimeout(f"the target did not read {len(data)} bytes within "
                               f"{timeout:.1f} s") from None
        except ConnectionError as exc:
            raise ClosedError(f"{self._end_description()}; sending failed: "
                              f"{type(exc).__name__}", self.close_frame) from None

    async def send_frame(
        self,
        opcode: int,
        payload: bytes = b"",
        *,
        fin: bool = True,
        rsv1: bool = False,
        rsv2: bool = False,
        rsv3: bool = False,
        mask: bool | bytes = True,
    ) -> None:
        frame = Frame(opcode, payload, fin, rsv1, rsv2, rsv3, masked=mask is not False)
        if opcode == Opcode.CLOSE:
            self.close_sent = True
        self._record("out", frame)
        await self._send(
            encode_frame(opcode, payload, fin=fin, rsv1=rsv1, rsv2=rsv2, rsv3=rsv3, mask=mask))

    async def send_raw(self, data: bytes, note: str = "") -> None:
        """Bytes exactly as given, recorded as a ``raw`` entry."""
        self._record("out", Frame(0, data), note, name="raw")
        await self._send(data)

    async def send_text(self, text: str | bytes) -> None:
        """One uncompressed Text frame, with or without permessage-deflate agreed."""
        await self.send_frame(Opcode.TEXT, text.encode() if isinstance(text, str) else text)

    def compress(self, data: bytes) -> bytes:
        """``data`` deflated as the next message's payload (the shared context moves on),
        for a probe that builds its own frames; ValueError without an agreement."""
        if self.deflater is None:
            raise ValueError(f"permessage-deflate was not agreed ({self.negotiation})")
        return self.deflater.compress(data)

    async def send_message(self, data: str | bytes, *, binary: bool = False,
                           compress: bool | None = None, fragments: int = 1) -> None:
        """One message: compressed when permessage-deflate was agreed (``compress=False``
        sends it uncompressed, valid too: RFC 7692 6), in ``fragments`` frames (the
        compressed payload is split; RSV1 on the first frame only).  The first frame's
        record notes the message's own size and head."""
        payload = data.encode() if isinstance(data, str) else data
        if compress is None:
            compress = self.deflater is not None
        wire = self.compress(payload) if compress else payload
        count = max(1, min(fragments, len(wire) or 1))
        step = -(-len(wire) // count) if wire else 0
        pieces = [wire[i * step:(i + 1) * step] for i in range(count)] if wire else [b""]
        opcode = Opcode.BINARY if binary else Opcode.TEXT
        for index, piece in enumerate(pieces):
            first, last = index == 0, index == len(pieces) - 1
            frame_opcode = opcode if first else Opcode.CONT
            frame = Frame(frame_opcode, piece, last, rsv1=compress and first, masked=True)
            note = (f"deflated from {len(payload)} B: {_preview(payload)}"
                    if compress and first else "")
            self._record("out", frame, note)
            await self._send(encode_frame(frame_opcode, piece, fin=last,
                                          rsv1=compress and first))

    async def send_binary(self, data: bytes) -> None:
        await self.send_frame(Opcode.BINARY, data)

    async def ping(self, payload: bytes = b"") -> None:
        await self.send_frame(Opcode.PING, payload)

    async def close(self, code: int | None = 1000, reason: bytes | str = b"") -> None:
        await self.send_frame(Opcode.CLOSE, close_payload(code, reason))

    # -- ending ------------------------------------------------------------------------

    def abort(self) -> None:
        """Drop the TCP connection at once, without a Close frame."""
        self._writer.transport.abort()

    async def aclose(self) -> None:
        """Release everything; does not wait for the server."""
        self.abort()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task

    async def __aenter__(self) -> WireClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def evidence(self, limit: int = 40) -> dict[str, Any]:
        """The frames seen (most recent ``limit``), the close frame and the end time.

        Each frame is [t, direction, opcode, fin, rsv, masked, length, preview, note]: the
        length and preview as on the wire, a compressed message's size and head in the note
        of its last frame (in) or first frame (out).  ``extensions``: the negotiation, when
        an offer was made or an answer given.
        """
        code, reason = parse_close(self.close_frame.payload) if self.close_frame else (None, b"")
        extensions = {"extensions": self.negotiation.evidence()} if (
            self.negotiation.offered or self.negotiation.answer) else {}
        return {
            **extensions,
            "frames": [r.as_list() for r in self._records[-limit:]],
            "frames_dropped": self.records_dropped + max(0, len(self._records) - limit),
            "close_code": code,
            "close_reason": show_bytes(reason[:123]) if self.close_frame else None,
            "close_at": None if self.close_at is None else round(self.close_at, 3),
            "tcp_end_at": None if self.eof_at is None else round(self.eof_at, 3),
            "read_error": self.read_error,
            "overflow": self.overflow,
            "violation": self.violation.evidence() if self.violation else None,
        }


async def _ask(
    endpoint: Endpoint, request: bytes, ssl_context: ssl.SSLContext | None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, HandshakeResponse, bytes]:
    """Connect, send the handshake request and read the response head (the caller bounds
    the time).  The socket is aborted on any failure; NoAnswer for a reset before a byte."""
    writer = None
    try:
        try:
            reader, writer = await asyncio.open_connection(
                endpoint.host, endpoint.port, ssl=client_ssl(endpoint.secure, ssl_context),
                limit=2**20)
        except ssl.SSLError as exc:
            raise MalformedAnswer(f"TLS handshake failed: {exc}") from None
        except OSError as exc:
            if exc.errno in HARNESS_ERRNOS:
                raise  # out of descriptors or memory here: the harness's problem
            raise Unreachable(f"cannot connect to {endpoint.host}:{endpoint.port}: "
                              f"{type(exc).__name__}: {exc.strerror or exc}") from None
        writer.write(request)
        try:
            response, rest = await read_head(reader)
        except ConnectionError as exc:
            raise NoAnswer(f"connection reset without an HTTP answer "
                           f"({type(exc).__name__})") from None
    except BaseException:
        if writer is not None:
            writer.transport.abort()
        raise
    return reader, writer, response, rest


async def open_handshake(
    url: str,
    *,
    timeout: float,
    key: str | None = "auto",
    version: str | None = "13",
    method: str = "GET",
    subprotocols: Iterable[str] = (),
    extensions: str | Sequence[str] | None = None,
    origin: str | None = None,
    headers: Iterable[tuple[str, str]] = (),
    upgrade: bool = True,
    ssl_context: ssl.SSLContext | None = None,
) -> HandshakeResponse:
    """Send one (possibly malformed) handshake and return the answer; the socket is closed.

    HandshakeTimeout if no response head within ``timeout``; NoAnswer if the server ends the
    connection without a byte; MalformedAnswer if what comes back is not HTTP.  A refusal's
    body is read within what is left of ``timeout`` and kept as far as it came.
    """
    endpoint = parse_url(url)
    request = build_request(
        endpoint, key=new_key() if key == "auto" else key, version=version, method=method,
        subprotocols=subprotocols, extensions=offer_text(extensions), origin=origin,
        headers=headers, upgrade=upgrade,
    )
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        async with asyncio.timeout(timeout):
            reader, writer, response, rest = await _ask(endpoint, request, ssl_context)
    except TimeoutError:
        raise HandshakeTimeout(f"no handshake answer within {timeout:.1f} s") from None
    try:
        response.elapsed = loop.time() - started
        if response.status != 101:
            await read_body(reader, response, rest, max(0.0, started + timeout - loop.time()))
    finally:
        writer.transport.abort()
    return response


@dataclass
class Attempt:
    """One handshake attempt as a value: the HTTP answer, or why there was none.

    Exactly one of ``response`` and ``problem`` is set.  ``dropped`` marks a connection the
    server ended without a byte of answer, ``timed_out`` no answer within the wait, and
    ``received`` keeps the start of an answer that was not HTTP, for evidence.
    """

    response: HandshakeResponse | None = None
    problem: str = ""
    dropped: bool = False
    timed_out: bool = False
    received: bytes = b""
    offered: str | None = None  # the Sec-WebSocket-Extensions value sent, if any

    @property
    def negotiation(self) -> Negotiation | None:
        """What the answer's Sec-WebSocket-Extensions amounts to against the offer (RFC
        7692 7), for a 101; None without one."""
        if not self.accepted:
            return None
        return negotiate(self.offered, self.header("Sec-WebSocket-Extensions"))

    @property
    def status(self) -> int | None:
        return None if self.response is None else self.response.status

    @property
    def accepted(self) -> bool:
        return self.status == 101

    def header(self, name: str) -> str | None:
        """All values of header ``name`` joined, or None (also when there was no answer)."""
        return None if self.response is None else self.response.get(name)

    def describe(self) -> str:
        """``HTTP 400``, or the reason there was no HTTP answer."""
        return f"HTTP {self.status}" if self.response is not None else self.problem

    def evidence(self) -> dict[str, Any]:
        if self.response is not None:
            return self.response.evidence()
        facts: dict[str, Any] = {"problem": self.problem[:300]}
        if self.received:
            facts["received"] = repr(self.received[:200])
        return facts


async def attempt(url: str, *, timeout: float, **handshake: Any) -> Attempt:
    """One (possibly malformed) handshake; never raises for what the target does.

    Keywords are those of ``open_handshake``.  A refused TCP connection is not a target's
    answer but its absence, so ``Unreachable`` still raises (the check then errors).
    """
    offered = offer_text(handshake.get("extensions"))
    try:
        response = await open_handshake(url, timeout=timeout, **handshake)
    except HandshakeTimeout:
        return Attempt(problem=f"no answer within {timeout:.1f} s", timed_out=True,
                       offered=offered)
    except NoAnswer as exc:
        return Attempt(problem=f"no HTTP answer: {exc}", dropped=True, offered=offered)
    except MalformedAnswer as exc:  # an answer, but not HTTP: not a refusal
        return Attempt(problem=f"malformed answer: {exc}", received=exc.received,
                       offered=offered)
    return Attempt(response, offered=offered)


async def handshake_ok(url: str, timeout: float) -> None:
    """Open and drop one connection; raises unless the handshake succeeds within ``timeout``."""
    client = await WireClient.connect(url, timeout=timeout)
    await client.aclose()


# The errors this module raises live in gaps.wire.errors (imported above, one family).
__all__ = [
    "Attempt",
    "BufferOverflow",
    "FrameRecord",
    "Message",
    "WireClient",
    "attempt",
    "handshake_ok",
    "harness_side",
    "open_handshake",
]
