"""Gap 11, recovery: does the target's own outbound client reconnect, and back off?

Only the target can dial out, so these checks play its upstream (``gaps.upstream``).  Each
try starts an upstream server, then a fresh instance of the target whose ``{upstream}`` is
that server's URL (``ProbeContext.with_upstream``), so the target's client dials it from its
first attempt.  The upstream records the time of every attempt and, as the probe says,
refuses it (TCP reset, or HTTP 503), accepts it, or drops an accepted connection.

``retries-first-dial``: the first 3 dials are refused (reset, 503, reset); the target must
dial again each time and connect on the fourth.
``redials-after-drop``: the first dial is accepted and then dropped by a TCP close without a
Close frame; the target must dial again; that connection gets a Close 1001; it must dial
again.
``backoff``: every dial is refused (reset).  From the second interval between attempts on,
each must be at least 1.2 times the one before until the intervals level off: the first
interval that does not grow that much must be within 20% of the one before (and the level
it shows is the cap).  The first interval is exempt (RFC 6455 7.2.3 randomises the first
delay; websockets draws it from 0 to 5 s).  A fixed interval fails, a shrinking one fails,
and so does a tight loop (the upstream stops answering after 50 dials at more than 20 a
second).  A cap is required only when it is declared (``backoff_max``) or reached within
the wait; growth alone passes otherwise.
``jitter`` (evidence): two runs as for ``backoff``; they differ when at some index from the
second on their intervals differ by more than 10% and by more than 0.1 s (scheduling noise
alone does not count), the longer of the two judged only once its run has a later interval
and when it is no spike there (over 25% above both its neighbours: one late dial).
The second run starts once the first has dialled three times.
``resume`` (optional, where ``endpoints.upstream.resume`` says how the client names its
position): the upstream sends 3 numbered messages, drops the connection, publishes 3 more;
the reconnect must name the last message received (seq 3, or its token); the 3 missed
messages are then replayed.

Waits, without hints: the first dial within 10 s of the target being ready; the fourth dial
within 60 s of the first (websockets' defaults need at most 5 + 3.1 + 5.0 = 13.1 s,
``client.py`` ``backoff``); a redial within 30 s of a drop; failed dials observed for at most
120 s, and a target that has not dialled for 30 s has stopped (longer than the early delays
of the clients that reconnect by default: websockets 5 s then 3.1 s, 5 s, 8.1 s;
reconnecting-websocket 1-5 s; socket.io-client up to 5 s; SignalR 0, 2, 10, 30 s, whose
fourth retry, if cut, changes no verdict).  websockets' defaults (a
random 0-5 s first delay, then 3.1 s x 1.618 up to 90 s) would need minutes to reach their
cap, so without hints the cap is judged only if reached.  With the hints ``backoff_initial``
(a), ``backoff_factor`` (f) and ``backoff_max`` (c), n delays are expected to take
T(n) = sum of min(c, a f^i) for i < n, and a wait is 2 T(n) + 2 s; a redial after a drop
2 max(a, c) + 5 s.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from gaps.manifest import FieldReader
from gaps.model import Verdict
from gaps.probe import (
    UPSTREAM,
    Outcome,
    ProbeContext,
    check,
    failed,
    manifest_key,
    passed,
    skipped,
)
from gaps.targets import TargetFailed
from gaps.upstream import CLOSE_WAIT, Attempt, Feed, Link, Upstream

K_REFUSED = 3  # dials refused before one is let through (retries-first-dial)
FIRST_REFUSALS = ("reset", "503")  # cycled through by retries-first-dial
READY_DIAL_WAIT = 10.0  # the first dial must have come this long after the target was ready
FIRST_DIAL_WAIT = 60.0  # from the first dial to dial K+1, without hints
REDIAL_WAIT = 30.0  # from a drop to the redial, without hints
BACKOFF_WAIT = 120.0  # failed dials observed at most this long, without hints
SILENCE = 30.0  # no dial for this long: the target has stopped dialling
SETTLE = 0.5  # an accepted connection is left alone this long before it is dropped
GROWTH = 1.2  # from the second interval on, each at least this times the one before
LEVEL = 0.2  # two intervals within this share of the larger one have levelled off
QUICK = 0.05  # intervals under this (20 dials a second) are not judged one by one
JITTER = 0.1  # two runs differ at an index by more than this share of the larger interval
NOISE = 0.1  # ... and by more than this many seconds (scheduling noise)
SPIKE = 0.25  # an interval this share above both its neighbours is one late dial
JITTER_INTERVALS = 12  # intervals each jitter run observes at most
HINT_FACTOR, HINT_MARGIN = 2.0, 2.0  # a hinted wait: 2 x the expected time + 2 s
REDIAL_MARGIN = 5.0  # a hinted redial wait: 2 x the longest delay + 5 s
FEED_BEFORE, FEED_MISSED = 3, 3  # resume: messages before the drop, and while disconnected
RESUME_MESSAGE_WAIT = 5.0  # resume via message: the first message after the reconnect
SHOWN = 12  # intervals quoted in a summary

# How the target's client names its position when it reconnects to the upstream: in a
# query parameter, a header, or the JSON first message it sends, under ``name``; the value
# is the last ``seq`` or ``token`` of the upstream's feed it got.
RESUME_KEYS = {"via", "name", "value"}
RESUME_VIA = {"query", "header", "message"}
RESUME_VALUES = {"seq", "token"}


@dataclass(frozen=True)
class Resume:
    via: str
    name: str
    value: str = "seq"


def _read_resume(r: FieldReader, data: Any, fieldname: str) -> Resume:
    table = r.table(data, fieldname, RESUME_KEYS)
    r.require(table, ("via", "name"), fieldname)
    via = r.choice(table["via"], f"{fieldname}.via", RESUME_VIA)
    value = r.choice(table.get("value", "seq"), f"{fieldname}.value", RESUME_VALUES)
    return Resume(via, r.string(table["name"], f"{fieldname}.name"), value)


RESUME = manifest_key("upstream", "resume", _read_resume,
                      "how the target's client names its position when it reconnects "
                      "(via query, header or message; name; value seq or token)")


# -- waits ---------------------------------------------------------------------------------

def _expected(ctx: ProbeContext, delays: int) -> float | None:
    """Seconds ``delays`` retry delays take as the hints declare them; None without all three."""
    a, f, c = (ctx.hint(n) for n in ("backoff_initial", "backoff_factor", "backoff_max"))
    if a is None or f is None or c is None:
        return None
    total, delay = 0.0, a
    for _ in range(delays):
        total += min(c, delay)
        delay *= f
    return total


def _hinted(ctx: ProbeContext, delays: int) -> float | None:
    expected = _expected(ctx, delays)
    return None if expected is None else HINT_FACTOR * expected + HINT_MARGIN


def _redial_hint(ctx: ProbeContext) -> float | None:
    """A redial after a drop may wait one delay, at most the larger of the first and the cap;
    5 s more than for a dial, as the client must first notice the drop."""
    if _expected(ctx, 1) is None:
        return None
    longest = max(ctx.hint("backoff_initial") or 0.0, ctx.hint("backoff_max") or 0.0)
    return HINT_FACTOR * longest + REDIAL_MARGIN


def _delays_to_cap(ctx: ProbeContext) -> int:
    """How many delays the hinted backoff takes to reach its cap (at least 1)."""
    a, f, c = (ctx.hint(n) or 0.0 for n in ("backoff_initial", "backoff_factor", "backoff_max"))
    steps, delay = 1, a
    while delay < c and f > 1 and steps < 30:
        delay *= f
        steps += 1
    return steps


async def _first_dial(ctx: ProbeContext, up: Upstream) -> Attempt | None:
    """The target's first dial: it may come before the target is ready, or shortly after."""
    wait = ctx.plan_wait(READY_DIAL_WAIT, name="first-dial")
    await up.wait_attempts(1, asyncio.get_running_loop().time() + wait)
    return up.attempts[0] if up.attempts else None


