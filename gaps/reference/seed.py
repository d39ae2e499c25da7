"""The seed proof-of-concept's endpoints: ``/ws`` (decorated echo) and ``/chat``.

Message formats follow ``seed-gap-analysis.md``: ``/ws`` answers ``Echo: <msg> (sent at
<time>)``; ``/chat`` takes ``{"user","message","room"}`` and acknowledges
``{"status":"received","user":...}``.  With the ``app-errors`` capability, bad chat input is
answered with ``{"error":{"code","message"}}``; without it, it is ignored, as the seed did.
The ``null-errors`` defect (tests only) answers it with the text ``null`` instead, as GoFr
does when a handler returns an error.
With the ``rooms`` capability, a valid message also goes to the other members of its room
(``gaps.reference.broadcast.Fanout.chat_fanout``); the seed's app had no fan-out.
"""

from __future__ import annotations

import json
import time

from websockets.asyncio.server import ServerConnection

from gaps.contract import chat_reply
from gaps.reference.broadcast import Fanout
from gaps.reference.config import Config


async def seed_echo(connection: ServerConnection) -> None:
    async for message in connection:
        text = message if isinstance(message, str) else message.decode("utf-8", "replace")
        sent_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        await connection.send(f"Echo: {text} (sent at {sent_at})")


def make_chat(config: Config, fanout: Fanout | None = None):
    async def chat(connection: ServerConnection) -> None:
        try:
            async for message in connection:
                reply, valid = chat_reply(message)
                if not valid and config.defective("null-errors"):
                    await connection.send("null")  # DELIBERATELY DEFECTIVE (tests only)
                    continue
                # Without structured errors, bad input is ignored, as the seed's app did.
                if valid or config.has("app-errors"):
                    await connection.send(json.dumps(reply))
                if valid and fanout is not None:
                    fanout.chat_fanout(connection, reply)
        finally:
            if fanout is not None:
                fanout.chat_left(connection)

    return chat
