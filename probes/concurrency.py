"""Gap 6, concurrency: does the stack keep many clients' traffic intact and in order at once,
and does it say how its connections may be used concurrently?

Every payload is ASCII Text carrying the run's nonce, the client and a sequence number
(``wsgaps-concurrency <nonce> c<client> m<message> <pad>`` for echoes, the broadcast
audience's ``wsgaps-concurrency <nonce> <seq> <kind> from client <i> ...`` for fan-in), so that
a stack's binary defect (gap 3) is not counted again here and every message that comes back
is matched to the one message it must equal, byte for byte and as Text.  Every client
answers Pings (``auto_pong``).

Checks and verdicts:

- ``parallel-echo`` [capability]: ``CLIENTS`` (50) clients connect to ``echo``
  (``CONNECT_AT_ONCE`` handshakes at a time), then all of them at once send ``MESSAGES``
  (200) messages each, pipelined: each client keeps ``WINDOW`` (10) messages in flight and
  sends the next as each echo arrives, so that a stack that reorders queued messages can be
  caught (with one message in flight nothing can overtake anything).  Pass: every client
  gets every echo back as Text, identical, in the order sent, within ``EXCHANGE_WAIT``.
  Fail, naming the first client and message: an echo out of order, twice, altered, as
  Binary, another client's message (crosstalk), or missing (the wait ran out, the
  connection closed); and a connection refused while the 50 connect.  Figures, in the
  per-target report and the matrix: messages per second (echoes over the time from the
  first send to the last echo) and p50/p99/max round trip, timed at the clients' frame
  records (the time the harness wrote a message and read its echo off the socket), not
  after the harness's own task switches.  The whole exchange holds the harness's one load
  slot (``gaps.toolkit.heavy_load``) so that two targets' loads never time each other; the
  figures still include one Python event loop driving 50 clients, so they compare targets
  measured on one machine in one run, not absolute speeds.  A URL target is probed
  gently (``GENTLE_CLIENTS`` x ``GENTLE_MESSAGES``, 2 x 10), and the summary says so; a
  ``max_connections`` hint below 50 lowers the clients to the cap, also said, but never
  below ``MIN_CLIENTS`` (10, DESIGN.md): a cap below it makes the check ``skip`` with the
  reason, never a pass on a handful of clients.
- ``fan-in`` [capability]: one receiver and ``SENDERS`` (10) senders join ``broadcast``
  (or, without one, one room of ``room``).  Warm-up, one message at a time: each sender the
  receiver has not heard yet sends one message and waits until the receiver has it
  (``ROUND_INTERVAL`` at most), in rounds until the receiver has heard every sender
  (``WARMUP_WAIT``), so that joining late and concurrency are never confused.  Then all
  senders at once send ``FAN_IN_MESSAGES`` (100) messages each, interleaved on the wire,
  and one barrier each after them.  Once the receiver has every sender's barrier (a stack
  that keeps per-sender order has delivered everything before it), the check judges, after
  ``GRACE`` more for anything still missing (it decides only the wording: lost or late).
  Pass: the receiver got each sender's messages intact, once each, in the order sent.  Fail,
  naming sender and message: one lost, late (after a later one of its sender), twice, or
  altered.  A target with neither endpoint, or whose endpoint does not carry one client's
  message to another even one at a time (warm-up incomplete) or refuses a client, is
  ``skip`` with that reason: fan-out is gap 2's finding (``broadcast.fan-out``,
  ``broadcast.rooms``), and gap 6 does not count it again; no ``absent`` rule either.  Holds
  the load slot too.
- ``churn`` [capability], on an instance of its own (``placement=ALONE``): ``AT_ONCE`` (20)
  short connections to ``echo`` in flight at all times, each one handshake, one echo of
  ASCII text with the run's nonce and a sequence number (``wsgaps-churn <nonce> n<seq>
  <pad>``, ``CHURN_PAD`` 1 KiB of seeded letters), then its TCP connection dropped without
  a Close (the way a closed tab or a lost network leaves), and the next one opened in its
  place at once, for ``CHURN_TIME`` (8 s) or ``CHURN_MAX`` (20,000) connections, inside the
  load slot.  A steady twenty, not waves of twenty: a wave waits for its slowest
  connection, and the target idles meanwhile (GoFr's race needs its threads busy, design
  notes); twenty pending handshakes stay below every listen backlog of the built-in stacks
  (asyncio 100, Go's somaxconn, Node 511).  A lost handshake (refused,
  reset, unanswered within ``CHURN_HANDSHAKE_WAIT``) is tried once more after
  ``CHURN_RETRY_PAUSE``, and counts as a failure only when the retry is lost too; an echo
  missing within ``CHURN_ECHO_WAIT``, altered or cut off is a failure.  Then, out of the load
  slot, the process must still be up ``SETTLE_WAIT`` (8 s) later (a process whose crash
  report has begun gets ``DYING_WAIT`` more to end), and one more connection must echo.
  Pass: every handshake and echo answered and the process up.  Fail: the process ended
  (whatever else passed; the exit status and the first lines of its crash report are the
  evidence), a handshake lost twice, an echo failed (the first few named, counts by kind),
  or an RFC 6455 violation on a churn connection.  Churn stops early once the process has
  ended or ``STOP_AFTER`` (50) exchanges failed.  Figures: handshakes per second,
  connections, exchanges, retried handshakes.  Out of descriptors or local ports is the
  harness's ``error``.  Why: GoFr 1.56.6 has a race on every WebSocket connection's set-up
  that ends its process (``fatal error: stack overflow``, targets/gofr/expected.toml); fifty
  connections rarely lose it, thousands usually do, and only churn tells a user so.  A URL
  target gets ``GENTLE_CHURN`` (10) connections, ``GENTLE_AT_ONCE`` (2) at a time, no settle.
- ``documented`` [capability, declared]: whether the stack documents its concurrency rules
  (one reader and one writer per connection, thread safety of send), from the manifest's
  ``declared."concurrency.documented"`` fact with its source; nothing declared is ``skip``.
  There is no wire observation (``declared(...)``, no function).

Waits (scaled by ``--gaps-time-scale``; no hint shortens them, and each ends as soon as what
it waits for has arrived):

- ``CONNECT_ALL_WAIT`` = 30 s to connect the 50 clients (each handshake has the context's
  10 s), ``EXCHANGE_WAIT`` = 60 s for all 10,000 echoes.
- ``CHURN_HANDSHAKE_WAIT`` = ``CHURN_ECHO_WAIT`` = 5 s per churn connection,
  ``SETTLE_WAIT`` = 8 s after the churn (ends early when the process ends).
- ``WARMUP_WAIT`` = 20 s for the fan-in warm-up, ``FAN_IN_WAIT`` = 30 s for the 1,010
  messages to reach the receiver, ``GRACE`` = 1 s for stragglers once the barriers are in.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import string
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from gaps.probe import ALONE, Outcome, ProbeContext, check, declared, failed, passed, skipped
from gaps.toolkit import (
    NAMED,
    ROUND_INTERVAL,
    Audience,
    Listener,
    NoMessage,
    Sent,
    connect_many,
    endpoint_rule,
    harness_stall,
    heavy_load,
    missing_evidence,
    names,
    open_files_for,
    percentile,
    receive,
    show,
)
from gaps.wire.client import Message, WireClient
from gaps.wire.errors import HandshakeFailed, HandshakeRefused, WireError
from gaps.wire.frames import Opcode, opcode_name

CLIENTS = 50
MIN_CLIENTS = 10  # a declared cap lowers the clients this far and no further
MESSAGES = 200
WINDOW = 10  # messages each client keeps in flight
GENTLE_CLIENTS, GENTLE_MESSAGES = 2, 10  # a URL target: a server the harness does not run
CONNECT_AT_ONCE = 25
FILE_MARGIN = 64  # descriptors kept free beyond the clients
PAD = 24  # seeded ASCII letters that make every echo payload unique (about 64 bytes each)
SENDERS = 10
FAN_IN_MESSAGES = 100
CONNECT_ALL_WAIT = 30.0
EXCHANGE_WAIT = 60.0
WARMUP_WAIT = 20.0
FAN_IN_WAIT = 30.0
GRACE = 1.0
# concurrency.churn
CHURN_TIME = 8.0  # seconds of churn at most: a load bound, never scaled
CHURN_MAX = 20_000  # connections at most
CHURN_PAD = 1024  # bytes of ASCII letters after each payload's head (see design notes)
AT_ONCE = 20  # connections in flight at once, each replaced as it ends (below any backlog)
GENTLE_CHURN, GENTLE_AT_ONCE = 10, 2  # a URL target
STOP_AFTER = 50  # failed exchanges after which the target has said enough
CHURN_HANDSHAKE_WAIT = 5.0
CHURN_ECHO_WAIT = 5.0
CHURN_RETRY_PAUSE = 0.1  # before a lost handshake's one retry
SETTLE_WAIT = 8.0  # after the churn: the process must still be up at its end
DYING_WAIT = 10.0  # more, for a process whose crash report has begun, to end
SETTLE_POLL = 0.05

FAN_IN_GROUP = "the fan-in audience"
ECHO_PATTERN = re.compile(rb"^wsgaps-concurrency ([0-9a-f]{8}) c(\d+) m(\d+) ")


# -- concurrency.parallel-echo -------------------------------------------------------------

@dataclass(eq=False)
class Flow:
    """One client's pipelined exchange: what it sent, how far its echoes got, what went wrong."""

    index: int
    client: WireClient
    payloads: list[bytes]
    echoed: int = 0  # echoes received intact and in order
    problem: str | None = None
    problem_at: float = 0.0  # loop time of the problem, to name the first one

    @property
    def name(self) -> str:
        return f"client {self.index}"


