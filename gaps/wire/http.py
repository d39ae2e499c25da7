"""A plain HTTP/1.1 GET for a target's HTTP endpoints (``connections``, ``metrics``).

One request per connection (``Connection: close``), bounded in head, header count, body
and time, with the answer or the reason there was none as a value: ``http_get`` never
raises for what the target does.  Out of descriptors or memory on our side still raises
(``OSError`` with a harness errno), as everywhere in the wire client.
"""

from __future__ import annotations

import asyncio
import enum
import ssl
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from gaps.evidence import show_bytes
from gaps.wire.client import HARNESS_ERRNOS, client_ssl
from gaps.wire.handshake import Endpoint, Headers, parse_url

DEFAULT_MAX_BODY = 4 * 1024 * 1024  # a Prometheus page runs to hundreds of KiB
MAX_HEAD = 64 * 1024  # status line and headers
MAX_HEADERS = 200  # header lines kept; more is "too large"
MAX_CHUNK_LINE = 1024  # a chunk-size line with its extensions
BODY_IN_EVIDENCE = 512


class HttpFailure(enum.StrEnum):
    """Why a GET gave no usable answer (``HttpAnswer.failure``)."""

    REFUSED = "refused"  # no TCP connection (refused, unreachable)
    TIMED_OUT = "timed out"  # no complete answer within the wait
    DROPPED = "dropped"  # the connection ended before a byte of answer
    MALFORMED = "malformed"  # bytes came, but no valid HTTP/1.x response
    TOO_LARGE = "too large"  # head, header count or body past its bound


class _Failed(Exception):
    def __init__(self, failure: HttpFailure, problem: str) -> None:
        super().__init__(problem)
        self.failure = failure
        self.problem = problem


@dataclass
class HttpAnswer:
    """One GET as a value: the response as far as it came, or why it did not come.

    ``failure`` is None for a complete response (any status); otherwise ``problem`` says
    what went wrong, and ``status``/``headers`` keep a head that did arrive (a body past
    its bound or too slow still shows the status).
    """

    url: str
    status: int | None = None
    reason: str = ""
    headers: Headers = field(default_factory=list)
    body: bytes = b""
    elapsed: float = 0.0  # seconds from the connect to the end of the answer (or failure)
    failure: HttpFailure | None = None
    problem: str = ""
    received: bytes = b""  # the start of an answer that was not HTTP, for evidence

    @property
    def ok(self) -> bool:
        """A complete answer arrived (whatever its status)."""
        return self.failure is None

    def header(self, name: str) -> str | None:
        """All values of header ``name`` joined with ", " (RFC 9110 5.3), or None."""
        values = [v for k, v in self.headers if k.lower() == name.lower()]
        return ", ".join(values) if values else None

    @property
    def content_type(self) -> str | None:
        """The media type without parameters, lower-cased (``text/plain``), or None."""
        value = self.header("Content-Type")
        return value.split(";", 1)[0].strip().lower() if value else None

    def text(self) -> str:
        """The body decoded by its charset (UTF-8 by default), bad bytes replaced."""
        charset = "utf-8"
        for part in (self.header("Content-Type") or "").split(";")[1:]:
            key, _, value = part.partition("=")
            if key.strip().lower() == "charset" and value.strip():
                charset = value.strip().strip('"')
        try:
            return self.body.decode(charset, errors="replace")
        except LookupError:
            return self.body.decode("utf-8", errors="replace")

    def describe(self) -> str:
        """``HTTP 200 (1234 bytes, text/plain)``, or the failure and its reason."""
        if self.failure is None:
            return f"HTTP {self.status} ({len(self.body)} bytes, {self.content_type or 'no type'})"
        return f"{self.failure}: {self.problem}"

    def evidence(self) -> dict[str, Any]:
        facts: dict[str, Any] = {"url": self.url[:300], "elapsed": round(self.elapsed, 3)}
        if self.failure is not None:
            facts["failure"] = str(self.failure)
            facts["problem"] = self.problem[:300]
        if self.status is not None:
            facts.update(
                status=self.status, reason=self.reason[:200], content_type=self.content_type,
                headers=[[k[:100], v[:300]] for k, v in self.headers[:50]],
                body_bytes=len(self.body),
                body=show_bytes(self.body[:BODY_IN_EVIDENCE],
                                cut=len(self.body) > BODY_IN_EVIDENCE))
        if self.received:
            facts["received"] = show_bytes(self.received[:200], cut=len(self.received) > 200)
        return facts


