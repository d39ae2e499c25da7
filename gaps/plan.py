"""The run planner: which checks run on which target instance, and the results they make.

A run is a set of targets and, per target, the gaps and checks selected for it.  The
planner prepares each target once (cached build, version), gives every gap a fresh
instance of a managed target (a URL target is shared), runs the gap's checks, records the
results and writes ``results.json`` after each gap.  The pytest plugin and the ``wsgaps``
CLI both run through here; progress leaves as calls to an observer, never as text.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import heapq
import itertools
import math
import os
import ssl
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gaps.manifest import Manifest
from gaps.model import CheckResult, ErrorReason, GapResult, Method, RunResult, Verdict
from gaps.options import DEFAULT_JOBS
from gaps.output import OUTPUT_LIMIT, bound_logs
from gaps.probe import ALONE, DECLARED, SHARED, CheckDef, Placement, ProbeContext
from gaps.targets import (
    Cancel,
    Instance,
    TargetFailed,
    TargetSkipped,
    run_build,
    run_docs_fetch,
    start_instance,
    target_version,
)
from gaps.wire.client import WireClient, harness_side
from gaps.wire.errors import Unreachable


@dataclass
class TargetRun:
    """One target's state for the run: manifest, results and where they are written."""

    label: str
    manifest: Manifest
    run: RunResult
    path: Path
    extra_args: tuple[str, ...] = ()
    prepared: bool = False
    shared: Instance | None = None
    # Seconds one start of this target takes (manifest's start.cost, else measured on its
    # first instance of the run), for the bound on instances starting at once.
    start_cost: float | None = None
    measuring: asyncio.Lock = field(default_factory=asyncio.Lock)
    write_error: str | None = None  # why the last write of results.json failed
    # A URL target nobody listens on (no connection at all before any check): every check
    # is this error, said once, instead of each check reading its own refusal.
    unreachable: str | None = None

    def __post_init__(self) -> None:
        if self.start_cost is None:
            self.start_cost = self.manifest.start_cost

    @property
    def skipped(self) -> str | None:
        return self.run.target.skipped

    def write(self) -> bool:
        """Write ``results.json`` whole (atomically); False when it could not be written,
        with the path and the reason kept in ``write_error`` until a later write succeeds
        (only the last write matters: each one holds everything so far)."""
        try:
            self.run.write(self.path)
        except OSError as exc:
            self.write_error = f"cannot write {self.path}: {exc.strerror or exc}"
            return False
        self.write_error = None
        return True


# Instances starting at once (an interpreter start and a ready handshake each): about one
# per core keeps start-ups from starving the checks already running.
STARTS = max(2, os.cpu_count() or 2)
# A start costing up to this many seconds takes one of the STARTS slots; a dearer one takes
# one slot per LIGHT_START seconds, at most all of them (it then starts alone).  A Python
# target starts in a fraction of a second, a JVM one in seconds of several cores' work.
LIGHT_START = 1.0


# Loads (``check(load=True)``) whose instances may be live at once: the one holding the
# harness's load slot, one finishing after it (churn's settle, an instance stopping) and the
# next one, started and ready when the slot frees.  More would only sit in the load slot's
# queue holding live slots that other checks wait for (in a nine-target matrix, 9
# message-rate and 9 churn instances queued for up to a minute each).
LOADS_ADMITTED = 3


def start_weight(cost: float | None) -> float:
    """The slots of the start bound one start of ``cost`` seconds takes (at least one)."""
    return max(1.0, (cost or 0.0) / LIGHT_START)


@dataclass
class RunConfig:
    """What a run was asked to do, whichever front end asked."""

    targets: dict[str, TargetRun] = field(default_factory=dict)
    time_scale: float = 1.0
    seed: int = 0
    ssl_context: ssl.SSLContext | None = None
    trust_declarations: bool = False  # decide checks by absent declarations, not the wire
    jobs: int = DEFAULT_JOBS  # live target instances at once, across the whole run
    # Set (to the signal's name) by whoever cancels the run on Ctrl-C or SIGTERM, before it
    # cancels: no check result is recorded after that moment (a check that saw its target
    # go down in the teardown would report a failure the target never had).
    interrupted: str | None = None


