"""Gap 2, broadcast: can the stack itself send one message to many connections, and to a room?

All three checks share one audience of clients on the target, so each runs alone on its
instance (``placement=ALONE``).  Every client answers Pings (``auto_pong``): a 500-client audience
meets the stacks' keepalive.  Every message is ASCII Text carrying the run's nonce and a
sequence number (``wsgaps-broadcast <nonce> <seq> <kind> from client <i> in <group> <pad>``),
so that a stack's binary defect is not counted again here, and so that each copy that arrives
is matched to the one message it must equal, byte for byte and as Text ("intact").  Messages
that are not the probe's (a greeting, say) are counted as foreign and otherwise ignored.

The manifest's ``includes_sender`` on the endpoint says whether a sender receives its own
message: ``true`` makes the sender one of the clients that must receive it, ``false`` makes
an own copy a failure (the endpoint does not behave as declared), and no setting accepts
either and records what happened.

Checks and verdicts:

- ``fan-out`` [capability]: ``FAN_OUT_CLIENTS`` (20) clients connect to ``broadcast`` one
  after another.  Warm-up: every client sends one message per round, a round every
  ``ROUND_INTERVAL`` (1 s), until every client has received a message from every sender it
  should (joining may end on the server after the client's handshake), bounded by
  ``WARMUP_WAIT``; the rounds and the time are evidence.  Then client 0 (the first to join)
  sends one message, which must reach every client it should, intact and once, within
  ``DELIVERY_WAIT``.  Fail: the warm-up never completes (saying which clients never heard
  from which senders), the message misses a client, arrives twice or altered, or the sender
  rule of the manifest is broken.  ``absent.broadcast`` makes it a declared fail.
- ``rooms`` [capability]: ``ROOM_MEMBERS`` (4) clients join room A and two join room B (the
  non-member and the barrier's sender), by connecting to ``room`` with those room names.
  Warm-up as above, each room on its own.  Then a member of A sends the room message; once
  every member of A that should has it (``DELIVERY_WAIT``), the barrier's sender sends the
  barrier to room B, and once the non-member has the barrier (messages on one connection
  keep their order, so anything room A leaked to it came before), the check looks at what
  crossed between rooms.  No fixed sleeps.  Fail: members do not receive, the non-member (or
  any client) received a message of another room, or the barrier never reached its own
  room's member.  ``absent.rooms`` makes it a declared fail.
- ``scale`` [evidence]: ``SCALE_CLIENTS`` (500) receivers and one sender connect
  (``CONNECT_AT_ONCE`` handshakes at a time; the time to connect them all is a figure).
  The whole measurement holds the harness's one load slot (``gaps.toolkit.heavy_load``):
  targets and gaps run at once, and two 500-client loads on one event loop would time each
  other.  Warm-up: the sender sends until every receiver has one of its messages.  Then one message,
  timed from just before it is written to its arrival at each receiver: p50, p99 (nearest
  rank) and max delivery latency are the figures.  Before connecting, the harness raises its
  own open-file limit and makes sure there is room for the audience; when there is not, or
  it runs out of descriptors or memory while connecting, the check ends as ``error`` (harness
  side), never as evidence about the target.  A URL target is probed gently: ``scale``
  skips there, saying so; so it does when the target declares a ``max_connections`` below
  the audience.  When the target refuses a connection or does not deliver to all 500, there
  are no figures: the check skips with what it saw (the capability verdicts are
  ``fan-out``'s).  Without a ``broadcast`` endpoint it skips (no ``absent`` rule: an
  evidence check has no failing verdict).

The audience (``gaps.toolkit.Audience``, shared with gap 6's fan-in) connects its clients
itself (room URLs need the room field), so it applies the runner's rules to them in
``Audience.judge``: a connection the target violated RFC 6455 on
earns no pass, and a failure after the target closed clients of ours while our own event
loop had stalled is ``error`` ("harness too slow"), not evidence.

Waits (scaled by ``--gaps-time-scale``; no hint shortens them, and each ends as soon as what
it waits for has arrived):

- ``WARMUP_WAIT`` = 20 s for the warm-up, in rounds ``gaps.toolkit.ROUND_INTERVAL`` = 1 s
  apart.
- ``DELIVERY_WAIT`` = 10 s for one message (fan-out, the room message, the barrier).
- ``SCALE_CONNECT_WAIT`` = 60 s to connect the 501 clients of ``scale`` (each handshake has
  the context's 10 s), ``SCALE_DELIVERY_WAIT`` = 30 s for the measured message.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from gaps.probe import ALONE, Outcome, ProbeContext, check, failed, passed, skipped
from gaps.toolkit import (
    HARNESS_SLOW_RUNS,
    Audience,
    Listener,
    Sent,
    again_if_harness_slow,
    endpoint_rule,
    heavy_load,
    missing_evidence,
    names,
    open_files_for,
    percentile,
    wait_until,
)
from gaps.wire.errors import HandshakeFailed, HandshakeRefused

FAN_OUT_CLIENTS = 20
ROOM_MEMBERS = 4
SCALE_CLIENTS = 500
WARMUP_WAIT = 20.0
DELIVERY_WAIT = 10.0
SCALE_CONNECT_WAIT = 60.0
SCALE_DELIVERY_WAIT = 30.0
CONNECT_AT_ONCE = 25  # handshakes in flight while the scale audience connects
FILE_MARGIN = 64  # descriptors kept free beyond the audience
PREFIX = 40  # leading payload bytes that identify a message in a frame record's preview
POLL_INTERVAL = 0.01  # how often scale looks for the measured message (it times the frames)

ALL = "the broadcast audience"
ROOM_A, ROOM_B = "room A", "room B"

def _sender_rule(audience: Audience) -> str:
    """The manifest's sender rule, as the summaries say it."""
    if audience.includes_sender is None:
        return "includes_sender not set"
    return f"includes_sender = {'true' if audience.includes_sender else 'false'}"


