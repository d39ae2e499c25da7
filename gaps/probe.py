"""Probe contract: the check decorator, the context a check runs in, and the check runner.

A check is a short async function ``(ctx) -> Outcome``.  The runner around it turns manifest
declarations into declared verdicts, a missing endpoint into ``skip``, an exception or an
overrun into ``error``, and repeats timing-sensitive checks until k of n tries agree.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import functools
import importlib
import importlib.util
import pkgutil
import random
import ssl
import sys
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from gaps.catalog import BY_SLUG, CAPABILITIES, CHECKS
from gaps.manifest import ENDPOINT_KEYS, ENDPOINTS, FieldReader, Manifest, ProbeKey
from gaps.model import CheckResult, ErrorReason, Method, Verdict
from gaps.output import bound_logs
from gaps.targets import Instance, TargetFailed, start_instance
from gaps.wire.client import Attempt, Violation, WireClient, attempt, harness_side
from gaps.wire.http import DEFAULT_MAX_BODY, HttpAnswer, http_get

if TYPE_CHECKING:
    # Imported where it is used at run time: gaps.upstream waits with gaps.toolkit, and the
    # toolkit imports this module.
    from gaps.upstream import Upstream

RETRY_K, RETRY_N = 2, 3
BUDGET_MARGIN = 30.0  # seconds a try may run past the end of its longest wait
CONNECT_WAIT = 10.0  # seconds a handshake may take when a check names no wait of its own
HTTP_IN_EVIDENCE = 10  # GETs of a try recorded in its evidence (the first ones)
LOGS_IN_EVIDENCE = 2000  # characters of a target's output tail in a try's evidence (and
# the head of its first crash report in front, when one was kept: at most 9 KiB more)


@dataclass
class Outcome:
    """What one try of a check saw: a verdict, one line saying why, and the evidence.

    An ``error`` carries its ``reason`` (``gaps.model.ErrorReason``), and only an error
    does: the runner and the probes branch on that value, never on the summary's words.
    """

    verdict: Verdict
    summary: str
    evidence: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0  # how long the try took (set by the runner)
    queued: float = 0.0  # of those, seconds it waited for a harness slot (set by the runner)
    reason: ErrorReason | None = None

    def __post_init__(self) -> None:
        if (self.verdict is Verdict.ERROR) != (self.reason is not None):
            raise ValueError(f"an outcome has a reason exactly when its verdict is error "
                             f"(errored(reason, ...)); got {self.verdict} with reason "
                             f"{self.reason}: {self.summary[:200]}")


def passed(summary: str, **evidence: Any) -> Outcome:
    return Outcome(Verdict.PASS, summary, evidence)


def non_strict(summary: str, **evidence: Any) -> Outcome:
    return Outcome(Verdict.NON_STRICT, summary, evidence)


def failed(summary: str, **evidence: Any) -> Outcome:
    return Outcome(Verdict.FAIL, summary, evidence)


def skipped(summary: str, **evidence: Any) -> Outcome:
    return Outcome(Verdict.SKIP, summary, evidence)


def errored(reason: ErrorReason, summary: str, **evidence: Any) -> Outcome:
    """``error``: the check could not judge, for ``reason``; never a finding about the target."""
    return Outcome(Verdict.ERROR, summary, evidence, reason=reason)


CheckFn = Callable[["ProbeContext"], Awaitable[Outcome]]


class Placement(StrEnum):
    """Where a check's tries run: one value, so no combination can mean two things."""

    SHARED = "shared"  # at once with the gap's other shared checks, on one instance
    ALONE = "alone"  # alone on an instance of its own (a shared audience, a crash defect)
    FRESH = "fresh"  # each try on a new instance (what a target does once at start-up)
    UPSTREAM = "upstream"  # plays the target's upstream: each try starts its own instances
    # (``ProbeContext.with_upstream``), the upstream server first
    OWN = "own"  # starts what it needs itself (a pytest suite whose fixtures start the
    # server under test), or nothing (the documentation check reads files the build
    # fetched): the planner starts no instance for it
    DECLARED = "declared"  # no instance: the manifest's ``declared.<id>`` decides (``declared``)

    @property
    def observes(self) -> bool:
        """Whether checks placed so run a function on the wire."""
        return self is not Placement.DECLARED

    @property
    def starts_per_try(self) -> bool:
        """Whether each try gets (or starts) instances of its own, not the planner's."""
        return self in (Placement.FRESH, Placement.UPSTREAM, Placement.OWN)


