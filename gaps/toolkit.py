"""Shared helpers for checks: what more than one probe needs, in one place.

A probe module imports from here, from ``gaps.probe`` (the check contract) and from
``gaps.wire`` (clients, frames, errors); never from another probe.  See the probe section
of ``docs/design-notes.md`` for which helper is for what.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import resource
from collections.abc import AsyncIterator
from typing import Any

from gaps.evidence import HEX_PREFIX, show_bytes
from gaps.model import Verdict
from gaps.probe import Outcome, failed, passed
from gaps.wire.client import Message, WireClient
from gaps.wire.errors import ReceiveError
from gaps.wire.frames import Opcode, opcode_name

SHOWN = 80  # bytes of a target's payload quoted in a summary


def show(data: bytes, limit: int = SHOWN) -> str:
    """A bounded quote of bytes the target sent (untrusted): UTF-8 text as a quoted string,
    anything else as ``hex:`` and its hex digits (``gaps.evidence.show_bytes``)."""
    cut = len(data) > limit
    shown = show_bytes(data[:limit], cut=cut)
    text = shown if shown.startswith(HEX_PREFIX) else repr(shown)
    return text + ("..." if cut else "")


def quote(text: str | None, limit: int = 100) -> str:
    """A bounded quote of a header value or other text the target sent."""
    return "" if text is None else text[:limit]


async def receive(client: WireClient, wait: float, max_size: int) -> Message | str:
    """The next data message, or one line saying why there was none.

    The reason covers a wait that ran out, a Close frame, the TCP end and framing the
    server got wrong (fragments out of order, a message over ``max_size``).
    """
    try:
        return await client.recv_message(wait, max_size=max_size)
    except ReceiveError as exc:
        if isinstance(exc, TimeoutError):
            return f"no echo within {wait:.1f} s"
        return str(exc)


def judge_echo(what: str, opcode: Opcode, sent: bytes, got: Message | str,
               client: WireClient, **extra: Any) -> Outcome:
    """The echo judgement: pass when ``got`` is ``sent`` with the same opcode; otherwise fail
    saying what differed (nothing came, another opcode, other bytes)."""
    evidence = {"sent_opcode": opcode.name, "sent_length": len(sent), **extra,
                **client.evidence()}
    if isinstance(got, str):
        return failed(f"{what}: {got}", **evidence)
    got_name = opcode_name(got.opcode)
    evidence.update(echo_opcode=got_name, echo_length=len(got.data),
                    echo_frames=len(got.frames))
    if got.opcode != opcode:
        return failed(f"{what} came back as {got_name}, not {opcode.name}", **evidence)
    if got.data != sent:
        return failed(f"{what} came back altered ({len(got.data)} bytes: {show(got.data)})",
                      **evidence)
    return passed(f"{what} came back as {got_name}, identical", **evidence)


async def echo_once(client: WireClient, payload: bytes, wait: float, *,
                    opcode: Opcode = Opcode.TEXT, what: str = "", **extra: Any) -> Outcome:
    """Send ``payload`` once and judge its echo (one round trip on an open client)."""
    if opcode == Opcode.BINARY:
        await client.send_binary(payload)
    else:
        await client.send_text(payload)
    got = await receive(client, wait, 4 * len(payload) + 1024)
    label = what or f"a {len(payload)}-byte {opcode.name.lower()} message"
    return judge_echo(label, opcode, payload, got, client, wait=wait, **extra)


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


@contextlib.asynccontextmanager
async def heavy_load() -> AsyncIterator[float]:
    """Hold this harness's one load slot: checks that put hundreds of connections or
    thousands of messages through the harness's event loop (figures such as
    ``broadcast.scale``) take turns, so that one load's figures never carry another's
    (targets and gaps run at once).  Yields the seconds spent waiting for the slot."""
    loop = asyncio.get_running_loop()
    lock = _LOAD_LOCKS.setdefault(id(loop), asyncio.Lock())
    asked = loop.time()
    async with lock:
        yield loop.time() - asked


def worst(verdicts: list[Verdict]) -> Verdict:
    """error before fail before non-strict before pass: the verdict of sub-results."""
    for verdict in (Verdict.ERROR, Verdict.FAIL, Verdict.NON_STRICT):
        if verdict in verdicts:
            return verdict
    return Verdict.PASS


def combine(judged: list[tuple[Verdict, str]], **evidence: Any) -> Outcome:
    """One outcome from sub-results (verdict, line): the worst verdict, its lines first."""
    verdict = worst([v for v, _ in judged])
    lines = [line for v, line in judged if v is verdict] + [
        line for v, line in judged if v is not verdict]
    return Outcome(verdict, "; ".join(lines), evidence)
