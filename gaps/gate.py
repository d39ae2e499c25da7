"""CI gates on results: a status floor (``--fail-on``) and a baseline (``--baseline``).

Plain functions over ``RunResult`` so that the pytest plugin and the CLI apply the same
rules.  The documentation gap is a text heuristic and never gates (DESIGN.md, gap 14);
``unknown`` (nothing applicable was probed) never gates either, nor does a gap the run was
interrupted in (its checks did not all finish).
"""

from __future__ import annotations

from pathlib import Path

from gaps.catalog import GAPS
from gaps.model import ResultsError, RunResult, Status, Verdict, load_results

FAIL_ON = {
    "missing": {Status.MISSING},
    "partial": {Status.MISSING, Status.PARTIAL},
}
NEVER_GATED = frozenset({"documentation"})
# How good a verdict is; a check "got worse" when its rank went down.
RANK = {Verdict.PASS: 2, Verdict.NON_STRICT: 1, Verdict.FAIL: 0, Verdict.SKIP: 0,
        Verdict.ERROR: 0}


def status_failures(run: RunResult, fail_on: str | None) -> list[str]:
    """One line per gap whose status is at or below the floor ``fail_on``."""
    if not fail_on:
        return []
    bad = FAIL_ON[fail_on]
    return [
        f"{run.target.name}: gap {gap.id} {gap.slug} is {run.gaps[gap.slug].status}"
        for gap in GAPS
        if gap.slug not in NEVER_GATED and run.gaps[gap.slug].status in bad
        and not run.gaps[gap.slug].interrupted  # its status is no verdict
    ]


def regressions(run: RunResult, baseline: RunResult) -> list[str]:
    """One line per check, named by ID, whose verdict is worse than in ``baseline``.

    Only gaps probed in this run count: a gap not run now cannot have regressed.  A check
    that the baseline passed and that is gone from a probed gap counts as worse.
    """
    lines = []
    for gap in GAPS:
        if gap.slug in NEVER_GATED:
            continue
        now, before = run.gaps[gap.slug], baseline.gaps[gap.slug]
        if not now.checks or now.interrupted:  # an interrupted gap is not a probed one
            continue
        current = {c.id: c for c in now.checks}
        for old in before.checks:
            if old.id in now.unselected:  # not selected this run: not gone, not counted
                continue
            new = current.get(old.id)
            if new is None:
                if old.verdict.passed:
                    lines.append(f"{run.target.name}: {old.id}: {old.verdict} in the baseline, "
                                 "not checked now")
                continue
            if RANK[new.verdict] < RANK[old.verdict]:
                lines.append(f"{run.target.name}: {old.id}: {old.verdict} -> {new.verdict} "
                             f"({new.summary[:200]})")
    return lines


def load_baselines(paths: list[str]) -> dict[str, RunResult]:
    """Baselines by target name; ResultsError for an unreadable file or a repeated target."""
    found: dict[str, RunResult] = {}
    for path in paths:
        run = load_results(Path(path))
        if run.target.name in found:
            raise ResultsError(f"{path}: a second baseline for target {run.target.name}")
        found[run.target.name] = run
    return found