@dataclass(frozen=True)
class BuildStarted:
    """Progress event: a target's build (or its cache check) began, in a worker thread."""

    target: str


@dataclass(frozen=True)
class TargetPrepared:
    """Progress event: a target was built (or found cached) or skipped."""

    target: str
    build: str | None
    version: str | None
    skipped: str | None


@dataclass(frozen=True)
class GapStarted:
    """Progress event: a gap began on a target; ``longest_wait`` is its longest check budget."""

    target: str
    gap: str
    checks: int
    longest_wait: float


@dataclass(frozen=True)
class CheckDone:
    """Progress event: one check on one target has its result."""

    target: str
    gap: str
    result: CheckResult


@dataclass(frozen=True)
class GapDone:
    """Progress event: one gap on one target is finished (its results are written)."""

    target: str
    gap: GapResult


@dataclass(frozen=True)
class ResultsUnwritten:
    """End of run: a target's ``results.json`` could not be written (``reason`` names the
    path); what the file holds, if anything, is not this run's."""

    target: str
    reason: str


Event = BuildStarted | TargetPrepared | GapStarted | CheckDone | GapDone | ResultsUnwritten
Observer = Callable[[Event], None]

# Selection: target label -> gap slug -> the checks to run there, in catalog order.
Selection = dict[str, dict[str, list[CheckDef]]]


def prepare(target: TargetRun, scale: float, cancel: Cancel | None = None, *,
            docs: bool = False) -> None:
    """Build (cached) once per target per run; a failed build skips the target.  With
    ``docs`` (the documentation gap is selected), the manifest's docs fetch runs after a
    build that worked (cached too; its failure is the documentation check's ``skip``)."""
    if target.prepared:
        return
    target.prepared = True
    try:
        target.run.target.build = run_build(target.manifest, time_scale=scale, cancel=cancel)
    except TargetSkipped as exc:
        target.run.target.build, target.run.target.skipped = exc.build, str(exc)
        for gap in target.run.gaps.values():
            gap.note = f"target skipped: {str(exc).splitlines()[0]}"
    else:
        if docs:
            run_docs_fetch(target.manifest, time_scale=scale, cancel=cancel)
    target.write()


async def prepare_all(config: RunConfig, labels: list[str], observe: Observer,
                      docs: frozenset[str] = frozenset()) -> None:
    """Build every target at once, each in a worker thread; all before any probing, so that
    a compiler's load never lands on a timing check.  Interrupted builds are killed.  The
    targets in ``docs`` (the documentation gap selected) also fetch their docs."""
    cancel = Cancel()

    async def one(label: str) -> None:
        target = config.targets[label]
        if not target.prepared:  # said before a build that may take minutes
            observe(BuildStarted(label))
        await asyncio.to_thread(functools.partial(prepare, target, config.time_scale, cancel,
                                                  docs=label in docs))
        info = target.run.target
        observe(TargetPrepared(label, info.build, info.version, info.skipped))

    await _in_threads([one(label) for label in labels], cancel)


async def record_versions(config: RunConfig, labels: list[str]) -> None:
    """Record each built target's version (its manifest's version command), all at once in
    worker threads.  This runs beside the probes: a version is a record, not a precondition,
    and asking ``node`` or ``go`` for it must not delay the first check."""
    cancel = Cancel()

    async def one(label: str) -> None:
        target = config.targets[label]
        if target.skipped or target.run.target.version is not None:
            return
        info = target.run.target
        info.version, info.version_error = await asyncio.to_thread(
            target_version, target.manifest, cancel=cancel)

    await _in_threads([one(label) for label in labels], cancel)