def build_get(endpoint: Endpoint, headers: Iterable[tuple[str, str]] = ()) -> bytes:
    headers = list(headers)
    # The caller's Accept replaces the default one (a server may refuse two).
    accept = [] if any(n.lower() == "accept" for n, _ in headers) else ["Accept: */*"]
    lines = [f"GET {endpoint.resource} HTTP/1.1", f"Host: {endpoint.authority}",
             "User-Agent: wsgaps", *accept,
             # Identity only: the body is read and bounded as it is on the wire.
             "Accept-Encoding: identity", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def http_get(
    url: str,
    *,
    timeout: float,
    max_body: int = DEFAULT_MAX_BODY,
    headers: Iterable[tuple[str, str]] = (),
    ssl_context: ssl.SSLContext | None = None,
) -> HttpAnswer:
    """GET ``url`` (http:// or https://) within ``timeout`` seconds, the whole exchange.

    The body is bounded by ``max_body`` (a larger Content-Length fails at once, without
    reading it); Content-Length, chunked and read-to-end bodies are understood.  1xx
    interim answers are passed over.  Never raises for what the target does.
    """
    endpoint = parse_url(url)
    answer = HttpAnswer(url)
    loop = asyncio.get_running_loop()
    started = loop.time()
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout):
            try:
                reader, writer = await asyncio.open_connection(
                    endpoint.host, endpoint.port,
                    ssl=client_ssl(endpoint.secure, ssl_context), limit=MAX_HEAD)
            except ssl.SSLError as exc:
                raise _Failed(HttpFailure.MALFORMED, f"TLS handshake failed: {exc}") from None
            except OSError as exc:
                if exc.errno in HARNESS_ERRNOS:
                    raise
                raise _Failed(HttpFailure.REFUSED,
                              f"cannot connect to {endpoint.host}:{endpoint.port}: "
                              f"{type(exc).__name__}: {exc.strerror or exc}") from None
            writer.write(build_get(endpoint, headers))
            await _read_answer(reader, answer, max_body)
    except TimeoutError:
        answer.failure = HttpFailure.TIMED_OUT
        answer.problem = (f"no complete answer within {timeout:.1f} s"
                          + (f" (HTTP {answer.status} head, {len(answer.body)} body bytes "
                             "so far)" if answer.status is not None else ""))
    except _Failed as exc:
        answer.failure, answer.problem = exc.failure, exc.problem
    except ssl.SSLError as exc:
        answer.failure, answer.problem = HttpFailure.MALFORMED, f"TLS error: {exc}"
    except OSError as exc:  # a reset or another socket error: the target's doing
        if exc.errno in HARNESS_ERRNOS:
            raise
        if answer.status is None and not answer.received:
            answer.failure = HttpFailure.DROPPED
            answer.problem = f"connection ended without an answer ({type(exc).__name__})"
        else:
            answer.failure = HttpFailure.MALFORMED
            answer.problem = f"connection ended inside the answer ({type(exc).__name__})"
    finally:
        answer.elapsed = loop.time() - started
        if writer is not None:
            writer.transport.abort()
    return answer


