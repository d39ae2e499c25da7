"""Gap 12, testing utilities: what a developer tests WebSocket code with.

What a stack gives its users for testing is an API, not wire behaviour, so two methods meet
here (DESIGN.md gap 12):

- For a real stack the manifest decides (method ``declared``): its ``declared.<check ID>``
  fact, or the absence of the capability the check names (``absent.test-fixtures``,
  ``absent.mock-server``, ``absent.raw-client``), each with a source in the stack's code at
  its pinned version or its docs.  Nothing is started for it.
- For the reference the helpers are wsgaps's own (``gaps.testing``), and they are exercised
  for real: each check runs the docs' example tests (``docs/examples``, shipped in the wheel
  under ``share/wsgaps/docs/examples``) in a pytest subprocess, against this target's
  manifest, and the subprocess's result is the verdict.  A target opts in with
  ``[endpoints.echo] testing_helpers = "gaps.testing"`` (the only value: the helpers under
  test are wsgaps's); without it the check needs what the target lacks and its declaration
  decides, as above.

Checks, all [capability], each one example selection:

- ``fixtures``: ``test_server_example.py`` without its ``raw`` tests (the examples' own
  convention: a test whose name contains "raw" works at the frame level; the tests are
  named by node ID, never by ``-k``, which also matches folder names): the ``wsgaps_server``
  fixture starts the target from its manifest (``--gaps-server`` names the manifest's
  path), the ``wsgaps_client`` fixture's clients echo text and binary and close.
- ``mock-server``: ``test_client_example.py``: the ``wsgaps_mock`` scripts (expect, send,
  ping, drop, close, refuse) against a small websockets client.
- ``raw-client``: ``test_server_example.py``'s ``raw`` tests: ``raw_connect`` sends a
  fragmented message and an unmasked frame (``send_frame``, ``send_raw``,
  ``encode_frame``) to the target started by the fixture.

Pass when pytest ends with status 0 and at least one selected test passed; any failure or
error, no test collected, any other pytest status, or a run past ``SUITE_WAIT`` fails, with
each test's outcome (pytest's JUnit XML, bounded) and the end of the run's output
(``OUTPUT_LIMIT``) as evidence.  The run stops at the first failure (``-x``): that failure
decides, and a broken helper could make every later test wait out its own timeouts.

The run is bounded like a build step (``gaps.targets.run_bounded``): a process group of its
own, killed with everything in it at the end, its output read in bounded chunks.  It uses a
pytest configuration of its own (``-c`` a file written for the run, the cache plugin off),
drops ``PYTEST_ADDOPTS`` and ``PYTEST_PLUGINS`` from its environment and turns plugin
autoloading off, loading pytest-asyncio and the wsgaps plugin (which brings
``gaps.testing``) by name, so the verdict is the same from a checkout, from an installed
wheel and under the wsgaps CLI, whatever the caller's pytest settings and plugins.
``EXTRA_PLUGINS`` are loaded into the run with ``-p``: the harness's tests break one helper
that way (tests/broken_helpers.py) and the check must then read ``fail``.

Placement ``OWN``: the examples' fixtures start the server under test (a reference instance
per test, one at a time per check), so the planner starts none.  A run takes about 1 to 3 s
(pytest's start-up and a reference start per server test); ``SUITE_WAIT`` = 60 s (scaled)
bounds it.
"""

from __future__ import annotations

import ast
import asyncio
import os
import shlex
import sys
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gaps.manifest import FieldReader
from gaps.probe import OWN, Outcome, ProbeContext, check, failed, manifest_key, passed, skipped
from gaps.resources import shipped_dir
from gaps.targets import Cancel, run_bounded

SUITE_WAIT = 60.0  # seconds a pytest run of the examples may take (it takes 1 to 3 s)
OUTPUT_LIMIT = 16 * 1024  # bytes of the run's output kept as evidence (its end)
REPORT_LIMIT = 1024 * 1024  # bytes of the JUnit XML read; a longer one is not parsed
MESSAGE_LIMIT = 300  # characters of a failed test's message in the evidence
TESTS_SHOWN = 40
EXAMPLES_MARKER = "examples/test_server_example.py"  # under the shipped docs/ folder
HELPERS = "gaps.testing"
DROPPED_ENV = ("PYTEST_ADDOPTS", "PYTEST_PLUGINS")
# The plugins the examples need, loaded by name with autoloading off: the same set wherever
# the run happens (the wsgaps CLI's own pytest turns autoloading off, and an installed
# pytest-aiohttp or xdist must not change what the examples do).
PLUGINS = ("-p", "pytest_asyncio.plugin", "-p", "gaps.plugin")
# Plugins (module names) loaded into every run with -p: empty; the harness's tests set it to
# break one helper and show that the check then fails.
EXTRA_PLUGINS: tuple[str, ...] = ()