SHARED, ALONE, FRESH, UPSTREAM, OWN, DECLARED = Placement


@dataclass(frozen=True)
class CheckDef:
    """A registered check: its ID, function, what it needs from the target, its time budget.

    ``budget`` (seconds, before the time scale) caps the whole try: a check still running
    then is an ``error``, never a hang.  A wait planned with ``ProbeContext.plan_wait`` that would
    end later than the budget allows (a long hinted interval) pushes the cap out to the end
    of that wait plus ``BUDGET_MARGIN``, so a hint can never turn a verdict into an error.
    ``fn`` is None for a check placed ``DECLARED``: there is nothing to run.
    """

    id: str
    fn: CheckFn | None
    needs: tuple[str, ...]
    absent: str | None
    timing: bool
    budget: float
    placement: Placement = Placement.SHARED
    load: bool = False  # an ALONE check whose try is one heavy load (``check(load=True)``)

    @property
    def gap(self) -> str:
        """The gap slug: the check ID's prefix."""
        return self.id.split(".", 1)[0]

    @property
    def name(self) -> str:
        return self.id.split(".", 1)[1]

    async def __call__(self, ctx: ProbeContext) -> CheckResult:
        return await run_check(self, ctx)


def _known(check_id: str, absent: str | None = None) -> None:
    if check_id not in CHECKS:
        raise KeyError(f"{check_id!r} is not a check ID of the catalog")
    if absent is not None and absent not in CAPABILITIES:
        raise KeyError(f"{check_id}: absent={absent!r} is not a capability of the catalog")


def check(
    check_id: str,
    *,
    needs: tuple[str, ...] = ("echo",),
    absent: str | None = None,
    timing: bool = False,
    budget: float = 60.0,
    placement: Placement = Placement.SHARED,
    load: bool = False,
) -> Callable[[CheckFn], CheckDef]:
    """Register ``fn`` as the check ``check_id`` (which must be in the catalog).

    ``absent`` names the capability (from ``catalog.CAPABILITIES``) whose declared absence
    decides the check when it cannot be observed.  ``placement`` says where its tries run:
    ``SHARED`` (the default) at once with the gap's other shared checks, each on its own
    connections, on one instance; ``ALONE`` on an instance of its own (checks that share an
    audience, such as broadcast, or a defect that takes the instance down); ``FRESH`` each
    try on a new instance (what a target does once at start-up); ``UPSTREAM`` for checks
    that play the server the target's own client dials: they never get the gap's instance,
    and start theirs with ``ProbeContext.with_upstream`` (the upstream server first, its URL
    in the target's ``{upstream}``), as many as they need; ``OWN`` for checks that start
    whatever they need themselves (the testing-utilities checks run a pytest suite whose
    fixtures start the server under test; the documentation check starts nothing and reads
    the docs a build step fetched): the planner starts no instance for them, and
    ``ctx.instance`` is not running.  A check the wire cannot show is
    not a function: see ``declared``.

    ``load=True`` (``ALONE`` checks only) says the try is one heavy load that waits for the
    harness's load slot (``toolkit.heavy_load``): the planner then starts its instance
    only when it is among the next few loads (``gaps.plan.LOADS_ADMITTED``), so that
    instances waiting in that queue do not hold the run's live slots meanwhile.
    """
    _known(check_id, absent)
    if not isinstance(placement, Placement) or placement is Placement.DECLARED:
        raise ValueError(f"{check_id}: placement={placement!r}; a check decided by the "
                         "manifest alone is registered with declared(), which takes no "
                         "function")

    if load and placement is not Placement.ALONE:
        raise ValueError(f"{check_id}: load=True is for ALONE checks (an instance of their "
                         f"own, started when the load's turn is near), not {placement!r}")

    def wrap(fn: CheckFn) -> CheckDef:
        return CheckDef(check_id, fn, needs, absent, timing, budget, placement, load)

    return wrap


def manifest_key(endpoint: str, name: str, read: Callable[[FieldReader, Any, str], Any],
                 about: str, *, default: Any = None, required: bool = False) -> ProbeKey:
    """Declare ``endpoints.<endpoint>.<name>``, a manifest key this probe reads, beside its
    checks (assign it to a module-level name, as with ``declared``)::

        ERROR_SHAPE = manifest_key("chat", "error_shape", read_shape, "the stack's ...")

    The manifest reader validates the key with ``read`` (``gaps.manifest.ProbeKey``) and
    the check reads it with ``ERROR_SHAPE.value(ctx.manifest)``.  A ``required`` key is
    one the endpoint cannot be probed without: its absence is a manifest error saying
    ``missing: <about>``.
    """
    if endpoint not in ENDPOINTS:
        raise KeyError(f"{name}: {endpoint!r} is not an endpoint of the contract "
                       f"({', '.join(ENDPOINTS)})")
    if name in ENDPOINT_KEYS:
        raise KeyError(f"endpoints.{endpoint}.{name} is a key of every endpoint already")
    return ProbeKey(endpoint, name, read, about, default, required)