def _never_dialled(ctx: ProbeContext, evidence: dict[str, Any]) -> Outcome:
    wait = ctx.waits.get(f"{ctx.check_id}.first-dial", READY_DIAL_WAIT)
    return failed(f"the target never dialled its upstream (none within {wait:.1f} s of being "
                  "ready): no outbound client, or {upstream} is not wired to it", **evidence)


def _stopped(up: Upstream, deadline: float, silence: float, wait: float) -> str:
    """Why watching ended without what was waited for: the target went quiet, or time ran out."""
    if up.tight_loop:
        return f"the upstream stopped answering: {up.tight_loop}"
    last = up.attempts[-1].at if up.attempts else up.t0
    if last + silence <= min(deadline, asyncio.get_running_loop().time()) + 1e-6:
        return f"then no dial for {silence:.0f} s"
    return f"the {wait:.1f} s wait ran out"


def _seconds(values: list[float]) -> str:
    if not values:
        return "none"
    shown = ", ".join(f"{v:.2f}" for v in values[:SHOWN])
    return shown + (", ..." if len(values) > SHOWN else "") + " s"


# -- retries-first-dial ------------------------------------------------------------------------

@check("recovery.retries-first-dial", needs=("upstream",), absent="recovery", placement=UPSTREAM,
       budget=READY_DIAL_WAIT + FIRST_DIAL_WAIT + 60)
