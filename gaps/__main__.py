"""The ``wsgaps`` command line (also ``python -m gaps``): run the probes and render reports.

Exit status of wsgaps run:
  0  every target was probed (or skipped with a reason) and every probe completed
  1  a gate failed: a gap at or below --fail-on, or a check worse than in --baseline
  2  usage error: bad option, unknown target, invalid manifest or baseline
  3  a probe could not complete (verdict error), a target did not start, or a
     results.json could not be written (its path and the reason are said)
  130  interrupted (Ctrl-C or SIGTERM; results written so far are kept)
  141  the reader of the output went away (e.g. piped into head), nothing printed
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
)
from rich.text import Text

from gaps import __version__
from gaps.gate import load_baselines, regressions, status_failures
from gaps.interrupt import Interrupted, interruptible
from gaps.manifest import ManifestError
from gaps.model import ResultsError, RunResult, load_results
from gaps.options import add_options, chosen_checks, out_problem, without_problem
from gaps.runner import RunProgress, TargetProgress, pytest_argv, run_probes
from gaps.summary import print_summary
from gaps.targets import builtin_names, cannot_run, resolve

EXIT_OK, EXIT_GATE, EXIT_USAGE, EXIT_PROBE_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: what the shell reports for a tool SIGPIPE ended


def _interrupt(signum: int, frame: object) -> None:
    """Outside the event loop (rendering): end where it is; files are written whole."""
    raise KeyboardInterrupt(signal.Signals(signum).name)


def expand_targets(specs: list[str]) -> list[str]:
    """``all`` becomes every built-in target; duplicates are dropped, order kept."""
    names: list[str] = []
    for spec in specs or ["reference"]:
        for name in builtin_names() if spec == "all" else [spec]:
            if name not in names:
                names.append(name)
    return names


LONG_WAIT = 10.0  # seconds: a gap whose longest check may take this long is shown waiting
TICK = 1.0  # seconds between refreshes of the live display while nothing else happens
BUILD_QUIET = 2.0  # seconds a build runs before a log line says so (cached ones take less)
BUILD_NOTE = 30.0  # seconds between "still building" lines in a log


def clock(seconds: float) -> str:
    """A time since the start of the run, as each progress line begins: ``  41.2 s``."""
    return f"{seconds:7.1f} s"


class RunClock(ProgressColumn):
    """Time from the start of the run (not from when the bar was drawn), stopped when the
    target's last gap is done: so every row and every log line counts on one clock."""

    def __init__(self, started: float, progress: RunProgress) -> None:
        super().__init__()
        self.started, self.progress = started, progress

    def render(self, task: Task) -> Text:
        target = self.progress.targets[task.fields["name"]]
        end = target.finished if task.finished and target.finished else time.monotonic()
        return Text(f"{end - self.started:.0f} s", style="progress.elapsed")


