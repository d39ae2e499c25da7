"""Gap 5, error handling: bad handshakes, bad application input, protocol violations.

Autobahn|Testsuite covers frame-level violations but never the opening handshake; this probe
covers both.  Every connection it opens answers the target's Pings (``auto_pong``), so a
short keepalive can never decide a verdict.

Checks and verdicts:

- ``handshake`` [capability]: four handshakes on ``echo``, at once: no ``Sec-WebSocket-Key``
  (400 passes; another 4xx is ``non-strict``, RFC 6455 4.2.1 names 400), ``Sec-WebSocket-
  Version: 99`` (any 4xx), ``POST`` with the upgrade headers and ``Content-Length: 0`` (any
  4xx; 4.1 and 4.2.1 require GET) and a plain ``GET`` without upgrade headers (any answer
  but a 5xx or a 101).  A 5xx, a 101, no answer within the wait (a hang), a connection
  closed without an HTTP answer or an answer that is not HTTP fails.  Every status and the
  first bytes of every body are evidence.
- ``version-header`` [conformance]: the answer to ``Sec-WebSocket-Version: 99`` must be a
  4xx carrying ``Sec-WebSocket-Version`` with the versions the server understands (4.2.2,
  4.4: a MUST): a list of version numbers that names 13 (the version ``echo`` accepts) and
  not 99.  400 and 426 both qualify.  No header, another list, a non-4xx answer or none
  fails.
- ``app-errors`` [capability, needs ``chat``]: invalid JSON, and a JSON object missing the
  ``message`` field, each on its own connection, must be answered with a structured error:
  a JSON object carrying every field of the error shape as a non-empty string or a number.
  The shape is the contract's (``error.code``, ``error.message``) unless the manifest names
  the stack's own documented one (``endpoints.chat.error_shape``).  Silence, the text
  ``null``, unstructured text, an acknowledgement, a Close or the TCP end fails; so does a
  connection that answers the error but then does not answer a valid chat message (it was
  dropped).  The check measures the stack's handler error model: where the manifest says the
  adapter answers bad input itself (``endpoints.chat.adapter_errors``, with the reason), it
  would measure wsgaps's shared contract code, so it is ``skip`` with that reason.
  ``absent.app-errors`` makes it a declared fail.
- ``isolation`` [capability, alone on its instance]: three bystander clients on ``echo``
  each echo once; then every violation of the two checks below is committed at once, each by its own
  offender connection, which answers a Close from the server and gets up to
  ``SETTLE_WAIT`` for its TCP connection to end (a crash while the server cleans up an
  offender happens by then), and ``GRACE`` more passes; then every bystander must echo
  again, without a Close frame in between, a new client must be able to connect and
  echo, and the target's process must still run then.  If a bystander cannot echo before
  any violation, isolation cannot be judged: ``error``.
- ``protocol-errors`` [conformance]: five violations, each on its own connection: an
  unmasked Text frame (RFC 6455 5.1), a Text frame with RSV2 set and no extension
  negotiated (5.2), a frame with the reserved opcode 0x3 (5.2), a Ping without FIN (5.5:
  control frames MUST NOT be fragmented) and a continuation frame with no message to
  continue (5.4).  Each must fail the connection (7.1.7): Close 1002 passes; a Close with
  another code, or the TCP end without a Close frame, is ``non-strict`` (7.4.1 names 1002;
  8.1 only requires failing the connection); an echo of the violating frame, or a connection
  still open (answering a valid message, or answering nothing) after the waits, fails.
- ``invalid-utf8`` [conformance]: a Text message with bytes that are never UTF-8 (0xFF 0xFE)
  in one frame, and a Text message in two fragments whose invalid sequence straddles the
  boundary (the first fragment ends with the first two bytes of a 3-byte sequence, the
  second starts with ``(``; each fragment is harmless on its own): 1007 passes (8.1, 7.4.1),
  another code or the TCP end is ``non-strict``, an echo or an open connection fails.

For the last two: after a violation the probe waits up to ``VIOLATION_WAIT`` for a Close
frame, the TCP end or data; the first of them decides.  Nothing within the wait: it sends a
valid Text message to tell "still open" from "slow": an echo fails ("carried on"), a Close
or TCP end is judged as above (with its delay), nothing within ``ECHO_WAIT`` fails ("stays
open").  A Pong to the fragmented Ping is recorded, not decisive.  The verdict of a check is
its worst sub-result (fail, then non-strict, then pass), and every sub-result is evidence.

Waits (scaled by ``--gaps-time-scale``; no hint changes them, and an early answer ends each
one at once): ``HANDSHAKE_WAIT`` = 10 s per handshake, ``ERROR_WAIT`` = 10 s for each answer
on ``chat``, ``VIOLATION_WAIT`` = 5 s after a violation, ``ECHO_WAIT`` = 10 s for an echo,
``SETTLE_WAIT`` = 2 s for the offenders of ``isolation``, then ``GRACE`` = 1 s (0.5 s before
issue 23: a crash in clean-up comes later on a loaded machine, where a target gets a share of
a core).
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass
from typing import Any

from gaps.manifest import FieldReader
from gaps.model import ErrorReason, Verdict
from gaps.probe import (
    ALONE,
    Outcome,
    ProbeContext,
    check,
    errored,
    failed,
    manifest_key,
    passed,
    skipped,
)
from gaps.toolkit import (
    CLOSE,
    DATA,
    OPEN,
    TCP,
    Ending,
    NoMessage,
    combine,
    echo_once,
    expect_close,
    quote,
    receive,
    show,
    since_open,
)
from gaps.wire.client import Attempt, Message, WireClient
from gaps.wire.errors import ClosedError, HandshakeFailed, SendTimeout
from gaps.wire.frames import Close, CloseCode, Opcode

HANDSHAKE_WAIT = 10.0
ERROR_WAIT = 10.0
VIOLATION_WAIT = 5.0
ECHO_WAIT = 10.0
SETTLE_WAIT = 2.0
GRACE = 1.0  # isolation: after the offenders' connections are over, before the bystanders

BODY_SHOWN = 60  # bytes of a refusal's body quoted in a summary
VERSION_HEADER = "Sec-WebSocket-Version"
UNSUPPORTED_VERSION = "99"
UNDERSTOOD_VERSION = "13"  # the version every handshake of the harness uses
CONTRACT_ERROR_SHAPE = ("error.code", "error.message")
BYSTANDERS = 3
ANSWER_MAX = 64 * 1024  # bytes of one answer on chat


# -- handshake ---------------------------------------------------------------------------


@dataclass(frozen=True)
class BadHandshake:
    name: str
    what: str
    rule: str  # "400", "4xx" or "non-5xx"
    request: dict[str, Any]


BAD_HANDSHAKES = (
    BadHandshake("no-key", "no Sec-WebSocket-Key", "400", {"key": None}),
    BadHandshake("version-99", f"Sec-WebSocket-Version: {UNSUPPORTED_VERSION}", "4xx",
                 {"version": UNSUPPORTED_VERSION}),
    BadHandshake("post", "POST with upgrade headers", "4xx",
                 {"method": "POST", "headers": [("Content-Length", "0")]}),
    BadHandshake("plain-get", "plain GET (no upgrade headers)", "non-5xx",
                 {"upgrade": False, "key": None, "version": None,
                  "headers": [("Connection", "close")]}),
)


def _answer_text(answer: Attempt) -> str:
    """``HTTP 400 b'Bad Request'``, or why there was no HTTP answer."""
    if answer.response is None:
        return answer.problem
    body = answer.response.body.strip()
    return f"HTTP {answer.status}" + (f" {show(body, BODY_SHOWN)}" if body else "")


def judge_handshake(bad: BadHandshake, answer: Attempt) -> tuple[Verdict, str]:
    """The verdict for one bad handshake's answer, and one line saying why."""
    said = f"{bad.what} -> {_answer_text(answer)}"
    if answer.response is None:
        if answer.timed_out:
            return Verdict.FAIL, f"{said} (a hang)"
        return Verdict.FAIL, f"{said} (no HTTP answer)"
    status = answer.response.status
    if status == 101:
        return Verdict.FAIL, f"{said} (accepted)"
    if status >= 500:
        return Verdict.FAIL, f"{said} (a server error)"
    if bad.rule == "non-5xx":
        return Verdict.PASS, said
    if not 400 <= status < 500:
        return Verdict.FAIL, f"{said} (not a 4xx refusal)"
    if bad.rule == "400" and status != 400:
        return Verdict.NON_STRICT, f"{said} (a refusal; RFC 6455 4.2.1 names 400 Bad Request)"
    return Verdict.PASS, said


