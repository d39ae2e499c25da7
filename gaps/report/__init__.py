"""Gap reports from recorded results: Markdown and HTML per target, and a cross-target matrix.

Public API (the ``wsgaps`` CLI and ``python -m gaps.report`` both use it):

- ``write_reports(result_files, out_dir=None) -> list[Path]``: load, render and write all.
- ``render_markdown(run) -> str`` and ``render_html(run) -> str``: one target's report.
- ``render_matrix_markdown(runs) -> str`` and ``render_index_html(runs) -> str``: the matrix
  of ``(run, folder)`` pairs, ``folder`` being that target's report folder relative to it.
- ``load_run(path) -> RunResult``: a results file checked far enough to render.

Everything a target sent is untrusted: escaped in HTML, escaped or fenced in Markdown, and
bounded in size.  Rendering is deterministic: the same results give the same bytes.
"""

from gaps.report.render import (
    RunWithFolder,
    render_html,
    render_index_html,
    render_markdown,
    render_matrix_markdown,
)
from gaps.report.templates import ReportError, TemplatesNotFound, templates_dir
from gaps.report.view import REPORT_HTML, REPORT_MD
from gaps.report.write import INDEX_HTML, MATRIX_MD, load_run, write_reports

__all__ = [
    "INDEX_HTML",
    "MATRIX_MD",
    "REPORT_HTML",
    "REPORT_MD",
    "ReportError",
    "RunWithFolder",
    "TemplatesNotFound",
    "load_run",
    "render_html",
    "render_index_html",
    "render_markdown",
    "render_matrix_markdown",
    "templates_dir",
    "write_reports",
]
