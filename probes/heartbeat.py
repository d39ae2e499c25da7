"""Gap 1, heartbeat: does the server find dead peers on its own?

``server-pings``: connect to ``echo``, send nothing, answer Pings (so that keepalive never
closes us), and wait for the first server Ping.  Default wait 65 s: websockets and uvicorn
ping every 20 s (websockets ``asyncio.connection.Connection.keepalive``), and gorilla's
keepalive pattern, which Go stacks copy, every 54 s (gorilla/websocket ``examples/chat``
``pingPeriod``); 65 s covers the slowest with a margin.  With a ``ping_interval`` hint the
wait is 2 x interval + 1 s.

``reaps-silent-peer``: a silent client (answers nothing, sends nothing) and a control client
(answers every Ping) connect at once.  The silent one must be closed at the TCP level after
it received at least one Ping it did not answer; the control one must still be open, and
still echo, a moment after that.  Default wait 90 s: websockets reaps at 40 s (a Ping at
20 s plus a 20 s Pong timeout), gorilla's pattern at 60 s (``pongWait``), the ws README's
pattern between 30 and 60 s; 90 s leaves a margin over all of them.  With hints,
2 x (ping_interval + ping_timeout) + 1 s.  A server that has sent its Close frame may then
wait for the peer's Close before it drops TCP (tornado a fixed 5 s,
``WebSocketProtocol13.close``; ws 30 s, ``closeTimeout``), so the TCP end is awaited until
35 s after the Close frame arrived, or ``close_timeout`` + 1 s with that hint.
"""

from __future__ import annotations

import asyncio

from gaps.evidence import show_bytes
from gaps.probe import Outcome, ProbeContext, check, failed, passed
from gaps.toolkit import deadline_in, harness_stall, wait_until
from gaps.wire.errors import WireError

PINGS_WAIT = 65.0
REAP_WAIT = 90.0
CLOSE_WAIT = 35.0
CONTROL_GRACE = 1.0  # how long the control client must outlive the silent one


def _ping_wait(ctx: ProbeContext) -> float:
    interval = ctx.hint("ping_interval")
    return ctx.plan_wait(PINGS_WAIT, 2 * interval + 1 if interval else None)


def _reap_wait(ctx: ProbeContext) -> float:
    interval, timeout = ctx.hint("ping_interval"), ctx.hint("ping_timeout")
    hinted = 2 * (interval + timeout) + 1 if interval and timeout else None
    return ctx.plan_wait(REAP_WAIT, hinted)


@check("heartbeat.server-pings", absent="heartbeat", timing=True, budget=PINGS_WAIT + 30)
async def server_pings(ctx: ProbeContext) -> Outcome:
    wait = _ping_wait(ctx)
    client = await ctx.connect("echo", auto_pong=True)
    await wait_until(lambda: client.pings or client.closed, deadline_in(wait))
    if client.pings:
        first, payload = client.pings[0]
        return passed(f"first server Ping after {first:.2f} s", ping_times=[
            round(t, 3) for t, _ in client.pings], payload=show_bytes(payload), wait=wait)
    if client.closed:
        return failed(f"connection ended after {client.eof_at:.2f} s with no Ping",
                      **client.evidence())
    return failed(f"no Ping within {wait:.1f} s", wait=wait, **client.evidence())


def _tcp_end_wait(ctx: ProbeContext) -> float:
    close_timeout = ctx.hint("close_timeout")
    return ctx.plan_wait(CLOSE_WAIT, close_timeout + 1 if close_timeout is not None else None,
                    name="tcp-end")


@check("heartbeat.reaps-silent-peer", absent="heartbeat", timing=True,
       budget=REAP_WAIT + CLOSE_WAIT + 30)
async def reaps_silent_peer(ctx: ProbeContext) -> Outcome:
    wait = _reap_wait(ctx)
    silent = await ctx.connect("echo", auto_pong=False)
    control = await ctx.connect("echo", auto_pong=True)
    closed = await silent.wait_closed(wait)
    if not closed and silent.close_at is not None:
        # Reaping has begun; the server may rightly wait for our Close before dropping TCP,
        # for its close timeout counted from when it sent the Close frame.
        since_close = asyncio.get_running_loop().time() - silent.opened_at - silent.close_at
        closed = await silent.wait_closed(max(0.0, _tcp_end_wait(ctx) - since_close))
    evidence = {"wait": wait, "silent": silent.evidence(), "control": control.evidence()}
    if not closed:
        state = ("a Close frame but no TCP end" if silent.close_frame is not None
                 else "no Close frame")
        return failed(f"silent peer still open after {wait:.1f} s ({state}) with "
                      f"{len(silent.pings)} unanswered Ping(s)", **evidence)
    end = silent.eof_at
    close = (f"Close {silent.close_code}" if silent.close_frame is not None
             else "no Close frame")
    unanswered = [t for t, _ in silent.pings if t <= end]
    if not unanswered:
        return failed(f"silent peer closed after {end:.2f} s ({close}) without any Ping first: "
                      "not a heartbeat", **evidence)
    await asyncio.sleep(ctx.scaled(CONTROL_GRACE))
    if not control.closed:
        await control.send_text("wsgaps control")
        try:
            await control.recv_message(ctx.scaled(5.0))
        except WireError as exc:
            evidence["control_error"] = f"{type(exc).__name__}: {exc}"
    evidence["control"] = control.evidence()
    if control.closed or "control_error" in evidence:
        # If our own event loop stalled long enough to answer a Ping late, the target may
        # rightly have reaped the control client: harness_stall makes that an error.
        return harness_stall(ctx, failed(f"silent peer closed after {end:.2f} s, but the "
                                         "control client that answered every Ping was "
                                         "closed too", **evidence), closed=1)
    return passed(f"silent peer closed after {end:.2f} s ({close}) following "
                  f"{len(unanswered)} unanswered Ping(s); the control client stayed open",
                  time_to_close=round(end, 3), close_code=silent.close_code,
                  close_frame=silent.close_frame is not None, **evidence)
