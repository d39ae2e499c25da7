"""Connection state (gap 4): a registry of live connections behind ``/connections``, and
the shutdown that says goodbye to every client.

The registry is the reference's own (the reference is not a stack under analysis): one
entry per WebSocket connection, with the contract's fields (``id``, ``state``, ``path``,
``connected_at``, ``last_activity``, ``messages_in``, ``messages_out``, ``client``, where
``client`` is the ``X-Wsgaps-Client`` handshake header) and the peer's address and port
(``remote``).  Counting wraps the connection's ``recv`` and ``send``, which every handler
of the reference calls (``async for`` goes through ``recv``).

Shutdown: on SIGTERM the server leaves ``serve()``'s context, whose ``Server.close()``
closes every connection with 1001 (websockets 17.4 ``asyncio/server.py`` ``Server.close``,
``close_connections=True``) and waits for the closing handshakes.  ``--without shutdown``
installs no SIGTERM handler: the process dies of the signal and the kernel ends every TCP
connection without a Close frame.  Deliberately defective modes (tests only):
``shutdown-drops`` aborts every connection's transport on SIGTERM (TCP close, no Close);
``shutdown-normal-closure`` closes each with 1000 instead of 1001; ``shutdown-ignores-term``
does nothing on SIGTERM (the harness's SIGKILL ends it after the grace period);
``connections-keep-closed`` leaves closed connections in the listing (state CLOSED);
``connections-count-off`` reports one message more each way than were counted.
"""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from gaps.reference.config import Config

PATH = "/connections"
CLIENT_HEADER = "X-Wsgaps-Client"


@dataclass
class Entry:
    id: int
    path: str
    client: str | None
    remote: str
    connected_at: float = field(default_factory=time.time)
    last_activity: float = field(default_factory=time.time)
    messages_in: int = 0
    messages_out: int = 0
    closed: bool = False


class Registry:
    """Every live connection of the server, with its metadata and message counts."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.entries: dict[ServerConnection, Entry] = {}
        self._ids = itertools.count(1)

    def add(self, connection: ServerConnection) -> None:
        if not self.config.has("introspection"):
            return
        peer = connection.remote_address
        remote = f"{peer[0]}:{peer[1]}" if peer else ""
        entry = Entry(next(self._ids), connection.request.path.split("?", 1)[0],
                      connection.request.headers.get(CLIENT_HEADER), remote)
        self.entries[connection] = entry
        recv, send = connection.recv, connection.send

        async def counted_recv(*args: Any, **kwargs: Any) -> Any:
            message = await recv(*args, **kwargs)
            entry.messages_in += 1
            entry.last_activity = time.time()
            return message

        async def counted_send(*args: Any, **kwargs: Any) -> None:
            await send(*args, **kwargs)
            entry.messages_out += 1
            entry.last_activity = time.time()

        # Instance attributes: the handlers' calls (and ``async for``) find these first.
        connection.recv = counted_recv  # type: ignore[method-assign]
        connection.send = counted_send  # type: ignore[method-assign]

    def remove(self, connection: ServerConnection) -> None:
        entry = self.entries.get(connection)
        if entry is None:
            return
        if self.config.defective("connections-keep-closed"):
            entry.closed = True  # DELIBERATELY DEFECTIVE (tests only)
            return
        del self.entries[connection]

    def listing(self) -> dict[str, Any]:
        off = 1 if self.config.defective("connections-count-off") else 0
        rows = []
        for connection, entry in self.entries.items():
            rows.append({
                "id": entry.id, "state": "CLOSED" if entry.closed else connection.state.name,
                "path": entry.path, "connected_at": entry.connected_at,
                "last_activity": entry.last_activity,
                "messages_in": entry.messages_in + off, "messages_out": entry.messages_out + off,
                "client": entry.client, "remote": entry.remote})
        return {"connections": rows}

    def answer(self, request: Request) -> Response | None:
        """``/connections`` as JSON (``process_request``); None for every other path.
        Without the capability the path is not special (websockets refuses a plain GET)."""
        if request.path.split("?", 1)[0] != PATH or not self.config.has("introspection"):
            return None
        body = json.dumps(self.listing()).encode()
        headers = Headers([("Content-Type", "application/json"),
                           ("Content-Length", str(len(body))), ("Connection", "close")])
        return Response(200, "OK", headers, body)
