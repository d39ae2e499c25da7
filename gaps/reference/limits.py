"""Gap 10, limits, in the reference: websockets' own settings, each switchable off.

- ``max-message-size``: ``serve(max_size=...)`` (``--max-message-size``, 8 MiB): websockets
  17.4 judges a frame's length from its header and the total of a fragmented message as
  the frames arrive (``protocol.py`` ``Protocol.parse``, ``max_size - cur_size``), and
  closes with 1009.  Off: ``max_size=None``, no limit at all.
- ``handshake-timeout``: ``serve(open_timeout=...)`` (``--handshake-timeout``, 2 s): a
  connection that has not completed its opening handshake by then is dropped
  (``asyncio/server.py`` ``Server.conn_handler``).  Off: ``open_timeout=None``, held forever.

- ``rate-limit``: a token bucket per connection on the echo endpoints (``--rate-limit``, 500
  messages per second, as many in a burst): a message with no token left gets Close 1008
  "rate limit".  websockets has no rate limit of its own; the reference is the harness's
  own server, so it carries one to show the check passing.  Off: no bucket.

- ``connection-cap``: at most ``--max-connections`` (600) WebSocket connections at once, on
  all paths together (``ConnectionCap``): a handshake past them is answered with HTTP 503
  before the upgrade, in ``process_request``; a connection counts from the moment its
  handshake is let through until it has closed (one whose handshake then failed counts
  until websockets has closed it).  websockets has no cap of its own (its FAQ leaves it to
  ``process_request``), so the reference carries one to show the check passing.  600 is
  above the 501 clients of ``broadcast.scale``, which runs on the reference too.  Off: no
  cap.

DELIBERATELY DEFECTIVE (tests only): ``cap-drops-existing`` accepts every handshake past
the cap and closes the oldest connection with 1013 to make room for it.
``rate-drops-silently`` drops a message with no token
left, without an echo or a Close.  ``size-reads-all`` turns websockets' limit off and
judges each message's size in the handler, once the whole message has arrived, with Close
1009: every byte of an oversized message is read first, and a fragmented one is buffered
until its last frame, however long it grows.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from http import HTTPStatus
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosedOK
from websockets.frames import CloseCode
from websockets.http11 import Request, Response
from websockets.protocol import State

from gaps.reference.config import Config
from gaps.reference.echo import Handler


def limit_options(config: Config) -> dict[str, Any]:
    """``serve()`` keyword arguments for the size limit and the handshake timeout."""
    enforced = config.has("max-message-size") and not config.defective("size-reads-all")
    return {"max_size": config.max_message_size if enforced else None,
            "open_timeout": config.handshake_timeout if config.has("handshake-timeout")
            else None}


def size_checked_late(config: Config, handler: Handler) -> Handler:
    """``handler`` behind the ``size-reads-all`` defect, or ``handler`` itself."""
    if not (config.has("max-message-size") and config.defective("size-reads-all")):
        return handler

    async def judged_when_complete(connection: ServerConnection) -> None:
        async for message in connection:
            if len(message) > config.max_message_size:
                await connection.close(CloseCode.MESSAGE_TOO_BIG, "message too big")
                return
            await connection.send(message)

    return judged_when_complete


class Bucket:
    """``rate`` tokens a second, at most ``rate`` kept: one message takes one."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.tokens = rate
        self.at = asyncio.get_running_loop().time()

    def take(self) -> bool:
        now = asyncio.get_running_loop().time()
        self.tokens = min(self.rate, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


class RateLimited:
    """A connection seen through the rate limit: ``recv`` (and ``async for``) hand the
    handler only messages with a token; past the limit the connection is closed with 1008
    (or, with the defect, the message is dropped).  Everything else is the connection's own,
    so the echo behind it (hooks, defects) keeps its behaviour."""

    def __init__(self, connection: ServerConnection, bucket: Bucket, silent: bool) -> None:
        self._connection = connection
        self._bucket = bucket
        self._silent = silent

    def __getattr__(self, name: str) -> Any:
        return getattr(self._connection, name)

    async def recv(self) -> str | bytes:
        while True:
            message = await self._connection.recv()
            if self._bucket.take():
                return message
            if not self._silent:
                await self._connection.close(CloseCode.POLICY_VIOLATION, "rate limit")
                # recv now raises ConnectionClosed, which ends the handler.
                return await self._connection.recv()
            # DELIBERATELY DEFECTIVE (tests only): dropped without a word.

    async def __aiter__(self) -> AsyncIterator[str | bytes]:
        try:
            while True:
                yield await self.recv()
        except ConnectionClosedOK:
            return


def rate_limited(config: Config, handler: Handler) -> Handler:
    """``handler`` (an echo) behind the rate limit, or ``handler`` itself when it is off."""
    if not config.has("rate-limit"):
        return handler
    silent = config.defective("rate-drops-silently")

    async def limited(connection: ServerConnection) -> None:
        await handler(RateLimited(connection, Bucket(config.rate_limit), silent))  # type: ignore[arg-type]

    return limited


class ConnectionCap:
    """At most ``config.max_connections`` connections at once: ``admit`` in ``process_request``
    (None lets the handshake through, a Response refuses it), ``release`` when its handler
    ends.  Off (``connection-cap`` switched off), everything is admitted and nothing kept."""

    def __init__(self, config: Config) -> None:
        self.on = config.has("connection-cap")
        self.cap = config.max_connections
        self.drops = config.defective("cap-drops-existing")
        self.admitted: dict[ServerConnection, None] = {}  # in the order admitted
        self.evictions: set[asyncio.Task[None]] = set()

    def admit(self, connection: ServerConnection, request: Request) -> Response | None:
        if not self.on:
            return None
        if len(self.admitted) >= self.cap:
            # A connection whose handshake failed after it was admitted never reaches a
            # handler, so release never ran for it: it is gone once websockets closed it.
            for gone in [c for c in self.admitted if c.protocol.state is State.CLOSED]:
                del self.admitted[gone]
        if len(self.admitted) >= self.cap:
            if not self.drops:
                return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE,
                                          "connection limit reached, try again later\n")
            # DELIBERATELY DEFECTIVE (tests only): the oldest makes room for the new one.
            oldest = next(iter(self.admitted))
            del self.admitted[oldest]
            task = asyncio.create_task(oldest.close(CloseCode.TRY_AGAIN_LATER, "make room"))
            self.evictions.add(task)
            task.add_done_callback(self.evictions.discard)
        self.admitted[connection] = None
        return None

    def release(self, connection: ServerConnection) -> None:
        self.admitted.pop(connection, None)
