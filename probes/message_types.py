"""Gap 3, message types: do text, binary, empty, large and fragmented messages travel intact,
and do Ping and Close follow RFC 6455?

Every check runs on ``echo`` (every message back unchanged, same opcode) with a client that
answers the target's Pings (``auto_pong``), so a short keepalive never closes it mid-check.

Checks and verdicts:

- ``text`` [capability]: one Text message mixing 1-, 2-, 3- and 4-byte UTF-8 sequences must
  come back as one Text message with identical bytes.
- ``binary`` [capability]: one Binary message holding bytes that are never valid UTF-8
  (0xFF, an overlong form, a surrogate, a lone continuation byte, all 256 byte values and
  seeded random bytes) must come back as Binary, identical.  Manifest ``absent.binary``
  makes it a declared fail.
- ``empty`` [capability]: an empty Text message, followed by a marker message, must come
  back as an empty Text message before the marker; the marker coming back first means the
  empty one was dropped, so this fails at once instead of waiting out the echo wait.
- ``large`` [capability]: a Text message of 1 MiB, or of the declared maximum when the
  ``max_message_size`` hint is smaller (``min`` of the two), of seeded random ASCII letters
  must come back identical (compared by SHA-256).  A hint never lowers the bar below
  ``LARGE_FLOOR`` (64 KiB, DESIGN.md): a declared maximum below it makes the check
  ``skip`` with the reason, never a pass on a small message.  Text, because this check measures size
  alone: a stack that cannot echo Binary already fails ``binary`` and must not fail twice.
- ``fragmented`` [capability]: one Text message sent as three frames (TEXT fin=0, CONT
  fin=0, CONT fin=1, each fragment valid UTF-8 on its own) must come back as one Text
  message equal to the three fragments joined, in any number of frames.  Manifest
  ``absent.fragmentation`` makes it a declared fail.
- ``ping-pong`` [conformance]: Pings with payloads of 0, 11, 16 and 125 bytes (the last
  seeded random, including bytes that are not UTF-8), one at a time, each must get a Pong
  with the identical payload: RFC 6455 5.5.2 ("MUST send a Pong frame in response") and
  5.5.3 ("identical Application data").  A Pong with another payload before the matching one
  is tolerated as unsolicited (5.5.3 allows those) and recorded; if no matching Pong follows
  within ``MISMATCH_GRACE`` the check fails.
- ``close-handshake`` [conformance]: the client sends Close 1000 on one connection and Close
  4000 (a private-use code, RFC 6455 7.4.2) on another.  Pass: each time a Close frame comes
  back and the TCP connection ends within the wait.  Fail: no Close frame (5.5.1: the
  endpoint "MUST send a Close frame in response"), also when TCP simply ends; TCP still open
  after the Close reply (5.5.1: "The server MUST close the underlying TCP connection
  immediately"); a reply with code 1005, 1006 or 1015 (7.4.1: these "MUST NOT be set as a
  status code in a Close control frame"), with a code outside 1000-4999 (7.4.2), with a
  one-byte body (5.5.1: a body starts with a two-byte code) or with a reason that is not
  UTF-8 (5.5.1).  Echoing the client's code is typical, not required (5.5.1), so any other
  valid code, or an empty body, passes and is named in the summary.  The second code is there
  because some stacks treat only the common codes as an end of the connection.

No check here has a ``non-strict`` verdict: the capability checks test the echo contract,
and the conformance rules they apply are MUSTs, so there is no SHOULD to miss.

Waits (each scaled by ``--gaps-time-scale``; no hint shortens them, since finishing early
only needs the echo or Pong to arrive, and they end as soon as it does):

- ``ECHO_WAIT`` = 10 s for each echo of text, binary, empty and fragmented messages.
- ``LARGE_WAIT`` = 30 s for the large echo (1 MiB each way, slow links included); the
  ``max_message_size`` hint changes the size sent, not the wait.
- ``PONG_WAIT`` = 5 s per Ping; after a Pong with another payload at most
  ``MISMATCH_GRACE`` = 1 s more for the matching one.
- ``CLOSE_WAIT`` = 10 s for the Close reply and the end of TCP after the client's Close.

Everything the target sends is recorded (``WireClient.evidence``) and only shown bounded.
"""

