"""Subprotocols: negotiation on ``/subprotocols`` only, through websockets' select_subprotocol.

``serve()`` takes one subprotocol policy for every path, and websockets' default policy
refuses clients that offer nothing once subprotocols are configured.  ``/echo`` must work
without an offer, so the policy here is per path: every other path negotiates nothing.

On ``/subprotocols`` the rule is websockets' documented default (server.ServerProtocol.
select_subprotocol): the first of ``SUBPROTOCOLS`` that the client offered; no offer or no
common protocol aborts the handshake with HTTP 400 (NegotiationError).  With the capability
off (``--without subprotocols`` or ``--profile seed``) the endpoint negotiates nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import NegotiationError
from websockets.typing import Subprotocol

from gaps.reference.config import SUBPROTOCOLS, Config

PATH = "/subprotocols"

Selector = Callable[[ServerConnection, Sequence[Subprotocol]], Subprotocol | None]


def select(offered: Sequence[str], supported: Sequence[str] = SUBPROTOCOLS) -> str:
    """The server's most preferred protocol among ``offered``; NegotiationError (400) if none."""
    if not offered:
        raise NegotiationError("missing subprotocol")
    for name in supported:
        if name in offered:
            return name
    raise NegotiationError(f"invalid subprotocol; expected one of {', '.join(supported)}")


def make_selector(config: Config) -> Selector:
    def selector(connection: ServerConnection,
                 offered: Sequence[Subprotocol]) -> Subprotocol | None:
        request = connection.request
        if request is None or request.path.split("?", 1)[0] != PATH:
            return None
        if not config.has("subprotocols"):
            return None
        # DELIBERATELY DEFECTIVE (tests only): websockets sends whatever this returns.
        if not offered and config.defective("subprotocol-without-offer"):
            return Subprotocol(SUBPROTOCOLS[0])
        if offered and config.defective("unoffered-subprotocol"):
            return Subprotocol(SUBPROTOCOLS[0])
        if offered and config.defective("echo-any-subprotocol"):
            return offered[0]
        return Subprotocol(select(offered))

    return selector