async def retries_first_dial(ctx: ProbeContext) -> Outcome:
    wait = ctx.plan_wait(FIRST_DIAL_WAIT, _hinted(ctx, K_REFUSED))
    silence = ctx.scaled(SILENCE)
    async with ctx.with_upstream(accept_from=K_REFUSED + 1, refusals=FIRST_REFUSALS) as (up, _):
        first = await _first_dial(ctx, up)
        if first is None:
            return _never_dialled(ctx, up.evidence())
        deadline = first.at + wait
        link = await up.wait_link(1, deadline, silence)
        refused = [a.outcome for a in up.attempts[:K_REFUSED]]
        evidence = {"wait": wait, "refused": K_REFUSED, **up.evidence()}
        if link is not None:
            took = link.attempt.t - first.t
            return passed(f"the first {K_REFUSED} dials were refused ({', '.join(refused)}); "
                          f"the target dialled again each time and connected on dial "
                          f"{link.attempt.n}, {took:.2f} s after the first",
                          time_to_connect=round(took, 3), **evidence)
        dials = len(up.attempts)
        why = _stopped(up, deadline, silence, wait)
        if dials == 1:
            return failed(f"dialled once: its first dial was refused ({refused[0]}) and it did "
                          f"not dial again ({why})", **evidence)
        if dials <= K_REFUSED:
            return failed(f"gave up after {dials} refused dials ({', '.join(refused)}), {why}",
                          **evidence)
        let_through = [a.outcome for a in up.attempts[K_REFUSED:]]
        return failed(f"kept dialling ({dials} dials) but no dial after the refusals completed "
                      f"a WebSocket handshake ({', '.join(let_through[:5])})", **evidence)


# -- redials-after-drop ------------------------------------------------------------------------

DROPS = (("tcp", "a TCP close without a Close frame"), ("close-1001", "a Close 1001"))


@check("recovery.redials-after-drop", needs=("upstream",), absent="recovery", placement=UPSTREAM,
       budget=READY_DIAL_WAIT + 2 * (REDIAL_WAIT + CLOSE_WAIT + SETTLE) + 60)