async def _in_threads(jobs: list[Coroutine[Any, Any, None]], cancel: Cancel) -> None:
    tasks = [asyncio.ensure_future(job) for job in jobs]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        cancel.set()  # the worker threads kill their process groups and return
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


class Bound:
    """A semaphore served longest check first: waiters are woken by ``priority`` (the budget
    of the check that will use what they wait for), not by arrival, so the checks that may
    wait longest start first and the run ends about when its longest wait does.

    A free slot is not handed to the first comer at once: requests made within ``SETTLE``
    seconds of each other compete by priority (at the start of a run every gap asks within
    a few milliseconds, the upstream checks last, after starting their servers).  Equal
    priorities are served in arrival order.  A waiter cancelled after it was handed a slot
    passes the slot on.

    A request may weigh more than one slot (``weight``, at most the whole limit): it is
    served when that much is free, and nothing behind it in the order passes it meanwhile,
    so a heavy request is never starved by light ones.
    """

    SETTLE = 0.02

    def __init__(self, limit: float) -> None:
        self.limit = max(1.0, limit)
        self.free = self.limit
        self._waiting: list[tuple[float, int, float, asyncio.Future[None]]] = []
        self._arrivals = itertools.count()
        self._dispatch: asyncio.TimerHandle | None = None

    @contextlib.asynccontextmanager
    async def hold(self, priority: float, weight: float = 1.0) -> AsyncIterator[None]:
        weight = min(max(weight, 0.0), self.limit)
        loop = asyncio.get_running_loop()
        granted: asyncio.Future[None] = loop.create_future()
        heapq.heappush(self._waiting, (-priority, next(self._arrivals), weight, granted))
        if self.free > 0 and self._dispatch is None:
            self._dispatch = loop.call_later(self.SETTLE, self._hand_out)
        try:
            await granted
        except asyncio.CancelledError:
            if granted.done() and not granted.cancelled():
                self._release(weight)  # handed a slot it will never use
            else:
                granted.cancel()  # skipped when its turn comes
                self._hand_out()  # it may have held back lighter requests behind it
            raise
        try:
            yield
        finally:
            self._release(weight)

    def _hand_out(self) -> None:
        self._dispatch = None
        while self._waiting:
            _, _, weight, granted = self._waiting[0]
            if granted.done():
                heapq.heappop(self._waiting)
                continue
            # A small tolerance: weights are floats, and a full release must free it all.
            if self.free + 1e-9 < weight:
                break
            heapq.heappop(self._waiting)
            self.free -= weight
            granted.set_result(None)

    def _release(self, weight: float = 1.0) -> None:
        self.free = min(self.limit, self.free + weight)
        self._hand_out()


@dataclass
class Bounds:
    """The run's bounds: live instances (``RunConfig.jobs``); instances starting, in slots
    weighed by each target's start cost (``start_weight``); and load checks admitted to
    start theirs (``LOADS_ADMITTED``).  The order is always admission, then a live slot,
    then a start slot; the load slot itself (``toolkit.heavy_load``) is taken only while
    holding a live one, and nobody waits for admission while holding anything, so no
    two of them wait for each other."""

    live: Bound
    starting: Bound
    loads: Bound = field(default_factory=lambda: Bound(LOADS_ADMITTED))

    @classmethod
    def of(cls, config: RunConfig) -> Bounds:
        return cls(Bound(config.jobs), Bound(min(STARTS, config.jobs)))


