"""Figures across targets: the evidence-only checks' results, one row per target.

An evidence check (``[e]`` in the catalog, e.g. ``broadcast.scale``) has no verdict weight;
its figures live in its summary and evidence.  The matrix shows them below the status grid,
one small table per evidence check with the targets in the matrix's column order, each cell
linking to that gap in the target's report.  A few capability checks also measure figures
that are worth comparing across targets (``FIGURE_CHECKS``, e.g. ``concurrency.parallel-echo``:
messages per second and round trips); they get a row too, marked as capability checks, whose
verdict is the grid's.  Kept apart from ``view`` so the status matrix and its templates need
no change beyond one include.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import quote

from gaps.catalog import GAPS, Kind
from gaps.model import RunResult, Verdict
from gaps.report.safe import clip
from gaps.report.view import (
    FIGURE_ICON,
    FIGURE_WORD,
    INLINE_LIMIT,
    REPORT_HTML,
    REPORT_MD,
    SKIPPED,
    STATUS_ICON,
    STATUS_WORD,
    SUMMARY_LIMIT,
    VERDICT_ICON,
    harness_bound,
    shows_figures,
)

SKIPPED_ICON, SKIPPED_WORD = STATUS_ICON[SKIPPED], STATUS_WORD[SKIPPED]

# Capability checks whose summaries carry figures the matrix lists beside the evidence-only
# checks' (in catalog order with them).
FIGURE_CHECKS: tuple[str, ...] = ("concurrency.parallel-echo", "concurrency.churn")


@dataclass(frozen=True)
class FigureCell:
    """One target's result for one evidence check."""

    target: str
    icon: str
    verdict: str
    summary: str  # the figures, as the check wrote them; or why there are none
    md_href: str
    html_href: str
    harness_bound: str = ""  # "harness CPU 97%": taken at the harness's own ceiling


@dataclass(frozen=True)
class FigureRow:
    """One evidence check across the targets, in the matrix's column order."""

    id: str
    tests: str  # what the check measures, from the catalog
    gap_id: int
    cells: tuple[FigureCell, ...]
    capability: bool = False  # a capability check of FIGURE_CHECKS: its verdict is the grid's


def figures_view(runs: Sequence[tuple[RunResult, str]]) -> tuple[FigureRow, ...]:
    """The evidence checks (and ``FIGURE_CHECKS``) that any of ``runs`` reported, each with a
    cell per target.

    ``runs`` are ``(run, folder)`` pairs as for ``matrix_view``; a target that did not run
    the check (or was skipped as a whole) gets a cell saying so.
    """
    rows = []
    for gap in GAPS:
        for spec in gap.checks:
            if spec.kind is not Kind.EVIDENCE and spec.id not in FIGURE_CHECKS:
                continue
            found = [_result(run, gap.slug, spec.id) for run, _ in runs]
            if not any(found):
                continue
            cells = []
            for (run, folder), result in zip(runs, found, strict=True):
                base = quote(folder.strip("/"), safe="/")
                md_href = f"{base}/{REPORT_MD}#gap-{gap.id}"
                html_href = f"{base}/{REPORT_HTML}#gap-{gap.id}"
                name = clip(run.target.name, INLINE_LIMIT)
                if run.target.skipped:
                    cells.append(FigureCell(name, SKIPPED_ICON, SKIPPED_WORD,
                                            "the target could not run here", md_href, html_href))
                elif result is None:
                    cells.append(FigureCell(name, "", "not run", "", md_href, html_href))
                elif shows_figures(spec.kind, result.verdict):
                    cells.append(FigureCell(name, FIGURE_ICON, FIGURE_WORD,
                                            clip(result.summary, SUMMARY_LIMIT),
                                            md_href, html_href,
                                            harness_bound(result.evidence)))
                else:
                    cells.append(FigureCell(name, VERDICT_ICON[result.verdict],
                                            str(result.verdict),
                                            clip(result.summary, SUMMARY_LIMIT),
                                            md_href, html_href,
                                            harness_bound(result.evidence)))
            rows.append(FigureRow(spec.id, spec.summary, gap.id, tuple(cells),
                                  capability=spec.kind is Kind.CAPABILITY))
    return tuple(rows)


def _result(run: RunResult, slug: str, check_id: str):
    gap = run.gaps.get(slug)
    if gap is None:
        return None
    return next((c for c in gap.checks if c.id == check_id
                 and isinstance(c.verdict, Verdict)), None)
