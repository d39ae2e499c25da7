"""The ``echo`` contract endpoint: every message back unchanged, with the same opcode."""

from __future__ import annotations

from websockets.asyncio.server import ServerConnection


async def echo(connection: ServerConnection) -> None:
    async for message in connection:
        await connection.send(message)
