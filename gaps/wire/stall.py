"""A handshake that stops half-way, for the slowloris figure: how long a server holds a
connection whose request head never ends.

The request is written up to a point (by default every header, but not the empty line
that ends the head), then nothing, or one more header line now and then (``trickle``);
the answer is a value saying when the server ended the connection, how, and what it said
first, or that it was still open when the wait ran out.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from gaps.evidence import show_bytes
from gaps.wire.client import HARNESS_ERRNOS, client_ssl
from gaps.wire.errors import Unreachable
from gaps.wire.handshake import build_request, new_key, parse_url

KEPT = 1024  # bytes of the server's answer kept as evidence (the rest is read and dropped)
CONNECT_WAIT = 10.0


@dataclass
class HalfHandshake:
    """What a server did with a request head that never ended.

    ``dropped_after``: seconds from the moment the partial head was written to the TCP end
    (None: still open when ``wait`` ran out); ``how`` is "closed" or "reset".  ``answer``
    keeps the start of anything the server sent first (a 408 or 400), ``answered_after``
    when it began, ``status`` its HTTP status if it was one.
    """

    url: str
    sent: bytes
    wait: float
    dropped_after: float | None = None
    how: str = ""
    answer: bytes = b""
    answered_after: float | None = None
    trickled: int = 0  # header lines written after the partial head

    @property
    def dropped(self) -> bool:
        return self.dropped_after is not None

    @property
    def status(self) -> int | None:
        parts = self.answer.split(b"\r\n", 1)[0].split(b" ", 2)
        if len(parts) >= 2 and parts[0].startswith(b"HTTP/") and parts[1].isdigit():
            return int(parts[1])
        return None

    def describe(self) -> str:
        said = f" after HTTP {self.status}" if self.status is not None else (
            " after an answer" if self.answer else "")
        if self.dropped_after is None:
            return f"not dropped within {self.wait:.1f} s{said}"
        return f"{self.how} after {self.dropped_after:.2f} s{said}"

    def evidence(self) -> dict[str, Any]:
        facts: dict[str, Any] = {
            "url": self.url[:300], "sent_bytes": len(self.sent), "wait": round(self.wait, 3),
            "sent_tail": show_bytes(self.sent[-80:]), "dropped": self.dropped,
            "dropped_after": None if self.dropped_after is None else round(self.dropped_after, 3),
            "how": self.how or None, "trickled": self.trickled or None}
        if self.answer:
            facts["answer"] = show_bytes(self.answer[:300], cut=len(self.answer) > 300)
            facts["answered_after"] = round(self.answered_after or 0.0, 3)
            facts["status"] = self.status
        return facts


def partial_request(url: str, *, lines: int | None = None, extra: Iterable[tuple[str, str]] = (),
                    ) -> bytes:
    """A valid handshake request for ``url`` without the empty line that ends its head;
    ``lines`` keeps only the request line and that many header lines after it."""
    request = build_request(parse_url(url), key=new_key(), headers=extra)[:-2]
    if lines is None:
        return request
    kept = request.split(b"\r\n")[:1 + lines]
    return b"\r\n".join(kept) + b"\r\n"


async def half_handshake(
    url: str,
    *,
    wait: float,
    lines: int | None = None,
    sent: bytes | None = None,
    trickle: float | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> HalfHandshake:
    """Write a request head that never ends, then watch the connection for ``wait`` s.

    ``sent`` is the exact bytes to write (default ``partial_request(url, lines=lines)``);
    ``trickle`` writes one more header line every that many seconds, as a slowloris client
    does to defeat a timer that restarts on every byte.  Never raises for what the target
    does once connected; Unreachable when no TCP connection could be made (no server).
    """
    endpoint = parse_url(url)
    data = sent if sent is not None else partial_request(url, lines=lines)
    result = HalfHandshake(url, data, wait)
    try:
        async with asyncio.timeout(min(wait, CONNECT_WAIT)):
            reader, writer = await asyncio.open_connection(
                endpoint.host, endpoint.port, ssl=client_ssl(endpoint.secure, ssl_context))
    except TimeoutError:
        raise Unreachable(f"no TCP connection to {endpoint.host}:{endpoint.port} within "
                          f"{min(wait, CONNECT_WAIT):.1f} s") from None
    except OSError as exc:
        if exc.errno in HARNESS_ERRNOS:
            raise
        raise Unreachable(f"cannot connect to {endpoint.host}:{endpoint.port}: "
                          f"{type(exc).__name__}: {exc.strerror or exc}") from None
    loop = asyncio.get_running_loop()
    trickler: asyncio.Task[None] | None = None
    try:
        writer.write(data)
        started = loop.time()
        if trickle:
            trickler = asyncio.create_task(_trickle(writer, trickle, result))
        try:
            async with asyncio.timeout(wait):
                while chunk := await reader.read(65536):
                    if result.answered_after is None:
                        result.answered_after = loop.time() - started
                    if len(result.answer) < KEPT:
                        result.answer += chunk[:KEPT - len(result.answer)]
            result.how = "closed"
        except TimeoutError:
            return result
        except OSError as exc:  # a reset, or TLS torn down: the server ended it either way
            if exc.errno in HARNESS_ERRNOS:
                raise
            result.how = "reset"
        result.dropped_after = loop.time() - started
        return result
    finally:
        if trickler is not None:
            trickler.cancel()
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await trickler
        writer.transport.abort()


async def _trickle(writer: asyncio.StreamWriter, every: float, result: HalfHandshake) -> None:
    while True:
        await asyncio.sleep(every)
        if writer.is_closing():
            return
        writer.write(f"X-Wsgaps-Trickle-{result.trickled + 1}: 1\r\n".encode())
        result.trickled += 1


__all__ = ["HalfHandshake", "half_handshake", "partial_request"]
