"""The upstream of the recovery probe (gap 11): the server the target's own client dials.

Only the target can dial out, so for recovery the harness plays the upstream: a WebSocket
server on 127.0.0.1, started before the target (its URL fills the manifest's ``{upstream}``
placeholder, so the target's client dials it from its first attempt).  Its listening socket
stays bound for the whole check: a freed port could be taken by another target's instance.
It records the time of every attempt (the TCP accept), seconds after it started.

The probe, never the target, decides each attempt's fate (``accept_from``, ``refusals``):

- ``reset``: the TCP connection is accepted and reset at once (SO_LINGER 0), as a server that
  is down behind a load balancer looks.
- ``503``: the request head is read and answered with 503 Service Unavailable.  Not a 4xx:
  websockets' client retries only 500, 502, 503 and 504 (websockets ``client.py``
  ``process_exception``), and a 4xx says "do not retry".
- accept: the WebSocket handshake completes (websockets' sans-I/O ``ServerProtocol``, which
  also answers the client's Pings and Close).  The connection is a ``Link`` the probe can
  feed, or drop: a TCP close without a Close frame, or a Close 1001 (going away).

A target that dials more than 20 times a second is a tight loop: once 50 attempts came at that
rate, the upstream stops answering (it stops accepting; the socket stays bound, the kernel's
backlog fills and later dials hang until the client's own timeout) and says so in
``tight_loop``.  Past ``max_attempts`` it stops answering too, so no loop is unbounded.

The feed, for ``recovery.resume``: text messages ``{"seq": n, "token": "...", "data": "..."}``
with increasing ``seq``; a client that resumes names the last ``seq`` (or ``token``) it got.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import json
import secrets
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from websockets.frames import Opcode
from websockets.http11 import Request
from websockets.protocol import OPEN
from websockets.server import ServerProtocol

from gaps.targets import free_port
from gaps.toolkit.waiting import Changes, deadline_in, wait_until

PATH = "/wsgaps-upstream"
REFUSALS = ("reset", "503")
TIGHT_RATE = 20.0  # dials per second above which dialling is a tight loop
TIGHT_COUNT = 50  # attempts at that rate after which the upstream stops answering
MAX_ATTEMPTS = 500  # attempts after which it stops answering whatever the rate
BACKLOG = 8
HEAD_LIMIT = 16 * 1024  # bytes of a request head read before giving up on it
HEAD_WAIT = 10.0  # seconds a request head may take (scaled)
CLOSE_WAIT = 2.0  # seconds the client gets to answer a Close 1001 before TCP ends (scaled)
MESSAGES_KEPT = 100  # messages kept per link
EVIDENCE_ATTEMPTS = 60  # attempts listed in evidence; the count is always there
ACCEPT_POLL = 0.2  # seconds the acceptor thread blocks before it looks for the end


@dataclass
class Attempt:
    """One dial of the target: when (seconds after the upstream started) and what it got."""

    n: int
    t: float
    outcome: str  # reset, 503, accepted, no-request, bad-request, ended (before a verdict)
    at: float = 0.0  # the event loop's clock, for deadlines

    def row(self) -> list[Any]:
        return [round(self.t, 3), self.outcome]


@dataclass(eq=False)
class Link:
    """One accepted WebSocket connection from the target's client."""

    attempt: Attempt
    request: Request
    protocol: ServerProtocol
    writer: asyncio.StreamWriter
    scale: float = 1.0
    messages: list[str | bytes] = field(default_factory=list)
    pongs: list[bytes] = field(default_factory=list)  # payloads of the client's Pongs
    ended_at: float | None = None  # seconds after the upstream started
    how_ended: str = ""
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    _arrived: Changes = field(default_factory=Changes)
    _read: int = 0  # messages handed out by next_message

    @property
    def path(self) -> str:
        return self.request.path

    def header(self, name: str) -> str | None:
        return self.request.headers.get(name)

    def flush(self) -> None:
        flush(self.protocol, self.writer)

    async def send_text(self, text: str) -> bool:
        """Send one Text message; False when the connection is no longer open."""
        if self.ended.is_set() or self.protocol.state is not OPEN:
            return False
        self.protocol.send_text(text.encode())
        self.flush()
        with contextlib.suppress(ConnectionError):
            await self.writer.drain()
        return True

    async def send_binary(self, data: bytes) -> bool:
        """Send one Binary message; False when the connection is no longer open."""
        if self.ended.is_set() or self.protocol.state is not OPEN:
            return False
        self.protocol.send_binary(data)
        self.flush()
        with contextlib.suppress(ConnectionError):
            await self.writer.drain()
        return True

    async def ping(self, payload: bytes, timeout: float) -> bool:
        """Send a Ping; whether the client answered it with a Pong of the same payload
        within ``timeout`` seconds (False at once when the connection is no longer open)."""
        if self.ended.is_set() or self.protocol.state is not OPEN:
            return False
        self.protocol.send_ping(payload)
        self.flush()
        await wait_until(lambda: payload in self.pongs or self.ended.is_set(),
                         deadline_in(timeout), self._arrived)
        return payload in self.pongs

    def drop(self) -> None:
        """End the TCP connection without a Close frame (a FIN, as a dying server's kernel)."""
        self.how_ended = self.how_ended or "dropped by the upstream: TCP close, no Close frame"
        self.writer.close()

    async def close(self, code: int = 1001, reason: str = "going away") -> None:
        """Send a Close frame, give the client CLOSE_WAIT to answer, then end TCP."""
        self.how_ended = self.how_ended or f"closed by the upstream: Close {code}"
        if self.protocol.state is OPEN:
            self.protocol.send_close(code, reason)
            self.flush()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.ended.wait(), CLOSE_WAIT * self.scale)
        self.writer.close()

    @property
    def closing(self) -> bool:
        """Whether the client sent its Close frame or the connection ended."""
        return self.protocol.close_rcvd is not None or self.ended.is_set()

    async def wait_closing(self, timeout: float) -> bool:
        """Wait until the client sends its Close frame or the connection ends; whether it
        did within ``timeout`` seconds."""
        await wait_until(lambda: self.closing, deadline_in(timeout), self._arrived)
        return self.closing

    async def next_message(self, timeout: float) -> str | bytes | None:
        """The next message the client sends (in order), or None if none comes in time."""
        seen = self._read
        await wait_until(lambda: len(self.messages) > seen or self.closing,
                         deadline_in(timeout), self._arrived)
        if len(self.messages) <= seen:
            return None
        self._read = seen + 1
        return self.messages[seen]


