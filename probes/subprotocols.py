"""Gap 9, subprotocols: does the server negotiate Sec-WebSocket-Protocol, and only that way?

Every check uses the target's ``subprotocols`` endpoint, never ``echo``: a stack with
subprotocols configured may rightly refuse clients that offer none, and ``echo`` must not
require one.  Without that endpoint every check is skipped (the runner does it).  The
protocols the target supports are the manifest's ``endpoints.subprotocols.subprotocols``;
the bogus protocol is ``wsgaps-bogus-<6 hex digits>`` from the check's seeded RNG, never one
the manifest lists.

Checks and verdicts:

- ``selects-offered`` [capability]: offered ``[bogus, *supported]`` (bogus first, so that
  picking the first offer blindly is caught), the 101 answer must carry exactly one
  protocol that was offered and is supported, and the connection must then echo a message.
  No header, a refusal, an unsupported or unoffered pick, or no echo fail.  Manifest
  ``absent.subprotocols`` makes it a declared fail; a manifest listing no supported
  protocol makes it skip (nothing to offer).
- ``never-unoffered`` [conformance]: handshakes offering each supported protocol alone (up
  to ``MAX_SINGLE``), all supported ones in reverse order, ``[bogus, *supported]``, the
  bogus one alone, and nothing.  Any 101 whose Sec-WebSocket-Protocol is not exactly one of
  that handshake's offers fails (RFC 6455 4.2.2: the server selects "one of the values" the
  client sent, a single value; 4.1: a client MUST fail a connection whose server "has
  indicated a subprotocol not requested by the client").  Refusals and unanswered
  handshakes are evidence, not violations; if no handshake got any HTTP answer the check
  fails, as the endpoint is then unusable.
- ``refuses-bogus`` [conformance]: offered only the bogus protocol.
- ``no-offer`` [conformance]: no Sec-WebSocket-Protocol header at all.

  For these two: a 4xx refusal passes, and so does a 101 without Sec-WebSocket-Protocol
  (4.2.2: the server may go on with no subprotocol).  A 101 with the header fails (the
  server "accepts blindly", or answers what nobody offered).  A 5xx, any other status, or
  no answer within the wait fails, and so does an answer that is not HTTP (garbage, a head
  over 16 KiB): that is a broken server, not a refusal.  A TCP close without a single byte
  of answer is ``non-strict``: the server did decline, which is what the check is about,
  but RFC 6455 4.2.2 expects an HTTP error status when a server does not accept a
  handshake.

Waits: ``HANDSHAKE_WAIT`` = 10 s for each handshake's answer and ``ECHO_WAIT`` = 10 s for
the echo on the negotiated connection, scaled by ``--gaps-time-scale``.  No hint changes
them (``handshake_timeout`` says when a server drops a stalled handshake, not how fast it
answers a complete one), and a prompt answer ends each wait at once.

Evidence: every handshake's offer and answer (status, bounded headers and body through
``HandshakeResponse.evidence``) and the frames of the negotiated connection.  Header values
from the target are quoted bounded (``SHOWN`` characters).
"""

from __future__ import annotations

from typing import Any

from gaps.manifest import FieldReader
from gaps.probe import (
    Outcome,
    ProbeContext,
    check,
    failed,
    manifest_key,
    non_strict,
    passed,
    skipped,
)
from gaps.toolkit import quote
from gaps.wire.client import Attempt
from gaps.wire.errors import (
    ClosedError,
    HandshakeRefused,
    HandshakeTimeout,
    MalformedAnswer,
    NoAnswer,
    ReceiveTimeout,
)

ENDPOINT = "subprotocols"
HANDSHAKE_WAIT = 10.0
ECHO_WAIT = 10.0
MAX_SINGLE = 4  # supported protocols offered one by one in never-unoffered
SHOWN = 100  # characters of a target's header value quoted in a summary
HEADER = "Sec-WebSocket-Protocol"


def _read_protocols(r: FieldReader, value: Any, fieldname: str) -> tuple[str, ...]:
    return r.strings(value, fieldname)


