"""``wsgaps audit``: hold a hand-written gap analysis against what the wire showed.

Per catalog gap the analysis names, the audit puts the claimed status (read by
``gaps.analysis``) beside the measured one (from a results file) and gives its word:

- **confirmed**: the same status;
- **contradicted**: the opposite (claimed missing, measured pass, or the other way round);
- **more than claimed** / **less than claimed**: one step better or worse (partial between);
- **not measured**: nothing applicable was probed (unknown), or the target was skipped;
- **no claim**: the analysis gives no status that could be read (no Status line, an
  unknown word, or "Unknown").

The deciding evidence is the gap's capability checks with their verdicts and summaries and
a link to the gap in the target's report.  ``audit.json`` (schema ``AUDIT_SCHEMA_PATH``),
``audit.md`` and ``audit.html`` are written together; the target's gap report links the
audit and ``index.html`` lists it (``audit_link``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import quote

from gaps import __version__
from gaps.analysis import Analysis, AnalysisError, Claim, Section, read_file
from gaps.catalog import CHECKS, GAPS, Kind
from gaps.model import CheckResult, Method, ResultsError, RunResult, Status, Verdict
from gaps.report.safe import clip, one_line
from gaps.report.templates import (
    ReportError,
    TemplatesNotFound,
    html_environment,
    markdown_environment,
)
from gaps.report.view import (
    REPORT_HTML,
    REPORT_MD,
    STATUS_ICON,
    STATUS_WORD,
    SUMMARY_LIMIT,
    VERDICT_ICON,
    timestamp,
)

AUDIT_SCHEMA_VERSION = 1
AUDIT_SCHEMA_PATH = Path(__file__).resolve().parents[1] / "schema" / "audit.schema.json"
AUDIT_JSON, AUDIT_MD, AUDIT_HTML = "audit.json", "audit.md", "audit.html"
AUDIT_JSON_MAX = 4 * 1024 * 1024  # an audit.json read back for the report link
INLINE_LIMIT = 200
EVIDENCE_MAX = 20  # check results listed per gap (the catalog has at most 7 per gap)

EXIT_OK, EXIT_GATE, EXIT_INPUT, EXIT_WRITE = 0, 1, 2, 3


class Word(StrEnum):
    """The audit's word on one claim."""

    CONFIRMED = "confirmed"
    CONTRADICTED = "contradicted"
    MORE = "more than claimed"
    LESS = "less than claimed"
    NOT_MEASURED = "not measured"
    NO_CLAIM = "no claim"


WORD_ICON = {Word.CONFIRMED: "✅", Word.CONTRADICTED: "❌", Word.MORE: "⬆️",
             Word.LESS: "⬇️", Word.NOT_MEASURED: "❔", Word.NO_CLAIM: "\u2796"}  # heavy minus sign
# --fail-on: which words fail the audit's gate.
FAIL_ON = {"contradicted": (Word.CONTRADICTED,),
           "differs": (Word.CONTRADICTED, Word.MORE, Word.LESS)}
_RANK = {Status.MISSING: 0, Status.PARTIAL: 1, Status.PASS: 2}


def judge(claimed: Status | None, measured: Status | None) -> Word:
    """The audit's word for a claimed and a measured status (None: none read / skipped)."""
    if claimed is None or claimed is Status.UNKNOWN:
        return Word.NO_CLAIM
    if measured is None or measured is Status.UNKNOWN:
        return Word.NOT_MEASURED
    step = _RANK[measured] - _RANK[claimed]
    if step == 0:
        return Word.CONFIRMED
    if abs(step) == 2:
        return Word.CONTRADICTED
    return Word.MORE if step > 0 else Word.LESS


# --- the audit --------------------------------------------------------------------------