async def redials_after_drop(ctx: ProbeContext) -> Outcome:
    wait = ctx.plan_wait(REDIAL_WAIT, _redial_hint(ctx))
    loop = asyncio.get_running_loop()
    async with ctx.with_upstream(accept_from=1) as (up, _):
        first = await _first_dial(ctx, up)
        if first is None:
            return _never_dialled(ctx, up.evidence())
        link = await up.wait_link(1, loop.time() + wait)
        evidence: dict[str, Any] = {"wait": wait}
        if link is None:
            return failed("its dials were let through but none completed a WebSocket handshake "
                          f"within {wait:.1f} s", **evidence, **up.evidence())
        redials: list[float] = []
        for number, (how, what) in enumerate(DROPS, start=2):
            await asyncio.sleep(ctx.scaled(SETTLE))
            dropped = loop.time()
            if how == "tcp":
                link.drop()
            else:
                await link.close(1001, "going away")
            grace = ctx.scaled(CLOSE_WAIT) if how != "tcp" else 0.0
            following = await up.wait_link(number, dropped + wait + grace)
            if following is None:
                evidence.update(redials=redials, **up.evidence())
                earlier = (f" (it had redialled {redials[0]:.2f} s after a TCP close)"
                           if redials else "")
                return failed(f"no redial within {wait + grace:.1f} s after the upstream ended "
                              f"the connection with {what}{earlier}", **evidence)
            redials.append(round(following.attempt.at - dropped, 3))
            link = following
        evidence.update(redials=redials, **up.evidence())
        return passed(f"redialled {redials[0]:.2f} s after a TCP close without a Close frame "
                      f"and {redials[1]:.2f} s after a Close 1001", **evidence)


# -- backoff -------------------------------------------------------------------------------

@dataclass
class Judgement:
    verdict: Verdict | None  # None: not decided yet, keep watching
    summary: str = ""


def judge_backoff(intervals: list[float], *, final: bool, cap: float | None = None,
                  tight: str | None = None, ended: str = "") -> Judgement:
    """The backoff verdict on the intervals between failed dials, or None while undecided.

    ``final``: no more dials will be watched (``ended`` says why: the wait, the silence);
    ``cap``: the declared cap, which then must be reached; ``tight``: the upstream's word
    that the target dialled in a tight loop.
    """
    if tight:
        return Judgement(Verdict.FAIL, f"{tight}: no backoff")
    shown = _seconds(intervals)
    growth = 0
    for i in range(1, len(intervals) - 1):
        a, b = intervals[i], intervals[i + 1]
        if b >= GROWTH * a:
            growth += 1
            continue
        if a < QUICK and b < QUICK:
            if not final:
                return Judgement(None)  # a tight loop shows itself by the upstream's count
            return Judgement(Verdict.FAIL, f"dials came again within {QUICK * 1000:.0f} ms: "
                                           f"no backoff (intervals {shown})")
        if b < (1 - LEVEL) * a:
            return Judgement(Verdict.FAIL, f"interval {i + 2} ({b:.2f} s) is shorter than "
                                           f"interval {i + 1} ({a:.2f} s): the delays do not "
                                           f"grow (intervals {shown})")
        if growth == 0:
            return Judgement(Verdict.FAIL, f"a fixed interval: {a:.2f} s then {b:.2f} s from "
                                           f"the second interval on, no growth "
                                           f"(intervals {shown})")
        steps = f"{growth} step{'s' if growth > 1 else ''}"
        return Judgement(Verdict.PASS, f"the intervals grew at least x{GROWTH:g} from the "
                                       f"second on ({steps}) and levelled off at about "
                                       f"{b:.2f} s, the last two within {LEVEL:.0%} "
                                       f"(intervals {shown})")
    if not final:
        return Judgement(None)
    dials = len(intervals) + 1
    if len(intervals) < 3:
        what = "dialled once" if dials == 1 else f"dialled only {dials} times"
        return Judgement(Verdict.FAIL, f"{what} {ended}: too few failed dials to show a "
                                       f"backoff (intervals {shown})")
    if cap is not None:
        return Judgement(Verdict.FAIL, f"the intervals grew but did not level off at the "
                                       f"declared cap of {cap:g} s {ended} (intervals {shown})")
    return Judgement(Verdict.PASS, f"the intervals grew at least x{GROWTH:g} from the second on "
                                   f"and reached no cap {ended} (intervals {shown})")


