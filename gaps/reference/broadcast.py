"""Broadcast and rooms: ``/broadcast``, ``/room/{room}`` and the room fan-out of ``/chat``.

websockets ships ``broadcast(connections, message)`` and ``Server.connections`` but no rooms,
so the reference keeps its own audiences (``Audiences``: a name to the open connections in
it, in the order they joined) and hands every fan-out to websockets' ``broadcast()``.  The
reference may keep a registry; the adapter rule for real stacks (DESIGN.md) does not apply
to it.

- ``/broadcast``: every message goes to every connection on the path, the sender included
  (the reference manifest says ``includes_sender = true``).
- ``/room/{room}``: joining is connecting with a room name; a message goes to the other
  members of that room, never back to its sender (``includes_sender = false``), so that the
  probe meets both settings on the reference.
- ``/chat``: a valid chat message makes its sender a member of its ``room``; after the
  acknowledgement, ``{"user","message","room"}`` goes to the room's other members.

Switched off (``--without broadcast``, ``--without rooms``), ``/broadcast`` and
``/room/{room}`` send each message back to its sender only, like a stack whose handlers reach
their own connection alone, and ``/chat`` only acknowledges.

DELIBERATELY DEFECTIVE modes (tests only): ``broadcast-skips-one`` leaves out the connection
that joined first (an off-by-one over the audience); ``room-leaks`` sends a room's messages
to the members of every room.  Two concurrency defects touch ``/broadcast`` and
``/room/{room}`` only (``Fanout._fan``), and only when messages meet: ``fan-in-drops`` passes
every message through one slot shared by all connections with a short yield between filling
and sending it (an unsynchronised shared buffer), so of two senders' messages that meet the
earlier is lost and the later goes out twice; ``fan-in-reorders`` sends each message from a
task of its own, every other message of a connection ``REORDER_DELAY`` later, so one
sender's consecutive messages overtake each other.  One message at a time (the broadcast
probe's warm-up rounds, one second apart) goes through both intact and in order.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from typing import Any

from websockets.asyncio.server import ServerConnection, broadcast

from gaps.reference.config import Config

BROADCAST_PATH = "/broadcast"
ROOM_PREFIX = "/room/"
SLOT_YIELD = 0.002  # fan-in-drops: the yield between filling the shared slot and sending it
REORDER_DELAY = 0.02  # fan-in-reorders: how much later every other message goes out


class Audiences:
    """Named sets of open connections, each kept in the order its members joined."""

    def __init__(self) -> None:
        self._members: dict[str, dict[ServerConnection, None]] = {}

    def join(self, name: str, connection: ServerConnection) -> None:
        self._members.setdefault(name, {})[connection] = None

    def leave(self, name: str, connection: ServerConnection) -> None:
        members = self._members.get(name)
        if members is not None:
            members.pop(connection, None)
            if not members:
                del self._members[name]

    def leave_all(self, connection: ServerConnection) -> None:
        for name in list(self._members):
            self.leave(name, connection)

    def members(self, name: str) -> list[ServerConnection]:
        return list(self._members.get(name, ()))

    def everyone(self, prefix: str) -> list[ServerConnection]:
        """Every member of every audience whose name starts with ``prefix``, once each."""
        found: dict[ServerConnection, None] = {}
        for name, members in self._members.items():
            if name.startswith(prefix):
                found.update(members)
        return list(found)


class Fanout:
    """The fan-out endpoints of one reference server, over one set of audiences."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.audiences = Audiences()
        self._slot: tuple[list[ServerConnection], str | bytes] | None = None  # fan-in-drops
        self._counts: dict[ServerConnection, int] = {}  # fan-in-reorders
        self._later: set[asyncio.Task[None]] = set()

    def _send(self, connections: Iterable[ServerConnection], message: str | bytes) -> None:
        broadcast(connections, message)

    async def _fan(self, sender: ServerConnection, audience: list[ServerConnection],
                   message: str | bytes) -> None:
        """Fan ``message`` out to ``audience``: at once, or through a concurrency defect."""
        if self.config.defective("fan-in-drops"):
            # DELIBERATELY DEFECTIVE (tests only): one slot for every connection; another
            # sender's message may replace this one before it is sent.
            self._slot = (audience, message)
            await asyncio.sleep(SLOT_YIELD)
            assert self._slot is not None
            self._send(*self._slot)
            return
        if self.config.defective("fan-in-reorders"):
            # DELIBERATELY DEFECTIVE (tests only): a task per message, every other one late.
            count = self._counts[sender] = self._counts.get(sender, 0) + 1
            delay = REORDER_DELAY if count % 2 else 0.0
            task = asyncio.get_running_loop().create_task(
                self._send_later(delay, audience, message))
            self._later.add(task)
            task.add_done_callback(self._later.discard)
            return
        self._send(audience, message)

    async def _send_later(self, delay: float, audience: list[ServerConnection],
                          message: str | bytes) -> None:
        await asyncio.sleep(delay)
        self._send(audience, message)

    # -- /broadcast ------------------------------------------------------------------------

    async def broadcast_endpoint(self, connection: ServerConnection) -> None:
        if not self.config.has("broadcast"):
            async for message in connection:
                await connection.send(message)
            return
        self.audiences.join(BROADCAST_PATH, connection)
        try:
            async for message in connection:
                audience = self.audiences.members(BROADCAST_PATH)
                if self.config.defective("broadcast-skips-one"):
                    audience = audience[1:]  # DELIBERATELY DEFECTIVE (tests only)
                await self._fan(connection, audience, message)
        finally:
            self.audiences.leave(BROADCAST_PATH, connection)
            self._counts.pop(connection, None)

    # -- /room/{room} ----------------------------------------------------------------------

    def _room_audience(self, name: str, sender: ServerConnection) -> list[ServerConnection]:
        if self.config.defective("room-leaks"):
            members = self.audiences.everyone("room:")  # DELIBERATELY DEFECTIVE (tests only)
        else:
            members = self.audiences.members(name)
        return [c for c in members if c is not sender]

    async def room_endpoint(self, connection: ServerConnection, room: str) -> None:
        if not self.config.has("rooms"):
            async for message in connection:
                await connection.send(message)
            return
        name = f"room:{room}"
        self.audiences.join(name, connection)
        try:
            async for message in connection:
                await self._fan(connection, self._room_audience(name, connection), message)
        finally:
            self.audiences.leave(name, connection)
            self._counts.pop(connection, None)

    # -- the chat's rooms ------------------------------------------------------------------

    def chat_fanout(self, connection: ServerConnection, chat: dict[str, Any]) -> None:
        """After a valid chat message: its sender joins its room, the others get it."""
        if not self.config.has("rooms"):
            return
        name = f"chat:{chat['room']}"
        self.audiences.join(name, connection)
        if self.config.defective("room-leaks"):
            others = self.audiences.everyone("chat:")  # DELIBERATELY DEFECTIVE (tests only)
        else:
            others = self.audiences.members(name)
        out = json.dumps({key: chat[key] for key in ("user", "message", "room")})
        self._send([c for c in others if c is not connection], out)

    def chat_left(self, connection: ServerConnection) -> None:
        self.audiences.leave_all(connection)


def room_name(path: str) -> str | None:
    """The room named by a ``/room/{room}`` path, or None for any other path."""
    if not path.startswith(ROOM_PREFIX):
        return None
    room = path[len(ROOM_PREFIX):]
    return room if room and "/" not in room else None
