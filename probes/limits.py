"""Gap 10, limits: does the stack protect itself from too many connections, oversized
messages, floods and clients that stall a handshake, or must every application write that
itself?

``max-message-size`` [capability]: the declared limit (``hints.max_message_size``;
``DEFAULT_LIMIT``, 16 MiB, when none is declared; ``hints.max_frame_size`` where a stack's
frame limit is lower than its message limit, as axum's) is enforced, in three parts, each on
a connection of its own to ``echo``:

1. *below*: one Text message of ``min(limit - 1 KiB, frame limit, 16 MiB)`` ASCII bytes must
   come back identical (the limit is the limit, not a stricter one).
2. *header*: one Text frame whose header announces (frame limit + 1) bytes, at most
   ``MAX_ANNOUNCED`` (128 MiB); a larger declared limit is not probed.  The header goes out
   alone; when no refusal comes within ``AT_ONCE`` the payload is streamed after it.  A
   Close 1009 (or 1008: RFC 6455 7.4.1 allows it for "a message that violates its policy")
   passes, and the evidence says whether it came from the header alone or after the server
   read the payload (some stacks read up to their limit first; that is fine).
3. *fragments*: a Text message sent in ``FRAGMENT``-byte frames with FIN never set, so
   that the server cannot know the total from any header: it must count what it
   accumulates.  Streaming goes on until a refusal, or until the server's side has taken
   more than the limit plus the socket slack (``slack``, below); then the probe stops and
   waits ``REFUSAL_WAIT``.  A stack that judges a message's size only once the message is
   complete buffers without bound here and fails.  Sent only when the limit is at most
   ``FRAGMENT_BOUND`` (16 MiB); above that the header part stands alone, and the
   evidence says so.

For each of *header* and *fragments*: Close 1009 or 1008 is ``pass``; a TCP close without a
Close frame is ``non-strict``; another Close code, the message echoed (accepted past the
limit), the server taking more than the limit plus the slack, or no refusal at all
(``fail``), each with the bytes the server took as the figure.  "Taken" is what the
server's kernel acknowledged: bytes written minus what is still in the asyncio
transport's buffer and in our socket's send queue (``TIOCOUTQ``), so our own buffers are
never counted against the target.  The *slack* is the most its kernel may hold unread,
the largest TCP receive buffer the host allows (``net.ipv4.tcp_rmem``, its third value;
read, stated in the evidence).

On a URL target (a server the harness does not run) nothing over ``URL_MAX`` (1 MiB) is
sent: the below-limit echo is ``min(..., 1 MiB)``, the header part streams at most 1 MiB
and an unrefused header there is ``skip`` (the limit was not reached), and the fragments
part runs only when the limit plus slack fits in 1 MiB (it never does on Linux defaults).

``message-rate`` [capability], alone on its instance and holding the harness's load slot:
on ``echo``, a reader runs beside the writer (so TCP flow control is never taken for a
limit) while the writer sends a burst of ASCII Text messages numbered in order
(``wsgaps-limits rate <nonce> m00001``): ``DEFAULT_BURST`` (2,000) as fast as it can, or
4 x ``hints.rate_limit`` when declared (at most ``MAX_BURST``).  Pass: Close 1008 or 1013
after at least one echo, every echo before it intact and in order; the evidence says after
which message.  A TCP close without a Close is ``non-strict``; every message echoed with no
refusal, a later message arriving where an earlier was due (dropped silently), another
Close code, or a refusal before any echo is ``fail``.  A URL target is not flooded: ``skip``.

``connection-cap`` [capability], alone on its instance and holding the harness's load slot:
how many connections to ``echo`` the target holds before it refuses new handshakes.  With
``hints.max_connections`` (the cap) the check dials exactly that many, ``CAP_AT_ONCE`` (50)
handshakes at a time, and every one must be accepted; without it, waves go on until a
handshake is not accepted or ``CONNECTION_BUDGET`` (1,000) are held.  Only HTTP 503, 429,
or a 101 followed by Close 1013 is a refusal.  At the cap, ``PAST_CAP`` (3) more handshakes
go one at a time, and each must be refused too: a stack that accepts the new connection and
closes an old one to make room (the reference's ``cap-drops-existing``) fails here.  Then
every connection held sends one numbered ASCII Text message and must get it back: the held
connections answer Pings all along (``auto_pong``), and none may have been dropped.  A
handshake with no answer within ``CAP_HANDSHAKE_WAIT`` (5 s) is "not refused, stalled"
(``fail``); any other answer (another status, a TCP close) is ``fail`` too; no refusal within
the budget is ``fail`` with the connections held as the figure.  Either side's descriptor
limit must never read as a cap: the harness raises its own (``open_files_for``; out of
descriptors is ``error``, harness side), and each target's guard starts it with at least
4,096 (``gaps._guard``); a target whose limit is still too low for the budget is ``error``
before anything is dialled.  Both limits are in the evidence.  A stall of the harness's own
event loop while a handshake waited is "harness too slow" (``error``).  A URL target is not
loaded with connections: ``skip``.

``handshake-timeout`` [evidence]: one TCP connection writes a valid handshake request
without the empty line that ends it (``gaps.wire.stall.half_handshake``) and watches how
long the server keeps it: the figure is the seconds until it dropped it (and what it said
first, a 408 or 400), or "not dropped within N s".  Slowloris on WebSockets.  The wait is
``STALL_WAIT`` (95 s: Node's ``http`` checks ``headersTimeout``, 60 s, every
``connectionsCheckingInterval``, 30 s, so drops at 60 to 90 s), or with a
``handshake_timeout`` hint 1.5 x hint + 5 s.  It runs at once with the gap's other shared
checks (placement ``SHARED``), so the limits gap takes as long as this wait, not longer;
the planner serves the longest budgets first, so it overlaps the other gaps too.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import math
import os
import socket
import struct
import termios
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from gaps.model import ErrorReason, Verdict
from gaps.probe import (
    ALONE,
    Outcome,
    ProbeContext,
    check,
    errored,
    failed,
    non_strict,
    passed,
    skipped,
)
from gaps.toolkit import (
    CLOSE,
    DATA,
    LAG_SHARE,
    OPEN,
    TCP,
    Ending,
    NoMessage,
    combine,
    echo_once,
    expect_close,
    harness_stall,
    heavy_load,
    open_files_for,
    receive,
    show,
    wait_until,
)
from gaps.wire.client import HARNESS_ERRNOS, WireClient
from gaps.wire.errors import (
    ClosedError,
    HandshakeFailed,
    HandshakeRefused,
    HandshakeTimeout,
    ReceiveError,
    ReceiveTimeout,
    SendTimeout,
    Unreachable,
)
from gaps.wire.frames import Close, CloseCode, Opcode, opcode_name
from gaps.wire.stall import half_handshake

KIB, MIB = 1024, 1024 * 1024
DEFAULT_LIMIT = 16 * MIB
MAX_ANNOUNCED = 128 * MIB
FRAGMENT_BOUND = 16 * MIB
URL_MAX = 1 * MIB
BELOW_MAX = 16 * MIB
CHUNK = 64 * KIB  # bytes written per drain while streaming a payload
FRAGMENT = 64 * KIB  # payload bytes per frame of the fragmented message
AT_ONCE = 1.0  # a refusal this soon after the header alone came from the header
REFUSAL_WAIT = 5.0  # for a refusal after the last byte the probe sends
STREAM_WAIT = 60.0  # for streaming one part's payload (the target reads at its own pace)
ECHO_WAIT = 30.0  # for the below-limit echo (16 MiB each way)
STALL_WAIT = 95.0
DEFAULT_BURST = 2000  # messages in the burst without a rate_limit hint
MAX_BURST = 20000
RATE_WAIT = 20.0  # for the burst's echoes, or its refusal
GRACE_AFTER = 1.0  # for the reader to see the end once the writer stopped
RATE_MAX_MESSAGE = 4096
RATE_REFUSALS = (CloseCode.POLICY_VIOLATION, CloseCode.TRY_AGAIN_LATER)
ZERO_MASK = b"\0\0\0\0"  # a valid masking key that leaves the payload as it is (no XOR cost)
REFUSALS = (CloseCode.MESSAGE_TOO_BIG, CloseCode.POLICY_VIOLATION)
DEFAULT_RMEM_MAX = 6 * MIB  # Linux's default tcp_rmem max, where the host does not say


# -- limits.max-message-size -----------------------------------------------------------------

def receive_slack() -> tuple[int, str]:
    """The most a peer's kernel may hold unread on one TCP connection, and where it was read."""
    with contextlib.suppress(OSError, ValueError, IndexError), \
            open("/proc/sys/net/ipv4/tcp_rmem", encoding="ascii") as f:
        return int(f.read().split()[2]), "net.ipv4.tcp_rmem (max)"
    return DEFAULT_RMEM_MAX, "Linux default tcp_rmem max (the host does not say)"