class Slots:
    """One gap's access to the run's bounds: ``instance()`` holds a live slot for as long as
    the instance lives, and a start slot while it starts.  A task waits for a start slot
    only while holding a live one, never the other way round, so the bounds cannot
    deadlock."""

    def __init__(self, config: RunConfig, target: TargetRun, bounds: Bounds) -> None:
        self.config = config
        self.target = target
        self.bounds = bounds

    @contextlib.asynccontextmanager
    async def instance(self, logs: list[str] | None = None, *, priority: float = 0.0,
                       upstream: str | None = None) -> AsyncIterator[Instance]:
        """A fresh instance while a slot is held; ``upstream`` fills ``{upstream}``.  The
        instance's ``queued`` is the time spent waiting for the slot: the harness's, not the
        target's."""
        manifest = self.target.manifest
        if not manifest.managed:  # a URL target: one shared instance, probed gently
            self.target.shared = self.target.shared or Instance(manifest)
            yield self.target.shared
            return
        loop = asyncio.get_running_loop()
        asked = loop.time()
        async with self.bounds.live.hold(priority):
            instance, queued = await self._start(priority, upstream, asked)
            instance.queued = queued
            try:
                yield instance
            finally:
                await instance.astop()
                if logs is not None and (text := instance.logs()):
                    logs.append(text)


    async def _start(self, priority: float, upstream: str | None,
                     asked: float) -> tuple[Instance, float]:
        """Start an instance under the start bound, weighed by the target's start cost;
        (the instance, seconds queued).  While a target's cost is unknown its starts wait
        for the first, which measures it alone."""
        target = self.target
        if target.start_cost is None:
            async with target.measuring:
                if target.start_cost is None:
                    instance, queued = await self._start_weighed(priority, upstream, asked)
                    target.start_cost = instance.start_seconds
                    return instance, queued
        return await self._start_weighed(priority, upstream, asked)

    async def _start_weighed(self, priority: float, upstream: str | None,
                             asked: float) -> tuple[Instance, float]:
        target, loop = self.target, asyncio.get_running_loop()
        async with self.bounds.starting.hold(priority, start_weight(target.start_cost)):
            queued = loop.time() - asked
            instance = await start_instance(target.manifest, self.config.time_scale,
                                            target.extra_args, upstream=upstream)
        return instance, queued


def _context(config: RunConfig, target: TargetRun, instance: Instance,
             slots: Slots, logs: list[str], priority: float) -> ProbeContext:
    return ProbeContext(target.manifest, instance, time_scale=config.time_scale,
                        seed=config.seed, waits=target.run.waits,
                        ssl_context=config.ssl_context,
                        trust_declarations=config.trust_declarations,
                        new_instance=functools.partial(slots.instance, logs,
                                                       priority=priority))


