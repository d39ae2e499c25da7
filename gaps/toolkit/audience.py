"""Audiences on fan-out endpoints (broadcast, room): clients read all the time, every copy
of the probe's messages matched to the one message it must equal.
"""

from __future__ import annotations

import asyncio
import re
import string
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

from gaps.probe import Outcome, ProbeContext, the_wire_decides
from gaps.toolkit.clients import connect_many
from gaps.toolkit.load import harness_stall
from gaps.toolkit.quoting import show
from gaps.toolkit.waiting import Changes, wait_until
from gaps.wire.client import Message, WireClient
from gaps.wire.errors import ReceiveError, ReceiveTimeout
from gaps.wire.frames import Opcode, opcode_name

# -- audiences on fan-out endpoints (broadcast, room) -------------------------------------
#
# Shared by the probes that put clients on ``broadcast`` or ``room`` (gap 2 and gap 6's
# fan-in).  Every message is ASCII Text ``wsgaps-<label> <nonce> <seq> <kind> from client
# <i> in <group> <pad>``, so each copy that arrives is matched to the one message it must
# equal; messages that are not the probe's are counted as foreign and otherwise ignored.

ROUND_INTERVAL = 1.0  # seconds between warm-up rounds
MAX_MESSAGE = 1024 * 1024  # bound on one message a listener reads (the probe's are ~120 bytes)
READ_SLICE = 3600.0  # a listener's read wait; it reads until the check stops it
PAD = 32  # seeded ASCII letters that make every message unique
NAMED = 5  # clients, senders or samples named in a summary


@dataclass(frozen=True)
class Sent:
    """One message the probe sent: who sent it to which group, and its exact bytes."""

    seq: int
    kind: str
    group: str
    sender: int
    payload: bytes
    at: float  # loop time just before it was written


@dataclass(eq=False)  # identity: listeners key dictionaries
class Listener:
    """One client of the audience and every copy of the probe's messages it received."""

    index: int
    group: str
    client: WireClient
    got: dict[int, list[float]] = field(default_factory=dict)  # seq -> arrival times, intact
    order: list[int] = field(default_factory=list)  # seqs of intact copies, as they arrived
    heard: set[int] = field(default_factory=set)  # senders of warm-up messages it received
    altered: list[str] = field(default_factory=list)
    altered_count: int = 0
    foreign: int = 0
    foreign_sample: list[str] = field(default_factory=list)
    ended: str | None = None
    harness_error: OSError | None = None
    task: asyncio.Task[None] | None = None

    @property
    def name(self) -> str:
        return f"client {self.index}"