async def run_all(specs: list[str], names: list[str], args: argparse.Namespace,
                  console: Console, started: float | None = None) -> RunProgress:
    """One pytest process for every target.  On a terminal, a progress bar per target that
    shows its build while it builds (elapsed) and then names the gaps still waiting on a
    long check; elsewhere (CI logs, ``make report`` into a file) a line per build and per
    finished gap, as it happens.  Times count from ``started``, the start of the run."""
    started = time.monotonic() if started is None else started
    progress = RunProgress({name: TargetProgress(name) for name in names})
    options = {**vars(args), "out": str(args.out)}
    width = max(len(name) for name in names)
    live = console.is_terminal
    printed: set[tuple[str, str]] = set()
    noted: dict[str, float] = {}  # target -> build seconds at its last "building" line

    def say(at: float, text: str) -> None:
        console.print(f"{clock(at - started)}  {text}", highlight=False, markup=False)

    with Progress(
        TextColumn(f"{{task.fields[name]:<{width}}}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[current]}"), RunClock(started, progress),
        console=console, transient=False, disable=not live,
    ) as bar:
        tasks = {name: bar.add_task("", total=None, name=name, current="waiting")
                 for name in names}

        def refresh() -> None:
            now = time.monotonic()
            for name, p in progress.targets.items():
                building = p.building(now)
                waiting = [f"{gap} (up to {wait:.0f} s)" for gap, wait in p.running.items()
                           if wait >= LONG_WAIT]
                current = f"building ({building:.0f} s)" if building is not None \
                    else p.current if not waiting else "waiting: " + ", ".join(waiting)
                bar.update(tasks[name], completed=p.done, current=current
                           + (f" ({len(p.errors)} errors)" if p.errors else ""))
                if live:
                    continue
                _log_build(name, p, now, noted, say)
                for event in p.gaps_done:
                    key = (name, str(event.get("gap")))
                    if key not in printed:
                        printed.add(key)
                        say(float(event.get("at", now)),
                            f"{name} {event.get('gap')}: {event.get('status')}"
                            f"{' (error)' if event.get('error') else ''} in "
                            f"{event.get('seconds', 0):.1f} s")

        async def tick() -> None:
            while True:
                await asyncio.sleep(TICK)
                refresh()

        # The CLI waits while the probes run: meanwhile it gets the report templates ready.
        warm = asyncio.ensure_future(asyncio.to_thread(_preload_reports))
        ticker = asyncio.ensure_future(tick())
        def interrupted(signal_name: str) -> None:
            progress.interrupted = signal_name  # run_probes passes it on to the child

        try:
            await interruptible(
                run_probes(lambda fd: pytest_argv(specs, options, fd), progress, refresh),
                interrupted)
        except Interrupted as exc:
            progress.interrupted = exc.signal_name
        finally:
            ticker.cancel()
            await asyncio.gather(ticker, return_exceptions=True)
        await warm
        for name, p in progress.targets.items():
            p.current = "skipped" if p.skipped else "done"
            p.finished = p.finished or time.monotonic()
            bar.update(tasks[name], total=p.done or 1, completed=p.done or 1)
        refresh()
    return progress


BUILD_LINE = {"built": "built in {:.1f} s", "cached": "build cached (inputs unchanged)",
              "failed": "build failed after {:.1f} s", "not-run": "not built: a tool it needs "
              "is missing"}


def _log_build(name: str, p: TargetProgress, now: float, noted: dict[str, float],
               say: Callable[[float, str], None]) -> None:
    """Log lines of one target's build: once it has run BUILD_QUIET seconds, every
    BUILD_NOTE seconds after that, and what became of it when it is done (a target without
    a build step says nothing).  ``noted``: per target, the build seconds at its last line,
    and ``inf`` once its end was said."""
    if p.build_started is None or noted.get(name) == math.inf:
        return
    building = p.building(now)
    if building is None:
        noted[name] = math.inf
        line = BUILD_LINE.get(p.build or "")
        if line is not None and p.build_done is not None:
            say(p.build_done, f"{name}: {line.format(p.build_done - p.build_started)}")
        return
    last = noted.get(name)
    if last is None and building >= BUILD_QUIET:
        noted[name] = building
        say(p.build_started, f"{name}: building")
    elif last is not None and building - last >= BUILD_NOTE:
        noted[name] = building
        say(now, f"{name}: still building ({building:.0f} s so far)")


