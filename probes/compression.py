"""Gap 7, compression: does the server negotiate permessage-deflate (RFC 7692), round-trip
compressed messages, honour every parameter it accepts and decline malformed offers?

Every check uses ``echo`` and the wire client's permessage-deflate (``gaps.wire.deflate``):
the probe writes the offers, ``client.negotiation`` / ``Attempt.negotiation`` judges each
answer against RFC 7692 section 7, and the client inflates the server's messages strictly
(exactly the agreed window, a fresh context per message under
``server_no_context_takeover``, a bound against decompression bombs), so a server that breaks
what it agreed to is a violation of its connection, and the runner never passes a check on a
violated connection.

Checks and verdicts:

- ``negotiates`` [capability]: one handshake offering ``PLAIN`` (the usual browser offer)
  must be answered 101 with a valid acceptance.  Declined, an invalid answer, a refusal or
  no answer fail.  Manifest ``absent.compression`` explains a fail.
- ``round-trip`` [capability]: on a connection with ``PLAIN`` agreed, a 256 KiB message of
  compressible ASCII text (numbered lines) is sent compressed and must come back identical,
  compressed (RSV1 on its first frame, never on a continuation frame) and in fewer than half
  its size on the wire.  Then a small message, an empty one, a binary one and a compressed
  message sent in four fragments must each come back identical, compressed or not (RFC
  7692 6 lets a sender leave any message uncompressed; ``ws`` does below 1 KiB).  The bytes
  are judged, not the opcode: a binary message echoed as Text is message-types.binary's
  finding (GoFr), and is named in the summary.
- ``parameters`` [conformance]: the ``OFFERS`` (about twenty, each on a connection of its
  own; listed in docs/design-notes.md "Compression (gap 7)"), one sub-result each.  An
  answer must be a valid RFC 7692 7.1 answer or decline (declining is always conformant);
  a refusal of a valid offer with a 4xx is ``non-strict`` (declining the extension was
  the way; a 4xx to a list holding an offer a server must decline passes, as in
  malformed-offer), a 5xx, no answer or an invalid answer fails.  Where the server agreed, what it
  agreed is verified on the wire: the same 4 KiB message twice must come back identical
  (with the client's agreed window and context rules); with ``server_no_context_takeover``
  agreed, the two compressed echoes must be identical byte for byte; with a server window of
  N < 15 bits agreed, ``window_message(N)`` (a random block of 2^(N+1) letters, twice) must
  come back compressed and inflate with a 2^N window.  The probe shows first that this
  message needs it: deflated with a 32 KiB window it does not inflate with 2^N bytes.  An
  echo the server leaves uncompressed cannot show a parameter: the sub-result passes and
  says "not shown".
- ``malformed-offer`` [conformance]: the ``MALFORMED`` offers (an unknown parameter,
  ``server_max_window_bits=7`` and ``=16``, a repeated parameter, a value on
  ``server_no_context_takeover``), one bare handshake each.  Declined (a 101 without the
  extension) or refused with a 4xx passes; accepted, a 5xx, no HTTP answer in time or a
  malformed one fails; a connection closed without an answer is ``non-strict`` (RFC 6455
  4.2.2 expects an HTTP status).

On a URL target (shared, not managed) the probe is gentle: one handshake or connection at a
time across the gap's checks (``_one_at_a_time``), each closed before the next, 27 in all.

Waits (scaled by ``--gaps-time-scale``): ``HANDSHAKE_WAIT`` = 10 s per handshake,
``ECHO_WAIT`` = 10 s per echo of round-trip (256 KiB each way), ``PARAM_ECHO_WAIT`` = 5 s
per echo of parameters (at most 16 KiB).  No hint changes them; a prompt answer ends each.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import string
from collections.abc import AsyncIterator
from typing import Any

from gaps.model import ErrorReason, Verdict
from gaps.probe import Outcome, ProbeContext, check, errored, failed, passed
from gaps.toolkit import NoMessage, combine, quote, receive
from gaps.wire.client import Attempt, Message, WireClient
from gaps.wire.deflate import (
    Deflater,
    InflateError,
    Inflater,
    Offer,
    Params,
    State,
    parse_extensions,
)
from gaps.wire.errors import HandshakeRefused, HandshakeTimeout, MalformedAnswer, NoAnswer
from gaps.wire.frames import Opcode

HANDSHAKE_WAIT = 10.0
ECHO_WAIT = 10.0
PARAM_ECHO_WAIT = 5.0
CLOSE_WAIT = 1.0  # for the server's end of TCP after our Close, before the next connection
BIG = 256 * 1024
SHOWN = 160  # characters of an extension answer quoted in a summary

PLAIN = "permessage-deflate; client_max_window_bits"

# compression.parameters: one connection each; a tuple is several offers in preference order.
OFFERS: tuple[str | tuple[str, ...], ...] = (
    "permessage-deflate",
    PLAIN,
    "permessage-deflate; server_no_context_takeover",
    "permessage-deflate; client_no_context_takeover",
    "permessage-deflate; server_max_window_bits=8",
    "permessage-deflate; server_max_window_bits=9",
    "permessage-deflate; server_max_window_bits=12",
    "permessage-deflate; server_max_window_bits=15",
    "permessage-deflate; client_max_window_bits=9",
    "permessage-deflate; client_max_window_bits=15",
    "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
    "permessage-deflate; server_max_window_bits=10; client_max_window_bits",
    "permessage-deflate; server_no_context_takeover; server_max_window_bits=10",
    "permessage-deflate; client_no_context_takeover; client_max_window_bits=10",
    "permessage-deflate; server_max_window_bits=11; client_max_window_bits=11",
    "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
    "server_max_window_bits=12; client_max_window_bits=12",
    'permessage-deflate; server_max_window_bits="10"',
    ("permessage-deflate; server_max_window_bits=10; client_max_window_bits=10",
     "permessage-deflate; client_max_window_bits"),
    ("permessage-deflate; server_no_context_takeover; client_max_window_bits",
     "permessage-deflate"),
    ("permessage-deflate; x-wsgaps-unknown", "permessage-deflate; client_max_window_bits"),
)

# compression.malformed-offer: offers a server must decline (RFC 7692 7.1).
MALFORMED: tuple[tuple[str, str], ...] = (
    ("an unknown parameter", "permessage-deflate; x-wsgaps-unknown"),
    ("server_max_window_bits=7", "permessage-deflate; server_max_window_bits=7"),
    ("server_max_window_bits=16", "permessage-deflate; server_max_window_bits=16"),
    ("a repeated parameter",
     "permessage-deflate; client_no_context_takeover; client_no_context_takeover"),
    ("a value on server_no_context_takeover",
     "permessage-deflate; server_no_context_takeover=1"),
)

_GENTLE: dict[tuple[int, str], asyncio.Lock] = {}


@contextlib.asynccontextmanager
async def _one_at_a_time(ctx: ProbeContext) -> AsyncIterator[None]:
    """On a URL target, one connection of this gap at a time (the checks run at once)."""
    if ctx.manifest.managed:
        yield
        return
    key = (id(asyncio.get_running_loop()), ctx.url("echo"))
    async with _GENTLE.setdefault(key, asyncio.Lock()):
        yield


def _offer_text(offer: str | tuple[str, ...]) -> str:
    return offer if isinstance(offer, str) else ", ".join(offer)


def _must_decline(offer: str | tuple[str, ...]) -> bool:
    """True when one of the offers is one a server must decline (RFC 7692 7.1)."""
    return any(Offer.read(element).problem
               for element in parse_extensions(_offer_text(offer)))


def _lines(size: int) -> bytes:
    """Compressible ASCII text of ``size`` bytes: numbered lines."""
    out, number = bytearray(), 0
    while len(out) < size:
        number += 1
        out += f"wsgaps compression line {number:06d}: the quick brown fox\n".encode()
    return bytes(out[:size])


def window_message(bits: int) -> bytes:
    """A random block of 2^(bits+1) ASCII letters, twice: the second copy is best written as
    one back reference two windows away, beyond the 1.25 windows a strict inflater lets slip
    (``gaps.wire.deflate.Inflater``), so only a compressor that keeps to 2^bits gets it
    through.  Seeded by ``bits`` alone: the same message on every run."""
    rng = random.Random(f"wsgaps-window-{bits}")
    block = "".join(rng.choice(string.ascii_letters) for _ in range(2 << bits)).encode()
    return block + block


def needs_window(bits: int) -> bool:
    """True when ``window_message(bits)`` deflated with a 32 KiB window does not inflate with
    a 2^bits one: the message can tell a server that keeps to the window from one that
    does not."""
    payload = Deflater(Params()).compress(window_message(bits))
    try:
        Inflater(Params(server_max_window_bits=bits)).feed(payload, True)
    except InflateError:
        return True
    return False


async def _close(client: WireClient, ctx: ProbeContext) -> None:
    """A Close, a short wait for the server's end of TCP, then the socket released."""
    if not client.closed:
        with contextlib.suppress(OSError, TimeoutError):
            await client.close(1000)
        await client.wait_closed(ctx.scaled(CLOSE_WAIT))
    await client.aclose()