@check("error-handling.handshake", budget=HANDSHAKE_WAIT + 20)
async def handshake(ctx: ProbeContext) -> Outcome:
    wait = ctx.plan_wait(HANDSHAKE_WAIT)
    answers = await asyncio.gather(*(ctx.handshake("echo", wait=wait, **bad.request)
                                     for bad in BAD_HANDSHAKES))
    judged = [judge_handshake(bad, answer) for bad, answer in zip(BAD_HANDSHAKES, answers,
                                                                  strict=True)]
    evidence = {"wait": wait, "handshakes": [
        {"name": bad.name, "request": bad.what, "expected": bad.rule, "verdict": str(v),
         **answer.evidence()}
        for bad, answer, (v, _) in zip(BAD_HANDSHAKES, answers, judged, strict=True)]}
    return combine(judged, **evidence)


@check("error-handling.version-header", budget=HANDSHAKE_WAIT + 20)
async def version_header(ctx: ProbeContext) -> Outcome:
    wait = ctx.plan_wait(HANDSHAKE_WAIT)
    answer = await ctx.handshake("echo", wait=wait, version=UNSUPPORTED_VERSION)
    asked = f"Sec-WebSocket-Version: {UNSUPPORTED_VERSION}"
    evidence = {"wait": wait, "handshake": answer.evidence()}
    if answer.response is None:
        return failed(f"{asked}: {answer.problem}", **evidence)
    status = answer.response.status
    header = answer.header(VERSION_HEADER)
    shown = f"{VERSION_HEADER}: {quote(header)!r}" if header is not None else (
        f"no {VERSION_HEADER} header")
    if status == 101:
        return failed(f"{asked} was accepted (HTTP 101); RFC 6455 4.4 requires a refusal "
                      "that lists the supported versions", **evidence)
    if not 400 <= status < 500:
        return failed(f"{asked} answered HTTP {status} with {shown}; RFC 6455 4.4 requires "
                      "an HTTP error code such as 426 with the header", **evidence)
    if header is None:
        return failed(f"{asked} refused with HTTP {status} but without a {VERSION_HEADER} "
                      "header (RFC 6455 4.2.2, 4.4: the server MUST send the versions it "
                      "understands)", **evidence)
    versions = answer.response.values(VERSION_HEADER)
    if not versions or not all(v.isdigit() for v in versions):
        return failed(f"{asked} refused with HTTP {status} and {shown}, not a list of "
                      "version numbers (RFC 6455 4.4, 11.3.5)", **evidence)
    if UNDERSTOOD_VERSION not in versions or UNSUPPORTED_VERSION in versions:
        return failed(f"{asked} refused with HTTP {status} and {shown}, which does not name "
                      f"{UNDERSTOOD_VERSION} (the version the echo endpoint accepts) or names "
                      f"the refused {UNSUPPORTED_VERSION}", **evidence)
    return passed(f"{asked} refused with HTTP {status} and {shown}", **evidence)


