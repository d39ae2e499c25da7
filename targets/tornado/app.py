"""wsgaps adapter for tornado's ``tornado.websocket.WebSocketHandler``.

Endpoints: ``/echo`` (every message back, same type), ``/subprotocols`` (the same, with
``select_subprotocol`` overridden, tornado's hook for negotiation) and ``/chat`` (the seed's
chat: acknowledgement and structured errors).  Keepalive is tornado's own application
settings ``websocket_ping_interval`` / ``websocket_ping_timeout`` (off by default);
permessage-deflate is switched on with ``get_compression_options`` (off by default).
Middleware (gap 8): ``/secure`` is the echo whose ``prepare()`` (tornado's documented hook
before ``get``, which performs the upgrade) raises ``HTTPError(401)`` without the bearer
token; ``/origin`` is the plain echo handler under tornado's own cross-origin protection,
on by default for every WebSocketHandler (``check_origin``).
Shutdown (gap 4): SIGTERM runs tornado's documented clean shutdown, ``HTTPServer.stop()``
then ``await HTTPServer.close_all_connections()`` (tornado 6.6.1 ``httpserver.py``, whose
docstring also says it "does not currently close open websocket connections"), and the
process ends.  tornado keeps no registry of WebSocket connections, so there is no
``connections`` endpoint (absent, with the source, in target.toml).

Recovery (gap 11): with ``--upstream URL`` a task follows that URL with tornado's client,
``websocket_connect``, reading it in the coroutine style its docstring shows
(``read_message`` until ``None``).  tornado's client has no reconnection, so none is added:
a failed dial or a closed connection ends the task.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from typing import Any

from tornado.web import Application, HTTPError
from tornado.websocket import WebSocketHandler, websocket_connect

from gaps.contract import chat_reply  # the contract's chat format, shared

SUBPROTOCOLS = ("wsgaps.v2", "wsgaps.v1")
TOKEN = "wsgaps-tornado-token"  # targets/tornado/target.toml endpoints.secure.auth


class EchoHandler(WebSocketHandler):
    def get_compression_options(self) -> dict[str, Any] | None:
        return {}  # permessage-deflate with tornado's defaults; None (the default) is off

    async def on_message(self, message: str | bytes) -> None:
        await self.write_message(message, binary=isinstance(message, bytes))


class SubprotocolsHandler(EchoHandler):
    def select_subprotocol(self, subprotocols: list[str]) -> str | None:
        return next((p for p in SUBPROTOCOLS if p in subprotocols), None)


class SecureHandler(EchoHandler):
    def prepare(self) -> None:
        # Runs before get(), so the refusal is an HTTP answer instead of the 101.
        if self.request.headers.get("Authorization") != f"Bearer {TOKEN}":
            raise HTTPError(401, "a valid token is required")


class ChatHandler(WebSocketHandler):
    async def on_message(self, message: str | bytes) -> None:
        reply, _ = chat_reply(message)
        await self.write_message(json.dumps(reply))


async def follow_upstream(url: str) -> None:
    """One dial with tornado's client, then the connection read until it is closed."""
    try:
        conn = await websocket_connect(url)
    except Exception as exc:  # tornado raises HTTPClientError, OSError, StreamClosedError...
        print(f"upstream: {type(exc).__name__}: {exc}", flush=True)
        return
    print("upstream: connected", flush=True)
    while await conn.read_message() is not None:
        pass  # an upstream feed; the probe watches the dialling, not the data
    print("upstream: connection ended", flush=True)


async def main(port: int, interval: float, timeout: float, upstream: str) -> None:
    app = Application(
        [(r"/echo", EchoHandler), (r"/subprotocols", SubprotocolsHandler),
         (r"/chat", ChatHandler), (r"/secure", SecureHandler),
         # tornado's cross-origin protection is on for every handler: /origin adds nothing
         (r"/origin", EchoHandler)],
        websocket_ping_interval=interval,
        websocket_ping_timeout=timeout,
    )
    server = app.listen(port, address="127.0.0.1")
    print(f"tornado adapter on 127.0.0.1:{port}", flush=True)
    client = asyncio.create_task(follow_upstream(upstream)) if upstream else None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    # tornado's clean shutdown, as HTTPServer.close_all_connections' docstring tells it.
    server.stop()
    await server.close_all_connections()
    if client is not None:
        client.cancel()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ping-interval", type=float, default=1.0)
    parser.add_argument("--ping-timeout", type=float, default=1.0)
    parser.add_argument("--upstream", default="", help="URL the outbound client follows")
    args = parser.parse_args()
    asyncio.run(main(args.port, args.ping_interval, args.ping_timeout, args.upstream))
