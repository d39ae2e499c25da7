"""Echo round trips and their judgement, and one verdict from several sub-results."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gaps.model import ErrorReason, Verdict
from gaps.probe import Outcome, failed, passed
from gaps.toolkit.quoting import show
from gaps.wire.client import Message, WireClient
from gaps.wire.errors import ReceiveError
from gaps.wire.frames import Opcode, opcode_name


@dataclass(frozen=True)
class NoMessage:
    """Why no data message came, as a value: the wait ran out (``timed_out``), or a Close
    frame, the TCP end or framing the server got wrong ended it (``why``).  Code branches on
    ``timed_out``; ``str()`` is the line for a summary."""

    why: str
    wait: float
    timed_out: bool = False

    def said(self, noun: str = "echo") -> str:
        """``no <noun> within <wait> s`` for a wait that ran out, else why."""
        return f"no {noun} within {self.wait:.1f} s" if self.timed_out else self.why

    def __str__(self) -> str:
        return self.said()


async def receive(client: WireClient, wait: float, max_size: int) -> Message | NoMessage:
    """The next data message, or a ``NoMessage`` saying why there was none.

    The reason covers a wait that ran out, a Close frame, the TCP end and framing the
    server got wrong (fragments out of order, a message over ``max_size``).
    """
    try:
        return await client.recv_message(wait, max_size=max_size)
    except ReceiveError as exc:
        return NoMessage(str(exc), wait, timed_out=isinstance(exc, TimeoutError))


def judge_echo(what: str, opcode: Opcode, sent: bytes, got: Message | NoMessage,
               client: WireClient, **extra: Any) -> Outcome:
    """The echo judgement: pass when ``got`` is ``sent`` with the same opcode; otherwise fail
    saying what differed (nothing came, another opcode, other bytes)."""
    evidence = {"sent_opcode": opcode.name, "sent_length": len(sent), **extra,
                **client.evidence()}
    if isinstance(got, NoMessage):
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


def worst(verdicts: list[Verdict]) -> Verdict:
    """error before fail before non-strict before pass: the verdict of sub-results."""
    for verdict in (Verdict.ERROR, Verdict.FAIL, Verdict.NON_STRICT):
        if verdict in verdicts:
            return verdict
    return Verdict.PASS


def combine(judged: list[tuple[Verdict, str]], **evidence: Any) -> Outcome:
    """One outcome from sub-results (verdict, line): the worst verdict, its lines first (an
    ``error`` among them: the check cannot judge)."""
    verdict = worst([v for v, _ in judged])
    lines = [line for v, line in judged if v is verdict] + [
        line for v, line in judged if v is not verdict]
    reason = ErrorReason.CANNOT_JUDGE if verdict is Verdict.ERROR else None
    return Outcome(verdict, "; ".join(lines), evidence, reason=reason)