def _payload(nonce: str, client: int, message: int, pad: str) -> bytes:
    # The identifying head stays within a frame record's 48-byte preview (round trips).
    return f"wsgaps-concurrency {nonce} c{client:03d} m{message:04d} {pad}".encode("ascii")


def _what_came(flow: Flow, flows: Sequence[Flow], nonce: str, message: Message) -> str:
    """Why ``message`` is not the echo ``flow`` waited for, in one line."""
    due = flow.echoed + 1
    if message.opcode != Opcode.TEXT:
        return (f"{flow.name}: echo {due} came back as {opcode_name(message.opcode)}, "
                "not TEXT")
    match = ECHO_PATTERN.match(message.data)
    if match is not None and match[1].decode() == nonce:
        owner, number = int(match[2]), int(match[3])
        intact = (0 <= owner < len(flows) and 1 <= number <= len(flows[owner].payloads)
                  and flows[owner].payloads[number - 1] == message.data)
        if intact and owner != flow.index:
            return (f"{flow.name} received client {owner}'s message {number} while its own "
                    f"echo {due} was due (crosstalk between connections)")
        if intact and number > due:
            return (f"{flow.name}: message {number} came back while message {due} was due "
                    "(out of order)")
        if intact:
            return f"{flow.name}: message {number} came back a second time"
    return (f"{flow.name}: echo {due} came back altered ({len(message.data)} bytes: "
            f"{show(message.data)})")


