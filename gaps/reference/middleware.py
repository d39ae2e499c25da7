"""Middleware: a token check and a same-origin policy in the handshake, hooks on messages.

``/secure`` is the echo behind a token check and ``/origin`` the echo behind a same-origin
policy, both in websockets' handshake hook (``process_request``), so a refusal is an HTTP
answer sent instead of the 101: 401 without the right token, 403 for a foreign ``Origin``.
The token travels one way only, chosen with ``--auth-via`` (``AUTH``: an ``Authorization:
Bearer`` header, a ``token`` query parameter, a ``token`` cookie, or the protocol
``wsgaps.auth`` offered together with the token as a second protocol, of which the server
selects ``wsgaps.auth``).  The same-origin rule: an ``Origin`` must be ``http://`` and the
request's ``Host``; a request without ``Origin`` (no browser sent it) is let through.

Message hooks (``MessageHooks``): every message of the echo endpoints passes through a chain
of hooks before the handler sees it and before its answer is sent, each a plain callable
registered on the chain.  The reference's own hooks count messages and bytes (the counts are
printed at exit); what they return replaces the message, so a hook may validate or
transform.  ``echo.py`` runs the chain.

Switches: ``--without handshake-auth`` makes ``/secure`` a plain echo, ``--without
origin-check`` makes ``/origin`` one, ``--without message-hooks`` empties the chain.
Deliberately defective modes (tests only): ``auth-any-token`` accepts any non-empty token,
``any-origin`` accepts every ``http://`` origin (it compares the scheme only), and
``refuses-after-upgrade`` moves both checks into the connection handler, which closes with
1008 after the 101 instead of answering with a 401 or 403.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass, field
from http.cookies import CookieError, SimpleCookie
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response

from gaps.reference.config import Config

SECURE_PATH = "/secure"
ORIGIN_PATH = "/origin"
TOKEN = "wsgaps-reference-token"  # the right token (targets/reference/target.toml says so)
AUTH = ("header", "query", "cookie", "subprotocol")
AUTH_PROTOCOL = "wsgaps.auth"  # selected when the token travels as a subprotocol

Hook = Callable[[str | bytes], str | bytes]


def presented_token(request: Request, via: str) -> str | None:
    """The token the request carries the way ``via`` says, or None."""
    headers = request.headers
    if via == "header":
        scheme, _, value = (headers.get("Authorization") or "").partition(" ")
        return value if scheme.lower() == "bearer" and value else None
    if via == "query":
        values = parse_qs(urlsplit(request.path).query).get("token")
        return values[0] if values else None
    if via == "cookie":
        try:
            cookie = SimpleCookie(headers.get("Cookie") or "")
        except CookieError:
            return None
        return cookie["token"].value if "token" in cookie else None
    offered = [p.strip() for value in headers.get_all("Sec-WebSocket-Protocol")
               for p in value.split(",") if p.strip()]
    if AUTH_PROTOCOL not in offered:
        return None
    others = [p for p in offered if p != AUTH_PROTOCOL]
    return others[0] if others else None


def token_ok(config: Config, token: str | None) -> bool:
    if token is None:
        return False
    if config.defective("auth-any-token"):
        return bool(token)  # DELIBERATELY DEFECTIVE (tests only): presence, not the value
    return hmac.compare_digest(token.encode(), TOKEN.encode())


def origin_ok(config: Config, request: Request) -> bool:
    origin = request.headers.get("Origin")
    if origin is None:
        return True  # not sent by a browser: nothing to protect against
    if config.defective("any-origin"):
        return origin.startswith("http://")  # DELIBERATELY DEFECTIVE (tests only)
    host = request.headers.get("Host") or ""
    return bool(host) and origin == f"http://{host}"


def refusal(config: Config, request: Request) -> tuple[int, str] | None:
    """The status and reason ``request`` is refused with, or None when it may go on."""
    path = request.path.split("?", 1)[0]
    if path == SECURE_PATH and config.has("handshake-auth") and \
            not token_ok(config, presented_token(request, config.auth_via)):
        return 401, "a valid token is required\n"
    if path == ORIGIN_PATH and config.has("origin-check") and not origin_ok(config, request):
        return 403, "cross-origin WebSocket handshakes are refused\n"
    return None


def process_request(config: Config) -> Callable[[ServerConnection, Request], Response | None]:
    """The handshake hook: the refusal as an HTTP answer, before the upgrade."""

    def hook(connection: ServerConnection, request: Request) -> Response | None:
        if config.defective("refuses-after-upgrade"):
            return None  # DELIBERATELY DEFECTIVE: the handler refuses, after the 101
        refused = refusal(config, request)
        if refused is None:
            return None
        return connection.respond(*refused)

    return hook


async def refused_late(config: Config, connection: ServerConnection) -> bool:
    """DELIBERATELY DEFECTIVE (tests only, ``refuses-after-upgrade``): the same refusal
    made in the connection handler, as Close 1008 after the 101; True when it closed."""
    if not config.defective("refuses-after-upgrade") or connection.request is None:
        return False
    refused = refusal(config, connection.request)
    if refused is None:
        return False
    await connection.close(1008, refused[1].strip())
    return True


def auth_subprotocol(config: Config, connection: ServerConnection,
                     offered: list[str]) -> str | None:
    """On ``/secure`` with the token as a subprotocol: select ``wsgaps.auth`` (the token
    itself is never echoed back as the selected protocol)."""
    request = connection.request
    if request is None or request.path.split("?", 1)[0] != SECURE_PATH:
        return None
    if config.auth_via == "subprotocol" and AUTH_PROTOCOL in offered:
        return AUTH_PROTOCOL
    return None


@dataclass
class MessageHooks:
    """Hooks that run on every message: ``inbound`` before the handler sees it, ``outbound``
    before its answer goes out.  Each hook returns the message to pass on."""

    inbound: list[Hook] = field(default_factory=list)
    outbound: list[Hook] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=lambda: {"in": 0, "out": 0, "bytes_in": 0,
                                                            "bytes_out": 0})

    def received(self, message: str | bytes) -> str | bytes:
        for hook in self.inbound:
            message = hook(message)
        return message

    def sending(self, message: str | bytes) -> str | bytes:
        for hook in self.outbound:
            message = hook(message)
        return message


def message_hooks(config: Config) -> MessageHooks:
    """The reference's chain: counting hooks in both directions (none when switched off)."""
    chain = MessageHooks()
    if not config.has("message-hooks"):
        return chain

    def count(direction: str) -> Hook:
        def hook(message: str | bytes) -> str | bytes:
            chain.counts[direction] += 1
            chain.counts[f"bytes_{direction}"] += len(message)
            return message

        return hook

    chain.inbound.append(count("in"))
    chain.outbound.append(count("out"))
    return chain
