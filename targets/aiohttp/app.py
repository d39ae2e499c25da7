"""wsgaps adapter for aiohttp's server WebSocket (``aiohttp.web.WebSocketResponse``).

Endpoints: ``/echo`` (every message back, same type), ``/subprotocols`` (the same, with
``WebSocketResponse(protocols=...)``) and ``/chat`` (the seed's chat: acknowledgement and
structured errors).  Keepalive is aiohttp's own ``heartbeat=`` option (off by default); the
pong deadline is aiohttp's fixed ``heartbeat / 2``.  ``web.run_app`` handles SIGTERM itself.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import WSMsgType, web

SUBPROTOCOLS = ("wsgaps.v2", "wsgaps.v1")
CHAT_FIELDS = ("user", "message", "room")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def chat_error(message: str) -> dict[str, Any] | None:
    try:
        data = json.loads(message)
    except ValueError:
        return {"error": {"code": "invalid_json", "message": "message is not valid JSON"}}
    if not isinstance(data, dict):
        return {"error": {"code": "invalid_message", "message": "message must be a JSON object"}}
    missing = [name for name in CHAT_FIELDS if not isinstance(data.get(name), str)]
    if missing:
        return {"error": {"code": "missing_field",
                          "message": f"missing or non-string field(s): {', '.join(missing)}"}}
    return None


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
            if msg.type is WSMsgType.BINARY:
                error = chat_error(msg.data.decode("utf-8", "replace"))
            elif msg.type is WSMsgType.TEXT:
                error = chat_error(msg.data)
            else:
                continue
            if error is not None:
                await ws.send_json(error)
                continue
            data = json.loads(msg.data)
            await ws.send_json({"status": "received", "user": data["user"],
                                "room": data["room"], "message": data["message"]})
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
