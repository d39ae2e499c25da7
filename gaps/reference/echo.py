"""The ``echo`` contract endpoint: every message back unchanged, with the same opcode.

``make_echo`` returns the plain echo unless a message-type defect, ``echo-reorders`` or
``churn-crashes`` is switched on (tests only, see ``gaps.reference.defects``); ``/echo`` and
``/subprotocols`` both use it.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import sys
import threading
from collections.abc import Awaitable, Callable

from websockets.asyncio.server import ServerConnection
from websockets.frames import CloseCode

from gaps.reference.config import Config
from gaps.reference.middleware import MessageHooks

Handler = Callable[[ServerConnection], Awaitable[None]]

MESSAGE_DEFECTS = ("text-unsupported", "binary-unsupported", "binary-as-text", "drop-empty")
REORDER_WINDOW = 0.05  # echo-reorders: a second message this soon swaps places with the first
# churn-crashes: the connection of the echo endpoints that dooms the process, and how long the
# process lives on after it (GoFr's runaway stack takes a second or more to overflow).
CHURN_CRASH_AFTER = 300
CHURN_CRASH_DELAY = 1.0


async def echo(connection: ServerConnection) -> None:
    async for message in connection:
        await connection.send(message)


async def reordering_echo(connection: ServerConnection) -> None:
    """DELIBERATELY DEFECTIVE (tests only, ``echo-reorders``): every message comes back, but
    when a second one arrives within ``REORDER_WINDOW`` the second is echoed first.  A
    client that waits for each echo before sending the next never sees it; one with several
    messages in flight does.  Cancelling ``recv()`` loses nothing (websockets 17.4
    ``asyncio/connection.py`` ``Connection.recv``), so the timeout is safe."""
    while True:
        first = await connection.recv()
        try:
            second = await asyncio.wait_for(connection.recv(), REORDER_WINDOW)
        except TimeoutError:
            await connection.send(first)
            continue
        await connection.send(second)
        await connection.send(first)


def hooked_echo(hooks: MessageHooks) -> Handler:
    """The echo with every message passed through the message hooks, in and out."""

    async def echo_through_hooks(connection: ServerConnection) -> None:
        async for message in connection:
            await connection.send(hooks.sending(hooks.received(message)))

    return echo_through_hooks


def _crash(count: int) -> None:
    sys.stderr.write(f"fatal error: wsgaps reference defect churn-crashes (connection {count} "
                     "doomed the process)\n")
    sys.stderr.flush()
    os._exit(2)


def crashing_under_churn(handler: Handler) -> Handler:
    """DELIBERATELY DEFECTIVE (tests only, ``churn-crashes``): ``handler``, but the
    ``CHURN_CRASH_AFTER``-th connection starts a timer thread that ends the process
    ``CHURN_CRASH_DELAY`` seconds later, whatever the event loop is doing: a race that a
    stack loses only once enough connections come and go, and that kills it a little
    after the connection that lost it."""
    counter = itertools.count(1)

    async def echo_until_doomed(connection: ServerConnection) -> None:
        count = next(counter)
        if count == CHURN_CRASH_AFTER:
            timer = threading.Timer(CHURN_CRASH_DELAY, _crash, (count,))
            timer.daemon = True
            timer.start()
        await handler(connection)

    return echo_until_doomed


def make_echo(config: Config, hooks: MessageHooks | None = None) -> Handler:
    """The echo handler for ``config``: faithful (through ``hooks`` when there are any),
    or with its message-type defects, or doomed by churn."""
    if config.defective("churn-crashes"):
        return crashing_under_churn(_make_echo(config, hooks))
    return _make_echo(config, hooks)


def _make_echo(config: Config, hooks: MessageHooks | None) -> Handler:
    if config.defective("echo-reorders"):
        return reordering_echo
    if not any(config.defective(name) for name in MESSAGE_DEFECTS):
        if hooks is not None and (hooks.inbound or hooks.outbound):
            return hooked_echo(hooks)
        return echo

    # DELIBERATELY DEFECTIVE (tests only): each branch breaks the echo contract one way.
    async def defective_echo(connection: ServerConnection) -> None:
        async for message in connection:
            is_text = isinstance(message, str)
            if is_text and config.defective("text-unsupported"):
                await connection.close(CloseCode.UNSUPPORTED_DATA, "text is not supported")
                return
            if not is_text and config.defective("binary-unsupported"):
                await connection.close(CloseCode.UNSUPPORTED_DATA, "binary is not supported")
                return
            if len(message) == 0 and config.defective("drop-empty"):
                continue
            if not is_text and config.defective("binary-as-text"):
                # text=True puts the bytes in a Text frame unchecked, invalid UTF-8 and all.
                await connection.send(message, text=True)
                continue
            await connection.send(message)

    return defective_echo