def _payload(message: Message) -> bytes:
    return b"".join(f.payload for f in message.frames)


def _no_echo(what: str, got: NoMessage, client: WireClient) -> str:
    if client.violation is not None:
        return f"{what}: {client.violation}"
    return f"{what}: {got}"


# -- negotiates ---------------------------------------------------------------------------


@check("compression.negotiates", absent="compression", budget=HANDSHAKE_WAIT + 20)
async def negotiates(ctx: ProbeContext) -> Outcome:
    wait = ctx.plan_wait(HANDSHAKE_WAIT)
    async with _one_at_a_time(ctx):
        answer = await ctx.handshake("echo", wait=wait, extensions=PLAIN)
    evidence = {"offer": PLAIN, "handshake": answer.evidence()}
    negotiation = answer.negotiation
    if negotiation is None:
        return failed(f"offer {PLAIN!r}: handshake not accepted ({answer.describe()})",
                      **evidence)
    evidence["negotiation"] = negotiation.evidence()
    if negotiation.state is State.DECLINED:
        return failed(f"offer {PLAIN!r} declined: no permessage-deflate in the answer",
                      **evidence)
    if negotiation.state is State.INVALID:
        return failed(f"offer {PLAIN!r}: {quote(str(negotiation), 300)}", **evidence)
    return passed(f"offer {PLAIN!r} accepted validly: "
                  f"{quote(negotiation.answer, SHOWN)!r}", **evidence)