# -- application errors -----------------------------------------------------------------

DOTTED = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z_][A-Za-z0-9_-]*)*$")


def _read_shape(r: FieldReader, value: Any, fieldname: str) -> tuple[str, ...]:
    shape = r.strings(value, fieldname)
    for dotted in shape:
        if not DOTTED.match(dotted):
            raise r.fail(fieldname, f"{dotted!r} is not a dotted field name such as "
                                    "'error.message'")
    return shape


def _read_reason(r: FieldReader, value: Any, fieldname: str) -> str:
    if not r.string(value, fieldname).strip():
        raise r.fail(fieldname, "must say why (with a source), not be empty")
    return value


# The dotted fields a structured error carries in the stack's own documented shape (not
# set: the contract's error.code and error.message), and, where the adapter rather than
# the stack answers bad input, why (the check skips: it would measure wsgaps).
ERROR_SHAPE = manifest_key("chat", "error_shape", _read_shape,
                           "the dotted fields of the stack's own documented error shape",
                           default=())
ADAPTER_ERRORS = manifest_key("chat", "adapter_errors", _read_reason,
                              "why the adapter, not the stack, answers bad chat input")

INVALID_JSON = b'{"user": "wsgaps", "message": "unterminated'
MISSING_FIELD = b'{"user": "wsgaps", "room": "wsgaps-room"}'
VALID_CHAT = b'{"user": "wsgaps", "message": "after the error", "room": "wsgaps-room"}'


