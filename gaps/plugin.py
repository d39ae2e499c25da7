"""The wsgaps pytest plugin: options, the ``gaps`` marker, probe collection, result writing.

Hooks stay thin; the work is in plain functions (``gaps.plan``, ``gaps.probe``,
``gaps.targets``, ``gaps.model``) that tests call directly.  Options here are the CLI's
with a ``gaps-`` prefix: ``--target`` is ``--gaps-target``, and so on.

Probes are collected by importing the probe package, not from files under the rootdir, so
an installed wsgaps collects them in any project: one item per check and target, marked
``gaps``.  Before the items "run", the run planner runs every selected check (all at once
where it can) and each item then reports its recorded result; only ``error`` fails an item.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import re
import resource
import signal
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from gaps import __version__
from gaps.gate import load_baselines, regressions, status_failures
from gaps.interrupt import Interrupted, deferred, interruptible
from gaps.manifest import ManifestError, switch_off
from gaps.model import (
    NOT_SELECTED,
    CheckResult,
    ResultsError,
    RunResult,
    TargetInfo,
    Verdict,
)
from gaps.options import (
    DEFAULT_TARGET,
    add_options,
    chosen_checks,
    out_problem,
    without_problem,
)
from gaps.plan import (
    CheckDone,
    Event,
    ResultsUnwritten,
    RunConfig,
    Selection,
    TargetRun,
    event_json,
    run_plan,
)
from gaps.probe import DEFAULT_PROBES, CheckDef, ProbeError, load_checks, load_keys
from gaps.targets import interrupting, resolve

REFERENCE_TARGETS = {"reference"}


def pytest_addoption(parser: pytest.Parser, pluginmanager: pytest.PytestPluginManager) -> None:
    # The testing helpers (fixtures, mock server) come with the plugin: registered here, so
    # that their own options and fixtures are known before the command line is parsed.
    from gaps import testing

    if not pluginmanager.is_registered(testing):
        pluginmanager.register(testing, "gaps.testing")
    group = parser.getgroup("wsgaps", "WebSocket gap analysis")
    add_options(group.addoption, prefix="gaps-")
    group.addoption("--gaps-events", default=None, metavar="FD",
                    help="write progress events as JSON lines to this open file descriptor "
                         "(how the wsgaps CLI follows a run)")
    parser.addini("gaps_reports", "render the reports at the end of the run (the wsgaps CLI "
                  "switches it off in its pytest run and renders once, after it)", type="bool",
                  default=True)


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from gaps import hookspecs

    pluginmanager.add_hookspecs(hookspecs)


@dataclass
class GapsSession(RunConfig):
    """The run configuration plus what only pytest needs: gates and their findings."""

    baselines: dict[str, RunResult] = field(default_factory=dict)
    fail_on: str | None = None
    gate_failures: list[str] = field(default_factory=list)
    results: dict[tuple[str, str], CheckResult] = field(default_factory=dict)
    report_lines: list[str] = field(default_factory=list)
    unwritten: list[str] = field(default_factory=list)  # results.json writes that failed
    # The signal that ended the run before its plan was done (the session exits 2).
    ended_by: str | None = None
    # Every check the probe set defines, by gap: what a gap not (wholly) selected lacks.
    all_checks: dict[str, list[CheckDef]] = field(default_factory=dict)


SESSION_KEY = pytest.StashKey[GapsSession]()


def _terminate_as_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def make_session(config: pytest.Config) -> GapsSession:
    """Resolve the targets named on the command line; UsageError with one line if one is bad."""
    scale = config.getoption("gaps_time_scale")
    seed = config.getoption("gaps_seed")
    session = GapsSession(time_scale=scale,
                          seed=seed if seed is not None else random.randrange(2**31))
    out = Path(config.getoption("gaps_out"))
    without = config.getoption("gaps_without")
    if without and (problem := without_problem(without)):
        raise pytest.UsageError(problem.replace("--without", "--gaps-without", 1))
    session.fail_on = config.getoption("gaps_fail_on")
    session.trust_declarations = config.getoption("gaps_trust_declarations")
    session.jobs = config.getoption("gaps_jobs")
    if session.jobs < 1:
        raise pytest.UsageError("--gaps-jobs must be at least 1")
    try:
        session.baselines = load_baselines(config.getoption("gaps_baseline"))
    except ResultsError as exc:
        raise pytest.UsageError(f"--gaps-baseline {exc}") from None
    ca_file = config.getoption("gaps_ca_file")
    if ca_file:
        try:
            session.ssl_context = ssl.create_default_context(cafile=ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise pytest.UsageError(f"--gaps-ca-file {ca_file}: {exc}") from None
    source = config.getoption("gaps_probes") or DEFAULT_PROBES
    try:
        keys = load_keys(source)  # the manifest keys the probes of this run declare
    except (ProbeError, ImportError) as exc:
        raise pytest.UsageError(f"--gaps-probes {source}: {exc}") from None
    for spec in config.getoption("gaps_target") or [DEFAULT_TARGET]:
        try:
            manifest = resolve(spec, keys=keys)
        except ManifestError as exc:
            raise pytest.UsageError(str(exc)) from None
        refusal = manifest.opt_in_refusal(spec, "--gaps-allow-remote (--allow-remote on the CLI)")
        if refusal and not config.getoption("gaps_allow_remote"):
            raise pytest.UsageError(refusal)
        extra: tuple[str, ...] = ()
        settings = dict(manifest.settings)
        if without:
            if manifest.name not in REFERENCE_TARGETS:
                raise pytest.UsageError(
                    f"--gaps-without applies to the reference target only, not {manifest.name}")
            extra = ("--without", without)
            settings["without"] = f"switched off with --without {without}"
            manifest = switch_off(manifest, {n.strip() for n in without.split(",")},
                                  settings["without"])
        info = TargetInfo(
            name=manifest.name, description=manifest.description,
            kind="managed" if manifest.managed else "url", url=manifest.url,
            settings=settings, hints=dict(manifest.hints), pinned=manifest.pinned or None,
        )
        run = RunResult(target=info, harness_version=__version__, time_scale=scale,
                        seed=session.seed, started=time.time())
        session.targets[manifest.name] = TargetRun(
            manifest.name, manifest, run, out / manifest.name / "results.json", extra)
    unmatched = sorted(set(session.baselines) - set(session.targets))
    if unmatched:
        raise pytest.UsageError(f"--gaps-baseline: no target named {unmatched[0]} in this run")
    if problem := out_problem(out, session.targets):
        raise pytest.UsageError(f"--gaps-out {out}: {problem}")
    return session


def raise_open_file_limit() -> int:
    """Raise the soft open-file limit to the hard one; load checks open many sockets."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


