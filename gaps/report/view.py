"""View models: what the templates show, built from results and the catalog.

This is the one place where report text is chosen, bounded and cleaned; the Markdown and
HTML templates only lay it out and escape it, so both formats state the same facts.
Every string taken from a results file passes through ``clip``, ``tail`` or ``compact_json``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from gaps.catalog import GAPS, Kind, Priority
from gaps.expectations import ExpectationError, load_expectations
from gaps.model import (
    NOTHING_APPLICABLE,
    CheckResult,
    GapResult,
    Method,
    RunResult,
    Status,
    Verdict,
    is_optional,
    passed_count,
)
from gaps.output import bound_logs
from gaps.report.safe import clean, clip, compact_json, tail
from gaps.report.timeline import Timeline, timeline_view
from gaps.targets import BUILTIN_DIR

# Bounds on untrusted text, in characters.
INLINE_LIMIT = 200  # names, versions, hint values
SETTING_LIMIT = 2000  # a setting's value: shown whole in practice, bounded all the same
SUMMARY_LIMIT = 500  # a check's one-line summary, an error flag, a note
FIGURE_LIMIT = 120  # one key figure's JSON value
FIGURES_MAX = 8  # key figures shown per check; the rest are in the evidence block
EVIDENCE_LIMIT = 2000  # a check's whole evidence as compact JSON
LOG_LIMIT = 4096  # tail of a target's logs per gap (a crash report's head comes on top)
BUILD_WORDS = {"built": "built for this run", "cached": "cached (inputs unchanged)",
               "none": "no build step", "failed": "failed (the reason is at the top)",
               "not-run": "not run: a tool it needs is missing (the reason is at the top)"}
# What every gap of a target that could not run shows instead of its derived status (which
# is "unknown"): one word for the matrix, the report and the terminal, the reason once.
SKIPPED = "skipped"
# What a gap shows instead of its derived status when the run was interrupted before it
# finished: that status comes from the checks done by then (perhaps none), no verdict.
INTERRUPTED = "interrupted"
DETAIL_LIMIT = 4096  # tail of a skipped target's reason (it may hold build output)
MAP_MAX = 50  # entries shown from settings, hints and waits
DECIDED_MAX = 3  # check IDs named in a gap's one line of what decided its status
DECIDED_LIMIT = 160  # that line's text, before the IDs
TRIES_MAX = 10  # verdicts of retried tries listed per check

# Keyed by the status value; Status members are str, so they key the same entries.
STATUS_ICON = {Status.PASS: "✅", Status.PARTIAL: "⚠️", Status.MISSING: "❌",
               Status.UNKNOWN: "❔", SKIPPED: "⏭️", INTERRUPTED: "⏹️"}
STATUS_WORD = {Status.PASS: "Pass", Status.PARTIAL: "Partial", Status.MISSING: "Missing",
               Status.UNKNOWN: "Unknown", SKIPPED: "Skipped", INTERRUPTED: "Interrupted"}
VERDICT_ICON = {Verdict.PASS: "✅", Verdict.NON_STRICT: "☑️", Verdict.FAIL: "❌",
                Verdict.SKIP: "⏭️", Verdict.ERROR: "⛔"}
ERROR_ICON = "⛔"
# An evidence-only check that measured something shows its figures, not a verdict: it has
# no verdict weight (DESIGN.md [e]), and a check like broadcast.scale can only pass or skip,
# so a green tick would claim what it never judged.  Skip and error keep theirs: no figure.
FIGURE_ICON, FIGURE_WORD = "📊", "measured"


def shows_figures(kind: Kind, verdict: Verdict) -> bool:
    """Whether a check of ``kind`` with ``verdict`` is shown as figures, not as a verdict."""
    return kind is Kind.EVIDENCE and verdict not in (Verdict.SKIP, Verdict.ERROR)
DECLARED_ICON = "📄"

REPORT_MD = "gap-report.md"
REPORT_HTML = "gap-report.html"


def seconds(value: float) -> str:
    """A duration for people: ``5 s``, ``1.25 s`` (at most two decimals)."""
    return f"{value:.2f}".rstrip("0").rstrip(".") + " s"


def number(value: Any) -> str:
    """A hint or setting number without float noise: ``1`` not ``1.0``, no exponent."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return clip(value, INLINE_LIMIT)
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return str(int(value))
    return str(value)


