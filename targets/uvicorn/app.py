"""wsgaps adapter for uvicorn + starlette (``starlette.websockets.WebSocket``).

Run by uvicorn itself (``python -m uvicorn app:app --ws websockets-sansio ...``): the
WebSocket protocol, keepalive and size limit are uvicorn's, pinned to one backend on the
command line; starlette gives the routes.  Endpoints: ``/echo`` (every message back, same
type), ``/subprotocols`` (the same, accepting a supported protocol the client offered: in
ASGI the application chooses, through ``scope["subprotocols"]`` and
``WebSocket.accept(subprotocol=...)``) and ``/chat`` (the seed's chat: acknowledgement and
structured errors).  uvicorn handles SIGTERM itself.
"""

from __future__ import annotations

import json

from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket

from gaps.contract import chat_reply  # the contract's chat format, shared

SUBPROTOCOLS = ("wsgaps.v2", "wsgaps.v1")


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
])
