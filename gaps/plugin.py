"""The wsgaps pytest plugin: options, the ``gaps`` marker, target fixtures, result writing.

Hooks stay thin; the work is in plain functions (``gaps.targets``, ``gaps.probe``,
``gaps.model``) that tests call directly.  Options here are the CLI's with a ``gaps-``
prefix: ``--target`` is ``--gaps-target``, and so on.
"""

from __future__ import annotations

import contextlib
import random
import resource
import signal
import ssl
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import pytest
import pytest_asyncio

from gaps import __version__
from gaps.catalog import BY_SLUG, CHECKS
from gaps.gate import load_baselines, regressions, status_failures
from gaps.manifest import Manifest, ManifestError
from gaps.model import (
    CheckResult,
    GapResult,
    Method,
    ResultsError,
    RunResult,
    TargetInfo,
    Verdict,
)
from gaps.options import DEFAULT_TARGET, add_options
from gaps.probe import CheckDef, ProbeContext
from gaps.report.session import session_reports
from gaps.summary import render_summary
from gaps.targets import (
    Instance,
    TargetFailed,
    TargetSkipped,
    resolve,
    run_build,
    target_version,
)
from gaps.wire.client import handshake_ok

REFERENCE_TARGETS = {"reference"}


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser.getgroup("wsgaps", "WebSocket gap analysis").addoption, prefix="gaps-")
    parser.addini("gaps_reports", "render the reports at the end of the run (the wsgaps CLI "
                  "switches it off in its per-target runs and renders once)", type="bool",
                  default=True)


@dataclass
class TargetRun:
    """One target's state for the session: manifest, results and where they are written."""

    label: str
    manifest: Manifest
    run: RunResult
    path: Path
    extra_args: tuple[str, ...] = ()
    prepared: bool = False
    shared: Instance | None = None

    @property
    def skipped(self) -> str | None:
        return self.run.target.skipped

    def write(self) -> None:
        self.run.write(self.path)


@dataclass
class GapsSession:
    targets: dict[str, TargetRun] = field(default_factory=dict)
    time_scale: float = 1.0
    seed: int = 0
    ssl_context: ssl.SSLContext | None = None
    baselines: dict[str, RunResult] = field(default_factory=dict)
    fail_on: str | None = None
    gate_failures: list[str] = field(default_factory=list)
    report_lines: list[str] = field(default_factory=list)


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
    session.fail_on = config.getoption("gaps_fail_on")
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
    for spec in config.getoption("gaps_target") or [DEFAULT_TARGET]:
        try:
            manifest = resolve(spec)
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
        info = TargetInfo(
            name=manifest.name, description=manifest.description,
            kind="managed" if manifest.managed else "url", url=manifest.url,
            settings=settings, hints=dict(manifest.hints),
        )
        run = RunResult(target=info, harness_version=__version__, time_scale=scale,
                        seed=session.seed, started=time.time())
        session.targets[manifest.name] = TargetRun(
            manifest.name, manifest, run, out / manifest.name / "results.json", extra)
    unmatched = sorted(set(session.baselines) - set(session.targets))
    if unmatched:
        raise pytest.UsageError(f"--gaps-baseline: no target named {unmatched[0]} in this run")
    return session