ORPHAN_POLL = 0.2  # seconds between checks that the wsgaps CLI is still there


def watch_parent() -> None:
    """Under the wsgaps CLI: if the CLI dies (even by SIGKILL), end this process at once.

    Nothing is written to the output folder after that; the guard processes see this
    process go and take every target's process group down with it.
    """
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(ORPHAN_POLL)
        os._exit(70)

    threading.Thread(target=watch, name="wsgaps-parent-watch", daemon=True).start()


ASYNCIO_LOOP_SCOPE = "asyncio_default_fixture_loop_scope"


def quiet_asyncio_loop_scope(config: pytest.Config) -> None:
    """In a gaps run, a project that leaves pytest-asyncio's fixture loop scope unset gets
    pytest-asyncio's own current behaviour ("fixture-scope", what unset means in 1.x), said
    explicitly, so its first ``pytest -m gaps`` starts without a deprecation warning about
    an option the README says it need not set.  A value the project sets is kept.  pytest
    has no public way to default another plugin's ini value: its ini cache is filled here,
    before pytest-asyncio's pytest_configure reads it (``tryfirst``)."""
    if not config.pluginmanager.hasplugin("asyncio") or not gaps_run(config):
        return
    try:
        unset = not config.getini(ASYNCIO_LOOP_SCOPE)
    except ValueError:  # a pytest-asyncio without that option
        return
    cache = getattr(config, "_inicache", None)
    if unset and isinstance(cache, dict):
        cache[ASYNCIO_LOOP_SCOPE] = "fixture-scope"


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    quiet_asyncio_loop_scope(config)
    config.addinivalue_line("markers", "gaps: a wsgaps probe")
    if config.getoption("gaps_events") is not None:
        watch_parent()
    if config.getoption("gaps_time_scale") <= 0:
        raise pytest.UsageError("--gaps-time-scale must be greater than 0")
    # The plugin is also installed as a pytest11 entry point, so it is loaded in every pytest
    # run of the environment: it stays inert until a run names a target or collects a probe.
    if config.getoption("gaps_target") or config.getoption("gaps_baseline"):
        get_session(config)


def get_session(config: pytest.Config) -> GapsSession:
    """The session's targets, resolved on first use (UsageError for a bad one)."""
    session = config.stash.get(SESSION_KEY, None)
    if session is None:
        session = config.stash[SESSION_KEY] = make_session(config)
        raise_open_file_limit()
        if (threading.current_thread() is threading.main_thread()
                and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL):
            # A terminated run tears down like Ctrl-C: targets stopped, results written.
            signal.signal(signal.SIGTERM, _terminate_as_interrupt)
    return session


# -- collection ----------------------------------------------------------------------------