def _field(data: Any, dotted: str) -> Any:
    for name in dotted.split("."):
        if not isinstance(data, dict) or name not in data:
            return None
        data = data[name]
    return data


def judge_error_reply(got: Message | NoMessage, shape: tuple[str, ...]) -> str:
    """Why ``got`` is not a structured error of ``shape``, or "" when it is one."""
    if isinstance(got, NoMessage):
        return f"no structured error: {got.said('answer')}"
    text = got.data.strip()
    if text == b"null":
        return "answered with the text null"
    try:
        data = json.loads(got.data)
    except (ValueError, UnicodeDecodeError):
        return f"answered with text that is not JSON: {show(got.data)}"
    if not isinstance(data, dict):
        return f"answered with JSON that is not an object: {show(got.data)}"
    if data.get("status") == "received":
        return f"acknowledged the bad input as a chat message: {show(got.data)}"
    missing = [d for d in shape
               if not ((isinstance(v := _field(data, d), str) and v.strip())
                       or (isinstance(v, int | float) and not isinstance(v, bool)))]
    if missing:
        return (f"answered without {', '.join(missing)} (the error shape "
                f"{', '.join(shape)}): {show(got.data)}")
    return ""


async def _bad_input(ctx: ProbeContext, what: str, payload: bytes, shape: tuple[str, ...],
                     wait: float) -> tuple[str, dict[str, Any]]:
    """Send ``payload`` on a new chat connection; ("" or the problem, evidence)."""
    client = await ctx.connect("chat", auto_pong=True)
    facts: dict[str, Any] = {"input": what, "sent": payload.decode()}
    try:
        await client.send_text(payload)
    except (ClosedError, SendTimeout) as exc:
        return f"{what}: {exc}", {**facts, **client.evidence()}
    got = await receive(client, wait, ANSWER_MAX)
    problem = judge_error_reply(got, shape)
    if isinstance(got, Message):
        facts["reply"] = got.data[:300].decode("utf-8", "replace")
    if problem:
        return f"{what}: {problem}", {**facts, **client.evidence()}
    try:
        await client.send_text(VALID_CHAT)
    except (ClosedError, SendTimeout) as exc:
        return f"{what}: the error came, then {exc}", {**facts, **client.evidence()}
    after = await receive(client, wait, ANSWER_MAX)
    if isinstance(after, NoMessage):
        return (f"{what}: the error came, but a valid chat message after it got no answer "
                f"({after.said('answer')}): the connection was dropped"), {
                    **facts, **client.evidence()}
    facts["reply_after"] = after.data[:300].decode("utf-8", "replace")
    return "", {**facts, **client.evidence()}


@check("error-handling.app-errors", needs=("chat",), absent="app-errors",
       budget=2 * ERROR_WAIT + 20)
async def app_errors(ctx: ProbeContext) -> Outcome:
    adapter_errors = ADAPTER_ERRORS.value(ctx.manifest)
    if adapter_errors:
        return skipped("the adapter, not the stack, answers bad chat input (through the "
                       "shared contract code), so observing it would measure wsgaps: "
                       f"{adapter_errors}")
    declared_shape = ERROR_SHAPE.value(ctx.manifest)
    shape = declared_shape or CONTRACT_ERROR_SHAPE
    wait = ctx.plan_wait(ERROR_WAIT)
    cases = (("invalid JSON", INVALID_JSON), ("a message without its message field",
                                               MISSING_FIELD))
    results = await asyncio.gather(*(_bad_input(ctx, what, payload, shape, wait)
                                     for what, payload in cases))
    evidence = {"wait": wait, "error_shape": list(shape),
                "shape_from": "manifest" if declared_shape else "contract",
                "cases": [facts for _, facts in results]}
    problems = [problem for problem, _ in results if problem]
    if problems:
        return failed("; ".join(problems), **evidence)
    replies = "; ".join(f"{facts['input']} -> {quote(facts['reply'], 120)!r}"
                        for _, facts in results)
    return passed(f"structured errors ({', '.join(shape)}), connection kept: {replies}",
                  **evidence)