def _queued(client: WireClient) -> int:
    """Bytes written by the probe that the server's kernel has not acknowledged: the asyncio
    transport's buffer plus our socket's send queue (unsent and unacknowledged)."""
    transport = client._writer.transport
    pending = transport.get_write_buffer_size()
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.fileno() >= 0:
        with contextlib.suppress(OSError, ValueError):
            raw = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, struct.pack("i", 0))
            pending += struct.unpack("i", raw)[0]
    return pending


def _header(length: int, *, opcode: int = Opcode.TEXT, fin: bool = True) -> bytes:
    """A masked frame header announcing ``length`` payload bytes, with the zero key."""
    first = (0x80 if fin else 0) | opcode
    if length < 126:
        head = struct.pack("!BB", first, 0x80 | length)
    elif length < 1 << 16:
        head = struct.pack("!BBH", first, 0x80 | 126, length)
    else:
        head = struct.pack("!BBQ", first, 0x80 | 127, length)
    return head + ZERO_MASK


def _refused(client: WireClient) -> bool:
    return client.close_frame is not None or client.closed


@dataclass
class Stream:
    """How one oversized part went: bytes written, taken by the server, and why it stopped."""

    sent: int = 0
    taken: int = 0
    stopped: str = ""  # "refused", "bound", "stalled", "done"

    def take(self, client: WireClient) -> None:
        """Measure again, unless the connection has ended: a closed socket's send queue is
        purged, and would count what the server never read as taken."""
        if not _refused(client):
            self.taken = max(self.taken, self.sent - _queued(client))


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def _send_all(sock: socket.socket, data: bytes) -> None:
    """Write ``data`` on ``sock`` (a duplicate of the client's socket), waiting for room."""
    loop = asyncio.get_running_loop()
    view = memoryview(data)
    while view:
        try:
            view = view[sock.send(view):]
        except BlockingIOError:
            room: asyncio.Future[None] = loop.create_future()
            loop.add_writer(sock.fileno(), _settle, room)
            try:
                await room
            finally:
                loop.remove_writer(sock.fileno())