async def _run_flow(flow: Flow, flows: Sequence[Flow], nonce: str, deadline: float,
                    wait: float) -> None:
    """Pipeline ``flow``'s messages with ``WINDOW`` in flight and judge each echo in turn;
    the first problem ends the flow."""
    loop = asyncio.get_running_loop()
    client, total = flow.client, len(flow.payloads)
    bound = 4 * max(len(p) for p in flow.payloads) + 1024
    sent = 0
    try:
        while flow.echoed < total:
            while sent < min(total, flow.echoed + WINDOW):
                await client.send_text(flow.payloads[sent])
                sent += 1
            got = await receive(client, max(0.0, deadline - loop.time()), bound)
            if isinstance(got, NoMessage):
                why = f"the {wait:.1f} s wait ran out" if got.timed_out else got.why
                flow.problem = (f"{flow.name} had {flow.echoed} of {total} echoes when {why}")
                break
            if got.opcode == Opcode.TEXT and got.data == flow.payloads[flow.echoed]:
                flow.echoed += 1
                continue
            flow.problem = _what_came(flow, flows, nonce, got)
            break
    except WireError as exc:  # a send on a closed connection, or one the target never read
        flow.problem = f"{flow.name} could not send after {flow.echoed} echoes: {exc}"
    if flow.problem is not None:
        flow.problem_at = loop.time()


def _round_trips(flows: Sequence[Flow]) -> tuple[list[float], float, float]:
    """Round trips (seconds) from the clients' frame records: when each message was written
    and when its echo was read off the socket, matched by the payload's head; and the loop
    times of the first write and the last echo."""
    trips: list[float] = []
    first, last = float("inf"), 0.0
    for flow in flows:
        out: dict[str, float] = {}
        base = flow.client.opened_at
        for record in flow.client.records:
            if record.opcode != "TEXT":
                continue
            at = base + record.t
            if record.direction == "out":
                out.setdefault(record.preview, at)
                first = min(first, at)
            elif record.preview in out:
                trips.append(at - out.pop(record.preview))
                last = max(last, at)
    return trips, first, last