# -- round-trip ---------------------------------------------------------------------------


async def _echo(client: WireClient, what: str, data: bytes, wait: float, *, binary: bool = False,
                fragments: int = 1) -> tuple[Message | None, str]:
    """Send ``data`` compressed and read its echo: (message, "") or (None, why not)."""
    await client.send_message(data, binary=binary, fragments=fragments)
    got = await receive(client, wait, 2 * len(data) + 1024)
    if isinstance(got, NoMessage):
        return None, _no_echo(what, got, client)
    if got.data != data:
        return None, f"{what} came back altered ({len(got.data)} bytes, {len(data)} sent)"
    return got, ""


@check("compression.round-trip", absent="compression", budget=6 * ECHO_WAIT + HANDSHAKE_WAIT + 20)
async def round_trip(ctx: ProbeContext) -> Outcome:
    wait = ctx.plan_wait(HANDSHAKE_WAIT)
    echo_wait = ctx.plan_wait(ECHO_WAIT, name="echo")
    async with _one_at_a_time(ctx):
        try:
            client = await ctx.connect("echo", timeout=wait, extensions=PLAIN, auto_pong=True)
        except (HandshakeRefused, HandshakeTimeout, MalformedAnswer, NoAnswer) as exc:
            return failed(f"offer {PLAIN!r}: no connection ({quote(str(exc), 300)})",
                          offer=PLAIN)
        try:
            return await _round_trip(client, echo_wait)
        finally:
            await _close(client, ctx)