SUPPORTED = manifest_key(ENDPOINT, "subprotocols", _read_protocols,
                         "the protocols the endpoint supports, in the server's preference",
                         default=())


def _selected(answer: Attempt) -> list[str]:
    """The protocol values of a 101 answer (empty for no header or no 101)."""
    if not answer.accepted:
        return []
    assert answer.response is not None
    return answer.response.values(HEADER)


def _unoffered(answer: Attempt, offer: list[str]) -> bool:
    """True when a 101 names anything but exactly one of the offered protocols."""
    if not answer.accepted or answer.header(HEADER) is None:
        return False
    chosen = _selected(answer)
    return len(chosen) != 1 or chosen[0] not in offer


def _evidence(answer: Attempt, offer: list[str]) -> dict[str, Any]:
    facts: dict[str, Any] = {"offer": offer, **answer.evidence()}
    if answer.response is not None:
        facts["protocol"] = quote(answer.header(HEADER), SHOWN) or None
    return facts


def _supported(ctx: ProbeContext) -> list[str]:
    return list(SUPPORTED.value(ctx.manifest))


def _bogus(ctx: ProbeContext) -> str:
    supported = set(_supported(ctx))
    for _ in range(10):  # bounded: a clash with a listed name is already unlikely
        name = f"wsgaps-bogus-{ctx.rng.randrange(16**6):06x}"
        if name not in supported:
            return name
    raise RuntimeError("could not draw a bogus protocol name outside the supported list")


def _offer_text(offer: list[str]) -> str:
    return "[" + ", ".join(offer) + "]" if offer else "no offer"


def judge_refusal(what: str, answer: Attempt, offer: list[str]) -> Outcome:
    """The verdict of refuses-bogus and no-offer on one answer (see the module docstring)."""
    evidence = {"handshake": _evidence(answer, offer)}
    if answer.response is None:
        if answer.dropped:
            return non_strict(f"{what}: declined by closing the connection without an HTTP "
                              "answer (RFC 6455 4.2.2 expects an HTTP error status)", **evidence)
        return failed(f"{what}: {answer.problem}", **evidence)
    status = answer.response.status
    if status == 101:
        header = answer.header(HEADER)
        if header is not None:  # an empty value names no offered protocol either (4.2.2)
            return failed(f"{what}: accepted with {HEADER}: {quote(header, SHOWN)!r}",
                          **evidence)
        return passed(f"{what}: accepted without a {HEADER} header", **evidence)
    if 400 <= status < 500:
        return passed(f"{what}: refused with HTTP {status}", **evidence)
    return failed(f"{what}: answered HTTP {status}, neither a 4xx refusal nor a 101 "
                  f"without {HEADER}", **evidence)


@check("subprotocols.selects-offered", needs=(ENDPOINT,), absent="subprotocols",
       budget=HANDSHAKE_WAIT + ECHO_WAIT + 20)
