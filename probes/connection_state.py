"""Gap 4, connection state: does a shutdown say goodbye, and can the application see its
connections?

``graceful-shutdown`` (each try on a fresh instance): clients connect (two idle ones on
``echo``, one that has sent the first fragment of a message and not the rest, and one on
``broadcast``, or a room of ``room``, where the target has them), then the harness stops the
instance as the manifest says (SIGTERM to the process group, the grace period, then
SIGKILL).  Every client must get a Close frame sent after the signal, before its TCP
connection ends, within the grace period: 1001 (going away) or 1012 (service restart) pass,
1000 is non-strict, another code, a TCP end without a Close, or nothing, fail; the worst
client decides.  Clients answer Pings and answer the server's Close, so a stack can finish
its closing handshakes inside the grace period.  A SIGKILL after the grace period is
evidence of a shutdown that did not finish, not a crash.

``introspection`` (an instance of its own, so the listing holds only the probe's
connections and what the stack itself opened): the ``connections`` endpoint must list the
probe's two connections, found by their ``X-Wsgaps-Client`` handshake header (or, where the
stack does not keep the request, by the client's port in an address field), each with an
open state and its path; message counts, where the listing has them, must match what was
sent (3 and 1 each way), and are reported "not kept" where it has none.  Once one client
has closed, it must be gone from the listing within ``DROP_WAIT``; the other must still be
there.  A listing that keeps closed connections or counts wrong fails.

``close-reason`` (conformance, each try on a fresh instance): the Close frames the server
sends on its own in this gap, at shutdown, must carry a code valid on the wire and a UTF-8
reason of at most 123 bytes (RFC 6455 5.5, 7.4).  It stops an instance of its own, since a
check cannot see another check's clients.  No server Close at all is ``skip``.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from gaps.model import ErrorReason, Verdict
from gaps.probe import (
    ALONE,
    FRESH,
    Outcome,
    ProbeContext,
    check,
    errored,
    failed,
    passed,
    skipped,
)
from gaps.toolkit import CLOSE, TCP, Ending, combine, deadline_in, expect_close, left, show
from gaps.wire.client import WireClient
from gaps.wire.errors import HandshakeFailed, WireError
from gaps.wire.frames import Close, Opcode

CLIENT_HEADER = "X-Wsgaps-Client"
SHUTDOWN_CODES = (1001, 1012)  # going away, service restart
READ_MARGIN = 2.0  # seconds clients keep reading past the grace period (the SIGKILL's end)
SETTLE = 0.3  # seconds for the server to take in the first fragment before the signal
HTTP_WAIT = 5.0
DROP_WAIT = 5.0  # seconds a closed connection may stay listed
POLL = 0.2
MAX_LISTING = 1024 * 1024
MAX_REASON = 123  # bytes of a close reason: a control frame carries at most 125 (RFC 6455 5.5)
OPEN_STATES = {"open", "connected", "established", "1"}  # "1": a WebSocket readyState OPEN


# -- shutdown ------------------------------------------------------------------------------

@dataclass
class Watched:
    label: str
    path: str
    client: WireClient
    ending: Ending | None = None


async def _clients(ctx: ProbeContext, label: str, *, fragment: bool,
                   fan_out: bool) -> list[Watched]:
    """The clients a shutdown is watched on: two idle ones on ``echo``, one in the middle
    of a fragmented message and one on a fan-out endpoint (when asked and present)."""
    watched: list[Watched] = []

    async def on(name: str, endpoint: str, **fields: str) -> WireClient:
        client = await ctx.connect(endpoint, auto_pong=True, fields=fields or None,
                                   headers=[(CLIENT_HEADER, f"wsgaps-{label}-{name}")])
        watched.append(Watched(name, urlsplit(client_url(ctx, endpoint, fields)).path, client))
        return client

    for name in ("idle-1", "idle-2"):
        await on(name, "echo")
    if fragment:
        client = await on("mid-fragment", "echo")
        # One whole message first, so that the handler is surely running, then the first
        # fragment of a message whose end never comes.
        await client.send_text(f"wsgaps {label} before the fragment")
        with _quiet():
            await client.recv_message(ctx.scaled(5.0))
        await client.send_frame(Opcode.TEXT, f"wsgaps {label} fragment 1 of 2 ".encode(),
                                 fin=False)
    if fan_out and ctx.has("broadcast"):
        await on("broadcast", "broadcast")
    elif fan_out and ctx.has("room"):
        await on("room", "room", room=f"wsgaps-{label}")
    await asyncio.sleep(ctx.scaled(SETTLE))
    return watched


def client_url(ctx: ProbeContext, endpoint: str, fields: dict[str, str]) -> str:
    return ctx.url(endpoint, **fields)


class _quiet:
    """Suppress what the wire may do to a read the probe does not judge."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, *rest: object) -> bool:
        return kind is not None and issubclass(kind, WireError)


