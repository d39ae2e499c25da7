"""The run planner: which checks run on which target instance, and the results they make.

A run is a set of targets and, per target, the gaps and checks selected for it.  The
planner prepares each target once (cached build, version), gives every gap a fresh
instance of a managed target (a URL target is shared), runs the gap's checks, records the
results and writes ``results.json`` after each gap.  The pytest plugin and the ``wsgaps``
CLI both run through here; progress leaves as calls to an observer, never as text.
"""

from __future__ import annotations

import contextlib
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from gaps.manifest import Manifest
from gaps.model import CheckResult, GapResult, Method, RunResult, Verdict
from gaps.probe import CheckDef, ProbeContext
from gaps.targets import (
    Instance,
    TargetFailed,
    TargetSkipped,
    run_build,
    start_instance,
    target_version,
)


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

    @property
    def skipped(self) -> str | None:
        return self.run.target.skipped

    def write(self) -> None:
        self.run.write(self.path)


@dataclass
class RunConfig:
    """What a run was asked to do, whichever front end asked."""

    targets: dict[str, TargetRun] = field(default_factory=dict)
    time_scale: float = 1.0
    seed: int = 0
    ssl_context: ssl.SSLContext | None = None
    trust_declarations: bool = False  # decide checks by absent declarations, not the wire


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


Observer = Callable[[object], None]

# Selection: target label -> gap slug -> the checks to run there, in catalog order.
Selection = dict[str, dict[str, list[CheckDef]]]


def prepare(target: TargetRun, scale: float) -> None:
    """Build (cached) and record the version, once per target per run."""
    if target.prepared:
        return
    target.prepared = True
    try:
        target.run.target.build = run_build(target.manifest, time_scale=scale)
    except TargetSkipped as exc:
        target.run.target.build, target.run.target.skipped = exc.build, str(exc)
        for gap in target.run.gaps.values():
            gap.note = f"target skipped: {str(exc).splitlines()[0]}"
        target.write()
        return
    target.run.target.version = target_version(target.manifest)
    target.write()


async def run_gap(config: RunConfig, target: TargetRun, slug: str, checks: list[CheckDef],
                  observe: Observer) -> GapResult:
    """One gap on a fresh instance (managed) or the shared one (URL); results written."""
    gap = GapResult(slug, started=time.time())
    target.run.gaps[slug] = gap
    manifest = target.manifest
    try:
        if manifest.managed:
            instance = await start_instance(manifest, config.time_scale, target.extra_args)
        else:
            instance = target.shared or Instance(manifest)
            target.shared = instance
    except TargetFailed as exc:
        gap.checks = [CheckResult(d.id, Verdict.ERROR, f"target not ready: {exc}"[:500],
                                  Method.OBSERVED) for d in checks]
        gap.logs = exc.logs or None
        gap.finished = time.time()
        target.write()
        for result in gap.checks:
            observe(CheckDone(target.label, slug, result))
        observe(GapDone(target.label, gap))
        return gap
    ctx = ProbeContext(manifest, instance, time_scale=config.time_scale, seed=config.seed,
                       waits=target.run.waits, ssl_context=config.ssl_context,
                       trust_declarations=config.trust_declarations)
    try:
        for defn in checks:
            result = await defn(ctx)
            gap.checks.append(result)
            observe(CheckDone(target.label, slug, result))
    finally:
        if instance.managed:
            await instance.astop()
            gap.logs = instance.logs() or None
        gap.finished = time.time()
        order = [d.id for d in checks]
        gap.checks.sort(key=lambda c: order.index(c.id) if c.id in order else len(order))
        with contextlib.suppress(OSError):
            target.write()
    observe(GapDone(target.label, gap))
    return gap


async def run_plan(config: RunConfig, selection: Selection,
                   observe: Observer = lambda event: None) -> None:
    """Run every selected check of every target; results land in ``config.targets``."""
    for label, gaps in selection.items():
        target = config.targets[label]
        prepare(target, config.time_scale)  # builds run in the foreground: Ctrl-C reaches them
        if target.skipped:
            continue
        for slug, checks in gaps.items():
            await run_gap(config, target, slug, checks, observe)