def declared(check_id: str, *, absent: str | None = None) -> CheckDef:
    """Register ``check_id`` as a check of method ``declared`` (``[c, declared]`` in
    DESIGN.md): there is nothing on the wire to observe, so the manifest's
    ``declared.<id>`` fact decides it, and without one it is ``skip``.  It has no function,
    needs no endpoint and starts no instance::

        documented = declared("concurrency.documented")

    ``absent`` names the capability whose declared absence (``absent.<name>``) decides it
    as a declared fail when the manifest has no ``declared.<id>`` fact.
    """
    _known(check_id, absent)
    return CheckDef(check_id, None, (), absent, False, 0.0, Placement.DECLARED)


class ProbeContext:
    """What a check may use: the target's manifest and instance, waits, clients, randomness.

    One time unit: every duration a check hands to the context or to a client is already
    scaled.  ``plan_wait`` and ``scaled`` are the only places the time scale is applied.
    """

    def __init__(
        self,
        manifest: Manifest,
        instance: Instance,
        *,
        time_scale: float = 1.0,
        seed: int = 0,
        waits: dict[str, float] | None = None,
        retry: tuple[int, int] = (RETRY_K, RETRY_N),
        ssl_context: ssl.SSLContext | None = None,
        trust_declarations: bool = False,
        new_instance: InstanceFactory | None = None,
    ) -> None:
        self.manifest = manifest
        self.instance = instance
        # Starts a fresh instance for one try of a ``FRESH`` check (the planner
        # gives one that respects the bound on live instances); None: use ``instance``.
        self.new_instance = new_instance
        self.time_scale = time_scale
        self.seed = seed
        self.waits = waits if waits is not None else {}
        self.retry = retry
        self.check_id = ""
        self.rng = random.Random(seed)
        self.ssl_context = ssl_context
        self.trust_declarations = trust_declarations
        self._clients: list[WireClient] = []
        self.http_log: list[dict[str, Any]] = []  # every GET of the try, as evidence
        self._budget: asyncio.Timeout | None = None  # the running try's cap
        self.started = 0.0  # loop time the running try began
        self.queued = 0.0  # seconds the running try waited for an instance slot
        # Instances the running try started itself (with_upstream): a crash of one of them
        # is said like a crash of ``instance`` (``said_the_target_ended``).
        self.own_instances: list[Instance] = []
        # The harness process's CPU share while the running try held the load slot (the
        # highest of its loads; ``toolkit.heavy_load``), or None.
        self.harness_cpu: float | None = None

    def note_harness_cpu(self, share: float | None) -> None:
        """Record the harness's CPU share during one load of the running try."""
        if share is not None:
            self.harness_cpu = max(share, self.harness_cpu or 0.0)

    def for_try(self, defn: CheckDef, number: int) -> ProbeContext:
        """A context of its own for one try of ``defn``: clients, budget and randomness are
        per try, so checks and tries can run at once on one instance."""
        child = copy.copy(self)
        child.check_id = defn.id
        child.rng = random.Random(f"{self.seed}:{defn.id}:{number}")
        child._clients = []
        child.http_log = []
        child._budget = None
        child.queued = 0.0
        child.own_instances = []
        child.harness_cpu = None
        return child

    def harness_lag(self) -> float:
        """The longest stall of this event loop (seconds) since the running try began: a
        busy harness answers Pings late, which must never count against the target."""
        return LoopLag.on_this_loop().worst_since(self.started)

    # -- target facts --------------------------------------------------------------------

    def has(self, endpoint: str) -> bool:
        """Whether the manifest has ``endpoint``; ``name.setting`` asks for an endpoint with
        that setting declared (``upstream.resume``)."""
        name, _, setting = endpoint.partition(".")
        spec = self.manifest.endpoints.get(name)
        return spec is not None and (not setting or getattr(spec, setting, None) is not None
                                     or spec.extra.get(setting) is not None)

    def url(self, endpoint: str = "echo", *, query: dict[str, str] | None = None,
            **fields: str) -> str:
        """The endpoint's URL, with ``fields`` in its placeholders and ``query`` parameters
        added to any it already has."""
        url = self.instance.url(endpoint, **fields)
        if query:
            url += ("&" if "?" in url else "?") + urlencode(query)
        return url

    def hint(self, name: str) -> float | None:
        return self.manifest.hints.get(name)

    # -- waits ---------------------------------------------------------------------------

    def plan_wait(self, default: float, hinted: float | None = None, name: str = "") -> float:
        """The wait to use, scaled: ``hinted`` (derived from a hint) if given, else ``default``.

        It does not wait: it computes the wait, records it under the check ID (and ``name``)
        so reports show every wait used, and makes room for it in the try's budget.
        """
        seconds = (hinted if hinted is not None else default) * self.time_scale
        key = f"{self.check_id}{'.' + name if name else ''}"
        self.waits[key] = round(seconds, 3)
        if self._budget is not None and (when := self._budget.when()) is not None:
            needed = asyncio.get_running_loop().time() + seconds + BUDGET_MARGIN * self.time_scale
            if needed > when:
                self._budget.reschedule(needed)
        return seconds

    def scaled(self, seconds: float) -> float:
        """A short internal bound (not a documented wait), scaled for slow machines."""
        return seconds * self.time_scale

    @contextlib.asynccontextmanager
    async def off_budget(self) -> AsyncIterator[None]:
        """The running try's cap stops while the try waits for a harness resource (the load
        slot of ``toolkit.heavy_load``, an instance slot and a ready target in
        ``with_upstream``) and resumes with the wait added: the queue is the harness's, not
        the target's, and a check served after longer ones must not run out of budget
        before it began.  Each such wait is bounded elsewhere (the holders' own budgets, the
        manifest's ready timeout).  A wait that begins while the cap is already off does
        not stop it again."""
        cap = self._budget
        deadline = cap.when() if cap is not None else None
        if cap is None or deadline is None:
            yield
            return
        loop = asyncio.get_running_loop()
        paused = loop.time()
        cap.reschedule(None)
        try:
            yield
        finally:
            cap.reschedule(deadline + loop.time() - paused)

    # -- clients -------------------------------------------------------------------------

    async def connect(self, endpoint: str = "echo", *, timeout: float | None = None,
                      fields: dict[str, str] | None = None, query: dict[str, str] | None = None,
                      **kwargs: Any) -> WireClient:
        """A wire client on ``endpoint``, closed automatically when the check ends.

        ``fields`` fill the endpoint's placeholders (``{room}``); ``query`` adds
        parameters.  ``timeout`` (scaled) bounds the handshake, ``CONNECT_WAIT`` scaled by
        default.  Raises a
        ``HandshakeFailed`` when no connection results.  The runner judges every client
        opened here (``the_wire_decides``).
        """
        kwargs.setdefault("ssl_context", self.ssl_context)
        wait = self.scaled(CONNECT_WAIT) if timeout is None else timeout
        client = await WireClient.connect(self.url(endpoint, query=query, **(fields or {})),
                                          timeout=wait, **kwargs)
        self._clients.append(client)
        return client

    async def handshake(self, endpoint: str = "echo", *, wait: float,
                        query: dict[str, str] | None = None, **kwargs: Any) -> Attempt:
        """One raw handshake on ``endpoint`` as a value; never raises for what the target does.

        Keywords are those of ``gaps.wire.client.open_handshake`` (a missing key, another
        version or method, offered subprotocols, ...); ``wait`` is scaled.
        """
        kwargs.setdefault("ssl_context", self.ssl_context)
        return await attempt(self.url(endpoint, query=query), timeout=wait, **kwargs)

    async def http_get(self, endpoint: str, *, wait: float, max_body: int = DEFAULT_MAX_BODY,
                       headers: tuple[tuple[str, str], ...] = ()) -> HttpAnswer:
        """GET the manifest's ``endpoint`` (``[endpoints.metrics] url = ...``, placeholders
        filled) as a value: status, headers, body, or a ``failure`` (refused, timed out,
        dropped, malformed, too large); never raises for what the target does.  ``wait``
        (scaled) bounds the whole exchange, ``max_body`` the body.  Each GET goes into the
        try's evidence (``http``) whether or not the check puts it in its own.
        """
        answer = await http_get(self.url(endpoint), timeout=wait, max_body=max_body,
                                headers=headers, ssl_context=self.ssl_context)
        if len(self.http_log) < HTTP_IN_EVIDENCE:
            self.http_log.append({"endpoint": endpoint, **answer.evidence()})
        return answer

    @contextlib.asynccontextmanager
    async def with_upstream(self, **options: Any) -> AsyncIterator[tuple[Upstream, Instance]]:
        """An upstream server (``gaps.upstream.Upstream(**options)``, time-scaled), then a
        fresh instance of the target whose ``{upstream}`` is its URL, so the target's client
        dials it from its first attempt.  The instance stops before the upstream's socket is
        released.  The try's budget does not run while it waits for an instance slot and for
        the target to be ready, as for ``FRESH`` tries.  TargetFailed if the target
        never gets ready.
        """
        from gaps.upstream import Upstream

        async with Upstream(scale=self.time_scale, **options) as upstream, \
                contextlib.AsyncExitStack() as stack:
            factory = self.new_instance or functools.partial(_alone, self)
            async with self.off_budget():
                instance = await stack.enter_async_context(factory(upstream=upstream.url))
            self.queued += instance.queued
            self.own_instances.append(instance)
            yield upstream, instance

    async def close_clients(self) -> None:
        clients, self._clients = self._clients, []
        for client in clients:
            await client.aclose()