@dataclass
class Stopped:
    """What the harness's stop did: when SIGTERM went out (loop time), the exit status, and
    whether the grace period ran out (SIGKILL)."""

    signalled_at: float | None
    status: int | None
    killed: bool
    grace: float


async def _stop_and_watch(ctx: ProbeContext, watched: list[Watched]) -> Stopped:
    """Stop the instance as its manifest says while every client reads its ending."""
    instance = ctx.instance
    grace = ctx.manifest.grace
    wait = ctx.plan_wait(grace + READ_MARGIN, name="read")
    async def ending_of(client: WireClient) -> Ending:
        ending = await expect_close(client, SHUTDOWN_CODES, wait, until_tcp_end=True)
        if client.closed:
            # The server ended its side: our socket closes too, as a client's does.  A
            # server that half-closed first waits for it (websockets up to close_timeout),
            # and its shutdown would otherwise wait on us.
            client.abort()
        return ending

    stopping = asyncio.ensure_future(instance.astop())
    endings = await asyncio.gather(*(ending_of(w.client) for w in watched))
    status = await stopping
    for w, ending in zip(watched, endings, strict=True):
        w.ending = ending
    return Stopped(instance.terminated_at, status, instance.killed_after_grace, grace)


def _after_signal(w: Watched, at: float | None, stopped: Stopped) -> float | None:
    """Seconds from the SIGTERM to ``at`` (in the client's own time)."""
    if at is None or stopped.signalled_at is None:
        return None
    return round(w.client.opened_at + at - stopped.signalled_at, 3)


def _judge_client(w: Watched, stopped: Stopped) -> tuple[Verdict, str, dict[str, Any]]:
    ending = w.ending
    assert ending is not None
    client = w.client
    close_after = _after_signal(w, client.close_at, stopped)
    tcp_after = _after_signal(w, client.eof_at, stopped)
    facts: dict[str, Any] = {"client": w.label, "path": w.path, "ending": ending.how,
                             "close_after_signal_s": close_after,
                             "tcp_end_after_signal_s": tcp_after}
    if ending.how == CLOSE and ending.close is not None:
        code = ending.close.code
        facts["close_code"] = code
        facts["close_reason"] = show(ending.close.reason, 123)
        said = f"{w.label}: Close {code if code is not None else '(no code)'}"
        if close_after is not None and close_after < 0:
            return Verdict.FAIL, f"{said} came {-close_after:.2f} s before the signal", facts
        if close_after is not None and close_after > stopped.grace:
            return (Verdict.FAIL, f"{said} came {close_after:.2f} s after the signal, past "
                    f"the {stopped.grace:g} s grace period", facts)
        when = f" {close_after:.3f} s after the signal" if close_after is not None else ""
        if code in SHUTDOWN_CODES:
            return Verdict.PASS, said + when, facts
        if code == 1000:
            return (Verdict.NON_STRICT, f"{said}{when} (normal closure, where 1001 going "
                    "away says why)", facts)
        return Verdict.FAIL, f"{said}{when}: not a shutdown code (1001 or 1012)", facts
    if ending.how == TCP:
        when = f" {tcp_after:.3f} s after the signal" if tcp_after is not None else ""
        killed = " (SIGKILL after the grace period)" if stopped.killed else ""
        return (Verdict.FAIL, f"{w.label}: TCP ended without a Close frame{when}{killed}",
                facts)
    return Verdict.FAIL, f"{w.label}: {ending}", facts


def _shutdown_facts(stopped: Stopped) -> dict[str, Any]:
    return {"grace_s": stopped.grace, "exit_status": stopped.status,
            "killed_after_grace": stopped.killed,
            **({"note": "SIGKILL ended the target after the grace period: its shutdown did "
                        "not finish (not a crash)"} if stopped.killed else {})}


def _unmanaged(ctx: ProbeContext) -> Outcome | None:
    if ctx.instance.process is None or not ctx.instance.managed:
        return skipped("the harness does not run this target, so it cannot stop it")
    return None


@check("connection-state.graceful-shutdown", absent="graceful-shutdown", placement=FRESH,
       budget=60.0)