@check("concurrency.parallel-echo", budget=CONNECT_ALL_WAIT + EXCHANGE_WAIT + 30)
async def parallel_echo(ctx: ProbeContext) -> Outcome:
    clients, messages, scope = CLIENTS, MESSAGES, ""
    if not ctx.manifest.managed:
        clients, messages = GENTLE_CLIENTS, GENTLE_MESSAGES
        scope = (f"a URL target is probed gently: {clients} clients x {messages} messages "
                 f"instead of {CLIENTS} x {MESSAGES}; ")
        outcome = await _parallel(ctx, clients, messages)
        outcome.evidence["gentle"] = True
    else:
        cap = ctx.hint("max_connections")
        if cap is not None and cap < MIN_CLIENTS:
            return skipped(f"the target declares max_connections = {cap:g}, below the "
                           f"{MIN_CLIENTS} clients this check runs at the least: a hint "
                           f"never lowers the bar, so parallel echo is not judged here",
                           declared_max_connections=cap, floor=MIN_CLIENTS)
        if cap is not None and cap < clients:
            clients = max(1, int(cap))
            scope = f"the target declares max_connections = {cap:g}: {clients} clients; "
        # One load at a time in this harness: targets and gaps run at once, and another
        # load on the same event loop would be counted as this target's round trips.
        async with heavy_load(ctx) as queued:
            outcome = await _parallel(ctx, clients, messages)
        outcome.evidence["load_slot_wait_s"] = round(queued, 3)
    outcome.summary = scope + outcome.summary
    return outcome


async def _parallel(ctx: ProbeContext, count: int, messages: int) -> Outcome:
    file_limit = open_files_for(count + FILE_MARGIN) if ctx.manifest.managed else None
    connect_wait = ctx.plan_wait(CONNECT_ALL_WAIT, name="connect")
    wait = ctx.plan_wait(EXCHANGE_WAIT)
    loop = asyncio.get_running_loop()
    nonce = f"{ctx.rng.getrandbits(32):08x}"
    started = loop.time()
    try:
        async with asyncio.timeout(connect_wait):
            clients = await connect_many(ctx, "echo", count, at_once=CONNECT_AT_ONCE)
    except HandshakeFailed as exc:  # before TimeoutError: a HandshakeTimeout is both
        evidence = exc.response.evidence() if isinstance(exc, HandshakeRefused) else {}
        return failed(f"{count} clients on echo at once: a handshake failed: {exc}",
                      clients=count, **evidence)
    except TimeoutError:
        return failed(f"{count} clients on echo at once: not all connected within "
                      f"{connect_wait:.1f} s", clients=count)
    connect_s = loop.time() - started
    flows = [Flow(i, client, [_payload(nonce, i, k + 1, "".join(
        ctx.rng.choices(string.ascii_letters, k=PAD))) for k in range(messages)])
        for i, client in enumerate(clients)]
    began = loop.time()
    await asyncio.gather(*(_run_flow(f, flows, nonce, began + wait, wait) for f in flows))
    seconds = loop.time() - began
    closed = sum(1 for c in clients if c.closed)
    total = count * messages
    echoed = sum(f.echoed for f in flows)
    facts: dict[str, Any] = {"clients": count, "messages_per_client": messages,
                             "window": WINDOW, "echoes_in_order": echoed,
                             "connect_s": round(connect_s, 3), "nonce": nonce,
                             "harness_lag_s": round(ctx.harness_lag(), 3), "wait": wait}
    if file_limit is not None:
        facts["open_file_limit"] = file_limit
    broken = sorted((f for f in flows if f.problem is not None), key=lambda f: f.problem_at)
    if broken:
        first = broken[0]
        outcome = failed(
            f"{count} clients x {messages} messages at once on echo, {WINDOW} in flight "
            f"each: {first.problem}" + (f"; {len(broken)} of {count} clients had a problem"
                                        if len(broken) > 1 else "")
            + f"; {echoed} of {total} echoes had come back in order",
            **facts, problems=[f.problem for f in broken[:NAMED]],
            first_client_frames=first.client.evidence(limit=12))
        return harness_stall(ctx, outcome, closed)
    trips, first_write, last_echo = _round_trips(flows)
    span = last_echo - first_write if trips else seconds
    rate = total / span if span > 0 else 0.0
    figures: dict[str, Any] = {"messages_per_s": round(rate, 1)}
    if trips:
        p50, p99, top = (percentile(trips, q) * 1000 for q in (0.5, 0.99, 1.0))
        figures.update(p50_ms=round(p50, 2), p99_ms=round(p99, 2), max_ms=round(top, 2))
    timing = (f"round trip p50 {figures['p50_ms']:.1f} ms, p99 {figures['p99_ms']:.1f} ms"
              if trips else "no round trips in the frame records")
    return passed(
        f"{count} clients x {messages} messages at once on echo, {WINDOW} in flight each: "
        f"all {total} echoes intact and in order; {rate:.0f} messages/s, {timing}",
        **figures, seconds=round(span, 3), round_trips_timed=len(trips), **facts)