# Called with no arguments, or with ``upstream=URL`` for the ``{upstream}`` placeholder.
InstanceFactory = Callable[..., contextlib.AbstractAsyncContextManager[Instance]]


@contextlib.asynccontextmanager
async def _alone(ctx: ProbeContext, *, upstream: str | None = None) -> AsyncIterator[Instance]:
    """An instance outside any planner (a context built by hand): no slot, no extra args."""
    instance = await start_instance(ctx.manifest, ctx.time_scale, upstream=upstream)
    try:
        yield instance
    finally:
        await instance.astop()


class LoopLag:
    """Measures how late this event loop wakes up: a ticker asks to run every ``TICK`` s and
    records each overshoot past ``NOTICE`` with its time.  One per loop, started on demand."""

    TICK = 0.05
    NOTICE = 0.1
    _by_loop: dict[int, LoopLag] = {}

    def __init__(self) -> None:
        self.stalls: list[tuple[float, float]] = []  # (loop time at the end, seconds late)
        self._task = asyncio.get_running_loop().create_task(self._tick())

    @classmethod
    def on_this_loop(cls) -> LoopLag:
        loop = asyncio.get_running_loop()
        monitor = cls._by_loop.get(id(loop))
        if monitor is None or monitor._task.done():
            monitor = cls._by_loop[id(loop)] = cls()
        return monitor

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(self.TICK)
            late = loop.time() - before - self.TICK
            if late > self.NOTICE:
                self.stalls.append((loop.time(), late))
                del self.stalls[:-1000]

    def worst_since(self, since: float) -> float:
        return max((late for at, late in self.stalls if at >= since), default=0.0)