async def run_gap(config: RunConfig, target: TargetRun, slug: str, checks: list[CheckDef],
                  observe: Observer, bounds: Bounds) -> GapResult:
    """One gap, each check where its placement says: the ``SHARED`` checks at once on one
    fresh instance, each ``ALONE`` check on an instance of its own, each try of a ``FRESH``
    check on a new one, each ``UPSTREAM`` check starting its own
    (``ProbeContext.with_upstream``), each ``OWN`` check starting what it needs itself, and
    each ``DECLARED`` check on none (its manifest decides it)."""
    # What the run left out of this gap (--gap, --check, -k) is kept from before it started.
    gap = GapResult(slug, started=time.time(), unselected=target.run.gaps[slug].unselected)
    target.run.gaps[slug] = gap
    observe(GapStarted(target.label, slug, len(checks), max(d.budget for d in checks)))
    slots = Slots(config, target, bounds)
    logs: list[str] = []

    async def record(result: CheckResult) -> None:
        if config.interrupted:
            return
        gap.checks.append(result)
        observe(CheckDone(target.label, slug, result))

    def failed_start(defns: list[CheckDef], exc: TargetFailed) -> list[CheckResult]:
        if exc.logs:
            logs.append(exc.logs)
        return [CheckResult(d.id, Verdict.ERROR, f"target not ready: {exc}"[:500],
                            Method.OBSERVED, reason=ErrorReason.TARGET_NOT_READY)
                for d in defns]

    async def on_one_instance(defns: list[CheckDef]) -> None:
        priority = max(d.budget for d in defns)
        # A load check's instance starts when its load is among the next LOADS_ADMITTED (a
        # URL target's shared instance starts nothing), and then before any other: the
        # loads take turns in the one load slot, so their queue is the run's longest chain
        # and must start at once, beside the long waits.  Three live slots at most.
        loading = target.manifest.managed and any(d.load for d in defns)
        admitted = bounds.loads.hold(priority) if loading else contextlib.nullcontext()
        first = math.inf if loading else priority
        try:
            async with admitted, slots.instance(logs, priority=first) as instance:
                ctx = _context(config, target, instance, slots, logs, priority)

                async def one(defn: CheckDef) -> None:
                    await record(await defn(ctx))

                await asyncio.gather(*(one(d) for d in defns))
        except TargetFailed as exc:
            for result in failed_start(defns, exc):
                await record(result)
        except Exception as exc:
            if not harness_side(exc):
                raise
            # Out of descriptors or memory while starting it: the harness's error, said so.
            for d in defns:
                await record(CheckResult(d.id, Verdict.ERROR, f"harness side: "
                                         f"{type(exc).__name__}: {exc}"[:500], Method.OBSERVED,
                                         reason=ErrorReason.HARNESS_SIDE))

    if target.unreachable is not None:
        for defn in checks:
            await record(CheckResult(defn.id, Verdict.ERROR,
                                     f"target unreachable: {target.unreachable}"[:500],
                                     Method.OBSERVED))
        gap.finished = time.time()
        target.write()
        observe(GapDone(target.label, gap))
        return gap

    async def fresh_each_try(defn: CheckDef) -> None:
        # No instance here: each try starts its own through ctx.new_instance (upstream
        # checks through ctx.with_upstream, their upstream server first).
        ctx = _context(config, target, Instance(target.manifest), slots, logs, defn.budget)
        await record(await defn(ctx))

    async def without_instance(defn: CheckDef) -> None:
        # A DECLARED check reads the manifest alone: no instance is started for it.
        ctx = _context(config, target, Instance(target.manifest), slots, logs, 0.0)
        await record(await defn(ctx))

    placed = {p: [d for d in checks if d.placement is p] for p in Placement}
    groups = [on_one_instance(placed[SHARED])] if placed[SHARED] else []
    groups += [on_one_instance([d]) for d in placed[ALONE]]
    groups += [fresh_each_try(d) for d in checks if d.placement.starts_per_try]
    groups += [without_instance(d) for d in placed[DECLARED]]
    try:
        await asyncio.gather(*groups)
    finally:
        # The head of the first crash report, when one was kept, stays in front of the cut.
        gap.logs = bound_logs(logs, OUTPUT_LIMIT) or None
        gap.finished = time.time()
        order = [d.id for d in checks]
        gap.checks.sort(key=lambda c: order.index(c.id) if c.id in order else len(order))
        if config.interrupted:
            # Written once per target when the run has unwound (run_plan), not per gap.
            _mark_interrupted(gap, checks)
        else:
            target.write()  # a failure is kept in write_error; the run's end reports it
    observe(GapDone(target.label, gap))
    return gap


async def _run_plan(config: RunConfig, selection: Selection, observe: Observer) -> None:
    labels = list(selection)
    await prepare_all(config, labels, observe, frozenset(
        label for label, gaps in selection.items() if "documentation" in gaps))
    await asyncio.gather(*(reach(config.targets[label], config) for label in labels))
    bounds = Bounds.of(config)
    work = [(label, slug, checks) for label, gaps in selection.items()
            if not config.targets[label].skipped for slug, checks in gaps.items()]
    work.sort(key=lambda item: -max(d.budget for d in item[2]))
    versions = asyncio.ensure_future(record_versions(config, labels))
    try:
        await asyncio.gather(*(run_gap(config, config.targets[label], slug, checks, observe,
                                       bounds) for label, slug, checks in work))
    except BaseException:
        versions.cancel()  # its threads kill their version commands
        await asyncio.gather(versions, return_exceptions=True)
        raise
    await versions
    for label in labels:
        config.targets[label].write()