# -- concurrency.fan-in --------------------------------------------------------------------

@dataclass
class Verdicts:
    """What the receiver got from each sender, in one place for the summary."""

    lost: list[tuple[Listener, int]] = field(default_factory=list)  # (sender, message number)
    late: list[tuple[Listener, int, int]] = field(default_factory=list)  # (sender, m, after)
    twice: list[tuple[Listener, int]] = field(default_factory=list)

    def first(self) -> str:
        if self.late:
            sender, number, after = self.late[0]
            return (f"{sender.name}'s message {number} reached the receiver after its "
                    f"message {after} (per-sender order broken)")
        if self.lost:
            sender, number = self.lost[0]
            return f"{sender.name}'s message {number} never reached the receiver"
        sender, number = self.twice[0]
        return f"{sender.name}'s message {number} reached the receiver more than once"


def _judge_sender(receiver: Listener, sender: Listener, mine: list[Sent],
                  found: Verdicts) -> None:
    """Add ``sender``'s lost, late and repeated messages (numbered from 1) to ``found``."""
    number = {sent.seq: n for n, sent in enumerate(mine, 1)}
    arrived = [number[seq] for seq in receiver.order if seq in number]
    seen: set[int] = set()
    highest = 0
    for n in arrived:
        if n in seen:
            found.twice.append((sender, n))
            continue
        seen.add(n)
        if n < highest:
            found.late.append((sender, n, highest))
        highest = max(highest, n)
    found.lost += [(sender, n) for n in range(1, len(mine) + 1) if n not in seen]


def _switches(receiver: Listener, sent: dict[int, Sent], kinds: set[str]) -> int:
    """How often the receiver's stream changed from one sender to another (interleaving)."""
    senders = [sent[seq].sender for seq in receiver.order if sent[seq].kind in kinds]
    return sum(1 for a, b in itertools.pairwise(senders) if a != b)


@check("concurrency.fan-in", needs=(),
       budget=2 * CONNECT_ALL_WAIT + WARMUP_WAIT + FAN_IN_WAIT + 40)
async def fan_in(ctx: ProbeContext) -> Outcome:
    endpoint = next((e for e in ("broadcast", "room") if ctx.has(e)), None)
    if endpoint is None:
        return skipped("target has no broadcast or room endpoint; fan-in needs one, and a "
                       "stack without fan-out is gap 2's finding (broadcast.fan-out, "
                       "broadcast.rooms), not counted again here")
    audience = Audience(ctx, endpoint_rule(ctx, endpoint), label="concurrency")
    async with heavy_load(ctx) as queued:
        outcome = await audience.judge(_fan_in(ctx, audience, endpoint))
    outcome.evidence["load_slot_wait_s"] = round(queued, 3)
    return outcome


async def _warm_up(audience: Audience, receiver: Listener, senders: Sequence[Listener],
                   wait: float) -> tuple[bool, int, float]:
    """One message at a time until the receiver has heard every sender: (done, rounds,
    seconds).  Nothing here is concurrent, so a failure is the endpoint's, not gap 6's."""
    started = audience.now()
    deadline = started + wait
    interval = audience.ctx.scaled(ROUND_INTERVAL)
    rounds = 0
    while audience.now() < deadline:
        pending = [s for s in senders if s.index not in receiver.heard]
        if not pending:
            break
        rounds += 1
        for sender in pending:
            sent = await audience.send(sender, "warm-up")
            await audience.wait_for(lambda s=sent: s.seq in receiver.got,
                                    min(deadline, audience.now() + interval))
    done = all(s.index in receiver.heard for s in senders)
    return done, rounds, audience.now() - started