# -- protocol violations -----------------------------------------------------------------


@dataclass(frozen=True)
class Violation:
    name: str
    what: str
    rule: str
    frames: tuple[tuple[int, bytes, dict[str, Any]], ...]  # (opcode, payload, send_frame kw)

    @property
    def payload(self) -> bytes:
        """The data of all the violation's frames, joined (what an echo would carry)."""
        return b"".join(payload for _, payload, _ in self.frames)


PROTOCOL_VIOLATIONS = (
    Violation("unmasked", "an unmasked Text frame", "RFC 6455 5.1",
              ((Opcode.TEXT, b"wsgaps: unmasked", {"mask": False}),)),
    Violation("reserved-bits", "a Text frame with RSV2 set, no extension negotiated",
              "RFC 6455 5.2", ((Opcode.TEXT, b"wsgaps: rsv2", {"rsv2": True}),)),
    Violation("reserved-opcode", "a frame with the reserved opcode 0x3", "RFC 6455 5.2",
              ((0x3, b"wsgaps: opcode 3", {}),)),
    Violation("fragmented-control", "a Ping without FIN (a fragmented control frame)",
              "RFC 6455 5.5", ((Opcode.PING, b"wsgaps", {"fin": False}),)),
    Violation("stray-continuation", "a continuation frame with no message to continue",
              "RFC 6455 5.4", ((Opcode.CONT, b"wsgaps: stray", {}),)),
)

UTF8_VIOLATIONS = (
    Violation("whole", "a Text message with the bytes 0xFF 0xFE", "RFC 6455 8.1",
              ((Opcode.TEXT, "wsgaps κόσμε ".encode() + b"\xff\xfe end", {}),)),
    Violation("split", "a Text message in 2 fragments, the invalid sequence across them",
              "RFC 6455 8.1",
              ((Opcode.TEXT, b"wsgaps split \xe2\x82", {"fin": False}),
               (Opcode.CONT, b"( end", {}))),
)

FOLLOW_UP = b"wsgaps: a valid message after the violation"


async def _send_violation(client: WireClient, violation: Violation) -> str:
    """Send the violation's frames; "" or the reason sending stopped."""
    try:
        for opcode, payload, options in violation.frames:
            await client.send_frame(opcode, payload, **options)
    except (ClosedError, SendTimeout) as exc:
        return str(exc)
    return ""


@dataclass(frozen=True)
class Answer:
    """How a connection answered a violation: its ending, and whether the ending came only
    after the valid follow-up message (the wait alone decided nothing)."""

    ending: Ending
    followed_up: bool
    client: WireClient


async def commit(ctx: ProbeContext, violation: Violation, expected: CloseCode, wait: float,
                 echo_wait: float) -> Answer:
    """Commit ``violation`` on a new ``echo`` connection and see how the connection ends.

    After ``wait`` without a decisive event, a valid message tells "still open" (it is
    echoed: ``data``) from "slow" (a Close or TCP end comes instead); nothing at all within
    ``echo_wait`` is ``open``.
    """
    client = await ctx.connect("echo", auto_pong=True)
    sent_at = since_open(client)
    problem = await _send_violation(client, violation)
    ending = await expect_close(client, (expected,), wait, since=sent_at, data_decides=True)
    if problem:
        ending.notes.append(f"sending stopped: {problem}")
    if ending.how != OPEN:
        return Answer(ending, False, client)
    notes = ending.notes
    try:
        await client.send_text(FOLLOW_UP)
    except (ClosedError, SendTimeout) as exc:
        notes.append(f"the valid message could not be sent: {exc}")
    ending = await expect_close(client, (expected,), echo_wait, since=sent_at,
                                data_decides=True)
    ending.notes = [*notes, "decided after a valid message was sent"]
    if ending.how == OPEN:
        ending.after = wait + echo_wait
    return Answer(ending, True, client)