@dataclass(frozen=True)
class Evidence:
    """One capability check of the gap as the results hold it."""

    id: str
    verdict: str
    summary: str
    declared: bool  # taken from the manifest, not observed on the wire
    counted: bool  # counts in the gap's status (not an error, skip or failed optional)

    @property
    def icon(self) -> str:
        return VERDICT_ICON.get(Verdict(self.verdict), "")


@dataclass(frozen=True)
class Row:
    """One catalog gap the analysis has a heading for."""

    id: int
    slug: str
    title: str  # the catalog's title
    heading: str  # as the analysis wrote it
    number: int  # the heading's number as written
    line: int
    claimed: Status | None
    claim: Claim | None
    priority: str  # as written under the heading, "" if none
    summary_priority: str  # the summary list naming the gap, "" if none
    current_state: tuple[str, ...]
    more_bullets: int
    measured: Status | None  # None: the target was skipped
    measured_note: str  # why nothing was measured, or an error flag
    word: Word
    reason: str
    evidence: tuple[Evidence, ...]
    problems: tuple[str, ...]
    md_href: str  # the gap in the target's Markdown report, "" when there is none
    html_href: str

    @property
    def claimed_word(self) -> str:
        return STATUS_WORD[self.claimed] if self.claimed else "none read"

    @property
    def claimed_icon(self) -> str:
        return STATUS_ICON[self.claimed] if self.claimed else ""

    @property
    def measured_word(self) -> str:
        return STATUS_WORD[self.measured] if self.measured else STATUS_WORD["skipped"]

    @property
    def measured_icon(self) -> str:
        return STATUS_ICON[self.measured] if self.measured else STATUS_ICON["skipped"]

    @property
    def icon(self) -> str:
        return WORD_ICON[self.word]

    @property
    def css(self) -> str:
        return self.word.value.replace(" ", "-")


@dataclass(frozen=True)
class Unmapped:
    line: int
    text: str
    where: str  # "heading" or "summary"


@dataclass(frozen=True)
class Audit:
    analysis_name: str
    analysis_sha256: str
    analysis_title: str
    results_name: str
    results_sha256: str
    target: str
    target_version: str
    target_skipped: str
    run_started: float | None
    run_harness: str
    rows: tuple[Row, ...]
    unmapped: tuple[Unmapped, ...]
    duplicates: tuple[Unmapped, ...]  # a second heading for a gap already mapped
    not_covered: tuple[tuple[int, str], ...]  # catalog gaps the analysis has no heading for
    report_md: str  # the target's report, relative to the audit; "" when none
    report_html: str
    problems: tuple[str, ...] = field(default_factory=tuple)

    def count(self, word: Word) -> int:
        return sum(1 for row in self.rows if row.word is word)

    @property
    def counts(self) -> dict[str, int]:
        return {str(word): self.count(word) for word in Word}

    @property
    def started(self) -> str:
        return timestamp(self.run_started)

    def failing(self, fail_on: str | None) -> list[Row]:
        words = FAIL_ON.get(fail_on or "", ())
        return [row for row in self.rows if row.word in words]


def _evidence(check: CheckResult) -> Evidence:
    optional_failed = check.verdict not in (Verdict.PASS, Verdict.NON_STRICT) and \
        _optional(check.id)
    return Evidence(
        id=check.id,
        verdict=str(check.verdict),
        summary=clip(one_line(str(check.summary)), SUMMARY_LIMIT),
        declared=check.method is Method.DECLARED,
        counted=check.verdict not in (Verdict.ERROR, Verdict.SKIP) and not optional_failed,
    )


def _optional(check_id: str) -> bool:
    return CHECKS[check_id].optional