async def _read_answer(reader: asyncio.StreamReader, answer: HttpAnswer, max_body: int) -> None:
    while True:
        await _read_head(reader, answer)
        if answer.status is not None and not 100 <= answer.status < 200:
            break
        answer.status, answer.reason, answer.headers = None, "", []  # interim: next head
    assert answer.status is not None
    if answer.status in (204, 304):
        return
    coding = (answer.header("Transfer-Encoding") or "").lower()
    if coding:
        if [c.strip() for c in coding.split(",")][-1] != "chunked":
            raise _Failed(HttpFailure.MALFORMED, f"Transfer-Encoding {coding!r} without "
                          "chunked last (RFC 9112 6.3)")
        await _read_chunked(reader, answer, max_body)
        return
    length = answer.header("Content-Length")
    if length is not None:
        values = {v.strip() for v in length.split(",")}
        if len(values) != 1 or not (value := values.pop()).isdigit():
            raise _Failed(HttpFailure.MALFORMED, f"bad Content-Length {length[:60]!r}")
        size = int(value)
        if size > max_body:
            raise _Failed(HttpFailure.TOO_LARGE, f"Content-Length {size} is past the body "
                          f"bound of {max_body} bytes")
        try:
            answer.body = await reader.readexactly(size)
        except asyncio.IncompleteReadError as exc:
            answer.body = exc.partial
            raise _Failed(HttpFailure.MALFORMED, f"connection ended after {len(exc.partial)} "
                          f"of {size} body bytes") from None
        return
    body = bytearray()  # no length: the body ends with the connection
    while chunk := await reader.read(65536):
        body += chunk
        if len(body) > max_body:
            answer.body = bytes(body[:max_body])
            raise _Failed(HttpFailure.TOO_LARGE, f"body past the bound of {max_body} bytes")
    answer.body = bytes(body)


async def _read_head(reader: asyncio.StreamReader, answer: HttpAnswer) -> None:
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError:
        raise _Failed(HttpFailure.TOO_LARGE,
                      f"response head longer than {MAX_HEAD} bytes") from None
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            raise _Failed(HttpFailure.DROPPED, "connection ended without an answer") from None
        answer.received = exc.partial
        raise _Failed(HttpFailure.MALFORMED, f"connection ended inside the response head "
                      f"({len(exc.partial)} bytes)") from None
    lines = raw[:-4].decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not (
            len(parts[1]) == 3 and parts[1].isdigit()):
        answer.received = raw
        raise _Failed(HttpFailure.MALFORMED, f"not an HTTP/1.x status line: {lines[0][:100]!r}")
    if len(lines) - 1 > MAX_HEADERS:
        raise _Failed(HttpFailure.TOO_LARGE, f"more than {MAX_HEADERS} header lines")
    headers: Headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            answer.received = raw
            raise _Failed(HttpFailure.MALFORMED, f"not a header line: {line[:100]!r}")
        headers.append((name, value.strip()))
    answer.status, answer.reason, answer.headers = int(parts[1]), parts[2] if len(parts) > 2 \
        else "", headers


async def _read_chunked(reader: asyncio.StreamReader, answer: HttpAnswer, max_body: int) -> None:
    body = bytearray()
    try:
        while True:
            line = await _line(reader)
            size_text = line.split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise _Failed(HttpFailure.MALFORMED,
                              f"bad chunk size {line[:40]!r}") from None
            if size == 0:
                while await _line(reader):  # trailer fields, up to the empty line
                    pass
                break
            if len(body) + size > max_body:
                answer.body = bytes(body)
                raise _Failed(HttpFailure.TOO_LARGE, f"chunked body past the bound of "
                              f"{max_body} bytes")
            body += await reader.readexactly(size)
            if await reader.readexactly(2) != b"\r\n":
                raise _Failed(HttpFailure.MALFORMED, "chunk data not followed by CRLF")
    except asyncio.IncompleteReadError:
        answer.body = bytes(body)
        raise _Failed(HttpFailure.MALFORMED, f"connection ended inside the chunked body "
                      f"({len(body)} bytes read)") from None
    answer.body = bytes(body)


async def _line(reader: asyncio.StreamReader) -> bytes:
    try:
        line = await reader.readuntil(b"\r\n")
    except asyncio.LimitOverrunError:
        raise _Failed(HttpFailure.MALFORMED, "a chunk line without an end") from None
    if len(line) > MAX_CHUNK_LINE:
        raise _Failed(HttpFailure.MALFORMED, f"a chunk line of {len(line)} bytes")
    return line[:-2]


__all__ = ["DEFAULT_MAX_BODY", "HttpAnswer", "HttpFailure", "build_get", "http_get"]
