"""An asyncio WebSocket client for probes: records every frame, answers nothing on its own.

It never answers a Ping unless ``auto_pong`` is switched on, never answers a Close unless the
probe sends one, never validates UTF-8, and bounds every read in size and every wait in time.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from gaps.wire.frames import (
    Frame,
    FrameParser,
    FrameTooLarge,
    Opcode,
    close_payload,
    encode_frame,
    opcode_name,
    parse_close,
)
from gaps.wire.handshake import (
    HandshakeError,
    HandshakeResponse,
    accept_for,
    build_request,
    new_key,
    parse_url,
    read_response,
)

DEFAULT_MAX_PAYLOAD = 32 * 1024 * 1024
RECORD_LIMIT = 2000  # frame records kept per connection (first and last halves)
PREVIEW = 48  # payload bytes kept per frame record


class HandshakeRefused(Exception):
    """The server answered the opening handshake with something other than 101."""

    def __init__(self, response: HandshakeResponse) -> None:
        super().__init__(f"handshake refused with HTTP {response.status} {response.reason}")
        self.response = response


class ClosedError(Exception):
    """The connection ended (Close frame or TCP end) while the probe waited for data."""

    def __init__(self, message: str, close_frame: Frame | None = None) -> None:
        super().__init__(message)
        self.close_frame = close_frame


@dataclass(frozen=True)
class FrameRecord:
    """One frame as it crossed the wire; ``t`` is seconds since the connection opened."""

    t: float
    direction: str  # "in" or "out"
    opcode: str
    fin: bool
    rsv: str
    length: int
    preview: str
    note: str = ""

    def as_list(self) -> list[Any]:
        return [round(self.t, 4), self.direction, self.opcode, self.fin, self.rsv, self.length,
                self.preview, self.note]


@dataclass
class Message:
    opcode: int  # TEXT or BINARY, from the first frame
    data: bytes
    frames: list[Frame] = field(default_factory=list)

    @property
    def is_text(self) -> bool:
        return self.opcode == Opcode.TEXT


def _preview(payload: bytes) -> str:
    shown = payload[:PREVIEW]
    text = repr(shown)[2:-1]
    return text + ("..." if len(payload) > PREVIEW else "")


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
    ) -> None:
        self.response = response
        self.auto_pong = auto_pong
        self._reader = reader
        self._writer = writer
        self._loop = asyncio.get_running_loop()
        self.opened_at = self._loop.time()
        self._parser = FrameParser(max_payload)
        self._queue: asyncio.Queue[Frame | None] = asyncio.Queue(maxsize=4096)
        self._records: list[FrameRecord] = []
        self.records_dropped = 0
        self.pings: list[tuple[float, bytes]] = []  # (time since open, payload) of each Ping
        self.close_frame: Frame | None = None
        self.close_at: float | None = None  # when the server's Close frame arrived
        self.eof_at: float | None = None  # when TCP ended (read side)
        self.read_error: str | None = None
        self.close_sent = False
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
        extensions: str | None = None,
        origin: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
        max_payload: int = DEFAULT_MAX_PAYLOAD,
        auto_pong: bool = False,
        ssl_context: ssl.SSLContext | None = None,
    ) -> WireClient:
        """Open a connection; HandshakeRefused for any answer but a valid 101."""
        endpoint = parse_url(url)
        key = new_key()
        request = build_request(
            endpoint, key=key, subprotocols=subprotocols, extensions=extensions,
            origin=origin, headers=headers,
        )
        loop = asyncio.get_running_loop()
        started = loop.time()
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(
                endpoint.host, endpoint.port,
                ssl=(ssl_context or True) if endpoint.secure else None,
                limit=2**20,
            )
            try:
                writer.write(request)
                response, leftover = await read_response(reader, read_body=True)
            except BaseException:
                writer.transport.abort()
                raise
        response.elapsed = loop.time() - started
        if response.status != 101:
            writer.transport.abort()
            raise HandshakeRefused(response)
        if response.get("Sec-WebSocket-Accept") != accept_for(key):
            writer.transport.abort()
            raise HandshakeError(
                f"101 with a wrong Sec-WebSocket-Accept: {response.get('Sec-WebSocket-Accept')!r}"
            )
        return cls(reader, writer, response, leftover=leftover, max_payload=max_payload,
                   auto_pong=auto_pong)

    @property
    def subprotocol(self) -> str | None:
        return self.response.get("Sec-WebSocket-Protocol")

    # -- reading -----------------------------------------------------------------------

    def _now(self) -> float:
        return self._loop.time() - self.opened_at

    def _record(self, direction: str, frame: Frame, note: str = "") -> None:
        rsv = "".join("1" if bit else "0" for bit in (frame.rsv1, frame.rsv2, frame.rsv3))
        record = FrameRecord(self._now(), direction, frame.name, frame.fin, rsv,
                             len(frame.payload), _preview(frame.payload), note)
        if len(self._records) >= RECORD_LIMIT:
            # Keep the first half (how it started) and a rolling last half (how it ended).
            del self._records[RECORD_LIMIT // 2]
            self.records_dropped += 1
        self._records.append(record)

    @property
    def records(self) -> list[FrameRecord]:
        return list(self._records)

    async def _read_loop(self, leftover: bytes) -> None:
        try:
            if leftover:
                await self._deliver(self._parser.feed(leftover))
            while True:
                chunk = await self._reader.read(65536)
                if not chunk:
                    break
                await self._deliver(self._parser.feed(chunk))
        except FrameTooLarge as exc:
            self.read_error = str(exc)
            self._writer.transport.abort()
        except (ConnectionError, OSError) as exc:
            self.read_error = f"{type(exc).__name__}: {exc}"
        finally:
            self.eof_at = self._now()
            self._eof.set()
            with contextlib.suppress(asyncio.QueueFull):
                self._queue.put_nowait(None)

    async def _deliver(self, frames: list[Frame]) -> None:
        for frame in frames:
            note = ""
            if frame.opcode == Opcode.PING:
                self.pings.append((self._now(), frame.payload))
                if self.auto_pong and not self.close_sent:
                    note = "answered"
                    await self._send(encode_frame(Opcode.PONG, frame.payload), None)
            elif frame.opcode == Opcode.CLOSE and self.close_frame is None:
                self.close_frame = frame
                self.close_at = self._now()
            self._record("in", frame, note)
            await self._queue.put(frame)

    async def recv(self, timeout: float) -> Frame:
        """The next frame; TimeoutError if none within ``timeout``, ClosedError after TCP end."""
        if self._queue.empty() and self._eof.is_set():
            raise ClosedError(self._end_description(), self.close_frame)
        async with asyncio.timeout(timeout):
            frame = await self._queue.get()
        if frame is None:
            self._queue.put_nowait(None)  # keep reporting the end to later callers
            raise ClosedError(self._end_description(), self.close_frame)
        return frame

    async def recv_message(self, timeout: float, *, max_size: int = DEFAULT_MAX_PAYLOAD) -> Message:
        """The next data message, fragments reassembled; control frames are passed over.

        A Close frame raises ClosedError.  ``timeout`` bounds the whole message.
        """
        async with asyncio.timeout(timeout):
            first: Frame | None = None
            parts: list[Frame] = []
            size = 0
            while True:
                frame = await self.recv(timeout)
                if frame.opcode == Opcode.CLOSE:
                    code, reason = parse_close(frame.payload)
                    raise ClosedError(f"Close frame {code} {reason[:120]!r}", frame)
                if frame.is_control:
                    continue
                if first is None:
                    first = frame
                parts.append(frame)
                size += len(frame.payload)
                if size > max_size:
                    raise ClosedError(f"message larger than the bound of {max_size} bytes")
                if frame.fin:
                    return Message(first.opcode, b"".join(f.payload for f in parts), parts)

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

    async def _send(self, data: bytes, frame: Frame | None, note: str = "") -> None:
        if frame is not None:
            self._record("out", frame, note)
        self._writer.write(data)
        await self._writer.drain()

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
        await self._send(
            encode_frame(opcode, payload, fin=fin, rsv1=rsv1, rsv2=rsv2, rsv3=rsv3, mask=mask),
            frame,
        )

    async def send_raw(self, data: bytes, note: str = "raw bytes") -> None:
        self._record("out", Frame(-1 & 0xF, data), note)
        await self._send(data, None)

    async def send_text(self, text: str | bytes) -> None:
        await self.send_frame(Opcode.TEXT, text.encode() if isinstance(text, str) else text)

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
        """The frames seen (most recent ``limit``), the close frame and the end time."""
        code, reason = parse_close(self.close_frame.payload) if self.close_frame else (None, b"")
        return {
            "frames": [r.as_list() for r in self._records[-limit:]],
            "frames_dropped": self.records_dropped + max(0, len(self._records) - limit),
            "close_code": code,
            "close_reason": reason[:123].decode("utf-8", "replace") if self.close_frame else None,
            "close_at": None if self.close_at is None else round(self.close_at, 3),
            "tcp_end_at": None if self.eof_at is None else round(self.eof_at, 3),
            "read_error": self.read_error,
        }


async def open_handshake(
    url: str,
    *,
    timeout: float,
    key: str | None = "auto",
    version: str | None = "13",
    method: str = "GET",
    subprotocols: Iterable[str] = (),
    extensions: str | None = None,
    origin: str | None = None,
    headers: Iterable[tuple[str, str]] = (),
    upgrade: bool = True,
) -> HandshakeResponse:
    """Send one (possibly malformed) handshake and return the answer; the socket is closed.

    TimeoutError if no complete answer within ``timeout``; HandshakeError if it is not HTTP.
    """
    endpoint = parse_url(url)
    request = build_request(
        endpoint, key=new_key() if key == "auto" else key, version=version, method=method,
        subprotocols=subprotocols, extensions=extensions, origin=origin, headers=headers,
        upgrade=upgrade,
    )
    loop = asyncio.get_running_loop()
    started = loop.time()
    writer = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(endpoint.host, endpoint.port)
            writer.write(request)
            response, _ = await read_response(reader, read_body=True)
    finally:
        if writer is not None:
            writer.transport.abort()
    response.elapsed = loop.time() - started
    return response


__all__ = [
    "ClosedError",
    "FrameRecord",
    "HandshakeError",
    "HandshakeRefused",
    "Message",
    "WireClient",
    "opcode_name",
    "open_handshake",
]


async def handshake_ok(url: str, timeout: float) -> None:
    """Open and drop one connection; raises unless the handshake succeeds within ``timeout``."""
    client = await WireClient.connect(url, timeout=timeout)
    await client.aclose()