def _backoff_wait(ctx: ProbeContext) -> float:
    delays = max(3, _delays_to_cap(ctx) + 2)
    return ctx.plan_wait(BACKOFF_WAIT, _hinted(ctx, delays))


async def _watch_refused(up: Upstream, deadline: float, silence: float,
                         done: Callable[[], bool]) -> bool:
    """Wait for the next dial; False when none will come (deadline, silence, upstream
    stopped answering) or ``done()`` turns true."""
    seen = len(up.attempts)
    return await up.wait_for(lambda: len(up.attempts) > seen or done(), deadline, silence)


@check("recovery.backoff", needs=("upstream",), absent="recovery", placement=UPSTREAM, timing=True,
       budget=READY_DIAL_WAIT + BACKOFF_WAIT + 60)
async def backoff(ctx: ProbeContext) -> Outcome:
    wait = _backoff_wait(ctx)
    silence = ctx.scaled(SILENCE)
    cap = ctx.hint("backoff_max")
    async with ctx.with_upstream(accept_from=None, refusals=("reset",)) as (up, _):
        first = await _first_dial(ctx, up)
        if first is None:
            return _never_dialled(ctx, up.evidence())
        deadline = first.at + wait
        while True:
            more = await _watch_refused(up, deadline, silence, lambda: False)
            ended = "" if more else f"({_stopped(up, deadline, silence, wait)})"
            judged = judge_backoff(up.intervals(), final=not more, cap=cap,
                                   tight=up.tight_loop, ended=ended)
            if judged.verdict is not None:
                break
        evidence = {"wait": wait, "intervals": [round(i, 3) for i in up.intervals()[:60]],
                    **({"declared_cap": cap} if cap is not None else {}), **up.evidence()}
        return Outcome(judged.verdict, judged.summary, evidence)


# -- jitter --------------------------------------------------------------------------------

@dataclass
class Run:
    """One jitter run: its upstream while it lasts, then its intervals and evidence."""

    up: Upstream | None = None
    intervals: list[float] = field(default_factory=list)
    evidence: dict[str, Any] = field(default_factory=dict)
    tight: str | None = None
    never: bool = False

    def now_intervals(self) -> list[float]:
        return self.up.intervals() if self.up is not None else self.intervals


def _spike(run: list[float], i: int, noise: float) -> bool:
    """Whether interval ``i`` stands above both its neighbours by more than ``SPIKE`` of the
    larger and more than ``noise`` seconds: one late dial on a busy machine (the next
    interval is back to normal), not a delay the client chose."""
    around = max(run[i - 1], run[i + 1])
    return run[i] > (1 + SPIKE) * around and run[i] - around > noise


def first_difference(a: list[float], b: list[float],
                     noise: float) -> tuple[int, float, float] | None:
    """The first interval (1-based, from the second on) where two runs differ by more than
    ``JITTER`` of the larger and more than ``noise`` seconds; None when they never do.

    The larger of the two is judged only once its run has a later interval, and not when
    it is a spike there (``_spike``): a punctual fixed-interval client (GoFr: 0.50 s +- 5 ms)
    once dialled 0.34 s late in a full matrix run, and a late dial only ever lengthens an
    interval.  A jittered backoff's intervals stay within its level-off band (20%) of their
    neighbours, so they are never spikes.
    """
    for i in range(1, min(len(a), len(b))):
        x, y = a[i], b[i]
        longer = a if x >= y else b
        if i + 1 >= len(longer) or _spike(longer, i, noise):
            continue
        if abs(x - y) > max(JITTER * max(x, y), noise):
            return i + 1, x, y
    return None