async def _fan_in(ctx: ProbeContext, audience: Audience, endpoint: str) -> Outcome:
    deliver = ctx.plan_wait(FAN_IN_WAIT)
    warm = ctx.plan_wait(WARMUP_WAIT, name="warm-up")
    fields = {"room": f"wsgaps-{audience.nonce}-fan-in"} if endpoint == "room" else {}
    where = f"the {endpoint} endpoint" + (f" (room {fields['room']})" if fields else "")
    try:
        (receiver,) = await audience.join(endpoint, 1, FAN_IN_GROUP, **fields)
        senders = await audience.join(endpoint, SENDERS, FAN_IN_GROUP, **fields)
    except HandshakeRefused as exc:
        return skipped(f"no fan-in measured: {where} refused a client "
                       f"({len(audience.clients)} had connected): {exc}; whether it takes "
                       "its clients is gap 2's finding", **exc.response.evidence(),
                       **audience.evidence())
    facts: dict[str, Any] = {"endpoint": endpoint, "receiver": receiver.name,
                             "senders": SENDERS, "messages_per_sender": FAN_IN_MESSAGES}
    done, rounds, warm_s = await _warm_up(audience, receiver, senders, warm)
    facts.update(warmup_rounds=rounds, warmup_s=round(warm_s, 3), warmup_complete=done)
    if not done:
        unheard = [s for s in senders if s.index not in receiver.heard]
        return skipped(
            f"no fan-in measured: on {where}, the receiver never heard "
            f"{names([s.index for s in unheard])} within {warm:.1f} s, one message at a time "
            "(the endpoint does not carry one client's messages to another; "
            "broadcast.fan-out is the capability check)", **facts, **audience.evidence(),
            **missing_evidence([receiver]))
    mine: dict[Listener, list[Sent]] = {s: [] for s in senders}
    began = audience.now()

    async def burst(sender: Listener) -> None:
        for _ in range(FAN_IN_MESSAGES):
            mine[sender].append(await audience.send(sender, "fan-in"))
            await asyncio.sleep(0)  # the other senders' messages interleave on the wire
        mine[sender].append(await audience.send(sender, "barrier"))

    await asyncio.gather(*(burst(s) for s in senders))
    barriers = [m[-1] for m in mine.values()]
    arrived = await audience.wait_for(lambda: all(b.seq in receiver.got for b in barriers),
                                      began + deliver)
    def everything() -> bool:
        return all(s.seq in receiver.got for m in mine.values() for s in m)

    if not everything():  # the verdict is decided; this only tells lost from late
        await audience.wait_for(everything, audience.now() + ctx.scaled(GRACE))
    kinds = {"fan-in", "barrier"}
    times = [receiver.got[s.seq][0] for m in mine.values() for s in m if s.seq in receiver.got]
    span = (max(times) - began) if times else 0.0
    delivered = sum(1 for m in mine.values() for s in m if s.seq in receiver.got)
    total = SENDERS * (FAN_IN_MESSAGES + 1)
    facts.update(delivered=delivered, seconds=round(span, 3),
                 sender_switches=_switches(receiver, audience.sent, kinds),
                 barriers_arrived=arrived, wait=deliver)
    found = Verdicts()
    for sender in senders:
        _judge_sender(receiver, sender, mine[sender], found)
    what = (f"{SENDERS} senders x {FAN_IN_MESSAGES} messages (and a barrier each) at once "
            f"to one receiver through {where}")
    if receiver.altered_count:
        return failed(f"{what}: {receiver.altered[0]} ({receiver.altered_count} altered "
                      "copies)", **facts, **audience.evidence())
    if found.late or found.lost or found.twice:
        counts = {"late": len(found.late), "lost": len(found.lost),
                  "repeated": len(found.twice)}
        tally = ", ".join(f"{n} {word}" for word, n in counts.items() if n)
        return failed(f"{what}: {found.first()} ({tally} in all; {delivered} of {total} "
                      f"arrived within {deliver:.1f} s)", **facts, **counts,
                      late_sample=[f"{s.name} m{n} after m{a}" for s, n, a in found.late[:NAMED]],
                      lost_sample=[f"{s.name} m{n}" for s, n in found.lost[:NAMED]],
                      **audience.evidence(), **missing_evidence([receiver]))
    rate = total / span if span > 0 else 0.0
    return passed(f"{what}: all {total} arrived intact, once each, every sender's in the "
                  f"order sent ({facts['sender_switches']} switches between senders) in "
                  f"{span * 1000:.0f} ms, {rate:.0f} messages/s",
                  messages_per_s=round(rate, 1), **facts, **audience.evidence())


# -- concurrency.churn ---------------------------------------------------------------------

@dataclass
class Churn:
    """What the churn saw: connections made, exchanges done, and what went wrong, by kind."""

    nonce: str
    pad: bytes = b""  # the ASCII letters after each payload's head, the same for all
    started: int = 0  # exchanges begun
    made: int = 0  # handshakes answered with 101 (a retry's included)
    echoed: int = 0  # exchanges whose echo came back intact
    retried: int = 0  # handshakes lost once and answered on their retry
    failures: dict[str, int] = field(default_factory=dict)  # by kind
    named: list[str] = field(default_factory=list)  # the first few, in one line each
    violation: str | None = None  # the first RFC 6455 breach on a churn connection

    def fail(self, kind: str, what: str) -> None:
        self.failures[kind] = self.failures.get(kind, 0) + 1
        if len(self.named) < NAMED:
            self.named.append(what)

    @property
    def failed(self) -> int:
        return sum(self.failures.values())


