"""Each testing-utilities check tells both states apart on the reference.

The passing state is the docs' example tests passing against the reference with wsgaps's
helpers as shipped.  The failing ones break one helper inside the example run
(tests/broken_helpers.py, loaded there as a pytest plugin) and that helper's check must read
``fail`` naming the example test that caught it; a run past its wait and a selection that
runs nothing fail too.  A target that does not opt in to the example run (every real stack)
is decided by its manifest: a declared fact, a declared absence, or ``skip``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from pathlib import Path

import pytest

from gaps.manifest import Declared, Manifest, ManifestError, load_manifest
from gaps.model import Method, Verdict
from gaps.probe import ProbeContext
from gaps.targets import Instance
from tests.conftest import ROOT, reference_manifest
from wsgaps_probes import testing_utilities as tu

aio = pytest.mark.asyncio(loop_scope="session")
CHECKS = {"fixtures": tu.fixtures, "mock-server": tu.mock_server, "raw-client": tu.raw_client}


def context(manifest: Manifest | None = None) -> ProbeContext:
    """A context as the planner gives an ``OWN`` check: an instance that is not started."""
    manifest = manifest or reference_manifest()
    return ProbeContext(manifest, Instance(manifest), seed=1)


@pytest.fixture
def broken(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Break one helper in the example runs: ``broken("mock-server")``."""
    def choose(helper: str) -> None:
        monkeypatch.setattr(tu, "EXTRA_PLUGINS", ("tests.broken_helpers",))
        monkeypatch.setenv("WSGAPS_BROKEN_HELPER", helper)
        monkeypatch.setenv("PYTHONPATH", str(ROOT))  # the run's cwd is a temporary folder
    return choose


@aio
async def test_every_check_passes_with_the_helpers_as_shipped(monkeypatch) -> None:
    # As under the wsgaps CLI (its pytest runs with autoloading off), and with a caller's
    # settings that would select nothing: the run is hermetic.
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.setenv("PYTEST_ADDOPTS", "-k no_such_test")
    ctx = context()
    results = await asyncio.gather(*(fn(ctx) for fn in CHECKS.values()))
    for result in results:
        assert (result.verdict, result.method) == (Verdict.PASS, Method.OBSERVED), result
        assert result.evidence["status"] == 0
        assert all(o == "passed" for o in result.evidence["tests"].values()), result.evidence
    fixtures, mock, raw = results
    assert set(fixtures.evidence["tests"]) == {
        "test_echo_answers_each_message_in_order", "test_echo_keeps_binary_messages_binary",
        "test_server_answers_a_close_with_the_same_code",
        "test_server_is_running_and_its_output_is_captured"}
    assert len(mock.evidence["tests"]) == 6
    assert set(raw.evidence["tests"]) == {"test_raw_fragmented_message_comes_back_whole",
                                          "test_raw_unmasked_frame_is_a_protocol_error"}
    # The server under test is the target's own manifest, started by the fixture.
    assert str(reference_manifest().path) in fixtures.evidence["command"]


@aio
@pytest.mark.parametrize(("helper", "caught_by"), [
    ("fixtures", "test_echo_answers_each_message_in_order"),
    ("mock-server", "test_client_greets_and_collects_until_close"),
    ("raw-client", "test_raw_fragmented_message_comes_back_whole"),
])
async def test_a_broken_helper_fails_its_check(broken, helper: str, caught_by: str) -> None:
    broken(helper)
    result = await CHECKS[helper](context())
    assert (result.verdict, result.method) == (Verdict.FAIL, Method.OBSERVED), result
    assert f"first {caught_by}: failed" in result.summary, result.summary
    assert result.evidence["status"] == 1