async def _stream(client: WireClient, pieces: Iterable[bytes], bound: int, wait: float,
                  ) -> Stream:
    """Write ``pieces`` until the server refuses, until it has taken more than ``bound``
    bytes, or until ``wait`` runs out (it stopped reading: "stalled").

    The payload goes out through a duplicate of the client's socket, not its asyncio
    transport: a server that closes right after its Close frame while we still write resets
    the connection, and a write error in the transport closes the socket at once, so the
    Close frame still unread in it was lost (the refusal read as a bare TCP close, in one
    run of two on uvicorn and aiohttp).  A failed write on the duplicate leaves the client's
    reader to read what arrived, then the reset."""
    state = Stream()
    original = client._writer.transport.get_extra_info("socket")
    if original is None or original.fileno() < 0:
        state.stopped = "refused"
        return state
    sock = socket.socket(fileno=os.dup(original.fileno()))
    sock.setblocking(False)
    try:
        async with asyncio.timeout(wait):
            for piece in pieces:
                await asyncio.sleep(0)  # let the reader see a refusal already on the wire
                if _refused(client):
                    state.stopped = "refused"
                    break
                state.take(client)
                if state.taken > bound:
                    state.stopped = "bound"
                    break
                await _send_all(sock, piece)
                state.sent += len(piece)
            else:
                state.stopped = "done"
    except TimeoutError:
        state.stopped = "stalled"
    except OSError as exc:
        if exc.errno in HARNESS_ERRNOS:
            raise
        state.stopped = "refused"
    finally:
        sock.close()
    state.take(client)
    return state


