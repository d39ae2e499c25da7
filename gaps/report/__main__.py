"""``python -m gaps.report [RESULTS.json ...] [--out DIR]``: render reports from results."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from gaps.model import ResultsError
from gaps.report.templates import ReportError, TemplatesNotFound
from gaps.report.write import shown, write_reports

EXIT_OK = 0
EXIT_WRITE = 1
EXIT_INPUT = 2

DEFAULT_GLOB = "reports/*/results.json"
PROBLEMS_SHOWN = 20  # lines of a results file's schema problems printed

EPILOG = f"""\
exit status:
  {EXIT_OK}  reports written
  {EXIT_WRITE}  a report could not be written (file system error, templates missing)
  {EXIT_INPUT}  bad input: a results file missing, corrupt, of another schema version or
     not valid under the shipped JSON Schema (one line per problem),
     no results files found, two targets clashing on one folder, or bad usage

python -m gaps.report audit ANALYSIS.md RESULTS.json [--out DIR] [--strict] [--fail-on ...]
  holds a hand-written gap analysis against the results (like wsgaps audit; see its --help)
"""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m gaps.report",
        description=(
            "Render wsgaps results into gap-report.md and gap-report.html per target, plus "
            "matrix.md and index.html across targets. Prints the paths written."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("results", nargs="*", type=Path, metavar="RESULTS.json",
                   help=f"results files to render (default: every {DEFAULT_GLOB})")
    p.add_argument("--out", type=Path, default=None, metavar="DIR",
                   help="write <DIR>/<target>/gap-report.{md,html} and <DIR>/matrix.md and "
                        "index.html (default: beside each results.json, the matrix in the "
                        "folder holding the target folders)")
    return p


def _fail(message: str, status: int) -> int:
    # One line whatever the message quotes (a results file's text can hold line breaks).
    print(f"gaps.report: {' '.join(message.split())}", file=sys.stderr)
    return status


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit status (documented in ``--help``).

    ``python -m gaps.report audit ANALYSIS.md RESULTS.json`` is ``wsgaps audit``.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["audit"]:
        from gaps.report.audit import main as audit_main

        return audit_main(argv[1:], prog="python -m gaps.report audit")
    args = parser().parse_args(argv)
    files = list(args.results) or sorted(Path().glob(DEFAULT_GLOB))
    if not files:
        print(f"gaps.report: no results files given and none match {DEFAULT_GLOB}",
              file=sys.stderr)
        return EXIT_INPUT
    try:
        written = write_reports(files, args.out)
    except TemplatesNotFound as exc:
        return _fail(str(exc), EXIT_WRITE)
    except ResultsError as exc:
        if not exc.problems:
            return _fail(str(exc), EXIT_INPUT)
        # Against the shipped JSON Schema: one line per problem, the first PROBLEMS_SHOWN.
        for line in exc.problems[:PROBLEMS_SHOWN]:
            _fail(line, EXIT_INPUT)
        if len(exc.problems) > PROBLEMS_SHOWN:
            path = exc.problems[0].split(": $", 1)[0]
            _fail(f"{path}: {len(exc.problems) - PROBLEMS_SHOWN} more problems not shown",
                  EXIT_INPUT)
        return EXIT_INPUT
    except ReportError as exc:
        return _fail(str(exc), EXIT_INPUT)
    except OSError as exc:
        return _fail(f"cannot write reports: {exc}", EXIT_WRITE)
    for path in written:
        print(shown(path))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