def _measurement(run: RunResult, slug: str) -> tuple[Status | None, str, tuple[Evidence, ...],
                                                       str]:
    """The measured status, why nothing was measured (or the error flag), the evidence and
    the reason sentence."""
    if run.target.skipped:
        first = str(run.target.skipped).strip().split("\n", 1)[0]
        note = clip(one_line(f"the target was skipped: {first}"), SUMMARY_LIMIT)
        return None, note, (), note
    result = run.gaps[slug]
    evidence = tuple(_evidence(c) for c in result.checks if c.kind is Kind.CAPABILITY)
    counted = [e for e in evidence if e.counted]
    unlisted = max(0, len(evidence) - EVIDENCE_MAX)
    evidence = evidence[:EVIDENCE_MAX]
    error = clip(one_line(result.error), SUMMARY_LIMIT) if result.error else ""
    if result.interrupted:
        # A status made from the checks done by the interruption is no measurement.
        note = clip(one_line(f"the run was interrupted before this gap finished "
                             f"({result.note or 'interrupted'})"), SUMMARY_LIMIT)
        return Status.UNKNOWN, note, evidence, note
    status = result.status
    if status is Status.UNKNOWN:
        if result.checks:
            why = "no capability check could decide"
            errored = sum(1 for e in evidence if e.verdict == Verdict.ERROR)
            skipped = sum(1 for e in evidence if e.verdict == Verdict.SKIP)
            parts = [f"{errored} erred" if errored else "", f"{skipped} skipped" if skipped
                     else ""]
            if any(parts):
                why += f" ({', '.join(p for p in parts if p)})"
        else:
            why = str(result.note) if result.note else "not probed"
        note = clip(one_line(why), SUMMARY_LIMIT)
        return status, note, evidence, note
    passed = sum(1 for e in counted if e.verdict in (Verdict.PASS, Verdict.NON_STRICT))
    if status is Status.PASS:
        reason = f"every counted capability check passes ({passed} of {len(counted)})"
    elif status is Status.MISSING:
        reason = f"none of the {len(counted)} counted capability checks passes"
    else:
        reason = f"{passed} of {len(counted)} counted capability checks pass"
    declared = sum(1 for e in counted if e.declared)
    if declared:
        reason += (f"; {declared} of them declared by the target's manifest, "
                   "not observed on the wire")
    if error:
        reason += "; some checks could not complete and do not count"
    if unlisted:
        reason += f"; {unlisted} more check results are not listed here"
    return status, error, evidence, reason


def _row(section: Section, analysis: Analysis, run: RunResult, md_base: str,
         html_base: str) -> Row:
    gap = section.gap
    assert gap is not None
    claimed = section.claim.status if section.claim else None
    measured, note, evidence, detail = _measurement(run, gap.slug)
    word = judge(claimed, measured)
    if section.claim is None:
        reason = f"no Status line under the heading; measured {_word(measured)}"
    elif claimed is None:
        reason = f"the Status line could not be read; measured {_word(measured)}"
    elif claimed is Status.UNKNOWN:
        reason = f"the analysis says unknown; measured {_word(measured)}"
    else:
        reason = f"claimed {claimed}, measured {_word(measured)}: {detail}"
    summary_priority = analysis.summary_priority(gap.slug)
    problems = list(section.problems)
    if section.priority and summary_priority and section.priority != summary_priority:
        problems.append(f"the Priority line says {section.priority} but the summary lists "
                        f"the gap under {summary_priority}")
    return Row(
        id=gap.id, slug=gap.slug, title=gap.title, heading=section.heading,
        number=section.number, line=section.line, claimed=claimed, claim=section.claim,
        priority=section.priority_text,
        summary_priority=str(summary_priority) if summary_priority else "",
        current_state=tuple(section.current_state), more_bullets=section.more_bullets,
        measured=measured, measured_note=note, word=word,
        reason=clip(one_line(reason), SUMMARY_LIMIT), evidence=evidence,
        problems=tuple(problems),
        md_href=f"{md_base}#gap-{gap.id}" if md_base else "",
        html_href=f"{html_base}#gap-{gap.id}" if html_base else "",
    )


def _word(measured: Status | None) -> str:
    return "nothing (target skipped)" if measured is None else str(measured)


