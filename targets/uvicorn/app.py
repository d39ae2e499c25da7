"""wsgaps adapter for uvicorn + starlette (``starlette.websockets.WebSocket``).

Run by uvicorn itself (``python -m uvicorn app:app --ws websockets-sansio ...``): the
WebSocket protocol, keepalive and size limit are uvicorn's, pinned to one backend on the
command line; starlette gives the routes.  Endpoints: ``/echo`` (every message back, same
type), ``/subprotocols`` (the same, accepting a supported protocol the client offered: in
ASGI the application chooses, through ``scope["subprotocols"]`` and
``WebSocket.accept(subprotocol=...)``) and ``/chat`` (the seed's chat: acknowledgement and
structured errors).  uvicorn handles SIGTERM itself.

Middleware (gap 8): ``/secure`` and ``/origin`` check the handshake before ``accept()``,
where the application still decides whether the 101 is sent, and refuse with
``WebSocket.send_denial_response`` (the ASGI "Websocket Denial Response" extension, which
uvicorn's backend offers): 401 without the bearer token, 403 for an Origin that is not
``http://`` and the Host.  Neither uvicorn nor starlette has an origin setting for
WebSockets (starlette's CORSMiddleware passes non-HTTP scopes through), so that check is
this short one.
"""

from __future__ import annotations

import json

from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket

from gaps.contract import chat_reply  # the contract's chat format, shared

SUBPROTOCOLS = ("wsgaps.v2", "wsgaps.v1")
TOKEN = "wsgaps-uvicorn-token"  # targets/uvicorn/target.toml endpoints.secure.auth


async def relay(websocket: WebSocket) -> None:
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") is not None:
            await websocket.send_text(message["text"])
        elif message.get("bytes") is not None:
            await websocket.send_bytes(message["bytes"])


async def echo(websocket: WebSocket) -> None:
    await websocket.accept()
    await relay(websocket)


async def subprotocols(websocket: WebSocket) -> None:
    offered = websocket.scope.get("subprotocols", [])
    await websocket.accept(subprotocol=next((p for p in SUBPROTOCOLS if p in offered), None))
    await relay(websocket)


async def secure(websocket: WebSocket) -> None:
    if websocket.headers.get("authorization") != f"Bearer {TOKEN}":
        await websocket.send_denial_response(
            PlainTextResponse("a valid token is required\n", status_code=401))
        return
    await echo(websocket)


async def same_origin(websocket: WebSocket) -> None:
    origin = websocket.headers.get("origin")
    if origin is not None and origin != f"http://{websocket.headers.get('host', '')}":
        await websocket.send_denial_response(
            PlainTextResponse("cross-origin WebSocket handshakes are refused\n",
                              status_code=403))
        return
    await echo(websocket)


async def chat(websocket: WebSocket) -> None:
    await websocket.accept()
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        raw = message.get("text")
        if raw is None:
            raw = message.get("bytes") or b""
        reply, _ = chat_reply(raw)
        await websocket.send_text(json.dumps(reply))


app = Starlette(routes=[
    WebSocketRoute("/echo", echo),
    WebSocketRoute("/subprotocols", subprotocols),
    WebSocketRoute("/chat", chat),
    WebSocketRoute("/secure", secure),
    WebSocketRoute("/origin", same_origin),
])
