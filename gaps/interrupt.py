"""Ctrl-C and SIGTERM while an event loop runs: one orderly cancel, never a stray exception.

A Python signal handler that raises (``KeyboardInterrupt``, or the default SIGINT handler)
runs between any two bytecodes of the main thread, so in an asyncio program it can land
inside the event loop's own bookkeeping: between a future being cancelled and its waiter
being scheduled, for one.  A task then waits forever on a future that is already done, and
``asyncio.run`` waits forever for that task while it cancels the rest (issue 24: one
interrupted ``wsgaps run --target all`` in three hung until the CLI killed its child after
30 s).  ``interruptible`` instead has the loop deliver the signal (``add_signal_handler``:
the C handler only writes to the loop's wake-up pipe) and cancels the work once; further
signals while it unwinds are ignored, since the unwinding is bounded (targets get
``INTERRUPT_GRACE`` to stop, see ``gaps.targets.interrupting``).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

SIGNALS = (signal.SIGINT, signal.SIGTERM)

T = TypeVar("T")


class Interrupted(Exception):
    """The work was cancelled by a signal; ``signal_name`` says which (``SIGINT``, ...)."""

    def __init__(self, signal_name: str) -> None:
        super().__init__(f"interrupted ({signal_name})")
        self.signal_name = signal_name


async def interruptible(work: Coroutine[Any, Any, T],
                        on_signal: Callable[[str], None] = lambda name: None) -> T:
    """Run ``work``; the first SIGINT or SIGTERM cancels it and ``Interrupted`` is raised
    once it has unwound.  ``on_signal(name)`` runs first, in the loop (not in a signal
    handler).  Later signals are ignored until ``work`` is done.  The previous handlers
    are back when this returns.  Outside the main thread signals cannot be caught, and
    ``work`` simply runs."""
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(work)
    received: list[str] = []

    def deliver(sig: signal.Signals) -> None:
        if received:
            return  # already unwinding, and that is bounded: the second Ctrl-C waits for it
        received.append(sig.name)
        on_signal(sig.name)
        task.cancel()

    with _loop_handlers(loop, deliver):
        try:
            return await task
        except asyncio.CancelledError:
            if not received:
                raise
        raise Interrupted(received[0])


@contextlib.contextmanager
def _loop_handlers(loop: asyncio.AbstractEventLoop,
                   deliver: Callable[[signal.Signals], None]) -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in SIGNALS}
    installed = []
    try:
        for sig in SIGNALS:
            loop.add_signal_handler(sig, deliver, sig)
            installed.append(sig)
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
            # remove_signal_handler leaves SIG_DFL (SIGTERM would then kill outright):
            # the handlers from before come back instead.
            if previous[sig] is not None:
                signal.signal(sig, previous[sig])


@contextlib.contextmanager
def deferred(received: list[str]) -> Iterator[None]:
    """SIGINT and SIGTERM are noted in ``received`` instead of raising while the block runs
    (writing results after the work was done or interrupted: short, and better whole)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def note(signum: int, frame: object) -> None:
        received.append(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, note) for sig in SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