def build_audit(analysis: Analysis, run: RunResult, *, results_name: str = "results.json",
                results_sha256: str = "", report_dir: str | None = "") -> Audit:
    """The audit of ``analysis`` against ``run``.

    ``report_dir``: the folder of the target's gap report relative to the audit's folder
    (``""`` when they are the same folder), or None when there is no report to link.
    """
    if report_dir is None:
        md_base = html_base = ""
    else:
        prefix = quote(report_dir.strip("/"), safe="/") + "/" if report_dir.strip("/") else ""
        md_base, html_base = prefix + REPORT_MD, prefix + REPORT_HTML
    mapped = analysis.mapped
    rows = [_row(mapped[gap.slug], analysis, run, md_base, html_base)
            for gap in GAPS if gap.slug in mapped]
    unmapped = [Unmapped(s.line, s.heading, "heading") for s in analysis.sections
                if s.gap is None]
    unmapped += [Unmapped(i.line, i.text, "summary") for i in analysis.summary
                 if i.gap is None]
    duplicates = tuple(Unmapped(s.line, s.heading, "heading") for s in analysis.sections
                       if s.gap is not None and mapped[s.gap.slug] is not s)
    problems = []
    listed: dict[str, str] = {}
    for item in analysis.summary:
        if item.gap is None:
            continue
        earlier = listed.setdefault(item.gap.slug, str(item.priority))
        if earlier != str(item.priority):
            problems.append(f"the summary lists {item.gap.title} under both {earlier} and "
                            f"{item.priority}")
    return Audit(
        analysis_name=analysis.name, analysis_sha256=analysis.sha256,
        analysis_title=analysis.title,
        results_name=clip(one_line(results_name), INLINE_LIMIT), results_sha256=results_sha256,
        target=clip(one_line(str(run.target.name)), INLINE_LIMIT),
        target_version=clip(one_line(str(run.target.version)), INLINE_LIMIT)
        if run.target.version else "",
        target_skipped=clip(one_line(str(run.target.skipped).strip().split("\n", 1)[0]),
                            SUMMARY_LIMIT) if run.target.skipped else "",
        run_started=run.started if isinstance(run.started, int | float) else None,
        run_harness=clip(one_line(str(run.harness_version)), INLINE_LIMIT),
        rows=tuple(rows), unmapped=tuple(sorted(unmapped, key=lambda u: u.line)),
        duplicates=duplicates,
        not_covered=tuple((gap.id, gap.title) for gap in GAPS if gap.slug not in mapped),
        report_md=md_base, report_html=html_base, problems=tuple(problems),
    )


# --- audit.json -------------------------------------------------------------------------

def audit_json(audit: Audit) -> dict[str, Any]:
    """The audit as JSON (``audit.schema.json``); deterministic for the same inputs."""
    def claim(row: Row) -> dict[str, Any]:
        c = row.claim
        return {
            "status": str(row.claimed) if row.claimed else None,
            "text": c.text if c else None,
            "icon": c.icon or None if c else None,
            "icon_status": str(c.icon_status) if c and c.icon_status else None,
            "word": c.word or None if c else None,
            "word_status": str(c.word_status) if c and c.word_status else None,
            "read": c.read or None if c else None,
            "priority": row.priority or None,
            "summary_priority": row.summary_priority or None,
            "current_state": list(row.current_state),
            "more_bullets": row.more_bullets,
        }

    return {
        "schema_version": AUDIT_SCHEMA_VERSION,
        "kind": "wsgaps-audit",
        "harness_version": __version__,
        "analysis": {"name": audit.analysis_name, "sha256": audit.analysis_sha256,
                     "title": audit.analysis_title},
        "results": {"name": audit.results_name, "sha256": audit.results_sha256,
                    "target": audit.target, "version": audit.target_version or None,
                    "skipped": audit.target_skipped or None, "started": audit.run_started,
                    "harness_version": audit.run_harness},
        "report": {"md": audit.report_md or None, "html": audit.report_html or None},
        "counts": audit.counts,
        "gaps": [{
            "id": row.id, "slug": row.slug, "title": row.title, "heading": row.heading,
            "number": row.number, "line": row.line,
            "claimed": claim(row),
            "measured": {"status": str(row.measured) if row.measured else None,
                         "note": row.measured_note or None},
            "audit": str(row.word),
            "reason": row.reason,
            "evidence": [{"id": e.id, "verdict": e.verdict, "summary": e.summary,
                          "method": "declared" if e.declared else "observed",
                          "counted": e.counted} for e in row.evidence],
            "problems": list(row.problems),
            "report": {"md": row.md_href or None, "html": row.html_href or None},
        } for row in audit.rows],
        "unmapped": [{"line": u.line, "text": u.text, "where": u.where}
                     for u in audit.unmapped],
        "duplicates": [{"line": u.line, "text": u.text} for u in audit.duplicates],
        "not_covered": [{"id": gap_id, "title": title} for gap_id, title in audit.not_covered],
        "problems": list(audit.problems),
    }