async def _round_trip(client: WireClient, wait: float) -> Outcome:
    negotiation = client.negotiation
    facts: dict[str, Any] = {"offer": PLAIN, "negotiation": negotiation.evidence()}
    if negotiation.state is not State.AGREED:
        return failed(f"offer {PLAIN!r} not agreed ({quote(str(negotiation), 300)}): nothing "
                      "is compressed", **facts, **client.evidence())
    big = _lines(BIG)
    got, why = await _echo(client, f"a {BIG // 1024} KiB text message", big, wait)
    if got is None:
        return failed(why, **facts, **client.evidence())
    facts.update(big_wire_size=got.wire_size, big_frames=len(got.frames))
    if not got.compressed:
        return failed(f"the {BIG // 1024} KiB message came back identical but uncompressed "
                      "(no RSV1 on its first frame)", **facts, **client.evidence())
    if any(frame.rsv1 for frame in got.frames[1:]):
        return failed(f"the {BIG // 1024} KiB message came back with RSV1 on a continuation "
                      "frame (RFC 7692 6.1: the first frame only)", **facts, **client.evidence())
    if got.wire_size * 2 >= BIG:
        return failed(f"the {BIG // 1024} KiB message took {got.wire_size} bytes on the wire, "
                      "not under half its size", **facts, **client.evidence())
    judged: list[tuple[Verdict, str]] = [
        (Verdict.PASS, f"{BIG // 1024} KiB came back identical in {got.wire_size} bytes on "
                       f"the wire ({len(got.frames)} frame(s), RSV1 on the first)")]
    smaller = (("a 22-byte text message", b"wsgaps small message 1", False, 1),
               ("an empty text message", b"", False, 1),
               ("an 8 KiB binary message", bytes(range(256)) * 32, True, 1),
               ("a 16 KiB text message sent compressed in 4 fragments", _lines(16 * 1024),
                False, 4))
    for what, data, binary, fragments in smaller:
        got, why = await _echo(client, what, data, wait, binary=binary, fragments=fragments)
        if got is None:
            judged.append((Verdict.FAIL, why))
            break
        # Another opcode is message-types.binary's finding, not compression's: the bytes
        # are what deflate could have changed.
        changed = (" as Text (the opcode is message-types' concern)"
                   if binary and got.opcode == Opcode.TEXT else "")
        judged.append((Verdict.PASS, f"{what} came back identical{changed} "
                                     f"({'compressed' if got.compressed else 'uncompressed'})"))
    return combine(judged, **facts, **client.evidence())


# -- parameters ---------------------------------------------------------------------------


async def _try_offer(ctx: ProbeContext, offer: str | tuple[str, ...], wait: float,
                     echo_wait: float) -> tuple[Verdict, str, dict[str, Any]]:
    text = _offer_text(offer)
    facts: dict[str, Any] = {"offer": text}
    try:
        client = await ctx.connect("echo", timeout=wait, extensions=list(offer)
                                   if isinstance(offer, tuple) else offer, auto_pong=True)
    except HandshakeRefused as exc:
        status = exc.response.status
        facts["status"] = status
        if 400 <= status < 500 and _must_decline(offer):
            return (Verdict.PASS, f"[{text}] refused with HTTP {status} (allowed: the list "
                    "holds an offer a server must decline, as in malformed-offer)", facts)
        if 400 <= status < 500:
            return (Verdict.NON_STRICT, f"[{text}] refused with HTTP {status} (declining the "
                    "extension was the way, RFC 7692 5)", facts)
        return Verdict.FAIL, f"[{text}] answered HTTP {status}", facts
    except (HandshakeTimeout, MalformedAnswer, NoAnswer) as exc:
        return Verdict.FAIL, f"[{text}] {quote(str(exc), 200)}", facts
    try:
        verdict, line = await _verify(client, text, echo_wait)
        facts["negotiation"] = client.negotiation.evidence()
        if verdict is not Verdict.PASS:
            facts["wire"] = client.evidence(limit=12)
        return verdict, line, facts
    finally:
        await _close(client, ctx)


async def _verify(client: WireClient, text: str, wait: float) -> tuple[Verdict, str]:
    """The sub-result of one agreed or declined offer, verified on the wire."""
    negotiation = client.negotiation
    answer = quote(negotiation.answer, SHOWN)
    if negotiation.state is State.DECLINED:
        return Verdict.PASS, f"[{text}] declined"
    if negotiation.state is State.INVALID:
        return Verdict.FAIL, f"[{text}] answered {answer!r}: {negotiation.problem}"
    agreed = negotiation.agreed
    assert agreed is not None
    shown: list[str] = []
    message = _lines(4096)
    echoes: list[Message] = []
    for n in (1, 2):
        got, why = await _echo(client, f"message {n} of 4 KiB", message, wait)
        if got is None:
            return Verdict.FAIL, f"[{text}] agreed {answer!r}, but {why}"
        echoes.append(got)
    shown.append("a 4 KiB message echoed twice")
    if agreed.server_no_context_takeover:
        first, second = (_payload(e) for e in echoes)
        if not all(e.compressed for e in echoes):
            shown.append("server_no_context_takeover not shown (an echo came uncompressed)")
        elif first != second:
            return Verdict.FAIL, (f"[{text}] agreed {answer!r}, but two identical messages "
                                  f"were compressed differently ({len(first)} then "
                                  f"{len(second)} bytes): context kept (RFC 7692 7.1.1.1)")
        else:
            shown.append(f"server_no_context_takeover shown (identical {len(first)}-byte "
                         "frames)")
    bits = agreed.server_max_window_bits
    if bits < 15:
        data = window_message(bits)
        got, why = await _echo(client, f"a {len(data)}-byte message needing a window of "
                                       f"{1 << bits} bytes", data, wait)
        if got is None:
            return Verdict.FAIL, f"[{text}] agreed {answer!r}, but {why}"
        if got.compressed:
            shown.append(f"server_max_window_bits={bits} shown (a message repeating itself "
                         f"{2 << bits} bytes back inflated with a {1 << bits}-byte window)")
        else:
            shown.append(f"server_max_window_bits={bits} not shown (the echo came "
                         "uncompressed)")
    return Verdict.PASS, f"[{text}] agreed {answer!r}: " + "; ".join(shown)


