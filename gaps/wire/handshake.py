"""The opening handshake (RFC 6455 section 4): build the request, read the response, bounded."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from gaps.evidence import show_bytes
from gaps.wire.errors import MalformedAnswer, NoAnswer

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_HEAD = 16 * 1024  # bytes of status line and headers we accept from a server
MAX_BODY = 4 * 1024  # bytes of a refusal's body kept as evidence

Headers = list[tuple[str, str]]


def accept_for(key: str) -> str:
    return base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()


@dataclass
class HandshakeResponse:
    status: int
    reason: str
    headers: Headers = field(default_factory=list)
    body: bytes = b""
    elapsed: float = 0.0

    def get(self, name: str) -> str | None:
        """All values of header ``name`` joined with ", " (RFC 9110 5.3), or None."""
        values = [v for k, v in self.headers if k.lower() == name.lower()]
        return ", ".join(values) if values else None

    def values(self, name: str) -> list[str]:
        """Comma-separated elements of every ``name`` header, stripped."""
        joined = self.get(name)
        if joined is None:
            return []
        return [part.strip() for part in joined.split(",") if part.strip()]

    def evidence(self) -> dict[str, object]:
        return {
            "status": self.status,
            "reason": self.reason[:200],
            "headers": [[k[:100], v[:300]] for k, v in self.headers[:50]],
            "body": show_bytes(self.body[:512], cut=len(self.body) > 512),
        }


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    resource: str  # path and query
    secure: bool

    @property
    def authority(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host  # IPv6 literal
        default = 443 if self.secure else 80
        return host if self.port == default else f"{host}:{self.port}"


def parse_url(url: str) -> Endpoint:
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss", "http", "https"):
        raise ValueError(f"{url!r}: not a ws://, wss:// or http:// URL")
    secure = parts.scheme in ("wss", "https")
    if not parts.hostname:
        raise ValueError(f"{url!r}: no host")
    resource = parts.path or "/"
    if parts.query:
        resource += "?" + parts.query
    return Endpoint(parts.hostname, parts.port or (443 if secure else 80), resource, secure)


def build_request(
    endpoint: Endpoint,
    *,
    key: str | None,
    version: str | None = "13",
    method: str = "GET",
    subprotocols: Iterable[str] = (),
    extensions: str | None = None,
    origin: str | None = None,
    headers: Iterable[tuple[str, str]] = (),
    upgrade: bool = True,
) -> bytes:
    """A handshake request.  ``key=None`` or ``version=None`` leave that header out."""
    lines = [f"{method} {endpoint.resource} HTTP/1.1", f"Host: {endpoint.authority}"]
    if upgrade:
        lines += ["Upgrade: websocket", "Connection: Upgrade"]
    if key is not None:
        lines.append(f"Sec-WebSocket-Key: {key}")
    if version is not None:
        lines.append(f"Sec-WebSocket-Version: {version}")
    protocols = list(subprotocols)
    if protocols:
        lines.append(f"Sec-WebSocket-Protocol: {', '.join(protocols)}")
    if extensions:
        lines.append(f"Sec-WebSocket-Extensions: {extensions}")
    if origin is not None:
        lines.append(f"Origin: {origin}")
    lines += [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def new_key() -> str:
    return base64.b64encode(os.urandom(16)).decode()


async def read_head(reader: asyncio.StreamReader) -> tuple[HandshakeResponse, bytes]:
    """Read the status line and headers (bounded to MAX_HEAD bytes).

    Returns the response and the bytes read past the head (a refusal's body, or the first
    frames after a 101).  NoAnswer if the connection ends before any byte; MalformedAnswer
    for anything else that is not an HTTP response head.
    """
    head = bytearray()
    while b"\r\n\r\n" not in head:
        chunk = await reader.read(4096)
        if not chunk:
            if not head:
                raise NoAnswer("connection closed without an HTTP answer")
            raise MalformedAnswer(
                f"connection closed before the response head ended ({len(head)} bytes read)",
                bytes(head))
        head += chunk
        if len(head) > MAX_HEAD and b"\r\n\r\n" not in head[:MAX_HEAD + 4]:
            raise MalformedAnswer(f"response head longer than {MAX_HEAD} bytes", bytes(head))
    raw_head, _, rest = bytes(head).partition(b"\r\n\r\n")
    lines = raw_head.decode("latin-1").split("\r\n")
    status_parts = lines[0].split(" ", 2)
    status = None
    if len(status_parts) >= 2 and status_parts[0].startswith("HTTP/"):
        with contextlib.suppress(ValueError):
            status = int(status_parts[1])
    if status is None:
        raise MalformedAnswer(f"not an HTTP status line: {lines[0][:100]!r}", bytes(head))
    headers: Headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers.append((name.strip(), value.strip()))
    response = HandshakeResponse(status, status_parts[2] if len(status_parts) > 2 else "", headers)
    return response, rest


async def read_body(reader: asyncio.StreamReader, response: HandshakeResponse, rest: bytes,
                    timeout: float) -> None:
    """Read a refusal's body into ``response.body``: at most MAX_BODY bytes, within ``timeout``.

    A body still arriving at the deadline is kept as far as it came; the status already
    received is never lost to a slow body.
    """
    body = bytearray(rest[:MAX_BODY])
    length = response.get("Content-Length")
    wanted = MAX_BODY
    if length is not None and length.strip().isdigit():
        wanted = min(int(length), MAX_BODY)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while len(body) < wanted and (remaining := deadline - loop.time()) > 0:
        try:
            chunk = await asyncio.wait_for(reader.read(MAX_BODY - len(body)), remaining)
        except (TimeoutError, ConnectionError):
            break  # what came is kept; a slow or reset body never loses the status
        if not chunk:
            break
        body += chunk
    response.body = bytes(body[:MAX_BODY])