REACH_WAIT = 10.0  # seconds for the one handshake that tells a URL target is there at all


async def reach(target: TargetRun, config: RunConfig) -> None:
    """A URL target that refuses every connection is said once, before any check: one
    handshake on its echo URL that cannot even connect (``Unreachable``: refused, no route,
    no such host) sets ``target.unreachable``.  Anything else (an answer that is not 101,
    a timeout) is evidence the checks judge; a managed target has its ready wait instead."""
    if target.manifest.managed or target.skipped or target.manifest.url is None:
        return
    try:
        client = await WireClient.connect(target.manifest.url,
                                          timeout=REACH_WAIT * config.time_scale,
                                          ssl_context=config.ssl_context)
    except Unreachable as exc:
        target.unreachable = str(exc)
    except Exception:
        return  # the checks meet it again and judge it, with evidence
    else:
        await client.aclose()


async def run_plan(config: RunConfig, selection: Selection,
                   observe: Observer = lambda event: None) -> None:
    """Run every selected check of every target; results land in ``config.targets``.

    Targets are built first; then every gap of every target runs at once, under one bound
    of ``config.jobs`` live instances that serves the checks with the longest budgets
    first, so the run costs about its longest wait.  Versions are recorded meanwhile.

    Cancelled with ``config.interrupted`` set (Ctrl-C, SIGTERM), every selected gap that
    did not finish says so, every prepared target's results are written once, and the
    cancellation goes on.
    """
    try:
        await _run_plan(config, selection, observe)
    except BaseException:
        if config.interrupted:
            for label, gaps in selection.items():
                target = config.targets[label]
                if target.skipped:
                    continue
                for slug, checks in gaps.items():
                    gap = target.run.gaps[slug]
                    if gap.started is None:
                        _mark_interrupted(gap, checks)
                target.run.interrupted = config.interrupted
                if target.prepared:
                    target.write()  # a failure is kept in write_error, as for any write
        raise


def _mark_interrupted(gap: GapResult, checks: list[CheckDef]) -> None:
    """Say on ``gap`` that the run was interrupted before it finished, and what is missing;
    a gap whose every check had finished is left as it is."""
    done = {c.id for c in gap.checks}
    missing = [d.id for d in checks if d.id not in done]
    if not missing:
        return
    gap.interrupted = True
    if gap.started is None:
        gap.note = "interrupted before it started"
    else:
        gap.note = (f"interrupted: {len(missing)} of {len(checks)} checks did not finish "
                    f"({', '.join(missing)})")


def event_json(event: Event) -> dict[str, object]:
    """An event as one JSON object (the CLI reads these from the pytest process)."""
    if isinstance(event, BuildStarted):
        return {"event": "build-started", "target": event.target}
    if isinstance(event, TargetPrepared):
        return {"event": "target-prepared", "target": event.target, "build": event.build,
                "version": event.version, "skipped": event.skipped}
    if isinstance(event, GapStarted):
        return {"event": "gap-started", "target": event.target, "gap": event.gap,
                "checks": event.checks, "longest_wait": event.longest_wait}
    if isinstance(event, CheckDone):
        return {"event": "check-done", "target": event.target, "gap": event.gap,
                "check": event.result.id, "verdict": str(event.result.verdict),
                "summary": event.result.summary[:500]}
    if isinstance(event, ResultsUnwritten):
        return {"event": "results-unwritten", "target": event.target, "reason": event.reason}
    gap = event.gap
    seconds = (gap.finished or 0) - (gap.started or 0)
    return {"event": "gap-done", "target": event.target, "gap": gap.slug,
            "status": str(gap.status), "error": gap.error, "seconds": round(seconds, 3)}