def _preload_reports() -> None:
    from gaps.report.templates import preload

    preload()


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
        if args.without and (problem := without_problem(args.without)):
            raise ManifestError(problem)
        if args.gap or args.check:
            from gaps.probe import DEFAULT_PROBES, ProbeError, load_checks

            source = args.probes or DEFAULT_PROBES
            try:
                chosen_checks(load_checks(source), args.gap, args.check)
            except (ProbeError, ImportError) as exc:
                raise ManifestError(f"--probes {source}: {exc}") from None
            except ValueError as exc:
                raise ManifestError(str(exc)) from None
        if problem := out_problem(args.out, names):
            raise ManifestError(f"--out {args.out}: {problem}")
    except (ManifestError, ResultsError) as exc:
        print(f"wsgaps: {exc}", file=sys.stderr)
        return EXIT_USAGE
    started = time.monotonic()
    # SIGTERM ends a run like Ctrl-C.  While the probes run, both reach the event loop
    # (gaps.interrupt): the pytest child tears its targets down, the results say what did
    # not finish, and the reports are rendered from them.  Outside the loop (rendering),
    # either ends the run where it is: each file is written whole or not at all.
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return _run_and_report(specs, names, baselines, args, console, started)
    except KeyboardInterrupt as exc:
        print(interrupted_line(str(exc) or "SIGINT"), file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def interrupted_line(signal_name: str) -> str:
    """The one line an interrupted run ends with."""
    return f"wsgaps: interrupted ({signal_name}); results written so far are kept"


def _run_and_report(specs: list[str], names: list[str], baselines: dict[str, RunResult],
                    args: argparse.Namespace, console: Console, started: float) -> int:
    progress = asyncio.run(run_all(specs, names, args, console, started))
    status = EXIT_OK
    result_files = []
    gate: list[str] = []
    for name in names:
        path = args.out / name / "results.json"
        if unwritten := progress.targets[name].unwritten:
            # Whatever the file holds is not this run's: no summary, no report from it.
            console.print(f"wsgaps: {name}: results not written: {unwritten}", style="red",
                          markup=False, highlight=False, soft_wrap=True)
            status = max(status, EXIT_PROBE_ERROR)
            continue
        try:
            run = load_results(path)
        except ResultsError:
            if progress.interrupted:
                continue  # interrupted before the target was built: nothing to show
            console.print(f"[red]{name}: no results[/]; pytest output:", highlight=False)
            console.print(progress.tail(), markup=False, highlight=False)
            status = max(status, EXIT_USAGE if progress.returncode in (2, 4)
                         else EXIT_PROBE_ERROR)
            continue
        result_files.append(path)
        gate += status_failures(run, args.fail_on)
        if name in baselines:
            gate += regressions(run, baselines[name])
        if progress.interrupted:
            # One line, not the table: an interrupted run should be over at once, and the
            # reports rendered next show every gap.
            unfinished = sum(1 for g in run.gaps.values() if g.interrupted)
            console.print(f"{name}: interrupted; {unfinished} "
                          f"{'gap' if unfinished == 1 else 'gaps'} did not finish"
                          if unfinished else f"{name}: every gap had finished",
                          markup=False, highlight=False)
            continue
        print_summary(console, run)
        errors = progress.targets[name].errors
        if errors:
            console.print(f"[red]{name}: probes failed to complete[/] ({', '.join(errors)})",
                          highlight=False)
            status = max(status, EXIT_PROBE_ERROR)
    if progress.returncode not in (0, 1, 5) and status == EXIT_OK and not progress.interrupted:
        console.print(f"[red]pytest exited with status {progress.returncode}[/]; its output:",
                      highlight=False)
        console.print(progress.tail(), markup=False, highlight=False)
        status = EXIT_PROBE_ERROR
    if result_files:
        from gaps.report import write_reports

        written = write_reports(result_files, args.out)
        for path in written:
            if path.suffix == ".html":
                console.print(f"report: {path}", highlight=False, soft_wrap=True)
        for path in written:
            if path.name == "matrix.md":
                console.print(f"matrix: {path}", highlight=False, soft_wrap=True)
    for line in gate:
        console.print(f"[red]gate:[/] {line}", highlight=False, soft_wrap=True)
    console.print(f"wall time {time.monotonic() - started:.1f} s", highlight=False)
    if progress.interrupted:
        print(interrupted_line(progress.interrupted), file=sys.stderr)
        return EXIT_INTERRUPTED
    if status == EXIT_OK and gate:
        return EXIT_GATE
    return status


def cmd_report(args: argparse.Namespace) -> int:
    from gaps.report.__main__ import main as report_main

    return report_main([*map(str, args.results), "--out", str(args.out)] if args.out
                       else [*map(str, args.results)])


def cmd_audit(args: argparse.Namespace) -> int:
    from gaps.report.audit import run_audit

    return run_audit(args, "wsgaps audit")


def cmd_targets(args: argparse.Namespace) -> int:
    """Each built-in target, whether it can run on this machine (and if not, why), and what
    it is."""
    for name in builtin_names():
        try:
            manifest = resolve(name)
        except ManifestError as exc:
            print(f"{name}: invalid manifest: {exc}")
            continue
        why = cannot_run(manifest)
        print(f"{name:<12} {'cannot run' if why else 'runs here':<10}  {manifest.description}"
              + (f" ({why.splitlines()[0]})" if why else ""))
    return EXIT_OK


def probed_gaps(source: str | None = None) -> list[str]:
    """One line per gap of the catalog: number, name, priority, and what this version's
    probes (or ``source``'s) check of it, or that nothing probes it yet.  The README points
    here instead of listing the probed gaps, so it stays true as probes are added."""
    from gaps.catalog import GAPS
    from gaps.probe import DEFAULT_PROBES, load_checks

    checks = load_checks(source or DEFAULT_PROBES)
    width = max(len(gap.slug) for gap in GAPS)
    lines = []
    for gap in GAPS:
        defined = {d.id for d in checks.get(gap.slug, [])}
        if not defined:
            state = "not probed by this version"
        else:
            catalog = [c.id for c in gap.checks]
            state = f"probed: {sum(1 for c in catalog if c in defined)} of {len(catalog)} checks"
            if missing := [c for c in catalog if c not in defined]:
                state += f" (not yet: {', '.join(missing)})"
        lines.append(f"{gap.id:>2}  {gap.slug:<{width}}  {gap.priority!s:<6}  {state}")
    return lines


def cmd_gaps(args: argparse.Namespace) -> int:
    """The fourteen gaps and which of them this version probes."""
    from gaps.probe import ProbeError

    try:
        lines = probed_gaps(args.probes)
    except (ProbeError, ImportError) as exc:
        print(f"wsgaps: --probes {args.probes}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    for line in lines:
        print(line)
    return EXIT_OK


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="wsgaps", description="WebSocket gap analysis: probe servers, render gap reports.",
        epilog=__doc__.split("\n", 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter)
    top.add_argument("--version", action="version", version=f"wsgaps {__version__}")
    sub = top.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="probe targets and render their reports",
                         epilog=__doc__.split("\n", 2)[2],
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    add_options(run.add_argument)
    run.set_defaults(func=cmd_run)
    report = sub.add_parser("report", help="render reports from results files "
                            "(same as python -m gaps.report)")
    report.add_argument("results", nargs="*", type=Path)
    report.add_argument("--out", type=Path, default=None)
    report.set_defaults(func=cmd_report)
    from gaps.report.audit import EPILOG as AUDIT_EPILOG
    from gaps.report.audit import add_arguments as audit_arguments

    audit = sub.add_parser("audit", help="hold a hand-written gap analysis against a "
                           "target's results (same as python -m gaps.report audit)",
                           epilog=AUDIT_EPILOG,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    audit_arguments(audit)
    audit.set_defaults(func=cmd_audit)
    targets = sub.add_parser("targets", help="list the built-in targets")
    targets.set_defaults(func=cmd_targets)
    gaps = sub.add_parser("gaps", help="list the fourteen gaps and which this version probes")
    gaps.add_argument("--probes", default=None, metavar="PACKAGE|DIR",
                      help="another probe set's checks instead of the built-in probes")
    gaps.set_defaults(func=cmd_gaps)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if getattr(args, "time_scale", 1.0) <= 0:
        print("wsgaps: --time-scale must be greater than 0", file=sys.stderr)
        return EXIT_USAGE
    if getattr(args, "jobs", 1) < 1:
        print("wsgaps: --jobs must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    try:
        status = args.func(args)
        sys.stdout.flush()  # here, where a closed pipe is caught, not at the interpreter's exit
        return status
    except KeyboardInterrupt:  # wsgaps report, targets: nothing to keep, nothing to say
        print("wsgaps: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader of our output went away (``wsgaps targets | head -1``): end quietly, as
        # a tool killed by SIGPIPE would, with its status.  Standard output is pointed at
        # devnull first, or the interpreter's final flush would raise (and print) again.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE


if __name__ == "__main__":
    sys.exit(main())