from __future__ import annotations

import asyncio
import hashlib

from gaps.evidence import show_bytes
from gaps.probe import Outcome, ProbeContext, check, failed, passed, skipped
from gaps.toolkit import (
    OPEN,
    TCP,
    expect_close,
    frames_until,
    judge_echo,
    now,
    receive,
    show,
    since_open,
)
from gaps.wire.client import Message, WireClient
from gaps.wire.errors import ClosedError
from gaps.wire.frames import Close, Opcode

ECHO_WAIT = 10.0
LARGE_WAIT = 30.0
PONG_WAIT = 5.0
MISMATCH_GRACE = 1.0
CLOSE_WAIT = 10.0

LARGE_SIZE = 1024 * 1024
LARGE_FLOOR = 64 * 1024  # the least "large" means, whatever the manifest declares
LETTERS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

# One character of each UTF-8 length: 1 byte (ASCII), 2 (é ß Ω), 3 (€ 日本語), 4 (🚀 𝄞).
TEXT = "wsgaps: ascii, é ß Ω, € 日本語, 🚀 𝄞 (1- to 4-byte UTF-8)"
NOT_UTF8 = (
    b"\xff\xfe\xfd"  # bytes that never occur in UTF-8
    + b"\xc0\xaf"  # overlong encoding of '/'
    + b"\xed\xa0\x80"  # UTF-16 surrogate U+D800
    + b"\x80"  # continuation byte without a lead
    + bytes(range(256))
)
FRAGMENTS = ("wsgaps fragment 1/3 ", "· fragment 2/3 é ", "· fragment 3/3 🚀")
CLOSE_REASON = "wsgaps: closing handshake"


@check("message-types.text", budget=ECHO_WAIT + 20)
async def text(ctx: ProbeContext) -> Outcome:
    wait = ctx.plan_wait(ECHO_WAIT)
    client = await ctx.connect("echo", auto_pong=True)
    payload = TEXT.encode()
    await client.send_text(payload)
    got = await receive(client, wait, 4 * len(payload))
    return judge_echo(f"a {len(payload)}-byte text message of 1- to 4-byte UTF-8",
                       Opcode.TEXT, payload, got, client, wait=wait)


@check("message-types.binary", absent="binary", budget=ECHO_WAIT + 20)
async def binary(ctx: ProbeContext) -> Outcome:
    wait = ctx.plan_wait(ECHO_WAIT)
    client = await ctx.connect("echo", auto_pong=True)
    payload = NOT_UTF8 + ctx.rng.randbytes(256)
    await client.send_binary(payload)
    got = await receive(client, wait, 4 * len(payload))
    return judge_echo(f"a {len(payload)}-byte binary message that is not UTF-8",
                       Opcode.BINARY, payload, got, client, wait=wait, seed=ctx.seed)


@check("message-types.empty", budget=ECHO_WAIT + 20)
async def empty(ctx: ProbeContext) -> Outcome:
    wait = ctx.plan_wait(ECHO_WAIT)
    client = await ctx.connect("echo", auto_pong=True)
    marker = b"wsgaps: the message after the empty one"
    await client.send_text(b"")
    await client.send_text(marker)
    got = await receive(client, wait, 4 * len(marker))
    if isinstance(got, Message) and got.data == marker:
        # Echo keeps order, so the marker first means the empty message was dropped.
        return failed("the empty text message was not echoed: the message sent after it "
                      "came back first", sent_opcode="TEXT", wait=wait, **client.evidence())
    return judge_echo("an empty text message", Opcode.TEXT, b"", got, client, wait=wait)


