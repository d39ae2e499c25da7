"""Reports at the end of a ``pytest -m gaps`` run, the design card's CI path.

The plugin calls ``session_reports`` once the run's results files are written; it renders
the same reports as ``wsgaps run`` (each target's, and the matrix across the run's targets,
in the ``--gaps-out`` folder) and returns the lines to print, the last of which says where
the matrix is, or, when rendering failed or is switched off, how to render it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from gaps.model import ResultsError
from gaps.report.templates import ReportError
from gaps.report.write import shown, write_reports

PREFIX = "wsgaps"


def render_command(result_files: Sequence[Path], out_dir: Path) -> str:
    """The command that renders ``result_files`` into ``out_dir``, for people to type."""
    files = " ".join(shown(Path(p).absolute()) for p in result_files)
    return f"python -m gaps.report {files} --out {shown(Path(out_dir).absolute())}"


def session_reports(result_files: Sequence[Path], out_dir: Path, *,
                    render: bool = True) -> list[str]:
    """Render the reports of ``result_files`` into ``out_dir``; the lines to print.

    Never raises for a report that cannot be written: a pytest run's results are written
    already, so the lines then say why and how to render them later.  ``render=False`` (the
    ``wsgaps`` CLI's child runs, which render once for all targets) only says how.
    """
    files = [Path(p) for p in result_files if Path(p).is_file()]
    if not files:
        return []
    if not render:
        return [f"{PREFIX}: render the reports with: {render_command(files, out_dir)}"]
    try:
        written = write_reports(files, out_dir)
    except (ResultsError, ReportError, OSError) as exc:
        reason = " ".join(str(exc).split())
        return [f"{PREFIX}: reports not written ({reason}); render them with: "
                f"{render_command(files, out_dir)}"]
    # write_reports lists each target's reports first and the matrix last.
    return [f"{PREFIX} report: {shown(path)}" for path in written]