def _own_copy_problem(audience: Audience) -> str:
    """A broken ``includes_sender = false`` rule, or ""."""
    own = audience.own_copies()
    if audience.includes_sender is False and own:
        return (f"{audience.listeners[own[0].sender].name} received its own {own[0].kind} "
                f"message ({len(own)} own copies in all), although the manifest says "
                "includes_sender = false")
    return ""


def _refused(exc: HandshakeRefused, audience: Audience, endpoint: str) -> Outcome:
    return failed(f"the {endpoint} endpoint refused a client ({len(audience.clients)} had "
                  f"connected): {exc}",
                  **exc.response.evidence(), **audience.evidence())


# -- broadcast.fan-out -------------------------------------------------------------------

@check("broadcast.fan-out", needs=("broadcast",), absent="broadcast", placement=ALONE,
       budget=HARNESS_SLOW_RUNS * (WARMUP_WAIT + DELIVERY_WAIT) + 40)
async def fan_out(ctx: ProbeContext) -> Outcome:
    async def once() -> Outcome:
        audience = Audience(ctx, endpoint_rule(ctx, "broadcast"))
        return await audience.judge(_fan_out(ctx, audience))

    return await again_if_harness_slow(once)


async def _fan_out(ctx: ProbeContext, audience: Audience) -> Outcome:
    deliver = ctx.plan_wait(DELIVERY_WAIT)
    warm = ctx.plan_wait(WARMUP_WAIT, name="warm-up")
    try:
        clients = await audience.join("broadcast", FAN_OUT_CLIENTS, ALL)
    except HandshakeRefused as exc:
        return _refused(exc, audience, "broadcast")
    warmup = await audience.warm_up({ALL: clients}, warm)
    facts = {"clients": len(clients), **warmup.facts()}
    if not warmup.done:
        return failed(
            f"{len(clients)} clients on broadcast, each sending one message per round: "
            f"after {warmup.rounds} round(s) in {warm:.1f} s, "
            f"{warmup.describe()}", **facts, **audience.evidence(),
            **missing_evidence(list(warmup.unheard)))
    sender = clients[0]
    sent = await audience.send(sender, "fan-out")
    await audience.wait_for(lambda: audience.reached(sent), audience.now() + deliver)
    required = audience.required(sent)
    missing = [x for x in required if sent.seq not in x.got]
    twice = [x for x in required if len(x.got.get(sent.seq, ())) > 1]
    times = [x.got[sent.seq][0] - sent.at for x in required if sent.seq in x.got]
    facts.update(latency_max_ms=round(max(times) * 1000, 2) if times else None,
                 wait=deliver)
    what = f"one {len(sent.payload)}-byte text message from {sender.name}"
    if missing:
        return failed(f"{what} reached {len(required) - len(missing)} of the "
                      f"{len(required)} clients that should get it within {deliver:.1f} s "
                      f"({_sender_rule(audience)}); missing: "
                      f"{names([x.index for x in missing])}", **facts,
                      **audience.evidence(), **missing_evidence(missing))
    if twice:
        return failed(f"{what} reached {twice[0].name} {len(twice[0].got[sent.seq])} times "
                      f"({len(twice)} client(s) got it more than once)", **facts,
                      **audience.evidence())
    if problem := _own_copy_problem(audience):
        return failed(problem, **facts, **audience.evidence())
    own = sent.seq in sender.got
    return passed(
        f"{what} reached all {len(required)} clients that should get it, intact, once, "
        f"within {max(times) * 1000:.1f} ms (the sender {'got' if own else 'did not get'} "
        f"its own copy; {_sender_rule(audience)}); warm-up: {warmup.rounds} round(s), "
        f"{warmup.seconds:.2f} s", sender_got_own=own, **facts, **audience.evidence())


