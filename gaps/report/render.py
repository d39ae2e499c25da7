"""Rendering results to text: per-target Markdown and HTML, and the cross-target matrix.

Pure functions of their input: no clock, no environment, so the same results always render
to the same bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING
from urllib.parse import quote

from gaps.model import RunResult
from gaps.report.figures import figures_view
from gaps.report.safe import MdSafe
from gaps.report.templates import html_environment, markdown_environment
from gaps.report.view import LOG_LIMIT, matrix_view, report_view

if TYPE_CHECKING:
    from gaps.report.audit import AuditLink

# A run and its report folder, relative to where the matrix is written (e.g. "reference").
RunWithFolder = tuple[RunResult, str]

_MD_GLOBALS = {"br": MdSafe("  "), "log_limit": LOG_LIMIT}  # br: a Markdown hard line break


def render_markdown(run: RunResult, *, index: str | None = None,
                    audit: AuditLink | None = None) -> str:
    """The Markdown gap report of one target's run (``gap-report.md``).

    ``index``: a relative link to the matrix the report belongs to (``../matrix.md``), shown
    at the top; none when the report stands alone.  ``audit``: an audit made beside the
    report (``wsgaps audit``), linked at the top.

    Seed shape per gap (status icon and word, priority, description, current state from the
    evidence, recommended solution), conformance findings and figures beside it, evidence as
    bounded JSON and logs as a bounded tail in fenced blocks, then a summary by priority.
    Target text is Markdown-escaped, inline-code-quoted or fenced, and bounded.
    """
    template = markdown_environment().get_template("gap-report.md.j2")
    return template.render(r=report_view(run), index=index, audit=audit, **_MD_GLOBALS)


def render_html(run: RunResult, *, index: str | None = None,
                audit: AuditLink | None = None) -> str:
    """The self-contained HTML gap report of one target's run (``gap-report.html``).

    Same content as ``render_markdown``; inline CSS, no script and no external resource
    (a Content-Security-Policy forbids both); all target text autoescaped and bounded.
    Icons are inline SVG, so statuses read the same without any emoji font.  ``index``: a
    relative link to the matrix page (``../index.html``), or none; ``audit`` as above.
    """
    template = html_environment().get_template("gap-report.html.j2")
    return template.render(r=report_view(run), index=index, audit=audit, log_limit=LOG_LIMIT)


def render_matrix_markdown(runs: Sequence[RunWithFolder],
                           audits: Sequence[AuditLink | None] = ()) -> str:
    """``matrix.md``: gaps as rows, targets as columns in the order given, status icons.

    Each ``(run, folder)`` names the folder holding that target's reports relative to the
    matrix file; every cell links to ``<folder>/gap-report.md`` at the gap's anchor.
    ``audits``: per run in the same order, the audit made in its folder, or None.
    """
    template = markdown_environment().get_template("matrix.md.j2")
    return template.render(m=matrix_view(runs), fig=figures_view(runs),
                           audits=_aligned(runs, audits), **_MD_GLOBALS)


def render_summary_markdown(runs: Sequence[RunWithFolder]) -> str:
    """``summary.md``: the matrix without any link, for a GitHub Actions job summary (or
    any place the report folder is not beside it, where relative links go nowhere)."""
    template = markdown_environment().get_template("summary.md.j2")
    return template.render(m=matrix_view(runs), **_MD_GLOBALS)


def render_index_html(runs: Sequence[RunWithFolder],
                      audits: Sequence[AuditLink | None] = ()) -> str:
    """``index.html``: the matrix as a self-contained HTML page linking to each HTML report.

    Takes the same ``(run, folder)`` pairs and ``audits`` as ``render_matrix_markdown``.
    """
    template = html_environment().get_template("index.html.j2")
    return template.render(m=matrix_view(runs), fig=figures_view(runs),
                           audits=_aligned(runs, audits))


def _aligned(runs: Sequence[RunWithFolder], audits: Sequence[AuditLink | None]
             ) -> list[AuditLink | None]:
    """One entry per run: the audits given (padded with None), their links made relative
    to the matrix, like the report links (percent-encoded, under the run's folder)."""
    padded = [*audits, *[None] * (len(runs) - len(audits))][:len(runs)]
    aligned: list[AuditLink | None] = []
    for (_, folder), audit in zip(runs, padded, strict=True):
        base = quote(folder.strip("/"), safe="/")
        aligned.append(None if audit is None else replace(
            audit, md_href=f"{base}/{audit.md_href}" if audit.md_href else "",
            html_href=f"{base}/{audit.html_href}" if audit.html_href else ""))
    return aligned