@aio
async def test_a_run_past_its_wait_is_killed_and_fails(broken, monkeypatch) -> None:
    broken("hang")
    monkeypatch.setattr(tu, "SUITE_WAIT", 2.0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    result = await tu.mock_server(context())
    assert result.verdict is Verdict.FAIL, result
    assert "did not finish within 2.0 s (killed)" in result.summary
    assert result.evidence["status"] is None
    assert loop.time() - started < 10


def _our_pytest_children() -> list[int]:
    """Processes this one started that run pytest (the example runs)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            command = (stat.parent / "cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            continue
        if parent == os.getpid() and b"pytest" in command:
            found.append(int(stat.parent.name))
    return found


@aio
async def test_a_cancelled_run_is_killed_at_once(broken) -> None:
    """The check's budget ending (or Ctrl-C) cancels it: the run's process group goes too."""
    broken("hang")
    selection = tu.SELECTIONS["mock-server"]
    run = asyncio.create_task(tu.run_selection(
        context(), selection, tu.examples_dir(), ["test_client_greets_and_collects_until_close"],
        60))
    for _ in range(50):
        await asyncio.sleep(0.1)
        if _our_pytest_children():
            break
    assert _our_pytest_children()
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    for _ in range(20):
        if not _our_pytest_children():
            break
        await asyncio.sleep(0.1)
    assert not _our_pytest_children()


@aio
async def test_a_selection_that_runs_nothing_fails(monkeypatch) -> None:
    nothing = dataclasses.replace(tu.SELECTIONS["raw-client"], file="test_client_example.py")
    monkeypatch.setitem(tu.SELECTIONS, "raw-client", nothing)
    result = await tu.raw_client(context())
    assert result.verdict is Verdict.FAIL, result
    assert "no example test of" in result.summary and "exercises nothing" in result.summary


@aio
async def test_a_folder_name_never_selects_tests(tmp_path, monkeypatch) -> None:
    """Examples installed under a folder whose name contains "raw" (a -k expression would
    match it and select every test, or none)."""
    drawn = tmp_path / "drawings" / "examples"
    drawn.mkdir(parents=True)
    for example in (ROOT / "docs" / "examples").glob("test_*.py"):
        (drawn / example.name).write_text(example.read_text())
    monkeypatch.setattr(tu, "examples_dir", lambda: drawn)
    result = await tu.fixtures(context())
    assert result.verdict is Verdict.PASS, result
    assert len(result.evidence["tests"]) == 4


@aio
async def test_without_the_example_files_the_checks_skip(monkeypatch) -> None:
    monkeypatch.setattr(tu, "examples_dir", lambda: None)
    result = await tu.fixtures(context())
    assert result.verdict is Verdict.SKIP and "docs/examples" in result.summary


def test_the_examples_are_found_in_the_checkout() -> None:
    assert tu.examples_dir() == ROOT / "docs" / "examples"


# -- real stacks: the manifest decides ---------------------------------------------------------

def _without_helpers(manifest: Manifest, **changes: object) -> Manifest:
    echo = dataclasses.replace(manifest.endpoints["echo"], extra={})
    return dataclasses.replace(manifest, endpoints={**manifest.endpoints, "echo": echo},
                               **changes)


@aio
async def test_a_target_not_tested_with_gaps_testing_is_decided_by_its_manifest() -> None:
    plain = _without_helpers(reference_manifest())
    nothing = await tu.fixtures(context(plain))
    assert nothing.verdict is Verdict.SKIP
    assert "declares no testing_helpers on its echo endpoint" in nothing.summary
    stack = _without_helpers(
        reference_manifest(),
        absent={"mock-server": "example: no mock server in this stack"},
        declared={"testing-utilities.fixtures": Declared(
            "testing-utilities.fixtures", "pass", "example: stack/testing.py TestClient")})
    ctx = context(stack)
    fixtures, mock = await asyncio.gather(tu.fixtures(ctx), tu.mock_server(ctx))
    assert (fixtures.verdict, fixtures.method) == (Verdict.PASS, Method.DECLARED)
    assert fixtures.source == "example: stack/testing.py TestClient"
    assert (mock.verdict, mock.method) == (Verdict.FAIL, Method.DECLARED)
    assert mock.source == "example: no mock server in this stack"


def test_the_helpers_key_accepts_only_wsgaps_own(tmp_path: Path) -> None:
    text = (ROOT / "targets" / "reference" / "target.toml").read_text()
    assert 'testing_helpers = "gaps.testing"' in text
    manifest = tmp_path / "target.toml"
    manifest.write_text(text.replace('testing_helpers = "gaps.testing"',
                                     'testing_helpers = "mystack.testing"'))
    with pytest.raises(ManifestError, match=r"testing_helpers.*only helpers"):
        load_manifest(manifest)