MARK_EXPR = re.compile(r"\bgaps\b")


def gaps_run(config: pytest.Config) -> bool:
    """A run collects probes when it names a target or selects the ``gaps`` marker."""
    return bool(config.getoption("gaps_target")) or bool(
        MARK_EXPR.search(config.getoption("markexpr", "") or ""))


class ProbeSet(pytest.Collector):
    """All probes: one ``GapNode`` per probe module of the probe package."""

    def __init__(self, *, checks: dict[str, list[CheckDef]], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.checks = checks

    def collect(self) -> list[pytest.Item | pytest.Collector]:
        return [GapNode.from_parent(self, name=slug, checks=checks)
                for slug, checks in self.checks.items()]


class GapNode(pytest.Collector):
    """One gap: an item per check and target."""

    def __init__(self, *, checks: list[CheckDef], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.checks = checks

    def collect(self) -> list[pytest.Item | pytest.Collector]:
        labels = list(get_session(self.config).targets)
        return [CheckItem.from_parent(self, name=f"{d.name}[{label}]", defn=d, target=label)
                for d in self.checks for label in labels]


class CheckItem(pytest.Item):
    """One check on one target; its result comes from the run planner."""

    def __init__(self, *, defn: CheckDef, target: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.defn = defn
        self.target = target
        self.add_marker("gaps")
        # pytest's -k matches the check ID too (heartbeat.ping-answered), not only the name.
        self.extra_keyword_matches.add(defn.id)
        self.user_properties.append(("check", defn.id))

    def runtest(self) -> None:
        session = get_session(self.config)
        run = session.targets[self.target]
        if run.skipped:
            pytest.skip(f"{self.target} skipped: {run.skipped.splitlines()[0]}")
        result = session.results.get((self.target, self.defn.id))
        if result is None:
            pytest.fail(f"{self.defn.id}: not run (the run was interrupted)", pytrace=False)
        if result.verdict is Verdict.ERROR:
            pytest.fail(f"{self.defn.id}: the probe could not complete: {result.summary}",
                        pytrace=False)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, f"{self.defn.id}[{self.target}]"

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException],
                     style: Any = None) -> str:
        return str(excinfo.value)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config,
                                  items: list[pytest.Item]) -> None:
    """Add the probe items before ``-m``/``-k`` deselect what was not asked for."""
    if not gaps_run(config):
        return
    source = config.getoption("gaps_probes") or DEFAULT_PROBES
    try:
        checks = load_checks(source)
    except (ProbeError, ImportError) as exc:
        raise pytest.UsageError(f"--gaps-probes {source}: {exc}") from None
    root = ProbeSet.from_parent(session, name="wsgaps", nodeid="wsgaps",
                                path=Path(source).resolve() if Path(source).is_dir()
                                else config.rootpath, checks=checks)
    try:
        wanted = chosen_checks(checks, config.getoption("gaps_gap"),
                               config.getoption("gaps_check"))
    except ValueError as exc:
        raise pytest.UsageError(str(exc).replace("--", "--gaps-", 1)) from None
    get_session(config).all_checks = checks
    found = [item for gap in root.collect() for item in gap.collect()
             if wanted is None or item.defn.id in wanted]
    config.hook.pytest_collectreport(report=pytest.CollectReport(
        root.nodeid, "passed", None, found))
    items[:0] = found


def selection(items: list[pytest.Item]) -> Selection:
    """What the planner runs: the probe items still selected, by target and gap."""
    chosen: Selection = {}
    for item in items:
        if isinstance(item, CheckItem):
            gaps = chosen.setdefault(item.target, {})
            gaps.setdefault(item.defn.gap, []).append(item.defn)
    return chosen


@pytest.hookimpl(wrapper=True)
def pytest_runtestloop(session: pytest.Session):
    gaps_session = session.config.stash.get(SESSION_KEY, None)
    if gaps_session is not None and not session.config.option.collectonly:
        chosen = selection(session.items)
        mark_unselected(gaps_session, chosen)
        if chosen:
            def record(event: Event) -> None:
                if isinstance(event, CheckDone):
                    gaps_session.results[(event.target, event.result.id)] = event.result
                session.config.hook.pytest_gaps_event(config=session.config, event=event)

            def interrupted(signal_name: str) -> None:
                gaps_session.interrupted = signal_name  # before the cancel: see RunConfig
                interrupting()

            try:
                asyncio.run(interruptible(run_plan(gaps_session, chosen, record), interrupted))
            except Interrupted as exc:
                # The plan has unwound: targets stopped, unfinished gaps marked, results
                # written.  No item runs after it, and the session ends as interrupted
                # (exit status 2, set in pytest_sessionfinish).  Not by raising: pytest
                # would first format a traceback of every frame, tenths of a second on a
                # loaded machine, of the 2 s an interrupted run may take.
                gaps_session.ended_by = exc.signal_name
                session.items[:] = []
    return (yield)