@check("message-types.large", budget=LARGE_WAIT + 30)
async def large(ctx: ProbeContext) -> Outcome:
    wait = ctx.plan_wait(LARGE_WAIT)
    declared = ctx.hint("max_message_size")
    if declared is not None and declared < LARGE_FLOOR:
        return skipped(f"the target declares max_message_size = {declared:g} bytes, below "
                       f"the {LARGE_FLOOR} bytes this check sends at the least: a hint never "
                       f"lowers the bar, so large messages are not judged here",
                       declared_max=declared, floor=LARGE_FLOOR)
    size = LARGE_SIZE if declared is None else min(LARGE_SIZE, int(declared))
    client = await ctx.connect("echo", auto_pong=True)
    payload = bytes(ctx.rng.choices(LETTERS, k=size))
    loop = asyncio.get_running_loop()
    started = loop.time()
    await client.send_text(payload)
    got = await receive(client, wait, 2 * size + 1024)
    elapsed = loop.time() - started
    facts: dict[str, object] = {
        "size": size, "declared_max": declared, "seed": ctx.seed, "wait": wait,
        "round_trip_s": round(elapsed, 3),
        "sent_sha256": hashlib.sha256(payload).hexdigest(),
    }
    if isinstance(got, Message):
        facts["echo_sha256"] = hashlib.sha256(got.data).hexdigest()
    limit = f"declared maximum {int(declared)}" if declared else "no declared maximum"
    what = f"a {size}-byte text message ({limit})"
    if isinstance(got, Message) and got.opcode == Opcode.TEXT and got.data != payload:
        # Do not quote a megabyte: say where the echo first differs.
        first = next((i for i, (a, b) in enumerate(zip(got.data, payload, strict=False))
                      if a != b), min(len(got.data), len(payload)))
        return failed(f"{what} came back altered: {len(got.data)} bytes, first difference "
                      f"at byte {first}", **facts, **client.evidence())
    outcome = judge_echo(what, Opcode.TEXT, payload, got, client, **facts)
    if outcome.verdict.passed:
        outcome.summary += f" after {elapsed:.2f} s"
    return outcome


@check("message-types.fragmented", absent="fragmentation", budget=ECHO_WAIT + 20)
async def fragmented(ctx: ProbeContext) -> Outcome:
    wait = ctx.plan_wait(ECHO_WAIT)
    client = await ctx.connect("echo", auto_pong=True)
    parts = [p.encode() for p in FRAGMENTS]
    await client.send_frame(Opcode.TEXT, parts[0], fin=False)
    await client.send_frame(Opcode.CONT, parts[1], fin=False)
    await client.send_frame(Opcode.CONT, parts[2], fin=True)
    whole = b"".join(parts)
    got = await receive(client, wait, 4 * len(whole))
    outcome = judge_echo("a text message sent in 3 fragments (TEXT, CONT, CONT)",
                          Opcode.TEXT, whole, got, client, wait=wait)
    if outcome.verdict.passed and isinstance(got, Message):
        outcome.summary += f" as one message in {len(got.frames)} frame(s)"
    return outcome


async def _await_pong(client: WireClient, payload: bytes, wait: float,
                      grace: float) -> tuple[float | None, list[bytes], str]:
    """Wait for the Pong matching ``payload``: (latency or None, other Pongs, problem)."""
    started = now()
    deadline = [started + wait]  # moves closer after an unsolicited Pong
    others: list[bytes] = []
    try:
        async for frame in frames_until(client, lambda: deadline[0]):
            if frame.opcode == Opcode.CLOSE:
                return None, others, f"{Close.parse(frame.payload)} instead of a Pong"
            if frame.opcode != Opcode.PONG:
                continue  # data and the target's own Pings are not the answer
            if frame.payload == payload:
                return now() - started, others, ""
            # Possibly unsolicited (5.5.3): allow a short grace for the real answer.
            others.append(frame.payload)
            deadline[0] = min(deadline[0], now() + grace)
    except ClosedError as exc:
        return None, others, str(exc)
    if others:
        return None, others, (f"answered by a Pong with another payload "
                              f"({len(others[0])} bytes: {show(others[0])})")
    return None, others, "no Pong"