async def graceful_shutdown(ctx: ProbeContext) -> Outcome:
    if (outcome := _unmanaged(ctx)) is not None:
        return outcome
    watched = await _clients(ctx, "shutdown", fragment=True, fan_out=True)
    for w in watched:
        if w.client.closed or w.client.close_frame is not None:
            return failed(f"{w.label} was closed before the signal: {w.client.close_code}",
                          **w.client.evidence())
    stopped = await _stop_and_watch(ctx, watched)
    if stopped.signalled_at is None:
        return errored(ErrorReason.CANNOT_JUDGE, "the harness sent no SIGTERM: the target had "
                       f"ended before the stop (status {stopped.status})")
    judged = [_judge_client(w, stopped) for w in watched]
    return combine([(v, line) for v, line, _ in judged], **_shutdown_facts(stopped),
                   clients=[f for _, _, f in judged],
                   frames={w.label: w.client.evidence(12) for w in watched})


@check("connection-state.close-reason", placement=FRESH, budget=60.0)
async def close_reason(ctx: ProbeContext) -> Outcome:
    if (outcome := _unmanaged(ctx)) is not None:
        return outcome
    watched = await _clients(ctx, "reason", fragment=False, fan_out=False)
    stopped = await _stop_and_watch(ctx, watched)
    seen = [(w, Close.parse(w.client.close_frame.payload)) for w in watched
            if w.client.close_frame is not None]
    evidence = {"closes": [{"client": w.label, "code": c.code, "reason": show(c.reason, 200),
                            "reason_bytes": len(c.reason)} for w, c in seen],
                **_shutdown_facts(stopped)}
    if not seen:
        return skipped("the server sent no Close frame of its own (at shutdown), so there is "
                       "no close code or reason to judge", **evidence)
    problems = []
    for w, close in seen:
        if problem := close.problem():
            problems.append(f"{w.label}: {problem}")
        elif len(close.reason) > MAX_REASON:
            problems.append(f"{w.label}: a close reason of {len(close.reason)} bytes (at most "
                            f"{MAX_REASON}, RFC 6455 5.5)")
    if problems:
        return failed("; ".join(problems), **evidence)
    codes = sorted({str(c.code) for _, c in seen})
    return passed(f"{len(seen)} server Close frame(s), code {', '.join(codes)}, each valid on "
                  "the wire with a UTF-8 reason within 123 bytes", **evidence)


# -- introspection -------------------------------------------------------------------------

@dataclass
class Listing:
    rows: list[dict[str, Any]] | None
    problem: str = ""


async def _listing(ctx: ProbeContext, wait: float) -> Listing:
    answer = await ctx.http_get("connections", wait=wait, max_body=MAX_LISTING)
    if answer.failure:
        return Listing(None, f"GET connections: {answer.failure}")
    if answer.status != 200:
        return Listing(None, f"GET connections answered HTTP {answer.status}")
    try:
        data = json.loads(answer.body)
    except ValueError as exc:
        return Listing(None, f"GET connections: not JSON ({exc}; {show(answer.body, 80)})")
    rows = data.get("connections") if isinstance(data, dict) else None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        return Listing(None, 'GET connections: no {"connections": [...]} list of objects '
                             f"({show(answer.body, 80)})")
    return Listing(rows)


def _text(value: str, limit: int) -> str:
    """A bounded quote of text the target sent (a listing's fields are untrusted)."""
    return repr(value[:limit]) + ("..." if len(value) > limit else "")


def _port(client: WireClient) -> int | None:
    sockname = client._writer.get_extra_info("sockname")
    return sockname[1] if isinstance(sockname, tuple) and len(sockname) >= 2 else None


def _mine(rows: list[dict[str, Any]], tag: str, port: int | None) -> list[dict[str, Any]]:
    """The rows of one client: its ``X-Wsgaps-Client`` value in ``client``, or else its
    port at the end of an address field (``127.0.0.1:54321``) or in a ``port`` field."""
    by_tag = [r for r in rows if r.get("client") == tag]
    if by_tag or port is None:
        return by_tag
    found = []
    for row in rows:
        values = [v for k, v in row.items() if k in ("client", "remote", "address", "peer",
                                                      "remote_address", "port")]
        if any(v == port or (isinstance(v, str) and v.endswith(f":{port}")) for v in values):
            found.append(row)
    return found


