"""How a connection ended, against the Close codes a check expects.

``expect_close`` reads what a connection does next and returns an ``Ending``: a Close frame
(with its code and reason), the TCP end without a Close, a data frame that came instead
(when data decides), or nothing at all ("still open").  The check decides what each means:
a violation expects 1002 and treats the TCP end as a failed connection (non-strict), a
graceful shutdown expects 1001 or 1012, a connection cap 1013, a size limit 1009.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Collection
from dataclasses import dataclass, field

from gaps.toolkit.quoting import show
from gaps.toolkit.waiting import deadline_in, frames_until, left
from gaps.wire.client import WireClient
from gaps.wire.errors import ClosedError, SendTimeout
from gaps.wire.frames import Close, CloseCode, Frame, Opcode


def since_open(client: WireClient) -> float:
    """Now, in the client's own time (seconds since its connection opened): the time base of
    ``close_at``, ``eof_at``, ``pings`` and the frame records."""
    return asyncio.get_running_loop().time() - client.opened_at


CLOSE, TCP, DATA, OPEN = "close", "tcp", "data", "open"


@dataclass
class Ending:
    """What a connection did within a wait: the first decisive event, and when.

    ``how`` is ``close`` (a Close frame: ``close`` holds its code and reason), ``tcp`` (the
    TCP connection ended with no Close frame), ``data`` (a data frame came first: ``frame``;
    only when ``expect_close`` was told data decides) or ``open`` (nothing within the wait).
    """

    how: str
    after: float  # seconds from the check's reference time to the event (the wait: open)
    expected: tuple[int, ...] = ()
    close: Close | None = None
    frame: Frame | None = None
    tcp_ended: bool = False  # the TCP connection had ended when expect_close returned
    tcp_after: float | None = None  # seconds from the reference time to the TCP end
    notes: list[str] = field(default_factory=list)

    @property
    def as_expected(self) -> bool:
        """A Close frame whose code is one of the expected codes."""
        return self.how == CLOSE and self.close is not None and self.close.code in self.expected

    def __str__(self) -> str:
        if self.how == CLOSE:
            assert self.close is not None
            got = ("a Close without a code" if self.close.code is None
                   else f"Close {self.close.code}")
            reason = f" {show(self.close.reason, 60)}" if self.close.reason else ""
            return f"{got}{reason} after {self.after:.2f} s"
        if self.how == TCP:
            return f"TCP ended without a Close after {self.after:.2f} s"
        if self.how == DATA:
            assert self.frame is not None
            return (f"a {self.frame.name} frame instead after {self.after:.2f} s "
                    f"({show(self.frame.payload, 40)})")
        return f"still open after {self.after:.2f} s"

    def evidence(self) -> dict[str, object]:
        facts: dict[str, object] = {"ending": self.how, "after_s": round(self.after, 3),
                                    "tcp_ended": self.tcp_ended}
        if self.close is not None:
            facts["close_code"] = self.close.code
        if self.expected:
            facts["expected_codes"] = list(self.expected)
        return facts


async def expect_close(client: WireClient, codes: Collection[int], wait: float, *,
                       since: float | None = None, data_decides: bool = False,
                       until_tcp_end: bool = False) -> Ending:
    """Read ``client`` for up to ``wait`` seconds: the first Close frame or TCP end decides.

    ``codes`` are the Close codes the check expects (``Ending.as_expected``).  Pongs are
    noted and passed over, like the target's own Pings (answered by ``auto_pong``); a data
    frame is passed over too, unless ``data_decides`` (a connection that carried on after a
    violation).  With ``until_tcp_end`` a Close frame is answered (unless the client sent
    its own already) and the rest of the wait is given to the TCP end (``tcp_ended``):
    whatever a server does while it cleans a connection up happens by then.  ``since`` is
    the reference time of ``after``, in the client's time (``since_open``); now by default.
    """
    start = since_open(client) if since is None else since
    deadline = deadline_in(wait)
    expected = tuple(int(c) for c in codes)
    notes: list[str] = []
    ending: Ending | None = None
    try:
        async for frame in frames_until(client, deadline):
            if frame.opcode == Opcode.CLOSE:
                ending = Ending(CLOSE, _after(client, start, client.close_at), expected,
                                close=Close.parse(frame.payload), notes=notes)
                break
            if frame.opcode == Opcode.PONG:
                notes.append(f"a Pong ({len(frame.payload)} bytes) came first")
            elif not frame.is_control and data_decides:
                ending = Ending(DATA, _after(client, start, None), expected, frame=frame,
                                notes=notes)
                break
    except ClosedError:
        ending = Ending(TCP, _after(client, start, client.eof_at), expected, notes=notes)
    if ending is None:
        return Ending(OPEN, wait, expected, notes=notes)
    if until_tcp_end and ending.how == CLOSE and not client.closed:
        if not client.close_sent:
            # Answer the Close as a client does, so that the server's TCP end comes at once.
            with contextlib.suppress(ClosedError, SendTimeout):
                await client.close(CloseCode.NORMAL_CLOSURE)
        await client.wait_closed(left(deadline))
    ending.tcp_ended = client.closed
    if client.closed and client.eof_at is not None:
        ending.tcp_after = max(0.0, client.eof_at - start)
    return ending


def _after(client: WireClient, start: float, at: float | None) -> float:
    """Seconds from ``start`` to ``at`` (both in the client's time; now if None)."""
    return max(0.0, (at if at is not None else since_open(client)) - start)