def judge_answer(violation: Violation, answer: Answer) -> tuple[Verdict, str]:
    """The verdict for how a connection answered ``violation`` (see the module docstring):
    the expected Close passes, another Close or the TCP end is non-strict (the connection
    was failed), data or silence fails."""
    ending = answer.ending
    said = f"{violation.what} ({violation.rule})"
    when = f"after {ending.after:.2f} s"
    notes = f" [{'; '.join(ending.notes)}]" if ending.notes else ""
    expected = CloseCode(ending.expected[0])
    if ending.how == CLOSE:
        assert ending.close is not None
        close = ending.close
        problem = close.problem()
        extra = f"; the Close frame itself carries {problem}" if problem else ""
        if ending.as_expected:
            return Verdict.PASS, f"{said} -> Close {close.code} {when}{extra}{notes}"
        got = "a Close without a code" if close.code is None else f"Close {close.code}"
        return Verdict.NON_STRICT, (f"{said} -> {got} {when}, not {int(expected)} "
                                    f"({expected.name}){extra}{notes}")
    if ending.how == TCP:
        return Verdict.NON_STRICT, (f"{said} -> TCP closed {when} without a Close frame "
                                    f"(the connection was failed; {int(expected)} is the "
                                    f"canonical Close code){notes}")
    if ending.how == DATA:
        assert ending.frame is not None
        frame = ending.frame
        if answer.followed_up:
            how = "still open, it answered a valid message sent after the wait"
        elif frame.payload == violation.payload:
            how = "echoed the violation"
        else:
            how = "sent data in reply"
        return Verdict.FAIL, (f"{said} -> carried on: {how}, {when} ({frame.name} "
                              f"{show(frame.payload, 40)}){notes}")
    return Verdict.FAIL, (f"{said} -> stayed open: no Close, no TCP end and no answer "
                          f"{when}{notes}")


async def _judge_all(ctx: ProbeContext, violations: tuple[Violation, ...],
                     expected: CloseCode) -> Outcome:
    wait = ctx.plan_wait(VIOLATION_WAIT)
    echo_wait = ctx.plan_wait(ECHO_WAIT, name="echo")
    answers = await asyncio.gather(*(commit(ctx, v, expected, wait, echo_wait)
                                     for v in violations))
    judged = [judge_answer(v, answer) for v, answer in zip(violations, answers, strict=True)]
    evidence: dict[str, Any] = {
        "wait": wait, "echo_wait": echo_wait, "expected_code": int(expected),
        "violations": [
            {"name": v.name, "violation": v.what, "rule": v.rule, "verdict": str(verdict),
             "summary": line, "ending": answer.ending.how,
             "after_s": round(answer.ending.after, 3), **answer.client.evidence(limit=12)}
            for v, answer, (verdict, line) in zip(violations, answers, judged, strict=True)],
    }
    return combine(judged, **evidence)


@check("error-handling.protocol-errors",
       budget=VIOLATION_WAIT + ECHO_WAIT + 20)
async def protocol_errors(ctx: ProbeContext) -> Outcome:
    return await _judge_all(ctx, PROTOCOL_VIOLATIONS, CloseCode.PROTOCOL_ERROR)


@check("error-handling.invalid-utf8", budget=VIOLATION_WAIT + ECHO_WAIT + 20)
async def invalid_utf8(ctx: ProbeContext) -> Outcome:
    return await _judge_all(ctx, UTF8_VIOLATIONS, CloseCode.INVALID_DATA)


# -- isolation ---------------------------------------------------------------------------


async def _offend(ctx: ProbeContext, violation: Violation, wait: float) -> dict[str, Any]:
    """Commit ``violation`` and wait (at most ``wait``) until its connection is over.

    Over means the TCP end, not the Close frame: whatever the server does to its other
    clients while it cleans up the offender (a crash in that clean-up) happens by then.
    """
    try:
        client = await ctx.connect("echo", auto_pong=True)
    except HandshakeFailed as exc:  # e.g. the process died of an earlier offender
        return {"violation": violation.what, "ending": "not connected",
                "connect_error": str(exc)[:300]}
    sent_at = since_open(client)
    problem = await _send_violation(client, violation)
    # Data is passed over: what counts here is that the connection is over, within the wait.
    ending = await expect_close(client, (), wait, since=sent_at, until_tcp_end=True)
    after = ending.tcp_after if ending.tcp_after is not None else wait
    return {"violation": violation.what, "ending": ending.how, "close_code": client.close_code,
            "tcp_ended": ending.tcp_ended, "after_s": round(after, 3),
            "send_problem": problem or None}