def _payload(size: int) -> bytes:
    """``size`` ASCII bytes, numbered every 64 bytes so a truncation shows where."""
    line = b"".join(b"wsgaps-limits %012d " % i + b"." * 36 + b"\n" for i in range(16))
    block = (line * (-(-size // len(line))))[:size]
    return block


async def _judge(client: WireClient, what: str, state: Stream, limit: int, slack: int,
                 wait: float, *, header_only: bool, ending: Ending | None = None,
                 ) -> tuple[Verdict, str]:
    """The verdict of one oversized part once streaming stopped (``ending``: how the
    connection ended, if already seen)."""
    if ending is None:
        ending = await expect_close(client, REFUSALS, wait, data_decides=True)
    state.take(client)
    figures = (f"the server had taken {state.taken:,} bytes of {state.sent:,} sent when last "
               f"measured (limit {limit:,} + slack {slack:,})")
    from_header = " from the header alone" if header_only else ""
    if state.taken > limit + slack:
        return Verdict.FAIL, f"{what}: accepted past the limit: {figures}; then {ending}"
    if ending.how == CLOSE:
        if ending.as_expected:
            return Verdict.PASS, f"{what}: refused{from_header} with {ending}; {figures}"
        return Verdict.FAIL, f"{what}: {ending}, not 1009 or 1008; {figures}"
    if ending.how == TCP:
        return (Verdict.NON_STRICT,
                f"{what}: TCP closed without a Close frame{from_header} ({ending}); {figures}")
    if ending.how == DATA:
        return Verdict.FAIL, f"{what}: accepted, a message came back; {figures}"
    if state.stopped == "stalled":
        return Verdict.FAIL, f"{what}: not refused, the server stopped reading; {figures}"
    return Verdict.FAIL, f"{what}: never refused ({ending}); {figures}"


async def _header_part(ctx: ProbeContext, announced: int, limit: int, slack: int,
                       budget: int) -> tuple[Verdict, str, dict[str, object]]:
    what = f"one frame of {announced:,} bytes (limit + 1)"
    # No automatic Pongs on the oversized parts' connections: a Pong written while the
    # payload streams would land inside the frame.  Each lives a few seconds at most.
    client = await ctx.connect("echo", auto_pong=False)
    await client.send_raw(_header(announced), note=f"header announcing {announced:,} bytes")
    early = await expect_close(client, REFUSALS, ctx.scaled(AT_ONCE), data_decides=True)
    if early.how != OPEN:
        state = Stream()
        verdict, line = await _judge(client, what, state, limit, slack,
                                     ctx.scaled(REFUSAL_WAIT), header_only=True, ending=early)
        return verdict, line, {"header_ending": str(early), "header_taken": state.taken}
    size = min(announced, budget)
    body = _payload(size)
    state = await _stream(client, (body[i:i + CHUNK] for i in range(0, size, CHUNK)),
                          limit + slack, ctx.plan_wait(STREAM_WAIT, name="stream"))
    if state.stopped == "done" and size < announced:
        return (Verdict.SKIP, f"{what}: not refused within the {size:,} "
                f"bytes sent (a URL target is sent at most {budget:,})",
                {"header_sent": state.sent})
    # Refused before a byte of the payload went out: the header alone decided it.
    verdict, line = await _judge(client, what, state, limit, slack,
                                 ctx.plan_wait(REFUSAL_WAIT, name="refusal"),
                                 header_only=state.sent == 0)
    return verdict, line, {"header_sent": state.sent, "header_taken": state.taken,
                           "header_stopped": state.stopped}


async def _fragment_part(ctx: ProbeContext, limit: int, frame_limit: int, slack: int,
                         ) -> tuple[Verdict, str, dict[str, object]]:
    client = await ctx.connect("echo", auto_pong=False)  # see _header_part
    size = min(FRAGMENT, frame_limit)
    body = _payload(size)
    first = _header(size, opcode=Opcode.TEXT, fin=False) + body
    later = _header(size, opcode=Opcode.CONT, fin=False) + body
    # FIN is never sent: frames go on until a refusal, the bound, or the wait.
    def frames() -> Iterator[bytes]:
        yield first
        while True:
            yield later

    state = await _stream(client, frames(), limit + slack,
                          ctx.plan_wait(STREAM_WAIT, name="fragments"))
    verdict, line = await _judge(client, f"a message in {size:,}-byte fragments, never ended",
                                 state, limit, slack,
                                 ctx.plan_wait(REFUSAL_WAIT, name="fragments-refusal"),
                                 header_only=False)
    return verdict, line, {"fragments_sent": state.sent, "fragments_taken": state.taken,
                           "fragments_stopped": state.stopped}


@check("limits.max-message-size", budget=3 * STREAM_WAIT + ECHO_WAIT + 30,
       absent="max-message-size")
async def max_message_size(ctx: ProbeContext) -> Outcome:
    limit = int(ctx.hint("max_message_size") or DEFAULT_LIMIT)
    frame_limit = min(limit, int(ctx.hint("max_frame_size") or limit))
    managed = ctx.manifest.managed
    announced = frame_limit + 1
    if announced > MAX_ANNOUNCED:
        return skipped(f"the declared limit ({frame_limit:,} bytes) is above the "
                       f"{MAX_ANNOUNCED:,} bytes a header may announce here")
    slack, slack_source = receive_slack()
    budget = announced if managed else URL_MAX
    evidence: dict[str, object] = {
        "limit": limit, "frame_limit": frame_limit, "declared": ctx.hint("max_message_size")
        is not None, "slack": slack, "slack_source": slack_source, "announced": announced}
    judged: list[tuple[Verdict, str]] = []

    below = min(limit - KIB, frame_limit, BELOW_MAX if managed else URL_MAX)
    client = await ctx.connect("echo", auto_pong=True)
    echoed = await echo_once(client, _payload(below), ctx.plan_wait(ECHO_WAIT, name="below"),
                             what=f"a {below:,}-byte message below the limit")
    await client.aclose()
    judged.append((echoed.verdict if echoed.verdict is not Verdict.NON_STRICT
                   else Verdict.FAIL, echoed.summary))

    verdict, line, facts = await _header_part(ctx, announced, frame_limit, slack, budget)
    evidence.update(facts)
    judged.append((verdict, line))

    if limit > FRAGMENT_BOUND or (not managed and limit + slack > URL_MAX):
        evidence["fragments"] = (f"not sent: streaming {limit + slack:,} bytes is beyond this "
                                 f"probe's bound ({FRAGMENT_BOUND if managed else URL_MAX:,})")
    else:
        verdict, line, facts = await _fragment_part(ctx, limit, frame_limit, slack)
        evidence.update(facts)
        judged.append((verdict, line))
    skips = [line for v, line in judged if v is Verdict.SKIP]
    if skips and all(v in (Verdict.PASS, Verdict.SKIP) for v, _ in judged):
        return skipped("; ".join(line for _, line in judged), **evidence)
    return combine([(v, line) for v, line in judged if v is not Verdict.SKIP], **evidence)


# -- limits.message-rate ---------------------------------------------------------------------

@dataclass
class Burst:
    """What came back of a burst: the echoes in order, the first one wrong, the ending."""

    sent: int = 0
    echoed: int = 0  # echoes that came back intact and in order
    wrong: str = ""  # the first echo that was not the next message sent
    ended: str = ""  # why the reader stopped ("" while it runs)
    last_echo_at: float = 0.0
    skipped: tuple[int, int] | None = None  # the first run of messages that never came back


def _later(data: bytes, nonce: str, due: int) -> int:
    """The number of ``data`` when it is a message of this burst later than ``due``, else 0."""
    head = f"wsgaps-limits rate {nonce} m".encode("ascii")
    tail = data[len(head):]
    if data.startswith(head) and len(tail) == 5 and tail.isdigit() and int(tail) > due:
        return int(tail)
    return 0


def _rate_message(nonce: str, number: int) -> bytes:
    return f"wsgaps-limits rate {nonce} m{number:05d}".encode("ascii")


async def _read_echoes(client: WireClient, nonce: str, burst: Burst, deadline: float) -> None:
    """Beside the writer: take each echo as it comes (so TCP flow control is never taken for a
    limit), match it with the next message sent, stop at the connection's end."""
    loop = asyncio.get_running_loop()
    while burst.ended == "":
        try:
            message = await client.recv_message(max(0.0, deadline - loop.time()),
                                                max_size=RATE_MAX_MESSAGE)
        except ClosedError:
            burst.ended = "closed"
            return
        except ReceiveTimeout:
            burst.ended = "timed out"
            return
        except ReceiveError as exc:
            burst.ended = f"broken: {exc}"
            return
        expected = _rate_message(nonce, burst.echoed + 1)
        later = _later(message.data, nonce, burst.echoed + 1)
        if message.opcode == Opcode.TEXT and later and not burst.skipped:
            # A later message of ours: the ones between were dropped without a word.
            burst.skipped = (burst.echoed + 1, later - 1)
            burst.echoed = later
            burst.last_echo_at = loop.time()
            continue
        if message.opcode != Opcode.TEXT or message.data != expected:
            burst.wrong = (f"echo {burst.echoed + 1} was {opcode_name(message.opcode)} "
                           f"{show(message.data, 60)}, not {show(expected, 60)}")
            burst.ended = "wrong"
            return
        burst.echoed += 1
        burst.last_echo_at = loop.time()


@check("limits.message-rate", budget=RATE_WAIT + 40, placement=ALONE, load=True,
       absent="rate-limit")
async def message_rate(ctx: ProbeContext) -> Outcome:
    if not ctx.manifest.managed:
        return skipped("a URL target (a server the harness does not run) is not flooded: "
                       "the burst is for managed targets only")
    rate = ctx.hint("rate_limit")
    count = min(MAX_BURST, max(DEFAULT_BURST, math.ceil(4 * rate))) if rate else DEFAULT_BURST
    wait = ctx.plan_wait(RATE_WAIT)
    nonce = f"{ctx.rng.getrandbits(32):08x}"
    client = await ctx.connect("echo", auto_pong=True)
    loop = asyncio.get_running_loop()
    burst = Burst()
    async with heavy_load(ctx) as queued:
        deadline = loop.time() + wait
        reader = asyncio.create_task(_read_echoes(client, nonce, burst, deadline))
        started = loop.time()
        try:
            for number in range(1, count + 1):
                if reader.done():
                    break
                await client.send_text(_rate_message(nonce, number))
                burst.sent = number
            written = loop.time() - started
            await wait_until(lambda: reader.done() or burst.echoed >= burst.sent, deadline)
        except (ClosedError, SendTimeout):
            written = loop.time() - started
        finally:
            # A refusal may be on its way when the last echo is in: give the reader a moment.
            await wait_until(reader.done, loop.time() + ctx.scaled(GRACE_AFTER))
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
    evidence = {"burst": count, "sent": burst.sent, "echoed": burst.echoed,
                "written_s": round(written, 3), "rate_hint": rate,
                "load_slot_wait_s": round(queued, 3),
                **client.evidence(limit=12)}
    after = (f"after {burst.echoed} of {burst.sent} sent ({count} planned, written in "
             f"{written:.2f} s)")
    if burst.skipped:
        first, last = burst.skipped
        evidence["dropped"] = [first, last]
        return failed(f"dropped silently: messages {first} to {last} never came back, and "
                      f"no Close came, while later ones did ({after})", **evidence)
    if burst.wrong:
        return failed(f"the burst's echoes were not the messages sent: {burst.wrong}", **evidence)
    if client.close_frame is not None:
        close = Close.parse(client.close_frame.payload)
        evidence["close_code"] = close.code
        if close.code in RATE_REFUSALS:
            if burst.echoed == 0:
                return failed(f"{close} before any message came back: a refusal, but not of "
                              f"a rate: nothing was echoed ({after})", **evidence)
            return passed(f"refused with {close} {after}; the {burst.echoed} messages before it "
                          "came back intact, in order", **evidence)
        return failed(f"{close}, not 1008 or 1013, {after}", **evidence)
    if client.closed:
        return non_strict(f"TCP closed without a Close frame {after}; the messages before "
                          "it came back intact, in order", **evidence)
    if burst.echoed >= burst.sent:
        per_s = burst.sent / written if written > 0 else 0.0
        return failed(f"no refusal: all {burst.sent} messages of the burst came back "
                      f"(written at {per_s:,.0f} messages/s)", **evidence)
    return failed(f"dropped silently: {burst.echoed} of {burst.sent} came back and no Close "
                  f"within {wait:.1f} s", **evidence)


# -- limits.connection-cap -------------------------------------------------------------------

CONNECTION_BUDGET = 1000  # connections dialled at most without a max_connections hint
CAP_AT_ONCE = 50  # handshakes in flight at a time while looking for the cap
PAST_CAP = 3  # handshakes dialled one at a time once the cap is reached: each is refused
CAP_HANDSHAKE_WAIT = 5.0  # for one handshake's answer: none by then is "stalled"
CAP_CONNECT_WAIT = 60.0  # for all the waves together
CAP_AFTER_101 = 2.0  # for a Close 1013 after a 101 past the cap
CAP_SETTLE = 0.3  # after the last wave, for a Close 1013 on its way
CAP_ECHO_WAIT = 10.0  # for the held connections' echoes, all at once
CAP_FILE_MARGIN = 64  # descriptors kept free beyond the connections, on either side
REFUSAL_STATUSES = (503, 429)
ACCEPTED, REFUSED, STALLED, OTHER = "accepted", "refused", "stalled", "other"


@dataclass
class Dial:
    """One handshake of the check: its number in dialling order, and what came of it."""

    number: int
    client: WireClient | None = None
    failure: HandshakeFailed | None = None

    def kind(self) -> str:
        """``accepted`` (open), ``refused`` (503, 429, or 101 then Close 1013), ``stalled``
        (no answer within the wait) or ``other`` (any other answer or end)."""
        if self.client is not None:
            if not self.client.closed and self.client.close_frame is None:
                return ACCEPTED
            return REFUSED if self.client.close_code == CloseCode.TRY_AGAIN_LATER else OTHER
        if isinstance(self.failure, HandshakeRefused):
            return REFUSED if self.failure.response.status in REFUSAL_STATUSES else OTHER
        return STALLED if isinstance(self.failure, HandshakeTimeout) else OTHER

    def __str__(self) -> str:
        if self.client is not None:
            if self.client.close_frame is not None:
                close = Close.parse(self.client.close_frame.payload)
                return f"handshake {self.number}: 101, then {close}"
            if self.client.closed:
                return f"handshake {self.number}: 101, then a TCP close without a Close frame"
            return f"handshake {self.number}: 101, open"
        if isinstance(self.failure, HandshakeRefused):
            response = self.failure.response
            return (f"handshake {self.number}: HTTP {response.status} "
                    f"{show(response.reason.encode('utf-8', 'replace'), 40)}")
        return f"handshake {self.number}: {self.failure}"


async def _dial(ctx: ProbeContext, number: int, wait: float) -> Dial:
    try:
        return Dial(number, client=await ctx.connect("echo", timeout=wait, auto_pong=True))
    except HandshakeFailed as exc:
        return Dial(number, failure=exc)


async def _wave(ctx: ProbeContext, first: int, count: int, wait: float) -> list[Dial]:
    """``count`` handshakes at once, numbered from ``first``.  A harness-side error (out of
    descriptors here) ends the wave and the check as ``error``, never as evidence."""
    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(_dial(ctx, first + i, wait)) for i in range(count)]
    return [task.result() for task in tasks]


async def _past_cap(ctx: ProbeContext, number: int, wait: float) -> Dial:
    """One handshake past the cap; after a 101, the wait for the Close 1013 that refuses it."""
    dial = await _dial(ctx, number, wait)
    if dial.client is not None:
        await expect_close(dial.client, (CloseCode.TRY_AGAIN_LATER,),
                           ctx.scaled(CAP_AFTER_101), data_decides=True)
    return dial


async def _held_echo(client: WireClient, payload: bytes, wait: float) -> str:
    """"" when ``payload`` came back on ``client``, else what happened instead."""
    try:
        await client.send_text(payload)
    except (ClosedError, SendTimeout) as exc:
        return str(exc)
    got = await receive(client, wait, 4 * len(payload) + 1024)
    if isinstance(got, NoMessage):
        return str(got)
    if got.opcode != Opcode.TEXT or got.data != payload:
        return f"{opcode_name(got.opcode)} {show(got.data, 60)} came back, not the message sent"
    return ""


def _target_files(ctx: ProbeContext, needed: int) -> tuple[int | None, Outcome | None]:
    """The target's open-file limit, and an ``error`` when it leaves no room for ``needed``
    connections: a refusal there could be its descriptor limit, not a cap."""
    limit = ctx.instance.open_file_limit()
    if limit is not None and limit != -1 and limit < needed + CAP_FILE_MARGIN:
        return limit, errored(ErrorReason.HARNESS_SIDE, f"the target's open-file limit is "
                              f"{limit}, below the {needed} connections of this check and a "
                              f"margin of {CAP_FILE_MARGIN}: running out of descriptors would "
                              "read as a cap (the hard limit did not let the harness raise it)",
                              target_open_files=limit)
    return limit, None


@check("limits.connection-cap", budget=CAP_CONNECT_WAIT + CAP_ECHO_WAIT + 60,
       placement=ALONE, load=True, absent="connection-cap")
async def connection_cap(ctx: ProbeContext) -> Outcome:
    if not ctx.manifest.managed:
        return skipped("a URL target (a server the harness does not run) is not loaded with "
                       "connections up to a cap: the check is for managed targets only")
    hinted = ctx.hint("max_connections")
    cap = int(hinted) if hinted is not None else None
    dialled = (cap if cap is not None else CONNECTION_BUDGET) + PAST_CAP
    target_files, problem = _target_files(ctx, dialled)
    if problem is not None:
        return problem
    async with heavy_load(ctx) as queued:
        harness_files = open_files_for(dialled + CAP_FILE_MARGIN)
        outcome = await _cap(ctx, cap)
    outcome.evidence.update(load_slot_wait_s=round(queued, 3), target_open_files=target_files,
                            harness_open_files=harness_files)
    return outcome


async def _cap(ctx: ProbeContext, cap: int | None) -> Outcome:
    loop = asyncio.get_running_loop()
    wait = ctx.plan_wait(CAP_HANDSHAKE_WAIT, name="handshake")
    bound = cap if cap is not None else CONNECTION_BUDGET
    declared = (f"the declared cap of {cap:,}" if cap is not None
                else f"a budget of {CONNECTION_BUDGET:,} (no cap declared)")
    started = loop.time()
    dials: list[Dial] = []
    async with asyncio.timeout(ctx.plan_wait(CAP_CONNECT_WAIT, name="connect")):
        # Waves until the cap (never past a declared one) or a handshake not accepted; the
        # whole list is looked at each time, so a late Close 1013 still stops the search.
        while len(dials) < bound and all(d.kind() == ACCEPTED for d in dials):
            dials += await _wave(ctx, len(dials) + 1, min(CAP_AT_ONCE, bound - len(dials)),
                                 wait)
        if all(d.kind() == ACCEPTED for d in dials):
            await asyncio.sleep(ctx.scaled(CAP_SETTLE))
    connect_s = loop.time() - started
    held = [d for d in dials if d.kind() == ACCEPTED]
    first = next((d for d in dials if d.kind() != ACCEPTED), None)
    evidence: dict[str, object] = {
        "declared_cap": cap, "budget": None if cap is not None else CONNECTION_BUDGET,
        "dialled": len(dials), "reached": len(held), "connect_s": round(connect_s, 3),
        "not_accepted": [str(d) for d in dials if d.kind() != ACCEPTED][:12]}
    if first is not None:
        evidence["refused_at"] = first.number
    judged: list[tuple[Verdict, str]] = []
    stalled = first is not None and first.kind() == STALLED
    if stalled:
        judged.append((Verdict.FAIL, f"not refused, stalled: {first} with {len(held):,} "
                       f"connections held"))
    elif first is not None and first.kind() == OTHER:
        judged.append((Verdict.FAIL, f"{first} with {len(held):,} connections held: not a "
                       "refusal (503, 429, or 101 then Close 1013)"))
    elif cap is not None and len(held) < cap:
        judged.append((Verdict.FAIL, f"refused below {declared}: {first}, with only "
                       f"{len(held):,} connections held"))
    elif first is None and cap is None:
        judged.append((Verdict.FAIL, f"no refusal within {declared}: {len(held):,} connections "
                       "held"))
    else:
        # At the cap: the next handshakes, one at a time, must each be refused while every
        # held connection stays open (a stack that drops old ones to make room fails here).
        past: list[Dial] = []
        for number in range(len(dials) + 1, len(dials) + PAST_CAP + 1):
            past.append(await _past_cap(ctx, number, wait))
            if past[-1].kind() != REFUSED:
                break  # one accepted (or stalled) past the cap decides it
        evidence["past_cap"] = [str(d) for d in past]
        at = f"{first.number:,}" if first is not None else f"{len(dials) + 1:,}"
        wrong = [d for d in past if d.kind() != REFUSED]
        stalled = bool(wrong) and wrong[0].kind() == STALLED
        if stalled:
            judged.append((Verdict.FAIL, f"not refused, stalled: past {declared}, {wrong[0]}"))
        elif wrong:
            judged.append((Verdict.FAIL, f"past {declared}, not refused: {wrong[0]}"))
        else:
            how = first if first is not None else past[0]
            judged.append((Verdict.PASS, f"refused at handshake {at} with {len(held):,} "
                           f"connections held ({declared}): {how}; the next {PAST_CAP} "
                           "were refused too"))
    # The held connections: still open (none dropped to make room) and still echoing.
    nonce = f"{ctx.rng.getrandbits(32):08x}"
    echo_wait = ctx.plan_wait(CAP_ECHO_WAIT, name="echo")
    problems = await asyncio.gather(*(
        _held_echo(d.client, f"wsgaps-limits cap {nonce} c{d.number:05d}".encode("ascii"),
                   echo_wait) for d in held if d.client is not None))
    broken = [(d, why) for d, why in zip(held, problems, strict=True) if why]
    evidence["held_not_echoing"] = len(broken)
    if broken:
        d, why = broken[0]
        judged.append((Verdict.FAIL, f"{len(broken):,} of the {len(held):,} held connections "
                       f"no longer echoed (connection {d.number}: {why})"))
    else:
        judged.append((Verdict.PASS, f"all {len(held):,} held connections still echoed"))
    outcome = combine(judged, **evidence)
    if any(why for why in problems):
        closed = sum(1 for d, _ in broken if d.client is not None and d.client.closed)
        outcome = harness_stall(ctx, outcome, closed)
    if outcome.verdict is Verdict.FAIL and stalled and ctx.harness_lag() >= LAG_SHARE * wait:
        return errored(ErrorReason.HARNESS_TOO_SLOW, f"harness too slow: its event loop "
                       f"stalled {ctx.harness_lag():.2f} s while a handshake waited at most "
                       f"{wait:.1f} s", **{**outcome.evidence, "summary_before": outcome.summary})
    return outcome


# -- limits.handshake-timeout ----------------------------------------------------------------

@check("limits.handshake-timeout", budget=STALL_WAIT * 1.2 + 20)
async def handshake_timeout(ctx: ProbeContext) -> Outcome:
    hinted = ctx.hint("handshake_timeout")
    wait = ctx.plan_wait(STALL_WAIT, 1.5 * hinted + 5 if hinted else None)
    try:
        stall = await half_handshake(ctx.url("echo"), wait=wait, ssl_context=ctx.ssl_context)
    except Unreachable as exc:
        return errored(ErrorReason.CANNOT_JUDGE, f"no stalled handshake measured: {exc}")
    facts = {"stall": stall.evidence(), "stall_s": None if stall.dropped_after is None
             else round(stall.dropped_after, 3), "hinted": hinted}
    line = f"a request head that never ends: {stall.describe()}"
    if hinted is not None and stall.dropped_after is not None \
            and stall.dropped_after > 1.5 * hinted + 1:
        line += f" (the hint says {hinted:g} s)"
    # Evidence only: the figure is the result, dropped or not ("not dropped within N s").
    return passed(line, **facts)