def declaration(defn: CheckDef, ctx: ProbeContext) -> dict[str, str] | None:
    """What the manifest declares about ``defn``: a ``declared.<id>`` fact, or the absence
    of the capability the check depends on; None when it declares nothing."""
    fact = ctx.manifest.declared.get(defn.id)
    if fact is not None:
        return {"verdict": fact.verdict, "source": fact.source,
                "summary": fact.summary or "declared by the target"}
    if defn.absent and defn.absent in ctx.manifest.absent:
        return {"verdict": "fail", "source": ctx.manifest.absent[defn.absent],
                "summary": f"declared absent: {defn.absent}"}
    return None


def _harness_side(exc: BaseException) -> bool:
    return harness_side(exc)


async def _one_try(defn: CheckDef, parent: ProbeContext, number: int) -> Outcome:
    ctx = parent.for_try(defn, number)
    if defn.placement is Placement.FRESH and parent.new_instance is not None:
        try:
            async with parent.new_instance() as instance:
                ctx.instance = instance
                ctx.queued += instance.queued  # the harness's wait for a slot, as with_upstream
                return await _try_on(defn, ctx)
        except TargetFailed as exc:
            return errored(ErrorReason.TARGET_NOT_READY, f"target not ready: {exc}"[:500])
        except Exception as exc:
            if not _harness_side(exc):
                raise
            return _error_outcome(exc)  # starting it ran the harness out of something
    return await _try_on(defn, ctx)