# --- rendering --------------------------------------------------------------------------

def render_audit_markdown(audit: Audit, *, index: str | None = None) -> str:
    """``audit.md``: the table, then per gap the claim, the measurement and the evidence.
    Every text from the analysis or the results is escaped, code-quoted or fenced."""
    from gaps.report.safe import MdSafe

    template = markdown_environment().get_template("audit.md.j2")
    return template.render(a=audit, index=index, br=MdSafe("  "), words=list(Word),
                           word_icon=WORD_ICON)


def render_audit_html(audit: Audit, *, index: str | None = None) -> str:
    """``audit.html``: self-contained like the gap report (no script, no resource)."""
    template = html_environment().get_template("audit.html.j2")
    return template.render(a=audit, index=index, words=list(Word))


def write_audit(audit: Audit, out_dir: Path, *, index: str | None = None) -> list[Path]:
    """Render every audit file first, then write them (atomically, each); return them."""
    from gaps.model import write_json_atomic
    from gaps.report.write import write_text

    markdown = render_audit_markdown(audit, index=index)
    html = render_audit_html(audit, index=index)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text(out_dir / AUDIT_MD, markdown)
    write_text(out_dir / AUDIT_HTML, html)
    write_json_atomic(out_dir / AUDIT_JSON, audit_json(audit))
    return [out_dir / AUDIT_MD, out_dir / AUDIT_HTML, out_dir / AUDIT_JSON]


# --- the link from the gap report and the index -----------------------------------------

@dataclass(frozen=True)
class AuditLink:
    """An audit found beside a target's reports, as the gap report and index show it."""

    md_href: str
    html_href: str
    analysis: str
    counts: str  # "2 confirmed · 3 contradicted · ..."
    contradicted: int
    stale: bool  # made against other results than the ones rendered now