def _bystander_state(client: WireClient) -> str:
    """"" while a bystander is untouched, else what happened to it."""
    if client.close_frame is not None:
        return f"got {Close.parse(client.close_frame.payload)}"
    if client.closed:
        return "its TCP connection ended"
    return ""


@check("error-handling.isolation", placement=ALONE,
       budget=3 * ECHO_WAIT + SETTLE_WAIT + 20)
async def isolation(ctx: ProbeContext) -> Outcome:
    echo_wait = ctx.plan_wait(ECHO_WAIT)
    settle = ctx.plan_wait(SETTLE_WAIT, name="settle")
    bystanders = [await ctx.connect("echo", auto_pong=True) for _ in range(BYSTANDERS)]

    async def round_of(label: str) -> list[Outcome]:
        return list(await asyncio.gather(*(
            echo_once(c, f"wsgaps bystander {i} {label}".encode(), echo_wait)
            for i, c in enumerate(bystanders))))

    before = await round_of("before")
    evidence: dict[str, Any] = {"wait": echo_wait, "settle": settle,
                                "bystanders": BYSTANDERS}
    if not all(o.verdict.passed for o in before):
        bad = next(o for o in before if not o.verdict.passed)
        return errored(ErrorReason.CANNOT_JUDGE, f"isolation cannot be judged: a bystander "
                       f"did not echo before any violation ({bad.summary})",
                       **evidence, before=[o.summary for o in before])
    violations = PROTOCOL_VIOLATIONS + UTF8_VIOLATIONS
    offenders = await asyncio.gather(*(_offend(ctx, v, settle) for v in violations))
    evidence["offenders"] = offenders
    await asyncio.sleep(ctx.scaled(GRACE))  # for damage done just after the offenders ended
    hit = [(i, state) for i, c in enumerate(bystanders) if (state := _bystander_state(c))]
    after = await round_of("after")
    problems = [f"bystander {i} {state}" for i, state in hit]
    problems += [f"bystander {i}: {o.summary}" for i, o in enumerate(after)
                 if not o.verdict.passed and not any(i == j for j, _ in hit)]
    newcomer: Outcome | str
    try:
        late = await ctx.connect("echo", auto_pong=True)
        newcomer = await echo_once(late, b"wsgaps newcomer after the violations", echo_wait)
    except HandshakeFailed as exc:  # refused, dropped, hung: evidence, not a probe error
        newcomer = f"could not connect: {exc}"
    if isinstance(newcomer, str):
        problems.append(f"a new client after the violations {newcomer}")
    elif not newcomer.verdict.passed:
        problems.append(f"a new client after the violations: {newcomer.summary}")
    if (status := ctx.instance.exit_status()) is not None:
        # Ended by now, however late after the offenders: no bystander is served any more.
        problems.append(f"the target's process ended (status {status}) after the violations")
    evidence.update(
        after=[{"summary": o.summary, **{k: o.evidence.get(k) for k in
                                         ("close_code", "close_reason", "tcp_end_at")}}
               for o in after],
        newcomer=newcomer if isinstance(newcomer, str) else newcomer.summary,
        bystander_frames=[c.evidence(limit=8) for c in bystanders],
        harness_lag_s=round(ctx.harness_lag(), 3))
    ended = ", ".join(sorted({o["ending"] for o in offenders}))
    unconnected = [o for o in offenders if o["ending"] == "not connected"]
    if unconnected and ctx.instance.exit_status() is None and not problems:
        return errored(ErrorReason.CANNOT_JUDGE, f"isolation cannot be judged: "
                       f"{len(unconnected)} of {len(violations)} offenders could not connect "
                       f"({unconnected[0]['connect_error']})", **evidence)
    # A process that ended is said first by the runner (probe.said_the_target_ended).
    if problems:
        return failed(f"after {len(violations)} protocol violations on other connections "
                      f"(offenders: {ended}): " + "; ".join(problems), **evidence)
    return passed(f"{BYSTANDERS} bystanders echoed before and after {len(violations)} "
                  f"protocol violations committed on other connections (offenders: {ended}), "
                  "and a new client connected and echoed", **evidence)