class Upstream:
    """A WebSocket server the target's client dials, driven by the probe.

    ``accept_from``: the first attempt (1-based) that is accepted; earlier ones are refused,
    cycling through ``refusals``.  None refuses every attempt.  Use as ``async with``: the
    socket is bound on entry and released on exit, after every link was ended.
    """

    def __init__(self, *, accept_from: int | None = 1,
                 refusals: tuple[str, ...] = REFUSALS, scale: float = 1.0,
                 tight_rate: float = TIGHT_RATE, tight_count: int = TIGHT_COUNT,
                 max_attempts: int = MAX_ATTEMPTS) -> None:
        if not refusals or any(r not in REFUSALS for r in refusals):
            raise ValueError(f"refusals must be taken from {REFUSALS}")
        self.accept_from = accept_from
        self.refusals = refusals
        self.scale = scale
        self.tight_rate = tight_rate
        self.tight_count = tight_count
        self.max_attempts = max_attempts
        self.attempts: list[Attempt] = []
        self.links: list[Link] = []
        self.tight_loop: str | None = None  # why the upstream stopped answering, if it did
        self.stopped_answering = False
        self.port = 0
        self.t0 = 0.0
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._acceptor: threading.Thread | None = None
        self._closing = threading.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._changes = Changes()
        # Refusals queued with ``refuse_next``: they come before ``accept_from``'s rule.
        self._queued: collections.deque[str] = collections.deque()

    def refuse_next(self, count: int, status: int | str = 503) -> None:
        """Refuse the next ``count`` dials, whatever ``accept_from`` says: ``status`` is an
        HTTP status from 400 to 599 (the request head is read and answered with it) or
        ``"reset"`` (a TCP reset at once)."""
        fate = str(status)
        if fate != "reset" and not (fate.isdigit() and 400 <= int(fate) <= 599):
            raise ValueError(f"a refusal is an HTTP status from 400 to 599 or 'reset', "
                             f"not {status!r}")
        if count < 0:
            raise ValueError(f"cannot refuse {count} dials")
        self._queued.extend([fate] * count)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}{PATH}"

    # -- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> Upstream:
        sock = bind_listener()
        sock.listen(BACKLOG)
        sock.settimeout(ACCEPT_POLL)
        self._sock = sock
        self.port = sock.getsockname()[1]
        self._loop = asyncio.get_running_loop()
        self.t0 = self._loop.time()
        self._acceptor = threading.Thread(target=self._accept, daemon=True,
                                          name=f"wsgaps-upstream-{self.port}")
        self._acceptor.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        self._closing.set()
        if self._acceptor is not None:
            await asyncio.to_thread(self._acceptor.join, 5 * ACCEPT_POLL)
        for link in self.links:
            link.writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._sock is not None:
            self._sock.close()

    # -- waiting ---------------------------------------------------------------------------

    def now(self) -> float:
        """Seconds since the upstream started (the time base of attempts)."""
        return asyncio.get_running_loop().time() - self.t0

    def wake(self) -> None:
        """Wake every ``wait_for`` to look at its predicate again (something else changed)."""
        self._notify()

    def _notify(self) -> None:
        self._changes.notify()

    async def wait_for(self, predicate: Callable[[], bool], deadline: float,
                       silence: float | None = None) -> bool:
        """Wait until ``predicate()`` holds; False when ``deadline`` (loop time) passes first,
        when the upstream stopped answering, or when no attempt came for ``silence`` seconds
        (the target stopped dialling)."""
        def end() -> float:
            if silence is None:
                return deadline
            last = self.attempts[-1].at if self.attempts else self.t0
            return min(deadline, last + silence)

        await wait_until(lambda: predicate() or self.stopped_answering, end, self._changes)
        return predicate()

    async def wait_attempts(self, count: int, deadline: float,
                            silence: float | None = None) -> bool:
        return await self.wait_for(lambda: len(self.attempts) >= count, deadline, silence)

    async def wait_link(self, count: int, deadline: float,
                        silence: float | None = None) -> Link | None:
        """The ``count``-th accepted connection (1-based), or None if it does not come."""
        await self.wait_for(lambda: len(self.links) >= count, deadline, silence)
        return self.links[count - 1] if len(self.links) >= count else None

    async def wait_ended(self, link: Link, deadline: float) -> bool:
        return await self.wait_for(link.ended.is_set, deadline)

    # -- facts -----------------------------------------------------------------------------

    def times(self) -> list[float]:
        return [a.t for a in self.attempts]

    def intervals(self) -> list[float]:
        times = self.times()
        return [b - a for a, b in itertools.pairwise(times)]

    def evidence(self) -> dict[str, Any]:
        shown = self.attempts[:EVIDENCE_ATTEMPTS]
        found: dict[str, Any] = {"attempt_count": len(self.attempts),
                                 "attempts": [a.row() for a in shown]}
        if len(self.attempts) > len(shown):
            found["attempts_left_out"] = len(self.attempts) - len(shown)
        if self.tight_loop:
            found["tight_loop"] = self.tight_loop
        ends = [[round(k.ended_at, 3), k.how_ended] for k in self.links
                if k.ended_at is not None and k.how_ended]
        if ends:
            found["link_ends"] = ends[:20]
        return found

    # -- serving ---------------------------------------------------------------------------

    def _fate(self, n: int) -> str:
        with contextlib.suppress(IndexError):  # deque.popleft is atomic: no lock needed
            return self._queued.popleft()
        if self.accept_from is not None and n >= self.accept_from:
            return "accept"
        return self.refusals[(n - 1) % len(self.refusals)]

    def _too_fast(self) -> str | None:
        if len(self.attempts) >= self.max_attempts:
            return f"{len(self.attempts)} attempts, the most the upstream answers"
        if len(self.attempts) < self.tight_count:
            return None
        span = self.attempts[-1].at - self.attempts[-self.tight_count].at
        if span < (self.tight_count - 1) / self.tight_rate:
            return (f"tight loop: {self.tight_count} attempts within {span:.2f} s (more than "
                    f"{self.tight_rate:g} a second)")
        return None

    def _accept(self) -> None:
        """The acceptor thread: every dial is timed and, when refused with a reset, reset
        here, at once, whatever the event loop is doing (a loop busy starting another
        instance must not show up as the target's delay).  Other dials go to the loop."""
        assert self._sock is not None and self._loop is not None
        while not self._closing.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            at = time.monotonic()  # the clock of asyncio's loop.time()
            attempt = Attempt(len(self.attempts) + 1, at - self.t0, "", at)
            fate = self._fate(attempt.n)
            if fate == "reset":
                attempt.outcome = "reset"
                reset(conn)
            self.attempts.append(attempt)
            stop = self._too_fast()
            if stop is not None:
                self.tight_loop = stop
                self.stopped_answering = True
            self._loop.call_soon_threadsafe(self._arrived, conn, attempt, fate)
            if stop is not None:
                return  # the socket stays bound; dials now wait in the backlog

    def _arrived(self, conn: socket.socket, attempt: Attempt, fate: str) -> None:
        """In the loop: answer a dial that was not reset, and wake the waiters."""
        if fate != "reset":
            task = asyncio.create_task(self._answer(conn, attempt, fate))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        self._notify()

    async def _answer(self, conn: socket.socket, attempt: Attempt, fate: str) -> None:
        try:
            conn.setblocking(False)
            reader, writer = await asyncio.open_connection(sock=conn)
        except OSError:
            attempt.outcome = "ended"
            conn.close()
            return
        protocol = ServerProtocol(max_size=2**20)
        try:
            request = await self._read_request(reader, protocol)
            if request is None:
                attempt.outcome = "no-request"
                return
            if fate.isdigit():  # "503", or a status queued with refuse_next
                attempt.outcome = fate
                response = protocol.reject(int(fate), "refused by the upstream (wsgaps)\n")
            else:
                response = protocol.accept(request)
            protocol.send_response(response)
            flush(protocol, writer)
            if response.status_code != 101:
                attempt.outcome = attempt.outcome or "bad-request"
                with contextlib.suppress(ConnectionError):
                    await writer.drain()
                return
            attempt.outcome = "accepted"
            link = Link(attempt, request, protocol, writer, self.scale)
            self.links.append(link)
            self._notify()
            await self._follow(reader, link)
        except (ConnectionError, OSError):
            attempt.outcome = attempt.outcome or "ended"
        finally:
            writer.close()
            self._notify()

    async def _read_request(self, reader: asyncio.StreamReader,
                            protocol: ServerProtocol) -> Request | None:
        read = 0
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(HEAD_WAIT * self.scale):
                while read < HEAD_LIMIT:
                    data = await reader.read(4096)
                    if not data:
                        return None
                    read += len(data)
                    protocol.receive_data(data)
                    for event in protocol.events_received():
                        if isinstance(event, Request):
                            return event
                    if protocol.handshake_exc is not None:
                        return None
        return None

    async def _follow(self, reader: asyncio.StreamReader, link: Link) -> None:
        """Read the link until TCP ends: keep its messages, let the protocol answer Pings
        and Closes."""
        try:
            while data := await reader.read(65536):
                link.protocol.receive_data(data)
                for event in link.protocol.events_received():
                    if event.opcode in (Opcode.TEXT, Opcode.BINARY) and \
                            len(link.messages) < MESSAGES_KEPT:
                        payload = bytes(event.data)
                        text = event.opcode is Opcode.TEXT
                        link.messages.append(payload.decode("utf-8", "replace") if text
                                             else payload)
                        link._arrived.notify()
                    elif event.opcode is Opcode.PONG and len(link.pongs) < MESSAGES_KEPT:
                        link.pongs.append(bytes(event.data))
                        link._arrived.notify()
                    elif event.opcode is Opcode.CLOSE:
                        link._arrived.notify()  # no message can follow: waits end now
                link.flush()
            link.protocol.receive_eof()
            link.flush()
        finally:
            link.ended_at = self.now()
            if not link.how_ended:
                code = link.protocol.close_rcvd.code if link.protocol.close_rcvd else None
                link.how_ended = (f"closed by the client: Close {code}" if code
                                  else "ended by the client: TCP close")
            link.ended.set()
            link._arrived.notify()