async def selects_offered(ctx: ProbeContext) -> Outcome:
    supported = _supported(ctx)
    if not supported:
        return skipped(f"the manifest lists no protocols in endpoints.{ENDPOINT}.subprotocols")
    wait = ctx.plan_wait(HANDSHAKE_WAIT)
    echo_wait = ctx.plan_wait(ECHO_WAIT, name="echo")
    offer = [_bogus(ctx), *supported]
    facts: dict[str, Any] = {"offer": offer, "supported": supported}
    try:
        client = await ctx.connect(ENDPOINT, timeout=wait, subprotocols=offer, auto_pong=True)
    except HandshakeRefused as exc:
        return failed(f"offer {_offer_text(offer)} refused with HTTP {exc.response.status}",
                      handshake=exc.response.evidence(), **facts)
    except HandshakeTimeout:
        return failed(f"offer {_offer_text(offer)}: no answer within {wait:.1f} s", **facts)
    except (MalformedAnswer, NoAnswer) as exc:
        return failed(f"offer {_offer_text(offer)}: {str(exc)[:300]}", **facts)
    facts["handshake"] = client.response.evidence()
    chosen = client.response.values(HEADER)
    header = quote(client.subprotocol, SHOWN)
    if not chosen:
        return failed(f"offer {_offer_text(offer)} accepted without selecting a protocol "
                      f"(no {HEADER} header)", **facts)
    if len(chosen) != 1 or chosen[0] not in offer:
        return failed(f"offer {_offer_text(offer)} answered with {header!r}, which was not "
                      "offered (RFC 6455 4.2.2)", **facts)
    if chosen[0] not in supported:
        return failed(f"offer {_offer_text(offer)}: selected {header!r}, which the target "
                      "does not support: accepted blindly", **facts)
    message = f"wsgaps over {chosen[0]}".encode()
    await client.send_text(message)
    try:
        echoed = await client.recv_message(echo_wait, max_size=4 * len(message))
    except ReceiveTimeout:
        return failed(f"selected {chosen[0]!r}, but no echo within {echo_wait:.1f} s",
                      **facts, **client.evidence())
    except ClosedError as exc:
        return failed(f"selected {chosen[0]!r}, but then {exc}", **facts, **client.evidence())
    if echoed.data != message:
        return failed(f"selected {chosen[0]!r}, but the echo differs", **facts,
                      **client.evidence())
    return passed(f"offer {_offer_text(offer)}: selected {chosen[0]!r}, a supported protocol "
                  "that was offered; the connection echoes", selected=chosen[0], **facts,
                  **client.evidence())


@check("subprotocols.never-unoffered", needs=(ENDPOINT,),
       budget=(MAX_SINGLE + 4) * HANDSHAKE_WAIT + 20)
async def never_unoffered(ctx: ProbeContext) -> Outcome:
    wait = ctx.plan_wait(HANDSHAKE_WAIT)
    supported = _supported(ctx)
    bogus = _bogus(ctx)
    offers = [[name] for name in supported[:MAX_SINGLE]]
    if len(supported) > 1:
        offers.append(list(reversed(supported)))
    offers += [[bogus, *supported], [bogus], []]
    answers = [(offer, await ctx.handshake(ENDPOINT, wait=wait, subprotocols=offer))
               for offer in offers]
    evidence = {"wait": wait, "handshakes": [_evidence(a, o) for o, a in answers]}
    bad = [(o, a) for o, a in answers if _unoffered(a, o)]
    if bad:
        shown = "; ".join(f"{_offer_text(o)} -> {quote(a.header(HEADER), SHOWN)!r}"
                          for o, a in bad[:3])
        return failed(f"{len(bad)} of {len(answers)} handshakes got a protocol that was not "
                      f"offered: {shown} (RFC 6455 4.2.2, 4.1)", **evidence)
    if all(a.response is None for _, a in answers):
        return failed(f"none of {len(answers)} handshakes got an HTTP answer "
                      f"({answers[-1][1].problem})", **evidence)
    picks = [f"{_offer_text(o)} -> "
             + (repr(quote(a.header(HEADER), SHOWN)) if a.accepted and a.header(HEADER)
                else (f"HTTP {a.status}" if a.response else "no answer"))
             for o, a in answers]
    return passed(f"{len(answers)} handshakes, none got a protocol it did not offer: "
                  + "; ".join(picks), **evidence)


@check("subprotocols.refuses-bogus", needs=(ENDPOINT,), budget=HANDSHAKE_WAIT + 20)
async def refuses_bogus(ctx: ProbeContext) -> Outcome:
    wait = ctx.plan_wait(HANDSHAKE_WAIT)
    bogus = _bogus(ctx)
    answer = await ctx.handshake(ENDPOINT, wait=wait, subprotocols=[bogus])
    return judge_refusal(f"offer [{bogus}] (unsupported only)", answer, [bogus])


@check("subprotocols.no-offer", needs=(ENDPOINT,), budget=HANDSHAKE_WAIT + 20)
async def no_offer(ctx: ProbeContext) -> Outcome:
    wait = ctx.plan_wait(HANDSHAKE_WAIT)
    answer = await ctx.handshake(ENDPOINT, wait=wait)
    return judge_refusal("no offer", answer, [])