def mark_unselected(gaps_session: GapsSession, chosen: Selection) -> None:
    """Record on each probed target's gaps which checks the run left out (``--gaps-gap``,
    ``--gaps-check``, ``-k``): a gap with none selected reads unknown, "not selected"."""
    for label, gaps in chosen.items():
        run = gaps_session.targets[label].run
        for slug, defs in gaps_session.all_checks.items():
            picked = {d.id for d in gaps.get(slug, [])}
            gap = run.gaps[slug]
            gap.unselected = [d.id for d in defs if d.id not in picked]
            if not picked:
                gap.note = NOT_SELECTED


def pytest_gaps_event(config: pytest.Config, event: Event) -> None:
    """``--gaps-events FD``: every event as one JSON line, flushed at once."""
    fd = config.getoption("gaps_events")
    if fd is None:
        return
    line = json.dumps(event_json(event), ensure_ascii=False) + "\n"
    with contextlib.suppress(OSError):  # a reader that went away must not end the run
        os.write(int(fd), line.encode())


def pytest_sessionfinish(session: pytest.Session) -> None:
    gaps_session = session.config.stash.get(SESSION_KEY, None)
    if gaps_session is None:
        return
    # Results and reports are written whole: a Ctrl-C (or the wsgaps CLI's SIGTERM after
    # one) meanwhile ends the session as interrupted once they are.
    received: list[str] = []
    with deferred(received):
        _finish(session, gaps_session)
    if gaps_session.ended_by or (received and session.exitstatus == pytest.ExitCode.OK):
        session.exitstatus = pytest.ExitCode.INTERRUPTED


def _finish(session: pytest.Session, gaps_session: GapsSession) -> None:
    unwritten = []
    for target in gaps_session.targets.values():
        if target.prepared:
            target.run.finished = time.time()
            if not target.write():
                assert target.write_error is not None
                unwritten.append(target.write_error)
                session.config.hook.pytest_gaps_event(
                    config=session.config, event=ResultsUnwritten(target.label,
                                                                  target.write_error))
            gaps_session.gate_failures += gate_failures(target.run, gaps_session)
    gaps_session.unwritten = unwritten
    render = session.config.getini("gaps_reports")
    if render or session.config.getoption("gaps_events") is None:
        # Not in the wsgaps CLI's child, which renders nothing: the CLI renders once, after
        # the run, with its templates compiled meanwhile; Jinja2 costs this process 0.2 s.
        from gaps.report.session import session_reports

        gaps_session.report_lines = session_reports(
            [t.path for t in gaps_session.targets.values() if t.prepared and not t.write_error],
            Path(session.config.getoption("gaps_out")), render=render)
    if gaps_session.gate_failures and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    if unwritten:
        # The run's record is lost: that fails the run, whatever the verdicts (exit 3).
        session.exitstatus = pytest.ExitCode.INTERNAL_ERROR


def gate_failures(run: RunResult, gaps_session: GapsSession) -> list[str]:
    """What ``--gaps-fail-on`` and ``--gaps-baseline`` object to in ``run``."""
    found = status_failures(run, gaps_session.fail_on)
    baseline = gaps_session.baselines.get(run.target.name)
    if baseline is not None:
        found += regressions(run, baseline)
    return found


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    gaps_session = config.stash.get(SESSION_KEY, None)
    if gaps_session is None:
        return
    color = terminalreporter.hasmarkup
    if not config.getoption("gaps_target") and any(
            t.prepared for t in gaps_session.targets.values()):
        terminalreporter.write_line(f"wsgaps: no --gaps-target given, so the default target "
                                    f"{DEFAULT_TARGET} was probed")
    # The wsgaps CLI (the reader of --gaps-events) prints its own tables from the results.
    tables = config.getoption("gaps_events") is None
    for target in gaps_session.targets.values():
        if target.prepared:
            if tables:
                from gaps.summary import render_summary

                terminalreporter.write(render_summary(target.run, color=color))
            if not target.write_error:
                terminalreporter.write_line(f"results: {target.path}")
    for line in gaps_session.gate_failures:
        terminalreporter.write_line(f"wsgaps gate: {line}", red=True)
    for line in gaps_session.unwritten:
        terminalreporter.write_line(f"wsgaps: results not written: {line}", red=True)
    for line in gaps_session.report_lines:
        terminalreporter.write_line(line)
    if gaps_session.ended_by:
        terminalreporter.write_line(f"wsgaps: interrupted ({gaps_session.ended_by}); the "
                                    "results and reports say which gaps did not finish",
                                    yellow=True)