def _churn_payload(nonce: str, seq: int, pad: bytes) -> bytes:
    return f"wsgaps-churn {nonce} n{seq:05d} ".encode("ascii") + pad


async def _churn_handshake(ctx: ProbeContext, churn: Churn, seq: int,
                           wait: float) -> WireClient | None:
    """A client on ``echo``, retried once after ``CHURN_RETRY_PAUSE`` if its handshake is
    lost (refused, reset, unanswered): one lost handshake under churn may be a full backlog
    for an instant, two in a row are the target's failure.  Harness-side errors (out of
    descriptors or local ports) are raised."""
    url = ctx.url("echo")
    problem: HandshakeFailed | None = None
    for attempt_number in (1, 2):
        try:
            client = await WireClient.connect(url, timeout=wait, auto_pong=True,
                                              ssl_context=ctx.ssl_context)
        except HandshakeFailed as exc:
            problem = exc
            await asyncio.sleep(ctx.scaled(CHURN_RETRY_PAUSE))
            continue
        churn.made += 1
        churn.retried += attempt_number - 1
        return client
    churn.fail("handshake", f"connection {seq}: handshake lost twice, the second time: "
                            f"{problem}")
    return None


async def _churn_one(ctx: ProbeContext, churn: Churn, seq: int, waits: tuple[float, float],
                     ) -> None:
    """One short connection: a handshake, one echo of ASCII text, and the TCP connection
    dropped."""
    churn.started += 1
    handshake_wait, echo_wait = waits
    client = await _churn_handshake(ctx, churn, seq, handshake_wait)
    if client is None:
        return
    payload = _churn_payload(churn.nonce, seq, churn.pad)
    try:
        await client.send_text(payload)
        got = await receive(client, echo_wait, 4 * len(payload) + 1024)
        if isinstance(got, NoMessage):
            churn.fail("echo", f"connection {seq}: {got.said()}")
        elif got.opcode != Opcode.TEXT or got.data != payload:
            churn.fail("echo", f"connection {seq}: the echo came back altered "
                               f"({opcode_name(got.opcode)}, {show(got.data)})")
        else:
            churn.echoed += 1
        # No Close: the client drops its TCP connection (``aclose`` below), the way a closed
        # tab or a lost network leaves; closing handshakes are gap 3's, and a server must
        # clean up after a peer that just vanishes as much as after a polite one.
    except WireError as exc:  # the send found the connection gone
        churn.fail("echo", f"connection {seq}: could not send: {exc}")
    finally:
        if client.violation is not None and churn.violation is None:
            churn.violation = f"connection {seq}: {client.violation}"
        await client.aclose()


@check("concurrency.churn", placement=ALONE, load=True,
       budget=CHURN_TIME + 2 * CHURN_HANDSHAKE_WAIT + CHURN_ECHO_WAIT + SETTLE_WAIT + DYING_WAIT
       + 30)
async def churn(ctx: ProbeContext) -> Outcome:
    if not ctx.manifest.managed:
        seen = await _churn(ctx, GENTLE_CHURN, GENTLE_AT_ONCE, float("inf"))
        outcome = await _judge_churn(ctx, seen)
        outcome.evidence["gentle"] = True
        outcome.summary = (f"a URL target is probed gently: {GENTLE_CHURN} connections, "
                           f"{GENTLE_AT_ONCE} at a time; " + outcome.summary)
        return outcome
    at_once = AT_ONCE
    cap = ctx.hint("max_connections")
    if cap is not None and cap < at_once:
        at_once = max(1, int(cap))
    open_files_for(2 * at_once + FILE_MARGIN)
    async with heavy_load(ctx) as queued:
        seen = await _churn(ctx, CHURN_MAX, at_once, CHURN_TIME)
    # The settle is out of the load slot: it only watches the process, and nine targets'
    # settles one after another would make the matrix wait for nothing.
    outcome = await _judge_churn(ctx, seen)
    outcome.evidence["load_slot_wait_s"] = round(queued, 3)
    return outcome


@dataclass
class Churned:
    """A churn's end: what it saw, how long it ran, how many connections were in flight,
    and the handshake and echo waits it planned (the connection after the settle uses them
    too)."""

    churn: Churn
    span: float
    at_once: int
    waits: tuple[float, float]

    @property
    def rate(self) -> float:
        return self.churn.made / self.span if self.span > 0 else 0.0