async def _jitter_run(ctx: ProbeContext, run: Run, wait: float, stop: asyncio.Event,
                      progress: Any) -> None:
    silence = ctx.scaled(SILENCE)
    async with ctx.with_upstream(accept_from=None, refusals=("reset",)) as (up, _):
        run.up = up
        try:
            first = await _first_dial(ctx, up)
            if first is None:
                run.never = True
                return
            deadline = first.at + wait
            while True:
                progress(run)
                if stop.is_set() or len(up.intervals()) >= JITTER_INTERVALS:
                    break
                if not await _watch_refused(up, deadline, silence, stop.is_set):
                    break
        finally:
            run.intervals = up.intervals()
            run.tight = up.tight_loop
            run.evidence = up.evidence()
            run.up = None


def _leaves(group: ExceptionGroup[Exception]) -> list[Exception]:
    found: list[Exception] = []
    for exc in group.exceptions:
        found += _leaves(exc) if isinstance(exc, ExceptionGroup) else [exc]
    return found


def _every_error(group: ExceptionGroup[Exception]) -> Exception:
    """What the two runs raised, none left out: one error as itself; runs whose targets
    never got ready as one TargetFailed naming each (reported like any try's: "target not
    ready"); anything else as a group whose message names every error, so that none, a
    harness-side one least of all, hides behind another."""
    errors = _leaves(group)
    if len(errors) == 1:
        return errors[0]
    said = "; ".join(f"{type(e).__name__}: {e}" for e in errors)
    failures = [e for e in errors if isinstance(e, TargetFailed)]
    if len(failures) == len(errors):
        return TargetFailed(said, "\n".join(e.logs for e in failures if e.logs))
    return ExceptionGroup(f"{len(errors)} errors in the jitter runs: {said}", errors)


@check("recovery.jitter", needs=("upstream",), absent="recovery", placement=UPSTREAM,
       budget=2 * READY_DIAL_WAIT + SILENCE + BACKOFF_WAIT + 60)
async def jitter(ctx: ProbeContext) -> Outcome:
    wait = ctx.plan_wait(BACKOFF_WAIT, _hinted(ctx, JITTER_INTERVALS))
    noise = ctx.scaled(NOISE)
    runs = (Run(), Run())
    stop = asyncio.Event()
    second: list[asyncio.Task[None]] = []

    try:
        async with asyncio.TaskGroup() as group:

            def progress(run: Run) -> None:
                # The second run starts once the first has shown retries (3 dials, the
                # least that gives an interval from the second on): a target that gives up
                # costs one instance, not two.  Neither run waits for the other, so two runs
                # never hold one instance slot while waiting for another.
                if run is runs[0] and not second and len(run.now_intervals()) >= 2:
                    second.append(group.create_task(
                        _jitter_run(ctx, runs[1], wait, stop, progress)))
                if first_difference(runs[0].now_intervals(), runs[1].now_intervals(), noise):
                    stop.set()
                    for other in runs:
                        if other.up is not None:
                            other.up.wake()

            group.create_task(_jitter_run(ctx, runs[0], wait, stop, progress))
    except ExceptionGroup as group_error:
        raise _every_error(group_error) from None

    evidence = {"wait": wait, "runs": [{"intervals": [round(i, 3) for i in r.intervals[:30]],
                                        **r.evidence} for r in runs]}
    tight = next((r.tight for r in runs if r.tight), None)
    if tight:
        return failed(f"{tight}: no jitter to speak of", **evidence)
    if runs[0].never:
        return _never_dialled(ctx, evidence)
    found = first_difference(runs[0].intervals, runs[1].intervals, noise)
    if found is not None:
        index, x, y = found
        return passed(f"two runs differ at interval {index}: {x:.2f} s and {y:.2f} s (more than "
                      f"{JITTER:.0%} and {NOISE:g} s apart)", jitter_index=index, **evidence)
    short = next((r for r in runs if len(r.intervals) < 3), None)
    if short is not None:
        which = "first" if short is runs[0] else "second"
        return skipped(f"no interval sequence to compare: the {which} run saw "
                       f"{len(short.intervals) + 1} dial(s), too few (see recovery.backoff)",
                       **evidence)
    return failed(f"two runs agree within {JITTER:.0%} (or {NOISE:g} s) at every interval judged "
                  f"from the second on (the longer of a pair once its run dialled again, and "
                  f"not a lone late dial): {_seconds(runs[0].intervals)} and "
                  f"{_seconds(runs[1].intervals)}", **evidence)


