"""The ``wsgaps`` command line (also ``python -m gaps``): run the probes and render reports.

Exit status of ``wsgaps run``:
  0  every target was probed (or skipped with a reason) and every probe completed
  1  a gate failed: a gap at or below --fail-on, or a check worse than in --baseline
  2  usage error: bad option, unknown target, invalid manifest or baseline
  3  a probe could not complete (verdict ``error``) or a target did not start
  130  interrupted
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from gaps.gate import load_baselines, regressions, status_failures
from gaps.manifest import ManifestError
from gaps.model import ResultsError, load_results
from gaps.options import add_options
from gaps.runner import TargetProgress, pytest_argv, run_target
from gaps.summary import summary_table
from gaps.targets import builtin_names, resolve

EXIT_OK, EXIT_GATE, EXIT_USAGE, EXIT_PROBE_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


def expand_targets(specs: list[str]) -> list[str]:
    """``all`` becomes every built-in target; duplicates are dropped, order kept."""
    names: list[str] = []
    for spec in specs or ["reference"]:
        for name in builtin_names() if spec == "all" else [spec]:
            if name not in names:
                names.append(name)
    return names


async def run_all(specs: list[str], args: argparse.Namespace, console: Console) -> list[
        TargetProgress]:
    progresses = [TargetProgress(spec) for spec in specs]
    semaphore = asyncio.Semaphore(max(1, args.jobs))
    with Progress(
        TextColumn("{task.fields[name]:<14}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[current]}"), TimeElapsedColumn(),
        console=console, transient=False,
    ) as bar:
        tasks = {p.spec: bar.add_task("", total=None, name=p.spec[:14], current="waiting")
                 for p in progresses}

        def refresh(p: TargetProgress) -> None:
            bar.update(tasks[p.spec], total=p.total, completed=p.done, current=p.current
                       + (f" ({len(p.failed)} failed)" if p.failed else ""))

        async def one(p: TargetProgress) -> None:
            async with semaphore:
                argv = pytest_argv(p.spec, {**vars(args), "out": str(args.out)})
                await run_target(argv, p, lambda: refresh(p))
                p.current = "done" if p.returncode in (0, 5) else f"exit {p.returncode}"
                refresh(p)

        await asyncio.gather(*(one(p) for p in progresses))
    return progresses


def cmd_run(args: argparse.Namespace) -> int:
    # Piped output (CI logs) gets a fixed width so tables are not squeezed to 80 columns.
    console = Console(width=None if sys.stdout.isatty() else 120)
    args.out = Path(args.out)
    specs = expand_targets(args.target)
    names = []
    try:
        for spec in specs:
            manifest = resolve(spec)
            refusal = manifest.opt_in_refusal(spec, "--allow-remote")
            if refusal and not args.allow_remote:
                raise ManifestError(refusal)
            names.append(manifest.name)
        baselines = load_baselines([str(p) for p in args.baseline])
        unmatched = sorted(set(baselines) - set(names))
        if unmatched:
            raise ManifestError(f"--baseline: no target named {unmatched[0]} in this run")
    except (ManifestError, ResultsError) as exc:
        print(f"wsgaps: {exc}", file=sys.stderr)
        return EXIT_USAGE
    started = time.monotonic()
    try:
        progresses = asyncio.run(run_all(specs, args, console))
    except KeyboardInterrupt:
        print("wsgaps: interrupted; results written so far are kept", file=sys.stderr)
        return EXIT_INTERRUPTED
    status = EXIT_OK
    result_files = []
    gate: list[str] = []
    for progress, name in zip(progresses, names, strict=True):
        path = args.out / name / "results.json"
        try:
            run = load_results(path)
        except ResultsError:
            console.print(f"[red]{name}: no results[/]; pytest output:", highlight=False)
            console.print(progress.tail(), markup=False, highlight=False)
            status = EXIT_USAGE if progress.returncode in (2, 4) else EXIT_PROBE_ERROR
            continue
        result_files.append(path)
        gate += status_failures(run, args.fail_on)
        if name in baselines:
            gate += regressions(run, baselines[name])
        console.print(summary_table(run))
        if run.target.skipped:
            console.print(f"{name} skipped: {run.target.skipped.splitlines()[0]}",
                          markup=False, highlight=False)
        if progress.returncode not in (0, 5):
            console.print(f"[red]{name}: probes failed to complete[/] "
                          f"({', '.join(progress.failed) or f'pytest exit {progress.returncode}'})",
                          highlight=False)
            status = max(status, EXIT_PROBE_ERROR)
    if result_files:
        from gaps.report import write_reports

        written = write_reports(result_files, args.out)
        for path in written:
            if path.name in ("index.html",) or path.suffix == ".html":
                console.print(f"report: {path}", highlight=False, soft_wrap=True)
    for line in gate:
        console.print(f"[red]gate:[/] {line}", highlight=False, soft_wrap=True)
    console.print(f"wall time {time.monotonic() - started:.1f} s", highlight=False)
    if status == EXIT_OK and gate:
        return EXIT_GATE
    return status


def cmd_report(args: argparse.Namespace) -> int:
    from gaps.report.__main__ import main as report_main

    return report_main([*map(str, args.results), "--out", str(args.out)] if args.out
                       else [*map(str, args.results)])


def cmd_targets(args: argparse.Namespace) -> int:
    for name in builtin_names():
        try:
            manifest = resolve(name)
        except ManifestError as exc:
            print(f"{name}: invalid manifest: {exc}")
            continue
        print(f"{name:<12} {manifest.description}")
    return EXIT_OK


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="wsgaps", description="WebSocket gap analysis: probe servers, render gap reports.",
        epilog=__doc__.split("\n", 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = top.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="probe targets and render their reports",
                         epilog=__doc__.split("\n", 2)[2],
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    add_options(run.add_argument)
    run.add_argument("--jobs", type=int, default=3, metavar="N",
                     help="targets probed at once (default 3)")
    run.set_defaults(func=cmd_run)
    report = sub.add_parser("report", help="render reports from results files "
                            "(same as python -m gaps.report)")
    report.add_argument("results", nargs="*", type=Path)
    report.add_argument("--out", type=Path, default=None)
    report.set_defaults(func=cmd_report)
    targets = sub.add_parser("targets", help="list the built-in targets")
    targets.set_defaults(func=cmd_targets)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if getattr(args, "time_scale", 1.0) <= 0:
        print("wsgaps: --time-scale must be greater than 0", file=sys.stderr)
        return EXIT_USAGE
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
