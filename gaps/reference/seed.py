"""The seed proof-of-concept's endpoints: ``/ws`` (decorated echo) and ``/chat``.

Message formats follow ``seed-gap-analysis.md``: ``/ws`` answers ``Echo: <msg> (sent at
<time>)``; ``/chat`` takes ``{"user","message","room"}`` and acknowledges
``{"status":"received","user":...}``.  With the ``app-errors`` capability, bad chat input is
answered with ``{"error":{"code","message"}}``; without it, it is ignored, as the seed did.
"""

from __future__ import annotations

import json
import time
from typing import Any

from websockets.asyncio.server import ServerConnection

from gaps.reference.config import Config

CHAT_FIELDS = ("user", "message", "room")


async def seed_echo(connection: ServerConnection) -> None:
    async for message in connection:
        text = message if isinstance(message, str) else message.decode("utf-8", "replace")
        sent_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        await connection.send(f"Echo: {text} (sent at {sent_at})")


def chat_error(message: str | bytes) -> dict[str, Any] | None:
    """The structured error for bad chat input, or None when the input is a valid message."""
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


def make_chat(config: Config):
    async def chat(connection: ServerConnection) -> None:
        async for message in connection:
            error = chat_error(message)
            if error is not None:
                if config.has("app-errors"):
                    await connection.send(json.dumps(error))
                continue
            data = json.loads(message)
            await connection.send(json.dumps({
                "status": "received", "user": data["user"], "room": data["room"],
                "message": data["message"],
            }))

    return chat
