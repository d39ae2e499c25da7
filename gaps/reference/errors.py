"""Error handling in the opening handshake: websockets' refusals, plus the version header.

websockets refuses every bad handshake with a 4xx by itself (``ServerProtocol.accept``: 400
for a missing or invalid header, 405 for another method, 426 without upgrade headers), but
its refusal of an unsupported ``Sec-WebSocket-Version`` is a plain 400 without the header
that RFC 6455 4.4 requires ("a |Sec-WebSocket-Version| header field indicating the
version(s) the server is capable of understanding").  ``process_response`` adds it, so the
reference shows the conformant answer.

Two deliberately defective modes (tests only, ``--defect``) break the handshake:
``missing-key-500`` answers a handshake without ``Sec-WebSocket-Key`` with HTTP 500, and
``no-version-header`` leaves the header out again.  Bad chat input is ``seed.py``'s, and the
frame-level defects of this gap are in ``defects.py``.
"""

from __future__ import annotations

from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import InvalidHeader
from websockets.http11 import Request, Response

from gaps.reference.config import Config

VERSION = "Sec-WebSocket-Version"
SUPPORTED_VERSIONS = "13"  # the only version websockets accepts (ServerProtocol.process_request)


def _version_refused(connection: ServerConnection) -> bool:
    exc = connection.protocol.handshake_exc
    return isinstance(exc, InvalidHeader) and exc.name == VERSION


def handshake_options(config: Config) -> dict[str, Any]:
    """``serve()`` keyword arguments: the version header, or the handshake defects."""

    def process_response(connection: ServerConnection, request: Request,
                         response: Response) -> None:
        if config.defective("no-version-header"):
            return  # DELIBERATELY DEFECTIVE (tests only): websockets' bare 400
        if response.status_code != 101 and _version_refused(connection):
            response.headers[VERSION] = SUPPORTED_VERSIONS

    options: dict[str, Any] = {"process_response": process_response}
    if config.defective("missing-key-500"):
        # DELIBERATELY DEFECTIVE (tests only): a server error where a 400 belongs.
        def process_request(connection: ServerConnection, request: Request) -> Response | None:
            if "Upgrade" in request.headers and "Sec-WebSocket-Key" not in request.headers:
                return connection.respond(500, "internal error: no key\n")
            return None

        options["process_request"] = process_request
    return options
