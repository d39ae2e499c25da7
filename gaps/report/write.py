"""Loading results files and writing every report file for them.

All inputs are loaded and checked before anything is written, so a bad file among several
leaves the output folder as it was.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from gaps.catalog import BY_SLUG, CHECKS
from gaps.model import ResultsError, RunResult, load_results, new_file_mode
from gaps.report.render import (
    render_html,
    render_index_html,
    render_markdown,
    render_matrix_markdown,
    render_summary_markdown,
)
from gaps.report.templates import ReportError
from gaps.report.view import REPORT_HTML, REPORT_MD

MATRIX_MD = "matrix.md"
SUMMARY_MD = "summary.md"  # the matrix without links, for a CI job summary
INDEX_HTML = "index.html"


def load_run(path: Path) -> RunResult:
    """A results file as a ``RunResult``, checked far enough to render.

    Raises ``ResultsError`` (one line, naming the file) when it is missing, not JSON, of
    another schema version, or names gaps or checks this wsgaps does not know (a file from
    another version, whose checks this one cannot place in the catalog).
    """
    run = load_results(path)
    for slug, gap in run.gaps.items():
        if slug not in BY_SLUG:
            raise ResultsError(f"{path}: unknown gap {slug!r} (results from another wsgaps?)")
        for check in gap.checks:
            if not isinstance(check.id, str) or check.id not in CHECKS \
                    or check.id.split(".", 1)[0] != slug:
                raise ResultsError(
                    f"{path}: unknown check {check.id!r} in gap {slug!r} "
                    "(results from another wsgaps?)"
                )
    return run


def shown(path: Path) -> str:
    """``path`` relative to the current folder when it lies inside it, for shorter output."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def folder_name(target_name: object) -> str:
    """A target name made safe as one path component: ``[A-Za-z0-9._-]``, no leading dot."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", str(target_name)).strip(".-")
    return name or "target"


def write_text(path: Path, text: str) -> None:
    """Write UTF-8 with LF line ends, atomically: readers never see half a report."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, new_file_mode())  # as any other file: mkstemp's 0600 is for secrets
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as out:
            out.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class _Placed:
    run: RunResult
    folder: Path  # where this target's reports go
    root: Path  # where the matrix holding this target goes


def _place(runs: Sequence[tuple[Path, RunResult]], out_dir: Path | None) -> list[_Placed]:
    placed = []
    for path, run in runs:
        if out_dir is None:
            placed.append(_Placed(run, path.parent, path.parent.parent))
        else:
            placed.append(_Placed(run, out_dir / folder_name(run.target.name), out_dir))
    seen: dict[Path, Path] = {}
    for (path, _), spot in zip(runs, placed, strict=True):
        if spot.folder in seen:
            raise ReportError(
                f"{seen[spot.folder]} and {path} would both write reports to {spot.folder}; "
                "render them into different --out folders"
            )
        seen[spot.folder] = path
    return placed


def write_reports(result_files: Sequence[Path], out_dir: Path | None = None) -> list[Path]:
    """Render every results file and the matrix across them; return the files written.

    Per target, ``gap-report.md`` and ``gap-report.html`` go to ``<out_dir>/<target>/``
    (the target name made path-safe), or with no ``out_dir`` beside its ``results.json``.
    ``matrix.md``, ``summary.md`` (the matrix without links, for a CI job summary) and
    ``index.html`` always go to ``out_dir``, or with no ``out_dir`` to the
    folder holding each target folder (one matrix per such folder).  Targets appear in the
    matrix sorted by folder; a file given twice counts once.  Returned paths are absolute.

    Raises ``ResultsError`` for a missing or unreadable results file and ``ReportError`` for
    no files, two targets clashing on one folder, or missing templates; nothing is written
    then.  ``OSError`` from writing propagates.
    """
    unique: dict[Path, Path] = {}
    for given in result_files:
        unique.setdefault(Path(given).resolve(), Path(given))
    if not unique:
        raise ReportError("no results files to render")
    # Errors name the file as given; placement uses absolute paths, so that "results.json"
    # in the current folder still has a named parent folder.
    runs = [(path.absolute(), load_run(path)) for path in unique.values()]
    out = Path(out_dir).absolute() if out_dir is not None else None
    placed = sorted(_place(runs, out), key=lambda p: (str(p.root), p.folder.name))
    rendered: list[tuple[Path, str]] = []
    # An audit made in a target's folder (wsgaps audit) is linked from its report and listed
    # in the index; it says so when it was made against other results than these.  (Imported
    # here: the audit module reads analyses, whose parser uses this package's escaping.)
    from gaps.report.audit import audit_link

    sources = {id(run): path for path, run in runs}
    audits = {spot.folder: audit_link(spot.folder, sources[id(spot.run)]) for spot in placed}
    for spot in placed:
        # Each target folder is a direct child of the folder holding its matrix.
        audit = audits[spot.folder]
        rendered.append((spot.folder / REPORT_MD,
                         render_markdown(spot.run, index=f"../{MATRIX_MD}", audit=audit)))
        rendered.append((spot.folder / REPORT_HTML,
                         render_html(spot.run, index=f"../{INDEX_HTML}", audit=audit)))
    for root in sorted({spot.root for spot in placed}, key=str):
        members = [(s.run, s.folder.name) for s in placed if s.root == root]
        found = [audits[s.folder] for s in placed if s.root == root]
        rendered.append((root / MATRIX_MD, render_matrix_markdown(members, found)))
        rendered.append((root / SUMMARY_MD, render_summary_markdown(members)))
        rendered.append((root / INDEX_HTML, render_index_html(members, found)))
    for path, text in rendered:
        write_text(path, text)
    return [path for path, _ in rendered]