def _count(row: dict[str, Any], key: str) -> int | None:
    value = row.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _judge_row(row: dict[str, Any], path: str, sent: int) -> tuple[list[str], dict[str, Any]]:
    problems: list[str] = []
    state = row.get("state")
    facts: dict[str, Any] = {"state": _text(str(state), 40),
                             "path": _text(str(row.get("path")), 80)}
    if state is None or str(state).strip().lower() not in OPEN_STATES:
        problems.append(f"state {_text(str(state), 40)} for an open connection")
    listed = str(row.get("path", "")).split("?", 1)[0]
    if listed != path:
        problems.append(f"path {_text(listed, 60)} where it connected to {_text(path, 60)}")
    counts = {key: _count(row, key) for key in ("messages_in", "messages_out")}
    for key, value in counts.items():
        facts[key] = value if value is not None else "not kept"
        if value is not None and value != sent:
            problems.append(f"{key} {value} after {sent} message(s) each way")
    return problems, facts


@check("connection-state.introspection", needs=("echo", "connections"), absent="introspection",
       placement=ALONE, budget=60.0)
async def introspection(ctx: ProbeContext) -> Outcome:
    wait = ctx.plan_wait(HTTP_WAIT, name="http")
    drop_wait = ctx.plan_wait(DROP_WAIT, name="drop")
    path = urlsplit(ctx.url("echo")).path
    sent = {"a": 3, "b": 1}
    clients: dict[str, WireClient] = {}
    tags = {name: f"wsgaps-introspection-{ctx.seed}-{name}" for name in sent}
    try:
        for name in sent:
            clients[name] = await ctx.connect("echo", auto_pong=True,
                                              headers=[(CLIENT_HEADER, tags[name])])
    except HandshakeFailed as exc:
        return failed(f"echo refused a client: {exc}")
    ports = {name: _port(client) for name, client in clients.items()}
    for name, count in sent.items():
        for i in range(count):
            await clients[name].send_text(f"wsgaps introspection {name} {i}")
            try:
                await clients[name].recv_message(ctx.scaled(5.0))
            except WireError as exc:
                return errored(ErrorReason.CANNOT_JUDGE, f"introspection cannot be judged: "
                               f"echo failed ({type(exc).__name__}: {exc})")
    first = await _listing(ctx, wait)
    if first.rows is None:
        return failed(f"no listing of connections: {first.problem}")
    evidence: dict[str, Any] = {"listed": len(first.rows), "ports": ports}
    problems: list[str] = []
    found: dict[str, Any] = {}
    for name in sent:
        rows = _mine(first.rows, tags[name], ports[name])
        if len(rows) != 1:
            problems.append(f"client {name} listed {len(rows)} times (by header "
                            f"{CLIENT_HEADER} or port {ports[name]})")
            continue
        row_problems, found[name] = _judge_row(rows[0], path, sent[name])
        problems += [f"client {name}: {p}" for p in row_problems]
    evidence["rows"] = found
    if problems:
        return failed("; ".join(problems), **evidence)
    # Close client a as a client does, then watch it leave the listing.
    with _quiet():
        await clients["a"].close(1000)
    await clients["a"].wait_closed(wait)
    # Our end of TCP too, as a client's socket does once the server has ended its side:
    # a server that half-closed first waits for it (websockets until its close_timeout).
    clients["a"].abort()
    # Polled by GET (the condition is a request, so wait_until's sync condition cannot ask
    # it): every POLL seconds until client a is gone or DROP_WAIT has passed.
    gone = False
    last: Listing = first
    deadline = deadline_in(drop_wait)
    while True:
        last = await _listing(ctx, wait)
        gone = last.rows is not None and not _mine(last.rows, tags["a"], ports["a"])
        if gone or last.rows is None or left(deadline) <= 0:
            break
        await asyncio.sleep(min(ctx.scaled(POLL), left(deadline)))
    if last.rows is None:
        return failed(f"after a client closed: {last.problem}", **evidence)
    kept = [] if gone else _mine(last.rows, tags["a"], ports["a"])
    if kept:
        return failed(f"a closed connection was still listed {drop_wait:.1f} s after its "
                      f"TCP end (state {_text(str(kept[0].get('state')), 40)}): the listing "
                      "keeps closed connections", kept=[_text(json.dumps(r), 300) for r in kept],
                      **evidence)
    if len(_mine(last.rows, tags["b"], ports["b"])) != 1:
        return failed("the open client b left the listing when client a closed", **evidence)
    counts = found["a"]["messages_in"]
    kept_counts = ("message counts match (3 and 1 each way)" if counts != "not kept"
                   else "message counts not kept")
    return passed(f"both connections listed with state {found['a']['state']} and path "
                  f"{found['a']['path']}; {kept_counts}; the closed one left the listing",
                  **evidence)

