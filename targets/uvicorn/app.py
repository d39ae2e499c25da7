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
from typing import Any

from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket

SUBPROTOCOLS = ("wsgaps.v2", "wsgaps.v1")
CHAT_FIELDS = ("user", "message", "room")


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


def chat_error(message: str | bytes) -> dict[str, Any] | None:
    try:
        data = json.loads(message)
    except (ValueError, UnicodeDecodeError):
        return {"error": {"code": "invalid_json", "message": "message is not valid JSON"}}
    if not isinstance(data, dict):
        return {"error": {"code": "invalid_message", "message": "message must be a JSON object"}}
    missing = [name for name in CHAT_FIELDS if not isinstance(data.get(name), str)]
    if missing:
        return {"error": {"code": "missing_field",
                          "message": f"missing or non-string field(s): {', '.join(missing)}"}}
    return None


async def chat(websocket: WebSocket) -> None:
    await websocket.accept()
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        raw = message.get("text")
        if raw is None:
            raw = message.get("bytes") or b""
        error = chat_error(raw)
        if error is not None:
            await websocket.send_text(json.dumps(error))
            continue
        data = json.loads(raw)
        await websocket.send_text(json.dumps({"status": "received", "user": data["user"],
                                              "room": data["room"], "message": data["message"]}))


app = Starlette(routes=[
    WebSocketRoute("/echo", echo),
    WebSocketRoute("/subprotocols", subprotocols),
    WebSocketRoute("/chat", chat),
])