async def _try_on(defn: CheckDef, ctx: ProbeContext) -> Outcome:
    budget = defn.budget * ctx.time_scale
    loop = asyncio.get_running_loop()
    LoopLag.on_this_loop()
    started = ctx.started = loop.time()
    alive_before = ctx.instance.exit_status() is None
    cap = asyncio.timeout(budget)
    try:
        async with cap:
            ctx._budget = cap
            assert defn.fn is not None  # run_check never runs a DECLARED check
            outcome = await defn.fn(ctx)
    except TargetFailed as exc:  # an instance the check started itself (with_upstream)
        outcome = errored(ErrorReason.TARGET_NOT_READY, f"target not ready: {exc}"[:500],
                          **({"logs": bound_logs([exc.logs], LOGS_IN_EVIDENCE)}
                             if exc.logs else {}))
    except TimeoutError as exc:
        if cap.expired():
            outcome = errored(ErrorReason.OVER_BUDGET, f"probe did not finish within its "
                                                       f"budget of {loop.time() - started:.1f} s")
        else:
            outcome = _error_outcome(exc)
    except Exception as exc:
        outcome = _error_outcome(exc)
    finally:
        ctx._budget = None
        violations = [c.violation for c in ctx._clients if c.violation is not None]
        await ctx.close_clients()
    if ctx.http_log and "http" not in outcome.evidence:
        outcome.evidence = {**outcome.evidence, "http": ctx.http_log}
    # The instance whose process ended, if any: the try's own (with_upstream), stopped by
    # now but remembered as ended by itself, or the one it was given.
    watched = [*((i, True) for i in ctx.own_instances), (ctx.instance, alive_before)]
    gone, before = next(((i, b) for i, b in watched if i.exit_status() is not None),
                        watched[-1])
    decided = said_the_target_ended(the_wire_decides(outcome, violations), gone, before)
    decided.evidence = harness_ceiling(decided.evidence, ctx.harness_cpu)
    decided.seconds = loop.time() - started
    decided.queued = ctx.queued
    return decided


# A load's figures taken while the harness process used this share of a core or more
# measure the harness as much as the target ("harness-bound" in the reports).
HARNESS_BOUND = 0.9


def harness_ceiling(evidence: dict[str, Any], share: float | None) -> dict[str, Any]:
    """``evidence`` with the harness's CPU share during the try's load (``harness_cpu_share``)
    and, at ``HARNESS_BOUND`` or more, ``harness_bound``: the figures are near the harness's
    own throughput.  Evidence only: it never changes a verdict."""
    if share is None:
        return evidence
    marks: dict[str, Any] = {"harness_cpu_share": round(share, 2)}
    if share >= HARNESS_BOUND:
        marks["harness_bound"] = True
    return {**evidence, **marks}


def said_the_target_ended(outcome: Outcome, instance: Instance, alive_before: bool) -> Outcome:
    """A target whose process is gone at the end of a try is evidence for every check that
    used it (a crash under load explains a reset mid-way: GoFr 1.56.6 dies of a race on
    connection set-up): the status and the head of its crash report go into the evidence
    and, unless the try passed or was skipped or the check said so itself (``exit_status``
    in its evidence), first into the summary, the target's output being in the gap's logs."""
    status = instance.exit_status()
    if status is None:
        return outcome
    when = "during the check" if alive_before else "before the check began"
    said = "exit_status" in outcome.evidence  # the check watched the process and said so
    evidence = {**outcome.evidence, "exit_status": status}
    head = instance.output.crash_head()
    if head is not None:  # the reports show it at the gap, beside the exit status
        evidence.setdefault("crash_head", head)
    if outcome.verdict.passed or outcome.verdict is Verdict.SKIP or said:
        return dataclasses.replace(outcome, evidence=evidence)
    return dataclasses.replace(outcome, evidence=evidence, summary=(
        f"the target's process ended (status {status}) {when}; see its output; "
        f"{outcome.summary}"))


def the_wire_decides(outcome: Outcome, violations: list[Violation]) -> Outcome:
    """A connection that broke RFC 6455 earns no pass: the violation is the evidence.

    Whatever the check concluded from a connection the target violated (its "Pings" may be
    garbage that happened to carry opcode 0x9), the verdict is ``fail`` with the first
    offending frame; a ``fail`` keeps its own summary, a pass or an error is replaced.
    Harness-side errors stay errors: they say nothing about the target.
    """
    if not violations or outcome.verdict is Verdict.SKIP or (
            outcome.reason is ErrorReason.HARNESS_SIDE):
        return outcome
    first = min(violations, key=lambda v: v.t)
    evidence = {**outcome.evidence, "violation": first.evidence(),
                "violated_connections": len(violations)}
    if outcome.verdict is Verdict.FAIL:
        return Outcome(Verdict.FAIL, outcome.summary, evidence)
    evidence["verdict_before"] = str(outcome.verdict)
    evidence["summary_before"] = outcome.summary
    return Outcome(Verdict.FAIL, f"the target broke RFC 6455 on a connection this check relied "
                                 f"on: {first}", evidence)


