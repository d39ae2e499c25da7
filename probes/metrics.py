"""Gap 13, metrics: does the stack expose WebSocket metrics, and do they tell the truth?

The probe drives traffic it knows and watches the target's Prometheus exposition (the
manifest's ``metrics`` endpoint, ``ctx.http_get``) move.  The exposition is parsed with the
Prometheus project's own Python parser: ``prometheus_client.openmetrics.parser`` for an
``application/openmetrics-text`` answer, ``prometheus_client.parser`` for anything else
(the text format).  The GET asks, as a Prometheus server does, for OpenMetrics first and
the text format after.  A scrape that fails (no answer, a status other than 200, a page
either parser refuses) is the check's finding, with the answer in the evidence: a target
with a ``metrics`` endpoint must serve it.  A target without one is ``skip``, or a declared
fail with ``absent.metrics`` (observed before declared: a declared absence never hides an
endpoint the manifest names).

Which families count.  A family counts for a WebSocket check when its name says WebSocket
(``websocket``, ``web_socket`` or a ``ws`` word), or its help text does and its name is not
an HTTP one (``http``, ``request``, ``response``, ``handshake``, ``upgrade``), it has
the type the check needs (a gauge, or an untyped value, for connections; counters for
messages and errors; a histogram or summary for latency), and, for messages and errors, a
word for its role (``receiv``/``recv``/``read``/``in``/``incoming``, ``sent``/``send``/
``writ``/``out``/``outgoing``, ``error``/``fail``/``invalid``/``abnormal``).  HTTP-only
families (request counters that count the upgrade request, response-time histograms of the
upgrade) never count; every family's reason for not counting is in the evidence
(``families``).  The manifest may map a role to a family of the stack's own naming
(``[endpoints.metrics] metrics_map = { connections = "name", received = 'name{dir="in"}',
... }``, roles ``connections``, ``received``, ``sent``, ``errors``, ``latency``; labels
select samples): a mapped role has that family as its only candidate.  A family's value is
the sum of its samples (matching the labels where the map names some): the gauge's value,
a counter's ``_total``, a histogram's or summary's ``_count``.

Checks and verdicts:

- ``connections-gauge`` [capability, alone on its instance]: a quiet control sample first
  (two scrapes ``QUIET`` apart that agree, within ``CONTROL_WAIT``; a candidate that keeps
  moving with no traffic is dropped, saying so); then, for K in ``KS`` (3, then 7), K
  clients connect to ``echo`` and the gauge must read exactly base + K within
  ``MOVE_WAIT``, and exactly base again within ``RETURN_WAIT`` after the K clients closed
  (Close 1000, answered).  Pass when one candidate does both for both K.  A gauge that
  never moves, overshoots, or never comes back fails, with every sample.  Without any
  candidate, ``KS[0]`` clients still connect and close once, and what each HTTP-only family
  did meanwhile is evidence (``http_only``: a request counter that counts the upgrades).
- ``message-counters`` [capability, alone]: one client on ``echo``, then for M in ``MS``
  (20, then 50) M ASCII Text messages with sequence numbers, every echo awaited; the
  received and the sent counter must each move by at least M, and by no more than M +
  ``slack`` (``max(SLACK_MIN, M // SLACK_DIVISOR)`` plus what it moved in the quiet
  control sample): a counter that moves by 2M counts each message twice (DESIGN.md says
  "at least M"; the bound above is the deviation recorded in the design notes).  Each
  counter is sampled until it has moved by M (``MOVE_WAIT``), then once more ``SETTLE``
  later.  Pass when a received and a sent candidate do so for both M.
- ``errors-and-latency`` [capability]: a client echoes ``LATENCY_MESSAGES`` messages and
  closes (Close 1000), and another commits a protocol error (an unmasked Text frame, RFC
  6455 5.1, which the server must fail); then an error counter must have moved by at least
  1 and a WebSocket latency or duration histogram's count by at least 1, within
  ``MOVE_WAIT``.  Both halves must hold; each half's candidates and values are evidence.

Waits (scaled by ``--gaps-time-scale``; no hint changes them, and every poll ends as soon
as what it waits for holds): ``SCRAPE_WAIT`` = 5 s per GET, ``CONTROL_WAIT`` = 5 s for a
quiet control sample, ``MOVE_WAIT`` = 5 s for a metric to show an action (exporters update
at once, or on the scrape), ``RETURN_WAIT`` = 10 s for the gauge after the closes (a
server may take its close timeout), ``ECHO_WAIT`` = 10 s for the echoes.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families as parse_text

from gaps.manifest import FieldReader
from gaps.probe import ALONE, Outcome, ProbeContext, check, failed, manifest_key, passed
from gaps.toolkit import (
    NoMessage,
    connect_many,
    deadline_in,
    expect_close,
    left,
    receive,
    show,
)
from gaps.wire.client import WireClient
from gaps.wire.errors import WireError
from gaps.wire.frames import Opcode

KS = (3, 7)
MS = (20, 50)
LATENCY_MESSAGES = 3
SLACK_MIN, SLACK_DIVISOR = 3, 10
SCRAPE_WAIT = 5.0
CONTROL_WAIT = 5.0
MOVE_WAIT = 5.0
RETURN_WAIT = 10.0
ECHO_WAIT = 10.0
CLOSE_WAIT = 5.0
QUIET = 0.5
SETTLE = 0.3
POLL = 0.2
MAX_BODY = 4 * 1024 * 1024
FAMILIES_SHOWN = 80  # families listed in the evidence, each with why it (did not) count
ECHO_MAX = 4096

ACCEPT = ("application/openmetrics-text;version=1.0.0;q=0.9,"
          "text/plain;version=0.0.4;q=0.5,*/*;q=0.1")
ROLES = ("connections", "received", "sent", "errors", "latency")
WEBSOCKET_NAME = re.compile(r"websocket|web_socket|(^|_)wss?(_|$)")
WEBSOCKET_HELP = re.compile(r"web[\s_-]?socket", re.IGNORECASE)
HTTP_NAME = re.compile(r"http|request|response|handshake|upgrade")
ROLE_WORDS = {
    "received": re.compile(r"receiv|recv|(^|_)read|(^|_)in(_|$)|inbound|incoming"),
    "sent": re.compile(r"sent|send|writ|(^|_)out(_|$)|outbound|outgoing"),
    "errors": re.compile(r"error|fail|invalid|abnormal"),
}
ROLE_TYPES = {
    "connections": ("gauge", "unknown", "untyped"),
    "received": ("counter",),
    "sent": ("counter",),
    "errors": ("counter",),
    "latency": ("histogram", "summary", "gaugehistogram"),
}
SELECTOR = re.compile(r'^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})?$')
LABEL = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(?:,|$)')


# -- the manifest's map ------------------------------------------------------------------

@dataclass(frozen=True)
class Selector:
    """A family, and the labels its samples must carry (from the manifest's map)."""

    family: str
    labels: tuple[tuple[str, str], ...] = ()

    def __str__(self) -> str:
        inner = ",".join(f'{k}="{v}"' for k, v in self.labels)
        return f"{self.family}{{{inner}}}" if inner else self.family


def parse_selector(text: str) -> Selector | None:
    match = SELECTOR.match(text.strip())
    if match is None:
        return None
    name, inner = match.group(1), match.group(2) or ""
    labels: list[tuple[str, str]] = []
    position = 0
    while position < len(inner):
        label = LABEL.match(inner, position)
        if label is None or label.end() == position:
            return None
        labels.append((label.group(1), label.group(2)))
        position = label.end()
    return Selector(name, tuple(labels))


def _read_map(r: FieldReader, value: Any, fieldname: str) -> dict[str, Selector]:
    table = r.table(value, fieldname, set(ROLES))
    selectors = {}
    for role, text in table.items():
        selector = parse_selector(r.string(text, f"{fieldname}.{role}"))
        if selector is None:
            raise r.fail(f"{fieldname}.{role}", f"{text!r} is not a family name with optional "
                         'labels (name or name{label="value"})')
        selectors[role] = selector
    return selectors


METRICS_MAP = manifest_key(
    "metrics", "metrics_map", _read_map,
    "families of the stack's own naming for the roles connections, received, sent, errors, "
    "latency (a family name, with labels that select its samples)", default={})


# -- scraping and parsing ----------------------------------------------------------------

@dataclass
class Scrape:
    """One GET of the exposition: its families by name, or why there are none."""

    families: dict[str, Metric] = field(default_factory=dict)
    problem: str = ""  # the GET failed, was not a 200, or did not parse
    answer: dict[str, Any] = field(default_factory=dict)
    parser: str = ""

    @property
    def ok(self) -> bool:
        return not self.problem


async def scrape(ctx: ProbeContext) -> Scrape:
    answer = await ctx.http_get("metrics", wait=ctx.scaled(SCRAPE_WAIT), max_body=MAX_BODY,
                                headers=(("Accept", ACCEPT),))
    facts = answer.evidence()
    if not answer.ok:
        return Scrape(problem=f"GET {answer.url[:200]}: {answer.describe()}", answer=facts)
    if answer.status != 200:
        return Scrape(problem=f"GET {answer.url[:200]}: {answer.describe()}, not 200",
                      answer=facts)
    openmetrics = answer.content_type == "application/openmetrics-text"
    parser = ("prometheus_client.openmetrics.parser" if openmetrics
              else "prometheus_client.parser")
    try:
        found = list((parse_openmetrics if openmetrics else parse_text)(answer.text()))
    except (ValueError, IndexError, KeyError, TypeError) as exc:
        # The parser's own complaint about the page is the finding, not a harness crash.
        return Scrape(problem=f"the exposition does not parse ({parser}, content type "
                      f"{answer.content_type or 'none'}): {type(exc).__name__}: "
                      f"{show(str(exc).encode())}", answer=facts, parser=parser)
    families: dict[str, Metric] = {}
    for family in found:
        families.setdefault(family.name, family)
    return Scrape(families=families, answer=facts, parser=parser)


def _value_names(family: Metric) -> tuple[str, ...]:
    if family.type == "counter":
        return (family.name + "_total", family.name)
    if family.type in ("histogram", "summary"):
        return (family.name + "_count",)
    if family.type == "gaugehistogram":
        return (family.name + "_gcount",)
    return (family.name,)


def value_of(scraped: Scrape, selector: Selector) -> float | None:
    """The family's value in ``scraped`` (see the module doc), None when it is not there."""
    family = _family(scraped.families, selector.family)
    if family is None:
        return None
    names = _value_names(family)
    wanted = dict(selector.labels)
    return sum(s.value for s in family.samples if s.name in names
               and all(s.labels.get(k) == v for k, v in wanted.items()))


def _family(families: dict[str, Metric], name: str) -> Metric | None:
    if name in families:
        return families[name]
    for suffix in ("_total", "_count"):  # a map may name the sample, not the family
        if name.endswith(suffix) and name[: -len(suffix)] in families:
            return families[name[: -len(suffix)]]
    return None


# -- which families count ----------------------------------------------------------------

def why_not(family: Metric, role: str) -> str:
    """Why ``family`` is no candidate for ``role`` ("" when it is one)."""
    name = family.name.lower()
    if not WEBSOCKET_NAME.search(name):
        # An HTTP family stays HTTP-only even where its help mentions the upgrade.
        if HTTP_NAME.search(name):
            return "HTTP-only: its name says HTTP requests or responses, not WebSocket"
        if not WEBSOCKET_HELP.search(family.documentation):
            return "not WebSocket: neither its name nor its help says WebSocket"
    if family.type not in ROLE_TYPES[role]:
        return f"a {family.type}, where {role} needs a {' or '.join(ROLE_TYPES[role])}"
    words = ROLE_WORDS.get(role)
    if words is not None and not words.search(name):
        return f"its name has no word for {role}"
    return ""


def candidates(scraped: Scrape, role: str, mapped: dict[str, Selector]) -> list[Selector]:
    if role in mapped:
        return [mapped[role]]
    return [Selector(f.name) for f in scraped.families.values() if not why_not(f, role)]


def family_reasons(scraped: Scrape, roles: Iterable[str],
                   mapped: dict[str, Selector]) -> list[str]:
    """Every family with the roles it counts for, or why it counts for none of ``roles``."""
    roles = tuple(roles)
    lines = []
    for family in list(scraped.families.values())[:FAMILIES_SHOWN]:
        counts = [r for r in roles if r not in mapped and not why_not(family, r)]
        counts += [r for r in roles if r in mapped and mapped[r].family in
                   (family.name, family.name + "_total", family.name + "_count")]
        if counts:
            lines.append(f"{family.name} ({family.type}): candidate for {', '.join(counts)}")
        else:
            reasons = sorted({why_not(family, r) or f"not the mapped {r} family"
                              for r in roles})
            lines.append(f"{family.name} ({family.type}): not counted: {'; '.join(reasons)}")
    if len(scraped.families) > FAMILIES_SHOWN:
        lines.append(f"... and {len(scraped.families) - FAMILIES_SHOWN} more families")
    return lines


def no_candidates(scraped: Scrape, role_text: str, roles: Iterable[str],
                  mapped: dict[str, Selector], **evidence: Any) -> Outcome:
    return failed(f"no WebSocket {role_text} among {len(scraped.families)} families "
                  f"(parsed by {scraped.parser})",
                  families=family_reasons(scraped, roles, mapped), **evidence)


# -- sampling ----------------------------------------------------------------------------

class Sampler:
    """Scrapes again and again, keeping every value of the selectors it follows."""

    def __init__(self, ctx: ProbeContext, selectors: list[Selector]) -> None:
        self.ctx = ctx
        self.selectors = selectors
        self.log: list[dict[str, Any]] = []
        self.problem = ""
        self.drift: dict[Selector, float] = {s: 0.0 for s in selectors}  # in the control

    async def sample(self, label: str) -> dict[Selector, float | None] | None:
        scraped = await scrape(self.ctx)
        if not scraped.ok:
            self.problem = f"{label}: {scraped.problem}"
            self.log.append({"at": label, "problem": scraped.problem, **scraped.answer})
            return None
        values = {s: value_of(scraped, s) for s in self.selectors}
        if len(self.log) < 200:
            self.log.append({"at": label, **{str(s): v for s, v in values.items()}})
        return values

    async def until(self, label: str, done: Callable[[dict[Selector, float | None]], bool],
                    wait: float) -> dict[Selector, float | None] | None:
        """Samples until ``done(values)`` or ``wait`` ends; the last values (None: a scrape
        failed)."""
        deadline = deadline_in(wait)
        while True:
            values = await self.sample(label)
            if values is None or done(values) or left(deadline) <= 0:
                return values
            await asyncio.sleep(min(self.ctx.scaled(POLL), left(deadline)))

    async def quiet(self) -> tuple[dict[Selector, float | None] | None, set[Selector]]:
        """A quiet control sample: the values once two scrapes ``QUIET`` apart agree, and
        the selectors that still moved when ``CONTROL_WAIT`` ended."""
        deadline = deadline_in(self.ctx.scaled(CONTROL_WAIT))
        before = await self.sample("control")
        while before is not None:
            await asyncio.sleep(self.ctx.scaled(QUIET))
            after = await self.sample("control")
            if after is None:
                return None, set()
            moving = {s for s in self.selectors if after[s] != before[s]}
            self.drift = {s: abs((after[s] or 0) - (before[s] or 0)) for s in self.selectors}
            if not moving or left(deadline) <= 0:
                return after, moving
            before = after
        return None, set()


def scrape_failed(sampler: Sampler, **evidence: Any) -> Outcome:
    return failed(sampler.problem, samples=sampler.log, **evidence)


async def _close_all(ctx: ProbeContext, clients: list[WireClient]) -> None:
    """Close 1000 from each client, then each waits for the server's Close and TCP end."""
    async def one(client: WireClient) -> None:
        try:
            await client.close(1000, b"wsgaps metrics")
        except WireError:
            return
        await expect_close(client, (1000,), ctx.scaled(CLOSE_WAIT), until_tcp_end=True)

    await asyncio.gather(*(one(c) for c in clients))
    for client in clients:
        client.abort()


# -- metrics.connections-gauge -----------------------------------------------------------

async def _http_only_moves(ctx: ProbeContext, first: Scrape) -> dict[str, Any]:
    """What the HTTP-only families did while ``KS[0]`` clients connected and closed: the
    evidence that a family counts upgrade requests (and still is no WebSocket gauge)."""
    watched = [Selector(f.name) for f in first.families.values()
               if why_not(f, "connections").startswith("HTTP-only")][:FAMILIES_SHOWN]
    if not watched:
        return {}
    sampler = Sampler(ctx, watched)
    before = await sampler.sample("before")
    clients: list[WireClient] = []
    try:
        await connect_many(ctx, "echo", KS[0], at_once=KS[0], into=clients)
    except WireError as exc:
        return {"problem": f"{KS[0]} clients could not connect to echo: {exc}"}
    opened = await sampler.sample(f"{KS[0]} open")
    await _close_all(ctx, clients)
    after = await sampler.sample(f"{KS[0]} closed")
    if before is None or opened is None or after is None:
        return {"problem": sampler.problem}
    return {str(s): f"{before[s]:g} before, {opened[s]:g} with {KS[0]} clients open, "
                    f"{after[s]:g} after they closed" for s in watched
            if None not in (before[s], opened[s], after[s])}


@check("metrics.connections-gauge", needs=("echo", "metrics"), absent="metrics",
       placement=ALONE, budget=SCRAPE_WAIT * 4 + CONTROL_WAIT + 2 * (MOVE_WAIT + RETURN_WAIT)
       + 60)
async def connections_gauge(ctx: ProbeContext) -> Outcome:
    mapped = METRICS_MAP.value(ctx.manifest)
    first = await scrape(ctx)
    if not first.ok:
        return failed(first.problem, exposition=first.answer)
    gauges = candidates(first, "connections", mapped)
    if not gauges:
        return no_candidates(first, "connections gauge", ("connections",), mapped,
                             http_only=await _http_only_moves(ctx, first))
    move_wait, return_wait = ctx.plan_wait(MOVE_WAIT, name="move"), ctx.plan_wait(
        RETURN_WAIT, name="return")
    sampler = Sampler(ctx, gauges)
    base, moving = await sampler.quiet()
    if base is None:
        return scrape_failed(sampler)
    notes = {str(s): "moved with no traffic in the quiet control sample" for s in moving}
    notes.update({str(s): "not in the exposition" for s in gauges if base[s] is None})
    alive = [s for s in gauges if str(s) not in notes]
    steps: dict[str, list[dict[str, Any]]] = {str(s): [] for s in alive}
    for k in KS:
        if not alive:
            break
        clients: list[WireClient] = []
        try:
            await connect_many(ctx, "echo", k, at_once=k, into=clients)
        except WireError as exc:
            return failed(f"{k} clients could not connect to echo: {exc}",
                          samples=sampler.log, families=family_reasons(first, ("connections",),
                                                                         mapped))
        opened = await sampler.until(
            f"{k} open", lambda v, k=k: all(v[s] == base[s] + k for s in alive), move_wait)
        await _close_all(ctx, clients)
        back = None if opened is None else await sampler.until(
            f"{k} closed", lambda v: all(v[s] == base[s] for s in alive), return_wait)
        if opened is None or back is None:
            return scrape_failed(sampler)
        for s in list(alive):
            step = {"k": k, "base": base[s], "open": opened[s], "closed": back[s]}
            steps[str(s)].append(step)
            if opened[s] != base[s] + k:
                notes[str(s)] = (f"read {opened[s]} with {k} clients open, not {base[s] + k} "
                                 f"(base {base[s]}) within {move_wait:.1f} s")
            elif back[s] != base[s]:
                notes[str(s)] = (f"read {back[s]} after the {k} clients closed, not back to "
                                 f"{base[s]} within {return_wait:.1f} s")
            if str(s) in notes:
                alive.remove(s)
    evidence = {"candidates": {str(s): notes.get(str(s), "moved by exactly K and returned")
                               for s in gauges},
                "steps": steps, "samples": sampler.log,
                "families": family_reasons(first, ("connections",), mapped)}
    if alive:
        return passed(f"{alive[0]} moved by exactly {' and '.join(map(str, KS))} as clients "
                      f"connected and returned to {base[alive[0]]} when they closed",
                      **evidence)
    worst = next(iter(notes.items()))
    return failed(f"no WebSocket gauge moved by exactly K and returned: {worst[0]} "
                  f"{worst[1]}", **evidence)


# -- metrics.message-counters ------------------------------------------------------------

async def _exchange(client: WireClient, nonce: str, start: int, count: int,
                    wait: float) -> str:
    """Send ``count`` messages, await every echo; "" when all came back, else what went
    wrong."""
    for i in range(start, start + count):
        await client.send_text(f"wsgaps-metrics {nonce} m{i:05d}")
    deadline = deadline_in(wait)
    for i in range(start, start + count):
        got = await receive(client, left(deadline), ECHO_MAX)
        if isinstance(got, NoMessage):
            return f"echo of message {i} missing: {got}"
        if got.opcode != Opcode.TEXT or got.data != f"wsgaps-metrics {nonce} m{i:05d}".encode():
            return f"message {i} came back as {show(got.data)}"
    return ""


@check("metrics.message-counters", needs=("echo", "metrics"), absent="metrics",
       placement=ALONE, budget=SCRAPE_WAIT * 4 + CONTROL_WAIT + 2 * (MOVE_WAIT + ECHO_WAIT)
       + 60)
async def message_counters(ctx: ProbeContext) -> Outcome:
    mapped = METRICS_MAP.value(ctx.manifest)
    client = await ctx.connect("echo", auto_pong=True)  # open before the control sample
    first = await scrape(ctx)
    if not first.ok:
        return failed(first.problem, exposition=first.answer)
    received, sent = candidates(first, "received", mapped), candidates(first, "sent", mapped)
    families = family_reasons(first, ("received", "sent"), mapped)
    if not received or not sent:
        lacking = " and ".join(r for r, c in (("received", received), ("sent", sent)) if not c)
        return no_candidates(first, f"{lacking} message counter", ("received", "sent"), mapped)
    move_wait, echo_wait = ctx.plan_wait(MOVE_WAIT, name="move"), ctx.plan_wait(
        ECHO_WAIT, name="echo")
    sampler = Sampler(ctx, [*received, *sent])
    base, _ = await sampler.quiet()
    if base is None:
        return scrape_failed(sampler)
    notes = {str(s): "not in the exposition" for s in sampler.selectors if base[s] is None}
    alive = [s for s in sampler.selectors if str(s) not in notes]
    steps: dict[str, list[dict[str, Any]]] = {str(s): [] for s in alive}
    nonce, start = f"{ctx.rng.getrandbits(32):08x}", 0
    before = base
    for m in MS:
        problem = await _exchange(client, nonce, start, m, echo_wait)
        start += m
        if problem:
            return failed(f"the echo of the counted messages failed: {problem}",
                          samples=sampler.log, client=client.evidence())
        moved = await sampler.until(
            f"{m} sent", lambda v, m=m, b=before: all((v[s] or 0) - (b[s] or 0) >= m
                                                      for s in alive), move_wait)
        if moved is not None:
            await asyncio.sleep(ctx.scaled(SETTLE))
            moved = await sampler.sample(f"{m} settled")
        if moved is None:
            return scrape_failed(sampler)
        for s in list(alive):
            delta = (moved[s] or 0) - (before[s] or 0)
            slack = max(SLACK_MIN, m // SLACK_DIVISOR) + sampler.drift[s]
            steps[str(s)].append({"m": m, "before": before[s], "after": moved[s],
                                  "moved": delta, "allowed": [m, m + slack]})
            if delta < m:
                notes[str(s)] = f"moved by {delta:g} for {m} messages"
            elif delta > m + slack:
                notes[str(s)] = (f"moved by {delta:g} for {m} messages (more than {m + slack:g}:"
                                 " counts a message more than once)")
            if str(s) in notes:
                alive.remove(s)
        before = moved
    evidence = {"candidates": {str(s): notes.get(str(s), "moved by M each time")
                               for s in sampler.selectors},
                "steps": steps, "samples": sampler.log, "families": families}
    good_in = [s for s in alive if s in received]
    good_out = [s for s in alive if s in sent]
    if good_in and good_out:
        return passed(f"{good_in[0]} and {good_out[0]} moved by {' and '.join(map(str, MS))} "
                      f"as that many messages went each way", **evidence)
    bad = [(k, v) for k, v in notes.items()
           if (not good_in and any(str(s) == k for s in received))
           or (not good_out and any(str(s) == k for s in sent))]
    said = f"{bad[0][0]} {bad[0][1]}" if bad else "no candidate moved"
    return failed(f"no WebSocket {'received' if not good_in else 'sent'} counter moved by "
                  f"M: {said}", **evidence)


# -- metrics.errors-and-latency ----------------------------------------------------------

@check("metrics.errors-and-latency", needs=("echo", "metrics"), absent="metrics",
       budget=SCRAPE_WAIT * 3 + ECHO_WAIT + CLOSE_WAIT * 2 + MOVE_WAIT + 60)
async def errors_and_latency(ctx: ProbeContext) -> Outcome:
    mapped = METRICS_MAP.value(ctx.manifest)
    first = await scrape(ctx)
    if not first.ok:
        return failed(first.problem, exposition=first.answer)
    errors, latency = candidates(first, "errors", mapped), candidates(first, "latency", mapped)
    families = family_reasons(first, ("errors", "latency"), mapped)
    if not errors or not latency:
        lacking = " and ".join(r for r, c in (("error counter", errors),
                                                ("latency histogram", latency)) if not c)
        return no_candidates(first, lacking, ("errors", "latency"), mapped)
    move_wait = ctx.plan_wait(MOVE_WAIT, name="move")
    sampler = Sampler(ctx, [*errors, *latency])
    base = await sampler.sample("before")
    if base is None:
        return scrape_failed(sampler)
    # Traffic for the histogram: a few echoes, then a clean close.
    talker = await ctx.connect("echo", auto_pong=True)
    problem = await _exchange(talker, f"{ctx.rng.getrandbits(32):08x}", 0, LATENCY_MESSAGES,
                              ctx.scaled(ECHO_WAIT))
    await _close_all(ctx, [talker])
    # The protocol error: an unmasked Text frame (RFC 6455 5.1: the server MUST fail it).
    offender = await ctx.connect("echo", auto_pong=True)
    await offender.send_frame(Opcode.TEXT, b"wsgaps-metrics unmasked", mask=False)
    ending = await expect_close(offender, (1002,), ctx.scaled(CLOSE_WAIT), until_tcp_end=True)
    offender.abort()
    after = await sampler.until(
        "after", lambda v: any((v[s] or 0) > (base[s] or 0) for s in errors)
        and any((v[s] or 0) > (base[s] or 0) for s in latency), move_wait)
    if after is None:
        return scrape_failed(sampler)
    moved = {str(s): {"before": base[s], "after": after[s]} for s in sampler.selectors}
    evidence = {"candidates": moved, "samples": sampler.log, "families": families,
                "protocol_error": str(ending), "echo": problem or "3 echoes came back"}
    error_moved = [s for s in errors if (after[s] or 0) > (base[s] or 0)]
    latency_moved = [s for s in latency if (after[s] or 0) > (base[s] or 0)]
    if error_moved and latency_moved:
        return passed(f"{error_moved[0]} moved on the protocol error and {latency_moved[0]} "
                      "counted the WebSocket traffic", **evidence)
    missing = [what for what, got in (("no error counter moved on the protocol error "
                                       f"({ending})", error_moved),
                                      ("no latency histogram counted the traffic",
                                       latency_moved)) if not got]
    return failed(f"{'; '.join(missing)} within {move_wait:.1f} s", **evidence)