def audit_link(folder: Path, results_file: Path | None) -> AuditLink | None:
    """The audit in ``folder``, if one was made there and is readable; None otherwise.

    ``audit.json`` is read like any untrusted file: bounded, and only its counts, analysis
    name and results digest are used.  ``stale`` when the digest is not that of
    ``results_file`` (the audit was made before the target's latest run).
    """
    path = folder / AUDIT_JSON
    try:
        with open(path, "rb") as handle:
            raw = handle.read(AUDIT_JSON_MAX + 1)
        if len(raw) > AUDIT_JSON_MAX:
            return None
        data = json.loads(raw.decode("utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("schema_version") != AUDIT_SCHEMA_VERSION \
            or data.get("kind") != "wsgaps-audit":
        return None
    counts = data.get("counts")
    counts = counts if isinstance(counts, dict) else {}
    shown = [f"{counts[w]} {w}" for w in map(str, Word)
             if isinstance(counts.get(w), int) and not isinstance(counts.get(w), bool)
             and counts[w] > 0]
    analysis = data.get("analysis")
    name = analysis.get("name") if isinstance(analysis, dict) else None
    results = data.get("results")
    digest = results.get("sha256") if isinstance(results, dict) else None
    stale = False
    if results_file is not None:
        try:
            stale = digest != hashlib.sha256(Path(results_file).read_bytes()).hexdigest()
        except OSError:
            stale = True
    contradicted = counts.get(str(Word.CONTRADICTED))
    return AuditLink(
        md_href=AUDIT_MD if (folder / AUDIT_MD).is_file() else "",
        html_href=AUDIT_HTML if (folder / AUDIT_HTML).is_file() else "",
        analysis=clip(one_line(name), INLINE_LIMIT) if isinstance(name, str) else "analysis",
        counts=" · ".join(shown) or "no gaps audited",
        contradicted=contradicted if isinstance(contradicted, int)
        and not isinstance(contradicted, bool) else 0,
        stale=stale,
    )


# --- the command ------------------------------------------------------------------------

EPILOG = f"""\
the audit's words: confirmed (same status), contradicted (the opposite: claimed missing and
measured pass, or the other way round), more than claimed / less than claimed (one step
apart, partial between), not measured (unknown: nothing applicable probed, or the target
skipped), no claim (no status could be read from the analysis).

exit status:
  {EXIT_OK}  audit written
  {EXIT_GATE}  audit written, and a gate failed: --fail-on and a claim it names, or --strict
     and a heading that maps to no gap, maps to one already mapped, or has no readable status
  {EXIT_INPUT}  bad input: the analysis is not a gap analysis in the expected shape (no
     numbered gap headings, none with a Status line, not Markdown text), or the results file
     is missing, corrupt or of a schema this wsgaps does not know; or bad usage
  {EXIT_WRITE}  the audit could not be written (file system error, templates missing)
"""


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("analysis", type=Path, metavar="ANALYSIS.md",
                        help="a hand-written gap analysis in Markdown (numbered heading per "
                             "gap, **Status** line with icon and word, **Priority** line)")
    parser.add_argument("results", type=Path, metavar="RESULTS.json",
                        help="one target's results.json from wsgaps run")
    parser.add_argument("--out", type=Path, default=None, metavar="DIR",
                        help="write DIR/audit.{md,html,json} (default: beside RESULTS.json, "
                             "where the target's gap report then links the audit)")
    parser.add_argument("--strict", action="store_true",
                        help="exit 1 when a heading maps to no catalog gap (or to one "
                             "already mapped) or a gap's status cannot be read")
    parser.add_argument("--fail-on", choices=sorted(FAIL_ON), default=None,
                        help="exit 1 when a claim is contradicted (contradicted), or when "
                             "any claim differs from the measurement (differs)")
    return parser


def parser(prog: str = "wsgaps audit") -> argparse.ArgumentParser:
    return add_arguments(argparse.ArgumentParser(
        prog=prog, description="Hold a hand-written gap analysis against a target's measured "
        "results: per gap the claimed and measured status, the audit's word and the deciding "
        "checks. Writes audit.md, audit.html and audit.json.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter))


def _fail(prog: str, message: str, status: int) -> int:
    print(f"{prog}: {' '.join(message.split())}", file=sys.stderr)
    return status


def _table(audit: Audit) -> list[str]:
    lines = [f"audit of {audit.analysis_name} against {audit.target}"
             + (f" ({audit.target_version})" if audit.target_version else "")]
    width = max([len(r.heading[:40]) for r in audit.rows] + [3])
    lines.append(f"{'#':>3}  {'gap':<{width}}  {'claimed':<9} {'measured':<9} audit")
    for row in audit.rows:
        lines.append(f"{row.id:>3}  {row.heading[:40]:<{width}}  "
                     f"{row.claimed_word.lower():<9} {row.measured_word.lower():<9} {row.word}")
    for item in audit.unmapped:
        lines.append(f"unmapped {item.where} at line {item.line}: {item.text[:80]}")
    for item in audit.duplicates:
        lines.append(f"duplicate heading at line {item.line}: {item.text[:80]}")
    lines.append(" · ".join(f"{n} {w}" for w, n in audit.counts.items() if n))
    return lines


def run_audit(args: argparse.Namespace, prog: str = "wsgaps audit") -> int:
    """The audit command on parsed arguments; returns the exit status (see ``EPILOG``)."""
    from gaps.report.write import load_run, shown, write_reports

    try:
        analysis = read_file(args.analysis)
    except AnalysisError as exc:
        return _fail(prog, str(exc), EXIT_INPUT)
    try:
        run = load_run(args.results)
        digest = hashlib.sha256(Path(args.results).read_bytes()).hexdigest()
    except ResultsError as exc:
        return _fail(prog, str(exc), EXIT_INPUT)
    except OSError as exc:
        return _fail(prog, f"{args.results}: cannot read ({exc.strerror or exc})", EXIT_INPUT)
    results_dir = Path(args.results).absolute().parent
    out_dir = Path(args.out).absolute() if args.out is not None else results_dir
    beside = out_dir.resolve() == results_dir.resolve()
    # Links into the target's gap report only where one was rendered beside the results;
    # the audit never renders a report set where there was none.
    has_report = any((results_dir / name).is_file() for name in (REPORT_MD, REPORT_HTML))
    report_dir: str | None = None
    if has_report:
        report_dir = "" if beside else Path(os.path.relpath(results_dir, out_dir)).as_posix()
    audit = build_audit(analysis, run, results_name=Path(args.results).name,
                        results_sha256=digest, report_dir=report_dir)
    try:
        written = write_audit(audit, out_dir)
    except TemplatesNotFound as exc:
        return _fail(prog, str(exc), EXIT_WRITE)
    except OSError as exc:
        return _fail(prog, f"cannot write the audit: {exc}", EXIT_WRITE)
    for line in _table(audit):
        print(line)
    for path in written:
        print(shown(path))
    if beside and has_report:
        # The target's gap report links the audit and the index lists it: render the report
        # set the results belong to again, as `python -m gaps.report` renders a reports
        # folder (every */results.json beside this one).  Rendering is deterministic, so
        # the other targets' reports come out as they were.
        siblings = sorted(results_dir.parent.glob("*/results.json"))
        try:
            for path in write_reports(siblings or [Path(args.results)]):
                if path.parent == results_dir or path.name == "index.html":
                    print(shown(path))
        except (ResultsError, ReportError, OSError) as exc:
            print(f"{prog}: audit written, but the reports were not rendered again "
                  f"({' '.join(str(exc).split())}); run python -m gaps.report", file=sys.stderr)
    status = EXIT_OK
    for row in audit.failing(args.fail_on):
        print(f"gate: gap {row.id} ({row.heading}): {row.word}: {row.reason}")
        status = EXIT_GATE
    if args.strict:
        strict = [f"line {u.line}: {u.where} {u.text!r} maps to no catalog gap"
                  for u in audit.unmapped]
        strict += [f"line {u.line}: a second heading for a gap already mapped: {u.text!r}"
                   for u in audit.duplicates]
        strict += [f"gap {row.id} ({row.heading}): {problem}" for row in audit.rows
                   for problem in row.problems if row.word is Word.NO_CLAIM]
        for line in strict:
            print(f"strict: {line}")
        if strict:
            status = EXIT_GATE
    return status


def main(argv: Sequence[str] | None = None, prog: str = "wsgaps audit") -> int:
    args = parser(prog).parse_args(argv)
    return run_audit(args, prog)


if __name__ == "__main__":
    sys.exit(main(prog="python -m gaps.report.audit"))