class Audience:
    """Clients on fan-out endpoints, each read all the time by a task of its own.

    Its clients are the check's own (``ctx.connect``, so the runner judges them too); the
    audience closes them in ``stop``, which every check calls in a ``finally``.
    """

    def __init__(self, ctx: ProbeContext, includes_sender: bool | None,
                 label: str = "broadcast") -> None:
        self.ctx = ctx
        self.includes_sender = includes_sender
        self.label = label  # the probe's word in every payload: wsgaps-<label> <nonce> <seq>
        self._pattern = re.compile(rb"^wsgaps-" + re.escape(label.encode("ascii"))
                                   + rb" ([0-9a-f]{8}) (\d{6}) ")
        self.nonce = f"{ctx.rng.getrandbits(32):08x}"
        self.listeners: list[Listener] = []
        self.sent: dict[int, Sent] = {}
        self.clients: list[WireClient] = []
        self._changes = Changes()
        self._loop = asyncio.get_running_loop()

    def now(self) -> float:
        return self._loop.time()

    # -- joining and reading -----------------------------------------------------------

    async def join(self, endpoint: str, count: int, group: str, *, at_once: int = 1,
                   **fields: str) -> list[Listener]:
        """Connect ``count`` clients to ``endpoint`` (``at_once`` handshakes at a time).

        With ``at_once`` 1 they join in index order.  Raises the first wire error (or a
        harness-side OSError before any wire error) once every handshake has ended.
        """
        base = len(self.listeners)
        clients = await connect_many(self.ctx, endpoint, count, at_once=at_once, fields=fields,
                                     into=self.clients)
        joined = [Listener(base + i, group, client) for i, client in enumerate(clients)]
        for listener in joined:
            listener.task = asyncio.create_task(self._read(listener))
        self.listeners += joined
        return joined

    async def _read(self, listener: Listener) -> None:
        while True:
            try:
                message = await listener.client.recv_message(READ_SLICE, max_size=MAX_MESSAGE)
            except ReceiveTimeout:
                continue
            except ReceiveError as exc:
                listener.ended = str(exc)
                break
            except OSError as exc:  # harness side: out of buffer space, descriptors, memory
                listener.harness_error = exc
                break
            self._file(listener, message)
            self._changes.notify()
        self._changes.notify()

    def _file(self, listener: Listener, message: Message) -> None:
        at = self.now()
        match = self._pattern.match(message.data)
        sent = None
        if match is not None and match[1].decode() == self.nonce:
            sent = self.sent.get(int(match[2]))
        if sent is None:
            listener.foreign += 1
            if len(listener.foreign_sample) < 3:
                listener.foreign_sample.append(show(message.data))
            return
        if message.opcode != Opcode.TEXT or message.data != sent.payload:
            listener.altered_count += 1
            if len(listener.altered) < 3:
                listener.altered.append(
                    f"{sent.kind} message {sent.seq} arrived as {opcode_name(message.opcode)}, "
                    f"{len(message.data)} bytes: {show(message.data)}")
            return
        listener.got.setdefault(sent.seq, []).append(at)
        listener.order.append(sent.seq)
        if sent.kind == "warm-up":
            listener.heard.add(sent.sender)

    async def quiet(self) -> None:
        """Stop the listeners' reading tasks; the clients go on reading (and answering
        Pings) on their own, recording every frame."""
        tasks = [x.task for x in self.listeners if x.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for listener in self.listeners:
            listener.task = None

    async def stop(self) -> None:
        await self.quiet()
        for client in self.clients:
            await client.aclose()

    async def judge(self, body: Coroutine[Any, Any, Outcome]) -> Outcome:
        """Run a check's ``body`` on this audience, close it, and apply the harness's rules
        to what the body concluded.

        The runner's rule for the check's clients is applied here first, so that the stall
        rule below sees its verdict: a connection the target violated RFC 6455 on earns no
        pass (``gaps.probe.the_wire_decides``).  And a
        failure or missing figures after the target closed clients of ours while our own
        event loop had stalled for half a Pong deadline is the harness's problem (it may
        have answered Pings late): ``error``, never evidence about the target.
        """
        closed = 0
        try:
            outcome = await body
        finally:
            closed = sum(1 for c in self.clients if c.closed)  # by the target, before ours
            await self.stop()
        outcome = the_wire_decides(outcome, [c.violation for c in self.clients
                                             if c.violation is not None])
        # The margin the stall rule works with, in every result (measured under load).
        outcome.evidence = {**outcome.evidence,
                            "harness_lag_s": round(self.ctx.harness_lag(), 3)}
        return harness_stall(self.ctx, outcome, closed)

    # -- sending and waiting -----------------------------------------------------------

    async def send(self, sender: Listener, kind: str) -> Sent:
        seq = len(self.sent) + 1
        pad = "".join(self.ctx.rng.choices(string.ascii_letters, k=PAD))
        payload = (f"wsgaps-{self.label} {self.nonce} {seq:06d} {kind} from {sender.name} "
                   f"in {sender.group} {pad}").encode("ascii")
        sent = Sent(seq, kind, sender.group, sender.index, payload, self.now())
        self.sent[seq] = sent  # filed before it is written: a copy may arrive at once
        await sender.client.send_text(payload)
        return sent

    async def wait_for(self, condition: Callable[[], bool], deadline: float) -> bool:
        """Wait until ``condition()`` holds (True) or the loop time ``deadline`` (False); a
        harness error a listener met ends the wait (raised: the check is ``error``)."""

        def holds() -> bool:
            for listener in self.listeners:
                if listener.harness_error is not None:
                    raise listener.harness_error
            return condition()

        return await wait_until(holds, deadline, self._changes)

    # -- who should get what -----------------------------------------------------------

    def members(self, group: str) -> list[Listener]:
        return [x for x in self.listeners if x.group == group]

    def must_receive(self, receiver: Listener, sender: int) -> bool:
        """Whether ``receiver`` must get what ``sender`` sends to its group."""
        return receiver.index != sender or self.includes_sender is True

    def required(self, sent: Sent) -> list[Listener]:
        return [x for x in self.members(sent.group) if self.must_receive(x, sent.sender)]

    def reached(self, sent: Sent, among: Sequence[Listener] | None = None) -> bool:
        return all(sent.seq in x.got for x in (self.required(sent) if among is None else among))

    def unheard(self, senders: dict[str, list[Listener]]) -> dict[Listener, list[int]]:
        """Per receiver, the senders of its group it must hear and has not (warm-up)."""
        missing: dict[Listener, list[int]] = {}
        for group, group_senders in senders.items():
            for receiver in self.members(group):
                gaps = [s.index for s in group_senders
                        if self.must_receive(receiver, s.index) and s.index not in receiver.heard]
                if gaps:
                    missing[receiver] = gaps
        return missing

    async def warm_up(self, senders: dict[str, list[Listener]], wait: float) -> WarmUp:
        """Rounds of one message per sender until every receiver has heard every sender it
        should (``senders`` by group), bounded by ``wait``."""
        started = self.now()
        deadline = started + wait
        interval = self.ctx.scaled(ROUND_INTERVAL)
        rounds = 0
        done = False
        while not done and self.now() < deadline:
            rounds += 1
            for group_senders in senders.values():
                for sender in group_senders:
                    await self.send(sender, "warm-up")
            done = await self.wait_for(lambda: not self.unheard(senders),
                                       min(deadline, self.now() + interval))
        return WarmUp(done, rounds, self.now() - started, wait, self.unheard(senders))

    # -- what crossed where --------------------------------------------------------------

    def own_copies(self) -> list[Sent]:
        """Messages whose sender received its own copy."""
        return [s for s in self.sent.values()
                if s.seq in self.listeners[s.sender].got]

    def leaks(self) -> list[tuple[Listener, Sent]]:
        """Copies that reached a client outside the sender's group."""
        return [(x, self.sent[seq]) for x in self.listeners for seq in x.got
                if self.sent[seq].group != x.group]

    def evidence(self) -> dict[str, Any]:
        facts: dict[str, Any] = {
            "nonce": self.nonce, "messages_sent": len(self.sent),
            "includes_sender": self.includes_sender,
        }
        foreign = sum(x.foreign for x in self.listeners)
        if foreign:
            facts["foreign_messages"] = foreign
            facts["foreign_sample"] = next(x.foreign_sample for x in self.listeners if x.foreign)
        altered = sum(x.altered_count for x in self.listeners)
        if altered:
            facts["altered_copies"] = altered
            facts["altered_sample"] = next(x.altered for x in self.listeners if x.altered)
        ended = [f"{x.name}: {x.ended}" for x in self.listeners if x.ended]
        if ended:
            facts["connections_ended"] = len(ended)
            facts["ended_sample"] = ended[:NAMED]
        return facts


@dataclass(frozen=True)
class WarmUp:
    done: bool
    rounds: int
    seconds: float
    wait: float
    unheard: dict[Listener, list[int]]

    def facts(self) -> dict[str, Any]:
        return {"warmup_rounds": self.rounds, "warmup_s": round(self.seconds, 3),
                "warmup_wait": self.wait, "warmup_complete": self.done}

    def describe(self) -> str:
        """Which clients never heard from which senders, bounded."""
        parts = []
        for receiver, senders in list(self.unheard.items())[:NAMED]:
            if not receiver.heard:
                parts.append(f"{receiver.name} received no warm-up message at all")
            elif senders == [receiver.index]:
                parts.append(f"{receiver.name} never received its own messages (the manifest "
                             "says includes_sender = true)")
            else:
                parts.append(f"{receiver.name} never heard from {names(senders)}")
        more = len(self.unheard) - NAMED
        return "; ".join(parts) + (f"; and {more} more client(s)" if more > 0 else "")


def names(indexes: Sequence[int]) -> str:
    shown = ", ".join(f"client {i}" for i in indexes[:NAMED])
    return shown + (f" and {len(indexes) - NAMED} more" if len(indexes) > NAMED else "")



def missing_evidence(missing: Sequence[Listener]) -> dict[str, Any]:
    if not missing:
        return {}
    return {"missing": [x.name for x in missing[:50]],
            "missing_client_frames": missing[0].client.evidence(limit=10)}


def endpoint_rule(ctx: ProbeContext, endpoint: str) -> bool | None:
    spec = ctx.manifest.endpoints.get(endpoint)
    return None if spec is None else spec.includes_sender
