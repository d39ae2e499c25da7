"""wsgaps adapter for aiohttp's server WebSocket (``aiohttp.web.WebSocketResponse``).

Endpoints: ``/echo`` (every message back, same type), ``/subprotocols`` (the same, with
``WebSocketResponse(protocols=...)``) and ``/chat`` (the seed's chat: acknowledgement and
structured errors).  Keepalive is aiohttp's own ``heartbeat=`` option (off by default); the
pong deadline is aiohttp's fixed ``heartbeat / 2``.  ``web.run_app`` handles SIGTERM itself.
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable

from aiohttp import WSMsgType, web

from gaps.contract import chat_reply  # the contract's chat format, shared

SUBPROTOCOLS = ("wsgaps.v2", "wsgaps.v1")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def echo_handler(heartbeat: float, protocols: tuple[str, ...] = ()) -> Handler:
    async def echo(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=heartbeat, protocols=protocols)
        await ws.prepare(request)
        async for msg in ws:
            if msg.type is WSMsgType.TEXT:
                await ws.send_str(msg.data)
            elif msg.type is WSMsgType.BINARY:
                await ws.send_bytes(msg.data)
        return ws

    return echo


def chat_handler(heartbeat: float) -> Handler:
    async def chat(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=heartbeat)
        await ws.prepare(request)
        async for msg in ws:
            if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                reply, _ = chat_reply(msg.data)
                await ws.send_json(reply)
        return ws

    return chat


def make_app(heartbeat: float) -> web.Application:
    app = web.Application()
    app.router.add_get("/echo", echo_handler(heartbeat))
    app.router.add_get("/subprotocols", echo_handler(heartbeat, SUBPROTOCOLS))
    app.router.add_get("/chat", chat_handler(heartbeat))
    return app


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--heartbeat", type=float, default=1.0)
    parser.add_argument("--shutdown-timeout", type=float, default=1.0)
    args = parser.parse_args()
    web.run_app(make_app(args.heartbeat), host="127.0.0.1", port=args.port,
                shutdown_timeout=args.shutdown_timeout)