@check("message-types.ping-pong", budget=4 * (PONG_WAIT + MISMATCH_GRACE) + 20)
async def ping_pong(ctx: ProbeContext) -> Outcome:
    wait = ctx.plan_wait(PONG_WAIT)
    grace = ctx.scaled(MISMATCH_GRACE)
    client = await ctx.connect("echo", auto_pong=True)
    payloads = [b"", b"wsgaps-ping", "ping é 🚀 ∑".encode(), ctx.rng.randbytes(125)]
    answered: list[dict[str, object]] = []
    for payload in payloads:
        await client.ping(payload)
        latency, others, problem = await _await_pong(client, payload, wait, grace)
        record: dict[str, object] = {"ping_length": len(payload),
                                     "unsolicited_pongs": len(others)}
        if latency is None:
            rule = ("RFC 6455 5.5.3: a Pong answering a Ping carries identical data"
                    if others else "RFC 6455 5.5.2: a Ping MUST be answered with a Pong")
            when = "" if others else f" within {wait:.1f} s"
            return failed(f"Ping of {len(payload)} bytes: {problem}{when} ({rule})",
                          wait=wait, seed=ctx.seed, answered=answered,
                          other_pong_payloads=[show_bytes(o) for o in others[:5]],
                          **client.evidence())
        record["latency_ms"] = round(latency * 1000, 2)
        answered.append(record)
    sizes = ", ".join(str(len(p)) for p in payloads)
    return passed(f"{len(payloads)} Pings ({sizes} bytes), one at a time, each answered by a "
                  "Pong with the identical payload", wait=wait, seed=ctx.seed,
                  answered=answered, **client.evidence())


CLOSE_CODES = (1000, 4000)  # normal closure, and a private-use code (RFC 6455 7.4.2)


async def _close_once(ctx: ProbeContext, code: int, wait: float) -> Outcome:
    """Close one fresh connection with ``code`` and judge the server's answer."""
    client = await ctx.connect("echo", auto_pong=True)
    sent_at = since_open(client)
    await client.close(code, CLOSE_REASON)
    # Any code may answer (echoing ours is typical, not required): none is "expected".
    ending = await expect_close(client, (), wait, since=sent_at, until_tcp_end=True)
    evidence = {"close_sent": code, "close_sent_at": round(sent_at, 3), **client.evidence()}
    if ending.how == TCP:
        return failed(f"TCP closed {ending.after:.2f} s after the client's Close {code} "
                      "without a Close frame (RFC 6455 5.5.1: the endpoint MUST send a Close "
                      "frame in response)", **evidence)
    if ending.how == OPEN:
        return failed(f"no Close frame and TCP still open {wait:.1f} s after the client's "
                      f"Close {code} (RFC 6455 5.5.1)", **evidence)
    assert ending.close is not None
    reply_after = ending.after
    problem = ending.close.problem()
    if problem:
        return failed(f"the Close reply to {code} carries {problem}", **evidence)
    if ending.tcp_after is None:
        return failed(f"Close reply to {code} after {reply_after:.2f} s, but TCP still open "
                      f"{wait:.1f} s after the client's Close (RFC 6455 5.5.1: the server MUST "
                      "close the TCP connection immediately)", **evidence)
    got = ending.close.code
    if got is None:
        how = "an empty Close (no code; allowed by RFC 6455 5.5.1)"
    elif got == code:
        how = f"Close {got}, the same code as sent"
    else:
        how = f"Close {got} (the same code is typical, not required: RFC 6455 5.5.1)"
    return passed(f"Close {code} answered after {reply_after:.3f} s with {how}, TCP ended "
                  f"{ending.tcp_after:.3f} s after", **evidence)


@check("message-types.close-handshake", budget=len(CLOSE_CODES) * CLOSE_WAIT + 20)
async def close_handshake(ctx: ProbeContext) -> Outcome:
    wait = ctx.plan_wait(CLOSE_WAIT)
    outcomes = [await _close_once(ctx, code, wait) for code in CLOSE_CODES]
    evidence = {"wait": wait, "tries": [{"summary": o.summary, **o.evidence} for o in outcomes]}
    for outcome in outcomes:
        if not outcome.verdict.passed:
            return failed(outcome.summary, **evidence)
    return passed("client Closes answered: " + "; ".join(o.summary for o in outcomes),
                  **evidence)

