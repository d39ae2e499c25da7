"""Waiting until something holds or a deadline passes: the one loop every wait of a check
(and of ``gaps.upstream``) is built on.

A deadline is a time on the running event loop's clock (``loop.time()``), or a function
that gives one when the deadline moves (an upstream's silence limit follows the target's
last dial).  Nothing here imports the check contract, so ``gaps.upstream`` can use it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

from gaps.wire.errors import ReceiveTimeout

if TYPE_CHECKING:
    from gaps.wire.client import WireClient
    from gaps.wire.frames import Frame

Deadline = float | Callable[[], float]
POLL = 0.05  # seconds between looks at a condition nothing signals


def now() -> float:
    """The running event loop's clock, the time base of every deadline."""
    return asyncio.get_running_loop().time()


def deadline_in(seconds: float) -> float:
    """The deadline ``seconds`` from now."""
    return now() + seconds


def left(deadline: Deadline) -> float:
    """Seconds until ``deadline`` (0 once it has passed)."""
    at = deadline() if callable(deadline) else deadline
    return max(0.0, at - now())


class Changes:
    """A signal that what a waiter looks at may have changed: the side that changes it calls
    ``notify``, and every ``wait_until`` given this signal looks again at once."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        # A new event per round: a waiter that looked before this call wakes, one that
        # looks after it waits for the next change.
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self, timeout: float) -> None:
        """Until the next ``notify`` or ``timeout`` seconds, whichever comes first."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), timeout)


async def wait_until(condition: Callable[[], object], deadline: Deadline,
                     changes: Changes | None = None, *, poll: float = POLL) -> bool:
    """Wait until ``condition()`` holds (True) or ``deadline`` passes (False).

    The condition is looked at first, so one that already holds returns at once, and once
    more at the deadline.  With ``changes`` it is looked at on every change; without, every
    ``poll`` seconds.  An exception the condition raises ends the wait (a harness error a
    reader recorded, for instance).
    """
    while True:
        if condition():
            return True
        remaining = left(deadline)
        if remaining <= 0:
            return False
        if changes is None:
            await asyncio.sleep(min(poll, remaining))
        else:
            await changes.wait(remaining)


async def frames_until(client: WireClient, deadline: Deadline) -> AsyncIterator[Frame]:
    """Every frame ``client`` receives until ``deadline``, control frames included.

    Ends quietly at the deadline; the TCP end raises ``ClosedError`` (from
    ``WireClient.recv``), so a caller tells "nothing came" from "the connection ended".
    """
    while (remaining := left(deadline)) > 0:
        try:
            frame = await client.recv(remaining)
        except ReceiveTimeout:
            return
        yield frame