# -- broadcast.rooms ---------------------------------------------------------------------

@check("broadcast.rooms", needs=("room",), absent="rooms", placement=ALONE,
       budget=HARNESS_SLOW_RUNS * (WARMUP_WAIT + 2 * DELIVERY_WAIT) + 40)
async def rooms(ctx: ProbeContext) -> Outcome:
    async def once() -> Outcome:
        audience = Audience(ctx, endpoint_rule(ctx, "room"))
        return await audience.judge(_rooms(ctx, audience))

    return await again_if_harness_slow(once)


async def _rooms(ctx: ProbeContext, audience: Audience) -> Outcome:
    deliver = ctx.plan_wait(DELIVERY_WAIT)
    warm = ctx.plan_wait(WARMUP_WAIT, name="warm-up")
    names = {ROOM_A: f"wsgaps-{audience.nonce}-a", ROOM_B: f"wsgaps-{audience.nonce}-b"}
    try:
        members = await audience.join("room", ROOM_MEMBERS, ROOM_A, room=names[ROOM_A])
        outsider, barrier_sender = await audience.join("room", 2, ROOM_B,
                                                       room=names[ROOM_B])
    except HandshakeRefused as exc:
        return _refused(exc, audience, "room")
    facts: dict[str, Any] = {
        "rooms": names, "members": [x.name for x in members], "non_member": outsider.name,
        "barrier_sender": barrier_sender.name}
    warmup = await audience.warm_up({ROOM_A: members, ROOM_B: [outsider, barrier_sender]},
                                    warm)
    facts.update(warmup.facts())
    leak = _leak_summary(audience, outsider)
    if not warmup.done:
        return failed(
            f"{ROOM_MEMBERS} members of {ROOM_A} and 2 clients of {ROOM_B}, each sending one "
            f"message per round to its room: after {warmup.rounds} round(s) in {warm:.1f} s, "
            f"{warmup.describe()}" + (f"; also, {leak}" if leak else ""),
            **facts, **audience.evidence(), **missing_evidence(list(warmup.unheard)))
    sent = await audience.send(members[0], "room")
    reached = await audience.wait_for(lambda: audience.reached(sent),
                                      audience.now() + deliver)
    required = audience.required(sent)
    if not reached:
        missing = [x for x in required if sent.seq not in x.got]
        return failed(
            f"the room message from {members[0].name} reached {len(required) - len(missing)} "
            f"of the {len(required)} members of {ROOM_A} that should get it within "
            f"{deliver:.1f} s ({_sender_rule(audience)})" + (f"; also, {leak}" if leak else ""),
            **facts, **audience.evidence(), **missing_evidence(missing))
    barrier = await audience.send(barrier_sender, "barrier")
    arrived = await audience.wait_for(lambda: barrier.seq in outsider.got,
                                      audience.now() + deliver)
    facts["barrier_arrived"] = arrived
    leak = _leak_summary(audience, outsider)
    if leak:
        return failed(leak, leaked_copies=len(audience.leaks()), **facts,
                      **audience.evidence())
    if not arrived:
        return failed(f"the barrier sent to {ROOM_B} after every member of {ROOM_A} had the "
                      f"room message did not reach {outsider.name}, the other member of "
                      f"{ROOM_B}, within {deliver:.1f} s, so its silence proves nothing",
                      **facts, **audience.evidence(), **missing_evidence([outsider]))
    if problem := _own_copy_problem(audience):
        return failed(problem, **facts, **audience.evidence())
    return passed(
        f"the room message reached all {len(required)} members of {ROOM_A} that should get "
        f"it ({_sender_rule(audience)}); {outsider.name} in {ROOM_B} received nothing from "
        f"{ROOM_A} before the barrier sent to its own room after that; warm-up: "
        f"{warmup.rounds} round(s), {warmup.seconds:.2f} s", **facts, **audience.evidence())


