"""Every built-in target's verdicts agree with its expected.toml (researched from its source).

All built-in targets are probed in one run, the way a user runs the matrix (``pytest -m gaps``
with every ``--gaps-target``), so the run costs about its longest wait, not the sum of the
targets' waits; then each target's results are compared with every check the probes
implement.  A target whose runtime or build is missing here is skipped with the reason, as
the harness itself reports it, except under CI where its tools are installed
(``required_reason``).
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gaps.expectations import compare, load_expectations
from gaps.model import load_results
from gaps.probe import load_checks
from gaps.targets import BUILTIN_DIR, builtin_names, missing_runtime, resolve

ROOT = Path(__file__).resolve().parent.parent


def required_reason(name: str) -> str | None:
    """Why built-in target ``name`` must not be skipped here, or None when a skip is fine.

    One rule for every target: under CI=true, a target whose runtime and build tools are all
    on the PATH can be built (its registries, or the Makefile's module mirror, are reachable
    in CI), so a skip means its verdicts went unchecked: that fails instead of passing
    silently.  Elsewhere a skip is the harness's own verdict on this machine.
    """
    if os.environ.get("CI") != "true":
        return None
    manifest = resolve(name)
    tools = [*(manifest.start.requires if manifest.start else ()),
             *(manifest.build.requires if manifest.build else ())]
    if missing_runtime(tuple(tools)) is not None:
        return None
    return (f"CI=true and what it needs ({', '.join(tools) or 'nothing beyond python'}) is "
            f"installed, so it must build and start here")


@functools.cache
def implemented_checks() -> frozenset[str]:
    return frozenset(d.id for checks in load_checks().values() for d in checks)


@pytest.fixture(scope="module")
def matrix(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One concurrent run of every built-in target: (results folder, pytest's output)."""
    out = tmp_path_factory.mktemp("matrix")
    targets = [word for name in builtin_names() for word in ("--gaps-target", name)]
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-m", "gaps", "-q", "-p", "no:cacheprovider",
         *targets, "--gaps-out", str(out), str(ROOT / "probes")],
        cwd=ROOT, capture_output=True, text=True, timeout=1500, check=False,
    )
    return out, done.stdout[-3000:] + done.stderr[-2000:]


@pytest.mark.parametrize("name", builtin_names())
def test_target_matches_expectations(name: str, matrix: tuple[Path, str]) -> None:
    out, output = matrix
    expected_path = BUILTIN_DIR / name / "expected.toml"
    assert expected_path.exists(), f"{name} has no expected.toml"
    expected = load_expectations(expected_path)
    results_path = out / name / "results.json"
    assert results_path.exists(), output
    run = load_results(results_path)
    if run.target.skipped:
        if required := required_reason(name):
            pytest.fail(f"{name} was skipped, but {required}. Skip reason:\n"
                        f"{run.target.skipped[-3000:]}")
        pytest.skip(f"{name}: {run.target.skipped.splitlines()[0]}")
    problems = compare(expected, run, implemented_checks())
    assert not problems, "\n".join(problems) + "\n\n" + output


def test_also_accepts_a_seen_nondeterministic_verdict_only_with_a_note(tmp_path: Path) -> None:
    from gaps.expectations import ExpectationError
    from gaps.model import CheckResult, RunResult, TargetInfo, Verdict

    path = tmp_path / "expected.toml"
    path.write_text('[checks."heartbeat.server-pings"]\nverdict = "pass"\nsource = "x"\n'
                    'also = ["fail"]\n')
    with pytest.raises(ExpectationError, match="needs a note"):
        load_expectations(path)
    path.write_text(path.read_text() + 'note = "seen under load"\n')
    expected = load_expectations(path)
    run = RunResult(TargetInfo("t"), "0")
    for verdict, problems in ((Verdict.FAIL, 0), (Verdict.ERROR, 1)):
        run.gaps["heartbeat"].checks = [CheckResult("heartbeat.server-pings", verdict, "s")]
        assert len(compare(expected, run, {"heartbeat.server-pings"})) == problems


def test_under_ci_any_target_whose_tools_are_installed_must_not_be_skipped(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """One rule for every built-in target, none named: the tools decide, not the stack."""
    installed = tmp_path / "installed"
    installed.mkdir()
    for tool in ("fakecc", "fakerun"):
        (installed / tool).write_text("#!/bin/sh\n")
        (installed / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{installed}:{os.environ['PATH']}")
    folder = tmp_path / "anystack"
    folder.mkdir()
    manifest = ('name = "anystack"\n[build]\ncommand = ["fakecc"]\nrequires = ["REQ"]\n'
                '[start]\ncommand = ["fakerun"]\nrequires = ["fakerun"]\n'
                '[endpoints.echo]\npath = "/echo"\n')
    (folder / "target.toml").write_text(manifest.replace("REQ", "fakecc"))
    monkeypatch.delenv("CI", raising=False)
    assert required_reason(str(folder)) is None
    monkeypatch.setenv("CI", "true")
    assert "fakerun, fakecc" in (required_reason(str(folder)) or "")
    assert required_reason("reference")  # python only: always required under CI
    (folder / "target.toml").write_text(manifest.replace("REQ", "not-installed-anywhere"))
    assert required_reason(str(folder)) is None