def timestamp(value: float | None) -> str:
    """A run's start time in UTC, or an empty string when the results do not have one."""
    if not isinstance(value, int | float) or value <= 0:
        return ""
    try:
        return datetime.fromtimestamp(value, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (OverflowError, ValueError, OSError):  # out of the platform's time range
        return ""


@dataclass(frozen=True)
class Entry:
    """One key/value pair shown in the header (a setting, hint or wait)."""

    key: str
    value: str


@dataclass(frozen=True)
class CheckView:
    """One check as reported: verdict, what was seen, how, and the evidence behind it."""

    id: str
    kind: str
    tests: str  # what the check tests, from the catalog
    verdict: str
    icon: str
    label: str  # the word shown: the verdict, or FIGURE_WORD (shows_figures)
    look: str  # the HTML icon and CSS name: the verdict, or "figure"
    passed: bool
    summary: str
    declared: bool
    source: str
    declaration: str  # what the manifest declares about an observed check, with its source
    contradiction: str  # a manifest error: the wire showed the opposite of the declaration
    wait: str
    took: str
    tries: str
    figures: tuple[Entry, ...]
    more_figures: int  # top-level evidence entries not shown as figures
    evidence: str  # compact JSON, bounded; empty when there is none
    timeline: Timeline | None = None  # dials over time (recovery): SVG in HTML, text in Markdown
    # An optional check (catalog): its failure does not lower the gap's status (DESIGN.md),
    # so the reports say "optional" beside it and leave it out of "make the failed checks
    # pass".
    optional: bool = False
    # The harness's own CPU share during the check's load, when it was at HARNESS_BOUND or
    # more: "harness CPU 97%" (its figures measure the harness as much as the target).
    harness_bound: str = ""


def harness_bound(evidence: Any) -> str:
    """``harness CPU NN%`` when ``evidence`` (a check's) says its load ran while the harness
    was at its own ceiling (``gaps.probe.harness_ceiling``), else empty."""
    if not isinstance(evidence, dict) or evidence.get("harness_bound") is not True:
        return ""
    share = evidence.get("harness_cpu_share")
    return f"harness CPU {share:.0%}" if isinstance(share, int | float) else "harness CPU"


CRASH_LIMIT = 2000  # the head of a crash report shown at its gap


@dataclass(frozen=True)
class CrashView:
    """The target's process ended during a check of the gap: a finding, shown at the gap
    (exit status, the first lines of its crash report, a link to the logs)."""

    check: str  # the first check that saw it
    exit_status: str
    head: str  # the crash report's first lines, the target's text (clipped)
    cause: str = ""  # a built-in target's known cause: its expectation's source


@dataclass(frozen=True)
class GapView:
    """One gap in the seed document's shape, with its current state from the evidence."""

    id: int
    slug: str
    title: str
    priority: str
    status: str  # the Status value, for CSS classes
    status_word: str
    icon: str
    error: str
    note: str
    manifest_errors: tuple[str, ...]  # declarations the wire contradicted
    description: str
    recommended: tuple[str, ...]
    capability: tuple[CheckView, ...]
    conformance: tuple[CheckView, ...]
    figures: tuple[CheckView, ...]  # evidence-kind checks
    not_reported: tuple[str, ...]  # catalog checks of this gap absent from the results
    failed: tuple[Entry, ...]  # checks with verdict fail: ID -> what the check tests
    logs: str
    passed: str = "-"  # capability checks passed: "3/3", "3/3 (+1 optional)"
    # One line of what decided the status, for the summary table at the top: the words,
    # then the check IDs they name (at most DECIDED_MAX) and how many more there are.
    decided: str = ""
    decided_checks: tuple[str, ...] = ()
    more_decided: int = 0
    unselected: tuple[str, ...] = ()  # checks of this gap the run did not select
    crash: CrashView | None = None  # the target's process ended during a check of the gap


def crash_of(result: GapResult) -> CrashView | None:
    """The first check of the gap (in catalog order) during which the target's process
    ended by itself (``exit_status`` in its evidence: ``gaps.probe.said_the_target_ended``
    and checks that watch the process put it there), or None."""
    for check in result.checks:
        status = check.evidence.get("exit_status") if isinstance(check.evidence, dict) \
            else None
        if status is None:
            continue
        head = check.evidence.get("crash_head")
        return CrashView(check.id, clip(status, INLINE_LIMIT),
                         clip(head, CRASH_LIMIT) if isinstance(head, str) else "")
    return None


def _with_cause(view: GapView, target: str) -> GapView:
    """``view`` with the known cause of its crash, when the target is a built-in one whose
    ``expected.toml`` expects the crashed check to fail (GoFr's race: the source names the
    lines); unchanged otherwise."""
    if view.crash is None:
        return view
    path = BUILTIN_DIR / target / "expected.toml"
    try:
        expected = load_expectations(path).get(view.crash.check) if path.is_file() else None
    except ExpectationError:
        return view
    if expected is None or Verdict.FAIL not in (expected.verdict, *expected.also):
        return view
    cause = clip(f"{expected.source} (targets/{target}/expected.toml)", SETTING_LIMIT)
    return dataclasses.replace(view, crash=dataclasses.replace(view.crash, cause=cause))


@dataclass(frozen=True)
class PriorityGroup:
    """The gaps of one priority that do not pass; ``total`` counts all of that priority."""

    priority: str
    gaps: tuple[GapView, ...]
    total: int


@dataclass(frozen=True)
class ReportView:
    """A whole per-target report: header facts, the fourteen gaps, the summary."""

    name: str
    description: str
    version: str
    version_note: str  # the version differs from the one the manifest was written for
    version_error: str  # why the version is unknown: the version command's failure
    interrupted: str  # the signal that interrupted the run; empty for a whole run
    build: str
    kind: str
    url: str
    skipped: str  # first line of the reason
    skipped_detail: str  # the rest (e.g. the build output tail), bounded
    settings: tuple[Entry, ...]
    hints: tuple[Entry, ...]
    waits: tuple[Entry, ...]
    more_entries: int  # settings, hints and waits left out beyond MAP_MAX each
    time_scale: str
    seed: str
    harness_version: str
    started: str
    duration: str
    counts: tuple[Entry, ...]  # status word -> number of gaps (only Skipped when skipped)
    gaps: tuple[GapView, ...]
    summary: tuple[PriorityGroup, ...]
    # A run of part of the catalog (--gap, --check, -k): which gaps it probed, said at the
    # top so that no reader takes the rest for findings.  Empty for a whole run.
    selected: str = ""


def _first_line_and_rest(value: Any) -> list[str]:
    """A reason split into its first line and the rest; ``[""]`` for none."""
    text = "" if value is None else value if isinstance(value, str) else str(value)
    return text.strip().split("\n", 1)


def _entries(mapping: Any, fmt: Callable[[Any], str]) -> tuple[tuple[Entry, ...], int]:
    """Sorted, bounded entries of a mapping, and how many were left out."""
    if not isinstance(mapping, Mapping):
        return (), 0
    items = sorted(mapping.items(), key=lambda kv: str(kv[0]))
    shown = tuple(Entry(clip(k, INLINE_LIMIT), fmt(v)) for k, v in items[:MAP_MAX])
    return shown, max(0, len(items) - MAP_MAX)


def _is_figure(value: Any) -> bool:
    """A top-level evidence value worth showing inline: a scalar or a flat list of them."""
    scalar = (str, int, float, bool, type(None))
    if isinstance(value, scalar):
        return True
    return isinstance(value, list | tuple) and all(isinstance(v, scalar) for v in value)


def without_nulls(value: Any) -> Any:
    """``value`` with every mapping entry whose value is null left out, at any depth.

    A null says "nothing of this kind happened" (no close code, no read error); shown, it is
    noise.  List items stay as they are: their position carries meaning.
    """
    if isinstance(value, Mapping):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [without_nulls(v) for v in value]
    return value


def _check_view(check: CheckResult, tests: str) -> CheckView:
    """One check's view; ``tests`` is the catalog's line on what the check tests.

    Key figures are the first top-level evidence entries that fit on a line (close codes,
    times, waits); everything, nested parts included, is in the bounded evidence JSON.
    Entries whose value is null are left out of both.
    """
    evidence = without_nulls(check.evidence)
    figures: list[Entry] = []
    skipped_figures = 0
    if isinstance(evidence, Mapping):
        for key, value in evidence.items():
            if _is_figure(value) and len(figures) < FIGURES_MAX:
                figures.append(Entry(clip(key, INLINE_LIMIT), compact_json(value, FIGURE_LIMIT)))
            else:
                skipped_figures += 1
    tries = check.tries if isinstance(check.tries, list) else []
    verdicts = [str(t.get("verdict", "?")) if isinstance(t, Mapping) else "?" for t in tries]
    tries_text = ""
    if len(verdicts) > 1:
        tries_text = clip(", ".join(verdicts[:TRIES_MAX]), INLINE_LIMIT)
        if len(verdicts) > TRIES_MAX:
            tries_text += f", … ({len(verdicts)} tries)"
    wait = check.wait
    figures_only = shows_figures(check.kind, check.verdict)
    return CheckView(
        id=check.id,
        kind=str(check.kind),
        tests=tests,
        verdict=str(check.verdict),
        icon=FIGURE_ICON if figures_only else VERDICT_ICON[check.verdict],
        label=FIGURE_WORD if figures_only else str(check.verdict),
        look="figure" if figures_only else str(check.verdict),
        passed=check.verdict.passed,
        summary=clip(check.summary, SUMMARY_LIMIT),
        declared=check.method is Method.DECLARED,
        source=clip(check.source, SUMMARY_LIMIT) if check.source else "",
        declaration=_declaration_text(check),
        contradiction=clip(check.contradiction, SUMMARY_LIMIT) if check.contradiction else "",
        wait=seconds(wait) if isinstance(wait, int | float) else "",
        took=seconds(check.duration) if isinstance(check.duration, int | float)
        and check.duration > 0 else "",
        tries=tries_text,
        figures=tuple(figures),
        more_figures=skipped_figures,
        evidence=compact_json(evidence, EVIDENCE_LIMIT) if evidence else "",
        timeline=timeline_view(evidence),
        optional=is_optional(check.id),
        harness_bound=harness_bound(check.evidence),
    )


def _declaration_text(check: CheckResult) -> str:
    """The manifest's word on an observed check, shown as the explanation beside it."""
    declared = check.declaration
    if not isinstance(declared, Mapping) or check.method is Method.DECLARED:
        return ""
    text = f"{declared.get('summary') or declared.get('verdict')}"
    if declared.get("source"):
        text += f" (source: {declared['source']})"
    return clip(text, SUMMARY_LIMIT)


def _logs(text: str) -> str:
    """The last ``LOG_LIMIT`` characters of a gap's logs, with the head of the first crash
    report in front when the target's output kept one that the tail no longer holds."""
    text = clean(text)  # first: an escape is longer than the character it shows
    kept = bound_logs([text], LOG_LIMIT)
    return kept if len(kept) > LOG_LIMIT else tail(text, LOG_LIMIT)


def _decision(result: GapResult, status: str, views: Sequence[CheckView]) \
        -> tuple[str, tuple[str, ...]]:
    """What decided a gap's status, as words and the check IDs they name.

    An Unknown says which of three it is: no probe for the gap in this version, not selected
    for this run (both the gap's note), or a probe that ran and found nothing it could judge
    on this target (every check skipped, or none completed).
    """
    capability = [v for v in views if v.kind == Kind.CAPABILITY]
    failed = tuple(v.id for v in capability if v.verdict == Verdict.FAIL and not v.optional)
    missed = tuple(v.id for v in capability if v.optional and not v.passed
                   and v.verdict in (Verdict.FAIL, Verdict.NON_STRICT))
    if status == SKIPPED:
        return "the target could not run here (the reason is at the top)", ()
    if status == INTERRUPTED:
        return "the run ended before the gap finished: no verdict", ()
    if status == Status.UNKNOWN:
        if result.note:
            return _first_line_and_rest(result.note)[0], ()
        errored = tuple(v.id for v in capability if v.verdict == Verdict.ERROR)
        if errored and all(v.verdict in (Verdict.ERROR, Verdict.SKIP) for v in capability):
            return "no check could complete:", errored
        if capability:
            return f"{NOTHING_APPLICABLE}: every check was skipped on this target", ()
        return NOTHING_APPLICABLE, ()
    if status == Status.PASS:
        if missed:
            return "every check passes; optional, not met:", missed
        return "every check passes", ()
    if status == Status.MISSING:
        # No IDs: they would be all of the gap's checks, listed in its own section just
        # below, and at 1280 px their names wrapped rows enough to push the first gap off
        # the first screen (GoFr, issue 34).
        return "every check fails", ()
    return "fails:", failed


def gap_view(result: GapResult, *, skipped: bool = False) -> GapView:
    """The view of one gap's results, with the catalog's texts beside the evidence.

    ``skipped``: the target could not run, so the gap reads Skipped (the report states the
    reason once, at the top) instead of its derived status and note.
    """
    gap = result.gap
    specs = {spec.id: spec for spec in gap.checks}
    views = [_check_view(c, specs[c.id].summary if c.id in specs else "") for c in result.checks]
    reported = {c.id for c in result.checks}
    interrupted = result.interrupted and not skipped
    status = SKIPPED if skipped else INTERRUPTED if interrupted else str(result.status)
    decided, named = _decision(result, status, views)
    unselected = set(result.unselected)
    return GapView(
        id=gap.id,
        slug=gap.slug,
        title=gap.title,
        priority=str(gap.priority),
        status=status,
        status_word=STATUS_WORD[status],
        icon=STATUS_ICON[status],
        error=clip(result.error, SUMMARY_LIMIT) if result.error else "",
        manifest_errors=tuple(f"{v.id}: {v.contradiction}" for v in views if v.contradiction),
        note=clip(result.note, SUMMARY_LIMIT) if result.note and not skipped else "",
        description=gap.description,
        recommended=gap.recommended,
        capability=tuple(v for v in views if v.kind == Kind.CAPABILITY),
        conformance=tuple(v for v in views if v.kind == Kind.CONFORMANCE),
        figures=tuple(v for v in views if v.kind == Kind.EVIDENCE),
        # Only for gaps that ran: an unprobed gap already says so in its note, and so does
        # an interrupted one, naming the checks that did not finish.
        not_reported=tuple(s.id for s in gap.checks
                           if s.id not in reported and s.id not in unselected)
        if result.checks and not interrupted else (),
        # An optional check's failure does not lower the status: not a task to fix it.
        failed=tuple(Entry(v.id, v.tests) for v in views
                     if v.verdict == Verdict.FAIL and v.kind != Kind.EVIDENCE
                     and not v.optional),
        logs=_logs(result.logs) if result.logs else "",
        passed="-" if skipped else passed_count(result.checks),
        decided=clip(decided, DECIDED_LIMIT),
        decided_checks=named[:DECIDED_MAX],
        more_decided=max(0, len(named) - DECIDED_MAX),
        # Only where some of the gap ran: a gap with none selected says so in its note.
        unselected=tuple(s.id for s in gap.checks if s.id in unselected)
        if result.checks else (),
        crash=None if skipped else crash_of(result),
    )


def report_view(run: RunResult) -> ReportView:
    """The view of one target's run: header, gaps in catalog order, summary by priority."""
    target = run.target
    gaps = tuple(_with_cause(gap_view(run.gaps[gap.slug], skipped=bool(target.skipped)),
                             target.name) for gap in GAPS)
    settings, more_settings = _entries(target.settings, lambda v: clip(v, SETTING_LIMIT))
    hints, more_hints = _entries(target.hints, number)
    waits, more_waits = _entries(run.waits, lambda v: seconds(v)
                                 if isinstance(v, int | float) else clip(v, INLINE_LIMIT))
    skipped_lines = _first_line_and_rest(target.skipped)
    duration = ""
    if isinstance(run.finished, int | float) and isinstance(run.started, int | float) \
            and run.started > 0 and run.finished >= run.started:
        duration = seconds(run.finished - run.started)
    shown: tuple[str, ...] = (SKIPPED,) if target.skipped else tuple(Status)
    if any(g.status == INTERRUPTED for g in gaps):
        shown += (INTERRUPTED,)
    counts = tuple(Entry(STATUS_WORD[s], str(sum(1 for g in gaps if g.status == s)))
                   for s in shown)
    results = [run.gaps[gap.slug] for gap in GAPS]
    selected = ""
    if any(r.unselected for r in results) and not target.skipped:
        ran = [f"{r.gap.id} ({r.gap.title})" for r in results if r.checks
               and not r.unselected]
        part = [f"{r.gap.id} ({r.gap.title})" for r in results if r.checks and r.unselected]
        selected = "; ".join(x for x in (
            f"{'gaps' if len(ran) > 1 else 'gap'} {', '.join(ran)}" if ran else "",
            f"part of {'gaps' if len(part) > 1 else 'gap'} {', '.join(part)}" if part else "")
            if x) or "no check"
    return ReportView(
        name=clip(target.name, INLINE_LIMIT),
        description=clip(target.description, SUMMARY_LIMIT) if target.description else "",
        version=clip(target.version, INLINE_LIMIT) if target.version else "",
        version_note=clip(target.version_note, SUMMARY_LIMIT) if target.version_note else "",
        version_error=clip(target.version_error, SUMMARY_LIMIT) if target.version_error
        else "",
        interrupted=clip(run.interrupted, INLINE_LIMIT) if run.interrupted else "",
        build=BUILD_WORDS.get(target.build or "", ""),
        kind=clip(target.kind, INLINE_LIMIT),
        url=clip(target.url, INLINE_LIMIT) if target.url else "",
        skipped=clip(skipped_lines[0], SUMMARY_LIMIT),
        skipped_detail=tail(skipped_lines[1], DETAIL_LIMIT) if len(skipped_lines) > 1 else "",
        settings=settings,
        hints=hints,
        waits=waits,
        more_entries=more_settings + more_hints + more_waits,
        time_scale=number(run.time_scale),
        seed=number(run.seed),
        harness_version=clip(run.harness_version, INLINE_LIMIT),
        started=timestamp(run.started),
        duration=duration,
        counts=counts,
        gaps=gaps,
        selected=clip(selected, SUMMARY_LIMIT),
        summary=tuple(
            PriorityGroup(str(p), tuple(g for g in gaps if g.priority == p
                                        and g.status != Status.PASS),
                          sum(1 for g in gaps if g.priority == p))
            for p in Priority
        ),
    )


@dataclass(frozen=True)
class MatrixCell:
    status: str
    status_word: str
    icon: str
    error: bool
    md_href: str
    html_href: str
    crashed: str = ""  # the exit status, when the target's process ended during the gap


@dataclass(frozen=True)
class MatrixColumn:
    name: str
    version: str
    skipped: str
    interrupted: str  # the signal that interrupted this target's run, or empty
    started: str
    harness_version: str
    md_href: str
    html_href: str


@dataclass(frozen=True)
class MatrixRow:
    id: int
    title: str
    priority: str
    cells: tuple[MatrixCell, ...]


@dataclass(frozen=True)
class MatrixView:
    """Gaps as rows, targets as columns; every cell links to that target's report.

    ``started`` is when the earliest of the runs started and ``harness`` the wsgaps
    versions that made them: facts of the results, never of the rendering.
    """

    columns: tuple[MatrixColumn, ...]
    rows: tuple[MatrixRow, ...]
    started: str
    harness: str

    @property
    def interrupted(self) -> tuple[MatrixColumn, ...]:
        """The targets whose run was interrupted: said at the top of the matrix."""
        return tuple(c for c in self.columns if c.interrupted)


def matrix_view(runs: Sequence[tuple[RunResult, str]]) -> MatrixView:
    """The matrix of ``runs``, each given with its report folder relative to the matrix.

    Columns keep the order given.  Links are percent-encoded relative paths, so a folder
    name can never become a URL scheme or break out of a Markdown link.
    """
    columns = []
    hrefs = []
    for run, folder in runs:
        base = quote(folder.strip("/"), safe="/")
        md_href, html_href = f"{base}/{REPORT_MD}", f"{base}/{REPORT_HTML}"
        hrefs.append((md_href, html_href))
        skipped = _first_line_and_rest(run.target.skipped)[0]
        columns.append(MatrixColumn(
            name=clip(run.target.name, INLINE_LIMIT),
            version=clip(run.target.version, INLINE_LIMIT) if run.target.version else "",
            skipped=clip(skipped, SUMMARY_LIMIT),
            interrupted=clip(run.interrupted, INLINE_LIMIT) if run.interrupted else "",
            started=timestamp(run.started),
            harness_version=clip(run.harness_version, INLINE_LIMIT),
            md_href=md_href,
            html_href=html_href,
        ))
    rows = []
    for gap in GAPS:
        cells = []
        for (run, _), (md_href, html_href) in zip(runs, hrefs, strict=True):
            result = run.gaps[gap.slug]
            # Nothing was probed on a skipped target: say so rather than "unknown".
            state = SKIPPED if run.target.skipped else INTERRUPTED if result.interrupted \
                else str(result.status)
            crash = None if run.target.skipped else crash_of(result)
            cells.append(MatrixCell(state, STATUS_WORD[state], STATUS_ICON[state],
                                    bool(result.error),
                                    f"{md_href}#gap-{gap.id}", f"{html_href}#gap-{gap.id}",
                                    crash.exit_status if crash else ""))
        rows.append(MatrixRow(gap.id, gap.title, str(gap.priority), tuple(cells)))
    starts = [run.started for run, _ in runs
              if isinstance(run.started, int | float) and run.started > 0]
    versions = sorted({clip(run.harness_version, INLINE_LIMIT) for run, _ in runs})
    return MatrixView(tuple(columns), tuple(rows),
                      started=timestamp(min(starts)) if starts else "",
                      harness=", ".join(versions))