@check("compression.parameters",
       budget=len(OFFERS) * (HANDSHAKE_WAIT + 3 * PARAM_ECHO_WAIT + CLOSE_WAIT) + 20)
async def parameters(ctx: ProbeContext) -> Outcome:
    wait = ctx.plan_wait(HANDSHAKE_WAIT)
    echo_wait = ctx.plan_wait(PARAM_ECHO_WAIT, name="echo")
    unusable = [bits for bits in range(8, 15) if not needs_window(bits)]
    if unusable:
        return errored(ErrorReason.CANNOT_JUDGE, "the window messages cannot tell a server "
                       f"that keeps to the window from one that does not for {unusable} bits")
    results: list[tuple[Verdict, str, dict[str, Any]]] = []
    for offer in OFFERS:
        async with _one_at_a_time(ctx):
            results.append(await _try_offer(ctx, offer, wait, echo_wait))
    offers = [{**facts, "verdict": str(verdict), "line": line[:600]}
              for verdict, line, facts in results]
    outcome = combine([(v, line) for v, line, _ in results], offers=offers, wait=wait)
    counts = {v: sum(1 for r in results if r[0] is v) for v in Verdict}
    agreed = sum(1 for _, _, f in results
                 if f.get("negotiation", {}).get("state") == str(State.AGREED))
    head = (f"{len(OFFERS)} offers: {agreed} agreed, {counts[Verdict.FAIL]} broke RFC 7692, "
            f"{counts[Verdict.NON_STRICT]} refused with a 4xx; ")
    outcome.summary = head + outcome.summary
    return outcome


# -- malformed-offer ----------------------------------------------------------------------


def _judge_malformed(what: str, offer: str, answer: Attempt) -> tuple[Verdict, str]:
    if answer.response is None:
        if answer.dropped:
            return (Verdict.NON_STRICT, f"{what}: declined by closing the connection without "
                    "an HTTP answer (RFC 6455 4.2.2 expects an HTTP status)")
        return Verdict.FAIL, f"{what}: {answer.problem}"
    status = answer.response.status
    if status == 101:
        negotiation = answer.negotiation
        assert negotiation is not None
        if negotiation.state is State.DECLINED:
            return Verdict.PASS, f"{what}: declined (101 without the extension)"
        return Verdict.FAIL, (f"{what}: accepted with "
                              f"{quote(negotiation.answer, SHOWN)!r} (RFC 7692 7.1: a server "
                              "must decline such an offer)")
    if 400 <= status < 500:
        return Verdict.PASS, f"{what}: refused with HTTP {status}"
    return Verdict.FAIL, f"{what}: answered HTTP {status}, neither declined nor a 4xx"


@check("compression.malformed-offer", budget=len(MALFORMED) * HANDSHAKE_WAIT + 20)
async def malformed_offer(ctx: ProbeContext) -> Outcome:
    wait = ctx.plan_wait(HANDSHAKE_WAIT)
    judged: list[tuple[Verdict, str]] = []
    handshakes: list[dict[str, Any]] = []
    for what, offer in MALFORMED:
        async with _one_at_a_time(ctx):
            answer = await ctx.handshake("echo", wait=wait, extensions=offer)
        verdict, line = _judge_malformed(what, offer, answer)
        judged.append((verdict, line))
        handshakes.append({"offer": offer, "verdict": str(verdict), **answer.evidence()})
    return combine(judged, handshakes=handshakes, wait=wait)