# -- resume --------------------------------------------------------------------------------

async def presented(link: Link, how: Resume, wait: float) -> str | None:
    """The position the client named on ``link``, the way the manifest says it does."""
    if how.via == "query":
        values = parse_qs(urlsplit(link.path).query).get(how.name)
        return values[-1] if values else None
    if how.via == "header":
        return link.header(how.name)
    message = await link.next_message(wait)
    if message is None:
        return None
    try:
        data = json.loads(message)
    except (ValueError, UnicodeDecodeError):
        return None
    value = data.get(how.name) if isinstance(data, dict) else None
    return None if value is None or isinstance(value, dict | list) else str(value)


@check("recovery.resume", needs=("upstream", "upstream.resume"), absent="resume",
       placement=UPSTREAM, budget=READY_DIAL_WAIT + REDIAL_WAIT + RESUME_MESSAGE_WAIT + 60)
async def resume(ctx: ProbeContext) -> Outcome:
    how = RESUME.value(ctx.manifest)
    assert isinstance(how, Resume)  # needs upstream.resume
    wait = ctx.plan_wait(REDIAL_WAIT, _redial_hint(ctx))
    loop = asyncio.get_running_loop()
    feed = Feed()
    async with ctx.with_upstream(accept_from=1) as (up, _):
        first = await _first_dial(ctx, up)
        if first is None:
            return _never_dialled(ctx, up.evidence())
        link = await up.wait_link(1, loop.time() + wait)
        evidence: dict[str, Any] = {"wait": wait, "how": f"{how.via} {how.name} ({how.value})"}
        if link is None:
            return failed("no dial completed a WebSocket handshake", **evidence, **up.evidence())
        for _ in range(FEED_BEFORE):
            await link.send_text(json.dumps(feed.publish()))
        await asyncio.sleep(ctx.scaled(SETTLE))
        dropped = loop.time()
        link.drop()
        for _ in range(FEED_MISSED):
            feed.publish()  # sent while the target is disconnected: kept for a replay
        following = await up.wait_link(2, dropped + wait)
        if following is None:
            evidence.update(up.evidence())
            return failed(f"no reconnect within {wait:.1f} s after a TCP close: nothing to "
                          "resume", **evidence)
        named = await presented(following, how, ctx.scaled(RESUME_MESSAGE_WAIT))
        evidence.update(presented=named, expected_seq=FEED_BEFORE, **up.evidence())
        if named is None:
            return failed(f"the reconnect named no position ({how.via} {how.name!r}): the "
                          f"{FEED_MISSED} messages sent while it was away cannot be replayed",
                          **evidence)
        seq = feed.position(how.value, named)
        if seq != FEED_BEFORE:
            return failed(f"the reconnect named {named[:60]!r} ({how.value}), not the last "
                          f"message it had received (seq {FEED_BEFORE})", **evidence)
        for text in feed.after(seq):
            await following.send_text(text)
        return passed(f"the reconnect named seq {seq} ({how.via} {how.name!r}), the last "
                      f"message it had; messages {seq + 1}-{seq + FEED_MISSED}, sent while it "
                      "was disconnected, were replayed", **evidence)