async def _churn(ctx: ProbeContext, most: int, at_once: int, seconds: float) -> Churned:
    """``at_once`` lanes, each opening a short connection as soon as its last one ended,
    until ``seconds`` or ``most`` connections, the target's process ends, or ``STOP_AFTER``
    exchanges failed."""
    loop = asyncio.get_running_loop()
    waits = (ctx.plan_wait(CHURN_HANDSHAKE_WAIT, name="handshake"),
             ctx.plan_wait(CHURN_ECHO_WAIT))
    instance = ctx.instance
    pad = "".join(ctx.rng.choices(string.ascii_letters, k=64)).encode("ascii")
    churn = Churn(f"{ctx.rng.getrandbits(32):08x}", pad * (CHURN_PAD // len(pad)))
    began = loop.time()

    async def lane() -> None:
        while (churn.started < most and loop.time() - began < seconds
               and instance.exit_status() is None and churn.failed < STOP_AFTER):
            await _churn_one(ctx, churn, churn.started + 1, waits)

    await asyncio.gather(*(lane() for _ in range(at_once)))
    return Churned(churn, loop.time() - began, at_once, waits)


async def _judge_churn(ctx: ProbeContext, seen: Churned) -> Outcome:
    """The verdict on a churn: for a managed target, after ``SETTLE_WAIT`` for its process
    to end after all (``DYING_WAIT`` more once a crash report has begun), and one more
    exchange."""
    loop = asyncio.get_running_loop()
    instance, churn, span = ctx.instance, seen.churn, seen.span
    facts: dict[str, Any] = {
        "handshakes_per_s": round(seen.rate, 1), "connections": churn.made,
        "exchanges": churn.echoed, "attempted": churn.started,
        "failures": dict(churn.failures), "retried_handshakes": churn.retried,
        "at_once": seen.at_once,
        "payload_bytes": len(_churn_payload(churn.nonce, 0, churn.pad)),
        "seconds": round(span, 3), "nonce": churn.nonce}
    if churn.named:
        facts["first_failures"] = churn.named
    settle = 0.0
    if instance.managed and instance.exit_status() is None:
        settle = ctx.plan_wait(SETTLE_WAIT, name="settle")
        settled = loop.time()
        while loop.time() - settled < settle and instance.exit_status() is None:
            await asyncio.sleep(SETTLE_POLL)
        if instance.exit_status() is None and instance.output.crash_head() is not None:
            # A crash report has begun (Go dumps every goroutine before it exits): its end.
            dying = loop.time() + ctx.scaled(DYING_WAIT)
            while loop.time() < dying and instance.exit_status() is None:
                await asyncio.sleep(SETTLE_POLL)
        facts["settle_s"] = round(loop.time() - settled, 3)
    what = (f"{churn.started} short connections in {span:.1f} s, {seen.at_once} at a time "
            f"({seen.rate:.0f} handshakes/s)")
    status = instance.exit_status()
    if status is not None:
        head = instance.output.crash_head()
        facts["exit_status"] = status
        if head is not None:
            facts["crash_head"] = head
        first_line = _report_line(head)
        return failed(f"{what}: the target's process ended with status {status}"
                      + (f" ({first_line})" if first_line else "")
                      + f"; {churn.made} handshakes and {churn.echoed} echoes had been "
                      f"answered", **facts)
    if churn.violation is not None:
        return failed(f"{what}: the target broke RFC 6455 on a churn connection: "
                      f"{churn.violation}", **facts)
    if churn.failed:
        tally = ", ".join(f"{n} {kind}" for kind, n in sorted(churn.failures.items()))
        return failed(f"{what}: {churn.failed} failed ({tally}); the first: "
                      f"{churn.named[0]}", **facts)
    after = Churn(churn.nonce, churn.pad)
    await _churn_one(ctx, after, churn.started + 1, seen.waits)
    if after.failed:
        return failed(f"{what}: all answered, but afterwards a new connection failed: "
                      f"{after.named[0]}", **facts)
    stayed = f"; the process was still up {settle:.1f} s later" if settle else ""
    return passed(f"{what}: every handshake and echo answered ({churn.retried} handshakes "
                  f"answered on their retry){stayed}, and a new connection then echoed",
                  **facts)


def _report_line(head: str | None) -> str:
    """The crash report's own first line (``fatal error: stack overflow``), for a summary."""
    if head is None:
        return ""
    lines = head.splitlines()
    starts = ("fatal error:", "panic:", "Traceback", "Fatal Python error:", "SIG")
    line = next((x for x in lines if x.startswith(starts)), lines[0] if lines else "")
    return line[:120]


# -- concurrency.documented ----------------------------------------------------------------

# Decided by the manifest's ``declared."concurrency.documented"`` fact (verdict, source,
# summary), or skipped: there is nothing on the wire to observe.
documented = declared("concurrency.documented")
