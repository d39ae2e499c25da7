"""wsgaps adapter for the websockets asyncio server (``websockets.asyncio.server.serve``).

Endpoints on ``--port``: ``/echo`` (every message back, same type) and ``/chat`` (the seed's
chat: acknowledgement, structured errors).  ``/subprotocols`` is a second ``serve()`` on
``--subprotocols-port`` with ``subprotocols=[...]``: websockets applies that option to every
path of a server and then refuses handshakes without a shared subprotocol (HTTP 400), so it
cannot share a server with ``echo``, which must work without one.  ``/broadcast`` is a third
``serve()`` on ``--broadcast-port``: every message goes to ``broadcast(server.connections,
message)``, the library's own call over the library's own set of open connections.  That set
holds every connection of a server, whatever its path, so the endpoint gets a server of its
own instead of a filter by path, which would be a registry the stack does not ship.

Middleware (gap 8): ``/secure`` is the echo behind a token check in ``process_request``,
websockets' handshake hook ("Intercept the request during the opening handshake"): without
``Authorization: Bearer <TOKEN>`` it returns ``connection.respond(401, ...)``, which
websockets sends instead of the 101.  ``/origin`` is a fourth ``serve()`` on
``--origin-port`` with ``origins=[its own origin]``, websockets' own setting, which refuses
any other Origin with 403 (``ServerProtocol.process_origin``); it covers every path of a
server, so ``echo`` keeps a server without it.

Keepalive is the library's own (``ping_interval``/``ping_timeout``); ``close_timeout`` is
shortened so that a shutdown with peers that never answer the Close ends within the harness's
grace period.  SIGTERM leaves the
``serve()`` context, whose exit is ``Server.close()``: the library closes every connection
with 1001 (the shutdown pattern of the websockets deployment docs).

Connection state (gap 4): ``GET /connections`` on the main server is answered in
``process_request`` with ``Server.connections``, the library's own set of that server's open
connections, and the fields each connection object keeps (``listing``).

Recovery (gap 11): with ``--upstream URL`` an outbound client follows that URL with the
library's own reconnecting client, ``connect()`` used as an async iterator exactly as its
docstring shows it (``async for websocket in connect(...)``, ``except ConnectionClosed:
continue``); the reconnection delays are the library's (``websockets.client.backoff``), set
from the documented ``WEBSOCKETS_BACKOFF_*`` environment variables in target.toml.  The
adapter adds no retry loop or sleep of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
from collections.abc import Callable

from websockets.asyncio.client import connect
from websockets.asyncio.server import (
    Request,
    Response,
    Server,
    ServerConnection,
    broadcast,
    serve,
)
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.typing import Origin

from gaps.contract import chat_reply  # the contract's chat format, shared

SUBPROTOCOLS = ["wsgaps.v2", "wsgaps.v1"]
TOKEN = "wsgaps-websockets-token"  # targets/websockets/target.toml endpoints.secure.auth


async def echo(connection: ServerConnection) -> None:
    async for message in connection:  # str for text, bytes for binary
        await connection.send(message)


async def broadcaster(connection: ServerConnection) -> None:
    async for message in connection:
        # Server.connections: the open connections of this server (the sender included).
        broadcast(connection.server.connections, message)


async def chat(connection: ServerConnection) -> None:
    async for message in connection:
        reply, _ = chat_reply(message)
        await connection.send(json.dumps(reply))


ROUTES = {"/echo": echo, "/chat": chat, "/secure": echo}


def listing(server: Server) -> Response:
    """``Server.connections`` as the contract's JSON: websockets' own set of this server's
    open connections, with what each connection object keeps (``id``, ``state``, its
    handshake ``request``: path and headers, ``remote_address``).  websockets keeps no
    message counts, connect time or last activity, so the rows have none."""
    rows = []
    for conn in server.connections:
        assert conn.request is not None
        host, port = conn.remote_address[:2]
        rows.append({"id": str(conn.id), "state": conn.state.name,
                     "path": conn.request.path.split("?")[0],
                     "client": conn.request.headers.get("X-Wsgaps-Client"),
                     "remote": f"{host}:{port}"})
    body = json.dumps({"connections": rows}).encode()
    return Response(200, "OK", Headers([("Content-Type", "application/json"),
                                        ("Content-Length", str(len(body)))]), body)


def only(paths: set[str]) -> Callable[[ServerConnection, Request], Response | None]:
    def process_request(connection: ServerConnection, request: Request) -> Response | None:
        path = request.path.split("?")[0]
        if path == "/connections" and "/echo" in paths:
            return listing(connection.server)
        if path not in paths:
            return connection.respond(404, "no such endpoint\n")
        if path == "/secure" and request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return connection.respond(401, "a valid token is required\n")
        return None

    return process_request


async def main_handler(connection: ServerConnection) -> None:
    assert connection.request is not None
    await ROUTES[connection.request.path.split("?")[0]](connection)


async def follow_upstream(url: str) -> None:
    """The documented reconnecting client (websockets asyncio/client.py ``connect``)."""
    async for websocket in connect(url):
        try:
            async for _message in websocket:
                pass  # an upstream feed; the probe watches the dialling, not the data
        except ConnectionClosed:
            continue


async def main(port: int, subprotocols_port: int, broadcast_port: int, origin_port: int,
               interval: float, timeout: float, close_timeout: float, upstream: str) -> None:
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    loop.add_signal_handler(signal.SIGTERM, stop.set_result, None)
    loop.add_signal_handler(signal.SIGINT, stop.set_result, None)
    keepalive = {"ping_interval": interval, "ping_timeout": timeout,
                 "close_timeout": close_timeout}
    async with (
        serve(main_handler, "127.0.0.1", port, process_request=only(set(ROUTES)),
              **keepalive),
        serve(echo, "127.0.0.1", subprotocols_port, process_request=only({"/subprotocols"}),
              subprotocols=SUBPROTOCOLS, **keepalive),
        serve(broadcaster, "127.0.0.1", broadcast_port, process_request=only({"/broadcast"}),
              **keepalive),
        serve(echo, "127.0.0.1", origin_port, process_request=only({"/origin"}),
              origins=[Origin(f"http://127.0.0.1:{origin_port}")], **keepalive),
    ):
        print(f"websockets adapter on 127.0.0.1:{port}, :{subprotocols_port}, "
              f":{broadcast_port} and :{origin_port}", flush=True)
        client = asyncio.create_task(follow_upstream(upstream)) if upstream else None
        await stop
        if client is not None:
            client.cancel()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--subprotocols-port", type=int, required=True)
    parser.add_argument("--broadcast-port", type=int, required=True)
    parser.add_argument("--origin-port", type=int, required=True)
    parser.add_argument("--ping-interval", type=float, default=1.0)
    parser.add_argument("--ping-timeout", type=float, default=1.0)
    parser.add_argument("--close-timeout", type=float, default=2.0)
    parser.add_argument("--upstream", default="", help="URL the outbound client follows")
    args = parser.parse_args()
    # websockets logs each reconnection at INFO ("connect failed; reconnecting in ..."): the
    # target's output is evidence.
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("websockets.client").setLevel(logging.INFO)
    asyncio.run(main(args.port, args.subprotocols_port, args.broadcast_port, args.origin_port,
                     args.ping_interval, args.ping_timeout, args.close_timeout, args.upstream))