def _error_outcome(exc: BaseException) -> Outcome:
    reason = ErrorReason.HARNESS_SIDE if _harness_side(exc) else ErrorReason.PROBE
    tail = traceback.format_exception(exc)[-3:]
    return errored(reason, f"{reason}: {type(exc).__name__}: {exc}"[:500],
                   traceback="".join(tail)[-2000:])


def _decide(outcomes: list[Outcome], k: int, n: int) -> Verdict | None:
    """The verdict k tries agree on (non-strict counting as pass), or None while undecided.

    Agreeing passes are ``non-strict`` if any of them was: the weaker verdict, whichever
    try happened to finish last (tries overlap, so their order is the machine's).
    """
    passes = [o for o in outcomes if o.verdict.passed]
    fails = [o for o in outcomes if o.verdict is Verdict.FAIL]
    if len(passes) >= k:
        if any(o.verdict is Verdict.NON_STRICT for o in passes):
            return Verdict.NON_STRICT
        return Verdict.PASS
    if len(fails) >= k:
        return Verdict.FAIL
    if len(outcomes) >= n:
        return Verdict.ERROR
    return None


async def run_check(defn: CheckDef, ctx: ProbeContext) -> CheckResult:
    """Run one check on ``ctx``: observed before declared; skips, retries and errors here.

    The wire decides where it can (DESIGN.md, "Observed before declared"): a check whose
    endpoints the target has is observed, and a declaration about it is kept beside the
    observed verdict as its explanation (a contradiction is a manifest error).  Only a check
    that needs an endpoint the target lacks is decided by a declaration (method
    ``declared``), or skipped without one; ``trust_declarations`` trades observing for speed.
    A ``DECLARED`` check has nothing to observe: its declaration decides it, or it is
    ``skip`` saying that the manifest declares nothing.
    """
    fact = declaration(defn, ctx)
    if not defn.placement.observes:
        if fact is None:
            return CheckResult(defn.id, Verdict.SKIP, "the manifest declares nothing: this "
                               "check has no wire observation and is decided by a declaration "
                               f"(declared.\"{defn.id}\" with a source)", Method.DECLARED)
        return CheckResult(defn.id, Verdict(fact["verdict"]), fact["summary"],
                           Method.DECLARED, source=fact["source"])
    missing = [name for name in defn.needs if not ctx.has(name)]
    if fact is not None and (missing or ctx.trust_declarations):
        return CheckResult(defn.id, Verdict(fact["verdict"]), fact["summary"],
                           Method.DECLARED, source=fact["source"])
    if missing:
        return CheckResult(defn.id, Verdict.SKIP, _lacks(missing), Method.OBSERVED)
    result = await _observe(defn, ctx)
    result.declaration = fact
    return result


def _lacks(missing: list[str]) -> str:
    """Why a check is skipped: ``target has no upstream endpoint``, or for a ``name.setting``
    need, ``target declares no resume on its upstream endpoint``."""
    plain = [n for n in missing if "." not in n]
    if plain:
        return f"target has no {', '.join(plain)} endpoint"
    name, _, setting = missing[0].partition(".")
    return f"target declares no {setting} on its {name} endpoint"


async def _observe(defn: CheckDef, ctx: ProbeContext) -> CheckResult:
    started = time.monotonic()
    if not defn.timing:
        outcome = await _one_try(defn, ctx, 1)
        return CheckResult(defn.id, outcome.verdict, outcome.summary, evidence=outcome.evidence,
                           wait=ctx.waits.get(defn.id), duration=time.monotonic() - started,
                           queued=round(outcome.queued, 3), reason=outcome.reason)
    # Independent tries overlap: k start at once (k agreeing tries end it), and one more
    # at a time while no k agree, up to n.
    k, n = ctx.retry
    outcomes = list(await asyncio.gather(*(_one_try(defn, ctx, i + 1) for i in range(k))))
    verdict = _decide(outcomes, k, n)
    if any(o.verdict is Verdict.SKIP for o in outcomes):
        verdict = Verdict.SKIP
    while verdict is None:
        outcomes.append(await _one_try(defn, ctx, len(outcomes) + 1))
        verdict = _decide(outcomes, k, n)
    chosen = next((o for o in reversed(outcomes) if o.verdict == verdict), outcomes[-1])
    summary, reason = chosen.summary, chosen.reason
    if verdict is Verdict.ERROR and chosen.verdict is not Verdict.ERROR:
        summary = f"inconclusive: no {k} of {n} tries agreed"
        reason = ErrorReason.INCONCLUSIVE
    tries = [{"verdict": str(o.verdict), "summary": o.summary, "seconds": round(o.seconds, 3),
              **({"queued": round(o.queued, 3)} if o.queued else {}),
              **({"reason": str(o.reason)} if o.reason else {}),
              "evidence": o.evidence} for o in outcomes]
    return CheckResult(
        defn.id, verdict, summary, evidence=chosen.evidence,
        wait=ctx.waits.get(defn.id), duration=time.monotonic() - started, tries=tries,
        reason=reason if verdict is Verdict.ERROR else None,
    )


