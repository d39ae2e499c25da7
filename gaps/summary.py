"""The end-of-run summary table (gap, status, checks passed), shared by pytest and the CLI."""

from __future__ import annotations

import io

from rich.console import Console
from rich.table import Table

from gaps.catalog import GAPS, Kind
from gaps.model import RunResult, Status

SKIPPED = "skipped"  # every gap of a target that could not run, as in the reports
STYLE = {Status.PASS: "green", Status.PARTIAL: "yellow", Status.MISSING: "red",
         Status.UNKNOWN: "dim", SKIPPED: "magenta"}


def summary_table(run: RunResult) -> Table:
    """One row per gap.  A skipped target's gaps read ``skipped`` with no note: the reason is
    said once, below the table."""
    title = f"wsgaps: {run.target.name}"
    if run.target.version:
        title += f" ({run.target.version})"
    table = Table(title=title, title_justify="left")
    table.add_column("#", justify="right")
    table.add_column("gap")
    table.add_column("priority")
    table.add_column("status")
    table.add_column("checks passed", justify="right")
    table.add_column("note")
    for gap in GAPS:
        result = run.gaps[gap.slug]
        capability = [c for c in result.checks if c.kind is Kind.CAPABILITY]
        done = sum(1 for c in capability if c.verdict.passed)
        status = SKIPPED if run.target.skipped else result.status
        note = "" if run.target.skipped else result.note or ""
        if result.error:
            note = f"error: {result.error}"
        table.add_row(str(gap.id), gap.title, str(gap.priority),
                      f"[{STYLE[status]}]{status}[/]",
                      f"{done}/{len(capability)}" if capability else "-", note[:60])
    return table


def render_summary(run: RunResult, *, color: bool = False, width: int = 110) -> str:
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=color, color_system="standard" if color else None,
                      width=width)
    console.print(summary_table(run))
    if run.target.skipped:
        console.print(f"target skipped: {run.target.skipped.splitlines()[0]}", markup=False)
    return buffer.getvalue()