def _leak_summary(audience: Audience, outsider: Listener) -> str:
    """One line on messages that reached a client outside their room, or ""."""
    leaks = audience.leaks()
    if not leaks:
        return ""
    at_outsider = [(x, sent) for x, sent in leaks if x is outsider]
    who, sent = (at_outsider or leaks)[0]
    return (f"{who.name} in {who.group} received a {sent.kind} message sent to {sent.group} "
            f"by client {sent.sender} ({len(leaks)} cross-room copies in all, "
            f"{len(at_outsider)} at the non-member {outsider.name}): the room leaks to "
            "non-members")


# -- broadcast.scale ---------------------------------------------------------------------

async def _arrivals(receivers: Sequence[Listener], sent: Sent, deadline: float,
                    poll: float) -> dict[Listener, float]:
    """When the first frame of ``sent`` reached each receiver's read loop (loop time), from
    the clients' frame records, looked at every ``poll`` seconds until all have it or the
    loop time ``deadline``."""
    prefix = sent.payload[:PREFIX].decode("ascii")
    found: dict[Listener, float] = {}

    def all_found() -> bool:
        for listener in receivers:
            if listener in found:
                continue
            client = listener.client
            if client.harness_error is not None:
                raise client.harness_error
            for record in reversed(client.records):
                if record.direction == "in" and record.preview.startswith(prefix):
                    found[listener] = client.opened_at + record.t
                    break
        return len(found) == len(receivers)

    await wait_until(all_found, deadline, poll=poll)
    return found


# needs=(): a URL target (echo only) must hear why it is skipped, before the endpoint rule.
@check("broadcast.scale", needs=(), placement=ALONE, load=True,
       budget=SCALE_CONNECT_WAIT + WARMUP_WAIT + SCALE_DELIVERY_WAIT + 40)
async def scale(ctx: ProbeContext) -> Outcome:
    audience = Audience(ctx, endpoint_rule(ctx, "broadcast"))
    return await audience.judge(_scale(ctx, audience))