# -- discovery ---------------------------------------------------------------------------

# The probes/ folder, installed under a name no project's own module clashes with.
DEFAULT_PROBES = "wsgaps_probes"


class ProbeError(Exception):
    """A probe module breaks the probe contract (two gaps in one module, a gap twice)."""


def _probe_modules(source: str) -> list[ModuleType]:
    """The modules of a probe package (dotted name) or of a folder of ``*.py`` files."""
    folder = Path(source)
    if "/" in source or folder.is_dir():
        if not folder.is_dir():
            raise ProbeError(f"{source}: no such probe folder")
        modules = []
        for path in sorted(folder.glob("[a-z]*.py")):
            name = f"wsgaps_probes_{abs(hash(folder.resolve()))}.{path.stem}"
            spec = importlib.util.spec_from_file_location(name, path)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
            modules.append(module)
        return modules
    package = importlib.import_module(source)
    return [importlib.import_module(f"{source}.{info.name}")
            for info in pkgutil.iter_modules(package.__path__) if not info.name.startswith("_")]


def module_checks(module: ModuleType) -> list[CheckDef]:
    """The checks a probe module declares, in the order it declares them."""
    return [v for v in vars(module).values() if isinstance(v, CheckDef)]


def load_checks(source: str = DEFAULT_PROBES) -> dict[str, list[CheckDef]]:
    """Import the probe package (or folder) and return its checks by gap slug.

    The gap of a module is the prefix of its check IDs; a module whose checks name two gaps,
    or two modules for one gap, break "one probe module per gap" and raise ProbeError.
    """
    found: dict[str, list[CheckDef]] = {}
    owner: dict[str, str] = {}
    for module in _probe_modules(source):
        checks = module_checks(module)
        slugs = {d.gap for d in checks}
        if len(slugs) > 1:
            raise ProbeError(f"{module.__name__}: checks of more than one gap "
                             f"({', '.join(sorted(slugs))}); one probe module per gap")
        if not slugs:
            continue
        slug = slugs.pop()
        if slug in owner:
            raise ProbeError(f"{module.__name__}: gap {slug} is already probed by "
                             f"{owner[slug]}; one probe module per gap")
        owner[slug] = module.__name__
        found[slug] = checks
    order = list(BY_SLUG)
    return dict(sorted(found.items(), key=lambda item: order.index(item[0])))


def module_keys(module: ModuleType) -> list[ProbeKey]:
    """The manifest keys a probe module declares (``manifest_key``), naming it as owner."""
    return [dataclasses.replace(v, owner=module.__name__.rsplit(".", 1)[-1])
            for v in vars(module).values() if isinstance(v, ProbeKey)]


_KEYS: dict[str, list[ProbeKey]] = {}


def load_keys(source: str = DEFAULT_PROBES) -> list[ProbeKey]:
    """The manifest keys the probes of ``source`` declare (the built-in ones by default), for
    the manifest reader; one key declared by two probes is a ProbeError."""
    if source in _KEYS:  # the built-in probes' keys, read once per process
        return _KEYS[source]
    keys: dict[tuple[str, str], ProbeKey] = {}
    for module in _probe_modules(source):
        for key in module_keys(module):
            other = keys.get((key.endpoint, key.name))
            if other is not None:
                raise ProbeError(f"endpoints.{key.endpoint}.{key.name} is declared by both "
                                 f"{other.owner} and {key.owner}; one probe owns a key")
            keys[(key.endpoint, key.name)] = key
    found = list(keys.values())
    if source == DEFAULT_PROBES:
        _KEYS[source] = found
    return found
