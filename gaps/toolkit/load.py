"""Load on the harness itself: its one load slot, its open files, a stalled event loop
(which must never count against a target), and percentiles of what a load measured."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import math
import os
import resource
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

from gaps.model import ErrorReason, Verdict
from gaps.probe import Outcome, ProbeContext, errored

# A stall of our own event loop this long (a share of the target's Pong deadline, 20 s when
# not hinted) may have made the target close clients that answered Pings late.
LAG_SHARE = 0.5
DEFAULT_PONG_DEADLINE = 20.0


def harness_stall(ctx: ProbeContext, outcome: Outcome, closed: int) -> Outcome:
    """``outcome``, unless it is a failure (or a skip for missing figures) after the target
    closed ``closed`` clients of ours while this event loop had stalled for half the
    target's Pong deadline (``LAG_SHARE``; 20 s when not hinted): our clients may have
    answered Pings late, so that is ``error`` ("harness too slow"), never evidence about the
    target.  A violation in the evidence keeps the verdict: the wire decided."""
    if outcome.verdict not in (Verdict.FAIL, Verdict.SKIP) or not closed \
            or "violation" in outcome.evidence:
        return outcome
    lag = ctx.harness_lag()
    if lag < LAG_SHARE * (ctx.hint("ping_timeout") or DEFAULT_PONG_DEADLINE):
        return outcome
    return errored(ErrorReason.HARNESS_TOO_SLOW, f"harness too slow: its event loop stalled "
                   f"{lag:.2f} s while {closed} of its clients were closed by the target",
                   **{**outcome.evidence, "harness_lag_s": round(lag, 3),
                      "summary_before": outcome.summary})


# Runs of a check body while each ends "harness too slow" (``again_if_harness_slow``).
HARNESS_SLOW_RUNS = 2


async def again_if_harness_slow(run: Callable[[], Awaitable[Outcome]],
                                runs: int = HARNESS_SLOW_RUNS) -> Outcome:
    """``run()``, and again (up to ``runs`` in all) while it ends as ``error`` for a stall
    of the harness's own event loop (``harness_stall``): a stall under load is the
    harness's bad moment, not the target's, and a check that holds one audience at a time
    (one shared endpoint) cannot overlap tries to ride it out.  The earlier runs' summaries
    are kept in the evidence (``harness_slow_runs``); any other verdict ends it at once."""
    slow: list[str] = []
    while True:
        outcome = await run()
        if outcome.reason is not ErrorReason.HARNESS_TOO_SLOW or len(slow) + 1 >= runs:
            break
        slow.append(outcome.summary)
    if slow:
        outcome.evidence = {**outcome.evidence, "harness_slow_runs": slow}
    return outcome


def open_files_for(needed: int) -> int:
    """Make room in this process for ``needed`` more open files; return the soft limit.

    Raises the soft open-file limit towards the hard one first.  When the room is still not
    there, raises ``OSError(EMFILE)``: running out of descriptors is the harness's problem,
    so the check ends as ``error`` (harness side), never as evidence about the target.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    in_use = _open_files()
    if in_use + needed > soft and (hard == resource.RLIM_INFINITY or hard > soft):
        wanted = in_use + needed if hard == resource.RLIM_INFINITY else hard
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, wanted), hard))
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if in_use + needed > soft:
        raise OSError(errno.EMFILE, f"the harness needs {needed} more open files, but "
                                    f"{in_use} of its limit of {soft} are in use (hard limit "
                                    f"{'unlimited' if hard == resource.RLIM_INFINITY else hard})")
    return soft


def _open_files() -> int:
    """Descriptors open in this process now (0 where the platform does not say)."""
    for folder in ("/proc/self/fd", "/dev/fd"):
        with contextlib.suppress(OSError):
            return len(os.listdir(folder))
    return 0


_LOAD_LOCKS: dict[int, asyncio.Lock] = {}
SHARE_SPAN = 0.2  # seconds a load must last for its CPU share to be recorded


@contextlib.asynccontextmanager
async def heavy_load(ctx: ProbeContext | None = None) -> AsyncIterator[float]:
    """Hold this harness's one load slot: checks that put hundreds of connections or
    thousands of messages through the harness's event loop (figures such as
    ``broadcast.scale``, ``concurrency.parallel-echo``) take turns, so that one load's figures
    never carry another's (targets and gaps run at once).  Yields the seconds spent waiting
    for the slot; with ``ctx``, the running try's budget does not run meanwhile
    (``ProbeContext.off_budget``), since the queue is the harness's, not the target's, and
    the harness's CPU share while it held the slot is noted on it
    (``ProbeContext.note_harness_cpu``): a load's figures taken while the harness itself
    was near its own ceiling say nothing about the target.  An ``ALONE`` check whose try is
    one such load registers with ``check(load=True)``: its instance then starts only when
    its turn is near (``gaps.plan.LOADS_ADMITTED``), not to wait here holding a live slot."""
    loop = asyncio.get_running_loop()
    lock = _LOAD_LOCKS.setdefault(id(loop), asyncio.Lock())
    asked = loop.time()
    async with ctx.off_budget() if ctx is not None else contextlib.nullcontext():
        await lock.acquire()
    began, busy = loop.time(), loop_busy()
    try:
        yield began - asked
    finally:
        lock.release()
        if ctx is not None:
            ctx.note_harness_cpu(cpu_share(busy, began, loop.time()))


def loop_busy() -> float:
    """Seconds this process's main thread (the event loop's) has been runnable: on a CPU
    (``sum_exec_runtime``) or waiting for one (``run_delay``), from ``/proc/self/schedstat``
    (Linux); elsewhere the process's CPU time.  Waiting for a core counts: on a machine
    shared with other work the loop is at its ceiling when it is never idle, whether or
    not it got a core all that time."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        with open("/proc/self/schedstat", encoding="ascii") as stat:
            ran, waited = stat.read().split()[:2]
        return (int(ran) + int(waited)) / 1e9
    return time.process_time()


def cpu_share(busy_before: float, began: float, ended: float) -> float | None:
    """The share of the wall seconds from ``began`` to ``ended`` in which the harness's
    event loop was runnable (``loop_busy`` since ``busy_before``), at most 1; None for a
    span too short to say anything (under ``SHARE_SPAN``)."""
    span = ended - began
    if span < SHARE_SPAN:
        return None
    return min(1.0, (loop_busy() - busy_before) / span)


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank ``q`` percentile (0 < q <= 1) of a non-empty sequence."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]