async def _scale(ctx: ProbeContext, audience: Audience) -> Outcome:
    total = SCALE_CLIENTS + 1
    if not ctx.manifest.managed:
        return skipped(f"a URL target is probed gently: no {total}-client load on a server "
                       "the harness does not run")
    if not ctx.has("broadcast"):
        return skipped("target has no broadcast endpoint")
    cap = ctx.hint("max_connections")
    if cap is not None and cap < total:
        return skipped(f"the target declares max_connections = {cap:g}, below the "
                       f"{total} clients of this measurement", max_connections=cap)
    # One load at a time in this harness: targets and gaps run at once, and another
    # 500-client load on the same event loop would be counted as this target's latency.
    async with heavy_load(ctx) as queued:
        try:
            outcome = await _measure(ctx, audience, total)
        finally:
            await audience.stop()
    outcome.evidence["load_slot_wait_s"] = round(queued, 3)
    return outcome


async def _measure(ctx: ProbeContext, audience: Audience, total: int) -> Outcome:
    file_limit = open_files_for(total + FILE_MARGIN)
    connect_wait = ctx.plan_wait(SCALE_CONNECT_WAIT, name="connect")
    warm = ctx.plan_wait(WARMUP_WAIT, name="warm-up")
    deliver = ctx.plan_wait(SCALE_DELIVERY_WAIT)
    started = audience.now()
    try:
        async with asyncio.timeout(connect_wait):
            receivers = await audience.join("broadcast", SCALE_CLIENTS, ALL,
                                            at_once=CONNECT_AT_ONCE)
            sender = (await audience.join("broadcast", 1, ALL))[0]
    except HandshakeFailed as exc:  # before TimeoutError: a HandshakeTimeout is both
        return skipped(f"no figures: a connection of the {total} failed after "
                       f"{len(audience.clients)} had connected: {exc}",
                       connected=len(audience.clients), **audience.evidence())
    except TimeoutError:
        return skipped(f"no figures: {len(audience.clients)} of {total} clients connected "
                       f"within {connect_wait:.1f} s", connected=len(audience.clients),
                       **audience.evidence())
    connect_s = audience.now() - started
    facts: dict[str, Any] = {"clients": SCALE_CLIENTS, "connect_s": round(connect_s, 3)}
    warmup = await audience.warm_up({ALL: [sender]}, warm)
    facts.update(warmup.facts())
    if not warmup.done:
        return skipped(f"no figures: after {warmup.rounds} round(s) in {warm:.1f} s, "
                       f"{len(warmup.unheard)} of {SCALE_CLIENTS} receivers had no message "
                       "from the sender (fan-out is the capability check)", **facts,
                       **audience.evidence(), **missing_evidence(list(warmup.unheard)))
    # Measured at the clients' own read loops (their frame records), with the listeners'
    # tasks stopped: the harness reads 500 sockets on one event loop, and every task
    # switch of its own would count as the target's latency.
    await audience.quiet()
    sent = await audience.send(sender, "scale")
    arrivals = await _arrivals(receivers, sent, audience.now() + deliver,
                               ctx.scaled(POLL_INTERVAL))
    times = [at - sent.at for at in arrivals.values()]
    if len(times) < len(receivers):
        missing = [x for x in receivers if x not in arrivals]
        return skipped(f"no figures: the measured message reached {len(times)} of "
                       f"{SCALE_CLIENTS} receivers within {deliver:.1f} s", **facts,
                       **audience.evidence(), **missing_evidence(missing))
    p50, p99, top = (percentile(times, q) * 1000 for q in (0.5, 0.99, 1.0))
    return passed(
        f"one message to {SCALE_CLIENTS} clients: p50 {p50:.1f} ms, p99 {p99:.1f} ms, "
        f"max {top:.1f} ms; {total} clients connected in {connect_s:.2f} s",
        p50_ms=round(p50, 2), p99_ms=round(p99, 2), max_ms=round(top, 2), **facts,
        connect_at_once=CONNECT_AT_ONCE, open_file_limit=file_limit, wait=deliver,
        **audience.evidence())