# The run's own configuration: what the examples need (pytest-asyncio in strict mode, a
# loop per test), nothing from the project the harness happens to run in.
INI = """[pytest]
asyncio_mode = strict
asyncio_default_fixture_loop_scope = function
asyncio_default_test_loop_scope = function
"""


@dataclass(frozen=True)
class Selection:
    """The example tests one check runs: a file, which of its tests (``raw``: those whose
    names contain "raw", the examples' own convention; None: all), whether they need the
    server under test (``--gaps-server``), and what they exercise (for the summary)."""

    file: str
    raw: bool | None
    needs_server: bool
    exercises: str

    def picks(self, name: str) -> bool:
        return self.raw is None or ("raw" in name) == self.raw

    def describe(self) -> str:
        which = {None: "", True: ", its raw tests", False: ", without its raw tests"}
        return f"{self.file}{which[self.raw]}"


SELECTIONS = {
    "fixtures": Selection("test_server_example.py", False, True,
                          "the wsgaps_server and wsgaps_client fixtures"),
    "mock-server": Selection("test_client_example.py", None, False,
                             "the wsgaps_mock scriptable mock server"),
    "raw-client": Selection("test_server_example.py", True, True,
                            "the raw-frame client (raw_connect, send_frame, send_raw)"),
}


def example_tests(path: Path) -> list[str]:
    """The test functions of an example file, in order (read with ``ast``, never imported
    here); [] when it cannot be read."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError):
        return []
    return [node.name for node in tree.body
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            and node.name.startswith("test")]


def _read_helpers(r: FieldReader, value: Any, fieldname: str) -> str:
    text = r.string(value, fieldname)
    if text != HELPERS:
        raise r.fail(fieldname, f"{text!r}: the only helpers the probe can exercise are "
                                f"wsgaps's own, {HELPERS!r}")
    return text


TESTING_HELPERS = manifest_key(
    "echo", "testing_helpers", _read_helpers,
    f"{HELPERS!r}: the target is tested with wsgaps's own helpers, and the testing-utilities "
    "probe runs the docs' example tests against it")


# -- the run -------------------------------------------------------------------------------

@dataclass
class SuiteRun:
    """One pytest run of an example selection: its status and what each test did."""

    argv: list[str]
    status: int | None  # None: still running when the wait ended (then killed)
    output: str
    tests: dict[str, str] = field(default_factory=dict)  # test name -> outcome
    report_problem: str = ""

    def count(self, outcome: str) -> int:
        return sum(1 for o in self.tests.values() if o.split(":", 1)[0] == outcome)

    def evidence(self) -> dict[str, Any]:
        shown = dict(list(self.tests.items())[:TESTS_SHOWN])
        if len(self.tests) > TESTS_SHOWN:
            shown["..."] = f"{len(self.tests) - TESTS_SHOWN} more tests"
        return {"status": self.status, "tests": shown,
                **({"report": self.report_problem} if self.report_problem else {}),
                "output": self.output, "command": shlex.join(self.argv)}


def examples_dir() -> Path | None:
    """The docs' example tests: ``docs/examples`` in a checkout, else the wheel's copy."""
    docs = shipped_dir("docs", EXAMPLES_MARKER)
    return None if docs is None else docs / "examples"


def _server_spec(ctx: ProbeContext) -> str:
    """What ``--gaps-server`` names: the manifest's file, or a built-in target's name."""
    path = ctx.manifest.path
    return str(path) if path is not None else ctx.manifest.name


def _read_report(path: Path) -> tuple[dict[str, str], str]:
    """Each test's outcome from pytest's JUnit XML (``passed``, ``skipped``, ``failed:
    message``, ``error: message``), or why there is none."""
    try:
        size = path.stat().st_size
    except OSError:
        return {}, "pytest wrote no JUnit XML report"
    if size > REPORT_LIMIT:
        return {}, f"the JUnit XML report is {size} bytes, over {REPORT_LIMIT}: not read"
    try:
        root = ET.fromstring(path.read_bytes())
    except ET.ParseError as exc:
        return {}, f"the JUnit XML report does not parse: {exc}"
    tests: dict[str, str] = {}
    for case in root.iter("testcase"):
        name = case.get("name", "?")
        outcome = "passed"
        for kind in ("failure", "error", "skipped"):
            found = case.find(kind)
            if found is not None:
                message = (found.get("message") or found.text or "").strip()
                word = {"failure": "failed", "error": "error", "skipped": "skipped"}[kind]
                outcome = f"{word}: {message[:MESSAGE_LIMIT]}" if message else word
                break
        tests[name] = outcome
    return tests, ""


async def run_selection(ctx: ProbeContext, selection: Selection, examples: Path,
                        names: list[str], wait: float) -> SuiteRun:
    """Run the example tests ``names`` of ``selection`` in a pytest subprocess, bounded by
    ``wait`` and in output; its process group is killed at the end however the wait ends."""
    with tempfile.TemporaryDirectory(prefix="wsgaps-testing-") as tmp:
        folder = Path(tmp)
        (folder / "pytest.ini").write_text(INI)
        report = folder / "report.xml"
        # -x: the first failure decides the verdict, and a broken helper may make every
        # later test wait out its own timeouts.
        # The tests by node ID, never by -k: a keyword also matches the names of the
        # folders above the file (an examples folder under "drawings" would match "raw").
        argv = [sys.executable, "-m", "pytest", "-q", "-x", "-c", str(folder / "pytest.ini"),
                "--rootdir", str(folder), "-p", "no:cacheprovider", *PLUGINS,
                *(arg for plugin in EXTRA_PLUGINS for arg in ("-p", plugin)),
                "--junitxml", str(report), *(f"{examples / selection.file}::{name}"
                                             for name in names)]
        if selection.needs_server:
            argv += ["--gaps-server", _server_spec(ctx)]
        env = {k: v for k, v in os.environ.items() if k not in DROPPED_ENV}
        env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"  # only PLUGINS, loaded by name
        cancel = Cancel()
        try:
            status, output = await asyncio.to_thread(
                run_bounded, argv, cwd=folder, env=env, timeout=wait, limit=OUTPUT_LIMIT,
                cancel=cancel)
        except BaseException:
            cancel.set()  # kills the run's process group; the worker thread returns
            raise
        tests, problem = _read_report(report) if status is not None else ({}, "")
    # The run's temporary folder is named as such, so runs compare equal in the evidence.
    shown = [arg.replace(str(folder), "$TMP") for arg in argv]
    return SuiteRun(shown, status, output, tests, problem)


def verdict_of(run: SuiteRun, selection: Selection, wait: float) -> Outcome:
    """Pass only for status 0 with at least one selected test passed and none failed."""
    evidence = run.evidence()
    what = f"the example tests of {selection.exercises} ({selection.describe()})"
    if run.status is None:
        return failed(f"{what} did not finish within {wait:.1f} s (killed)", **evidence)
    bad = {name: outcome for name, outcome in run.tests.items()
           if outcome.startswith(("failed", "error"))}
    if bad:
        name, outcome = next(iter(bad.items()))
        return failed(f"{len(bad)} of {len(run.tests)} of {what} failed; first {name}: "
                      f"{outcome}", **evidence)
    if run.status == 5 or (run.status == 0 and run.count("passed") == 0):
        return failed(f"no test of {what} ran: an empty selection exercises nothing",
                      **evidence)
    if run.status != 0:
        return failed(f"pytest ended with status {run.status} running {what} (1 tests "
                      "failed, 2 interrupted, 3 internal error, 4 usage error); see its output",
                      **evidence)
    if run.report_problem:
        return failed(f"pytest passed {what} but {run.report_problem}", **evidence)
    against = " against the target" if selection.needs_server else ""
    return passed(f"{run.count('passed')} of {what} passed{against}", **evidence)


async def exercise(ctx: ProbeContext, name: str) -> Outcome:
    selection = SELECTIONS[name]
    examples = examples_dir()
    if examples is None:
        return skipped("the docs' example tests (docs/examples) are neither in a checkout "
                       "beside this harness nor installed with it: nothing to run")
    names = [n for n in example_tests(examples / selection.file) if selection.picks(n)]
    if not names:
        return failed(f"no example test of {selection.exercises} in "
                      f"{examples / selection.file} ({selection.describe()}): an empty "
                      "selection exercises nothing")
    wait = ctx.plan_wait(SUITE_WAIT, name="suite")
    run = await run_selection(ctx, selection, examples, names, wait)
    return verdict_of(run, selection, wait)


BUDGET = SUITE_WAIT + 30  # the run, its start and the report


@check("testing-utilities.fixtures", needs=("echo.testing_helpers",), absent="test-fixtures",
       placement=OWN, budget=BUDGET)
async def fixtures(ctx: ProbeContext) -> Outcome:
    return await exercise(ctx, "fixtures")


@check("testing-utilities.mock-server", needs=("echo.testing_helpers",),
       absent="mock-server", placement=OWN, budget=BUDGET)
async def mock_server(ctx: ProbeContext) -> Outcome:
    return await exercise(ctx, "mock-server")


@check("testing-utilities.raw-client", needs=("echo.testing_helpers",), absent="raw-client",
       placement=OWN, budget=BUDGET)
async def raw_client(ctx: ProbeContext) -> Outcome:
    return await exercise(ctx, "raw-client")
