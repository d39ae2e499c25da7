"""The end-of-run summary table (gap, status, checks passed), shared by pytest and the CLI.

Cells stay short; every distinct error or skip reason is printed once, whole, under the
table, and the note cell points at it by number.  A gap whose checks errored reads
``error`` here (``results.json`` keeps it ``unknown`` with its error flag, as the design
says, and gates are unchanged); a skipped target's gaps read ``skipped``.
"""

from __future__ import annotations

import io

from rich.console import Console
from rich.table import Table

from gaps.catalog import GAPS
from gaps.model import RunResult, Status, Verdict, passed_count

SKIPPED = "skipped"  # every gap of a target that could not run, as in the reports
ERROR = "error"  # a gap with a check that could not complete
INTERRUPTED = "interrupted"  # a gap the run ended in before it finished, as in the reports
STYLE = {Status.PASS: "green", Status.PARTIAL: "yellow", Status.MISSING: "red",
         Status.UNKNOWN: "dim", SKIPPED: "magenta", ERROR: "red bold", INTERRUPTED: "cyan"}


def reasons(run: RunResult) -> list[str]:
    """Every distinct error or skip reason of ``run``, whole, in gap order."""
    found: list[str] = []
    for gap in GAPS:
        for check in run.gaps[gap.slug].checks:
            if check.verdict in (Verdict.ERROR, Verdict.SKIP):
                text = f"{check.verdict}: {check.summary}"
                if text not in found:
                    found.append(text)
    return found


def one_error(run: RunResult) -> str | None:
    """The one reason every check of ``run`` could not complete, when there is one (a URL
    nobody listens on, a target that never started): said once, above the table."""
    checks = [c for gap in run.gaps.values() for c in gap.checks]
    if not checks or any(c.verdict is not Verdict.ERROR for c in checks):
        return None
    return checks[0].summary if len({c.summary for c in checks}) == 1 else None


def summary_table(run: RunResult) -> Table:
    title = f"wsgaps: {run.target.name}"
    if run.target.version:
        title += f" ({run.target.version})"
    if run.interrupted:
        title += f", interrupted ({run.interrupted})"
    table = Table(title=title, title_justify="left")
    table.add_column("#", justify="right")
    table.add_column("gap")
    table.add_column("priority")
    table.add_column("status")
    table.add_column("checks passed", justify="right")
    table.add_column("note")
    numbered = {text: n for n, text in enumerate(reasons(run), start=1)}
    common = one_error(run)
    for gap in GAPS:
        result = run.gaps[gap.slug]
        if run.target.skipped:
            status, note = SKIPPED, ""
        else:
            status = INTERRUPTED if result.interrupted else ERROR if result.error \
                else result.status
            refs = sorted({numbered[f"{c.verdict}: {c.summary}"] for c in result.checks
                           if c.verdict in (Verdict.ERROR, Verdict.SKIP)})
            note = result.note or ""
            if result.interrupted:  # the checks it names are in the reports
                note = note.split(" (", 1)[0]
            if common is not None:
                note = "see above"
            elif refs:
                note = "see " + ", ".join(f"[{n}]" for n in refs) + " below"
        table.add_row(str(gap.id), gap.title, str(gap.priority),
                      f"[{STYLE[status]}]{status}[/]",
                      passed_count(result.checks), note)
    return table


def print_summary(console: Console, run: RunResult) -> None:
    """The table, then each reason once, whole (target text printed literally); a reason
    shared by every check (nothing could run) once, above the table."""
    common = None if run.target.skipped else one_error(run)
    if common is not None:
        console.print(f"{run.target.name}: no check could run: {common}", markup=False,
                      highlight=False, soft_wrap=True, style="red")
    console.print(summary_table(run))
    if run.target.version_error:
        console.print(f"{run.target.name} version unknown: {run.target.version_error}",
                      markup=False, highlight=False, soft_wrap=True)
    if run.target.skipped:
        console.print(f"{run.target.name} skipped: {run.target.skipped}", markup=False,
                      highlight=False)
        return
    if common is not None:
        return
    for n, text in enumerate(reasons(run), start=1):
        console.print(f"[{n}] {text}", markup=False, highlight=False, soft_wrap=True)


def render_summary(run: RunResult, *, color: bool = False, width: int = 110) -> str:
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=color, color_system="standard" if color else None,
                      width=width)
    print_summary(console, run)
    return buffer.getvalue()