def bind_listener(tries: int = 10) -> socket.socket:
    """A TCP socket bound on 127.0.0.1 to a port from the harness's registry (``free_port``).

    Not port 0: the kernel could hand out a port ``free_port`` has just given a target that
    has not bound it yet, and that target would then fail to start.
    """
    for attempt in range(tries):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", free_port()))
            return sock
        except OSError:
            sock.close()
            if attempt == tries - 1:
                raise
    raise AssertionError("unreachable")


def flush(protocol: ServerProtocol, writer: asyncio.StreamWriter) -> None:
    """Write what ``protocol`` has to send; its empty chunk asks for a half-close (after a
    refusal or the closing handshake the server ends TCP first, RFC 6455 7.1.1)."""
    for data in protocol.data_to_send():
        if data:
            writer.write(data)
        elif writer.can_write_eof():
            writer.write_eof()


def reset(conn: socket.socket) -> None:
    """Close ``conn`` with a TCP reset (SO_LINGER on, timeout 0)."""
    with contextlib.suppress(OSError):
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


class Feed:
    """The upstream's numbered messages, for ``recovery.resume``: every message published
    is kept, so a client that names where it stopped can be sent the rest."""

    def __init__(self) -> None:
        self.prefix = f"wsgaps-{secrets.token_hex(4)}"
        self.log: list[dict[str, Any]] = []

    def publish(self) -> dict[str, Any]:
        seq = len(self.log) + 1
        message = {"seq": seq, "token": f"{self.prefix}-{seq}", "data": f"update {seq}"}
        self.log.append(message)
        return message

    def position(self, value: str, presented: str) -> int | None:
        """The seq a presented ``value`` ("seq" or "token") names; None if it names none."""
        presented = presented.strip()
        if value == "token":
            return next((m["seq"] for m in self.log if m["token"] == presented), None)
        try:
            seq = int(presented)
        except ValueError:
            return None
        return seq if 0 <= seq <= len(self.log) else None

    def after(self, seq: int) -> list[str]:
        return [json.dumps(m) for m in self.log[seq:]]