def raise_open_file_limit() -> int:
    """Raise the soft open-file limit to the hard one; load checks open many sockets."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "gaps: a wsgaps probe")
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


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "gap_target" in metafunc.fixturenames:
        labels = list(get_session(metafunc.config).targets)
        metafunc.parametrize("gap_target", labels, indirect=True, scope="module", ids=labels)


def _prepare(target: TargetRun, scale: float) -> None:
    """Build (cached) and record the version, once per target per session."""
    if target.prepared:
        return
    target.prepared = True
    try:
        target.run.target.build = run_build(target.manifest, time_scale=scale)
    except TargetSkipped as exc:
        target.run.target.build, target.run.target.skipped = exc.build, str(exc)
        for gap in target.run.gaps.values():
            gap.note = f"target skipped: {str(exc).splitlines()[0]}"
        target.write()
        return
    target.run.target.version = target_version(target.manifest)
    target.write()


@pytest.fixture(scope="module")
def gap_target(request: pytest.FixtureRequest) -> TargetRun:
    session = request.config.stash[SESSION_KEY]
    target = session.targets[request.param]
    _prepare(target, session.time_scale)
    if target.skipped:
        pytest.skip(f"{target.label} skipped: {target.skipped.splitlines()[0]}")
    return target


def module_checks(module: ModuleType) -> list[CheckDef]:
    return [v for v in vars(module).values() if isinstance(v, CheckDef)]


class GapProbe:
    """One gap on one target instance: runs its checks and collects their results."""

    def __init__(self, target: TargetRun, gap: GapResult, ctx: ProbeContext) -> None:
        self.target = target
        self.gap = gap
        self.ctx = ctx

    async def run(self, defn: CheckDef) -> CheckResult:
        result = await defn(self.ctx)
        self.gap.checks = [c for c in self.gap.checks if c.id != defn.id] + [result]
        return result


async def start_instance(manifest: Manifest, scale: float,
                         extra_args: tuple[str, ...] = ()) -> Instance:
    """A fresh, ready instance of a managed target; TargetFailed (stopped) if never ready."""
    instance = Instance(manifest)
    instance.start(extra_args)
    try:
        await instance.wait_ready(manifest.ready_timeout * scale, handshake_ok)
    except BaseException:
        await instance.astop()
        raise
    return instance


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def gap_probe(request: pytest.FixtureRequest,
                    gap_target: TargetRun) -> AsyncIterator[GapProbe]:
    session = request.config.stash[SESSION_KEY]
    slug = request.module.GAP
    if slug not in BY_SLUG:
        raise pytest.UsageError(f"{request.module.__name__}: GAP {slug!r} is not in the catalog")
    target = gap_target
    gap = GapResult(slug, started=time.time())
    target.run.gaps[slug] = gap
    manifest = target.manifest
    try:
        if manifest.managed:
            instance = await start_instance(manifest, session.time_scale, target.extra_args)
        else:
            instance = target.shared or Instance(manifest)
            target.shared = instance
    except TargetFailed as exc:
        gap.checks = [
            CheckResult(d.id, Verdict.ERROR, f"target not ready: {exc}"[:500], Method.OBSERVED)
            for d in module_checks(request.module)
        ]
        gap.logs = exc.logs or None
        gap.finished = time.time()
        target.write()
        pytest.fail(f"{target.label}: {exc}", pytrace=False)
    ctx = ProbeContext(manifest, instance, time_scale=session.time_scale, seed=session.seed,
                       waits=target.run.waits, ssl_context=session.ssl_context)
    try:
        yield GapProbe(target, gap, ctx)
    finally:
        if instance.managed:
            await instance.astop()
            gap.logs = instance.logs() or None
        gap.finished = time.time()
        order = [d.id for d in module_checks(request.module)]
        gap.checks.sort(key=lambda c: order.index(c.id) if c.id in order else len(order))
        target.write()


def probe_test(defn: CheckDef):
    """The pytest test for one check: runs it and records it.  Only ``error`` fails the test."""

    @pytest.mark.asyncio(loop_scope="session")
    async def test(gap_probe: GapProbe) -> None:
        result = await gap_probe.run(defn)
        if result.verdict is Verdict.ERROR:
            pytest.fail(f"{defn.id}: the probe could not complete: {result.summary}",
                        pytrace=False)

    test.__name__ = "test_" + defn.id.split(".", 1)[1].replace("-", "_")
    test.__doc__ = CHECKS[defn.id].summary
    return test


def pytest_sessionfinish(session: pytest.Session) -> None:
    gaps_session = session.config.stash.get(SESSION_KEY, None)
    if gaps_session is None:
        return
    for target in gaps_session.targets.values():
        if target.prepared:
            target.run.finished = time.time()
            with contextlib.suppress(OSError):
                target.write()
            gaps_session.gate_failures += gate_failures(target.run, gaps_session)
    gaps_session.report_lines = session_reports(
        [t.path for t in gaps_session.targets.values() if t.prepared],
        Path(session.config.getoption("gaps_out")), render=session.config.getini("gaps_reports"))
    if gaps_session.gate_failures and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


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
    if not config.getoption("gaps_target"):
        terminalreporter.write_line(f"wsgaps: no --gaps-target given, so the default target "
                                    f"{DEFAULT_TARGET} was probed")
    for target in gaps_session.targets.values():
        if target.prepared:
            terminalreporter.write(render_summary(target.run, color=color))
            terminalreporter.write_line(f"results: {target.path}")
    for line in gaps_session.gate_failures:
        terminalreporter.write_line(f"wsgaps gate: {line}", red=True)
    for line in gaps_session.report_lines:
        terminalreporter.write_line(line)
