"""Every built-in target's verdicts agree with its expected.toml (researched from its source).

All built-in targets are probed in one run, the way a user runs the matrix (``pytest -m gaps``
with every ``--gaps-target``), so the run costs about its longest wait, not the sum of the
targets' waits; then each target's results are compared with every check the probes
implement.  A target whose runtime or build is missing here is skipped with the reason, as
the harness itself reports it, except where CI must build it (``required_reason``).
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gaps.expectations import compare, load_expectations
from gaps.model import load_results
from gaps.probe import load_checks
from gaps.targets import BUILTIN_DIR, builtin_names

ROOT = Path(__file__).resolve().parent.parent


def go_mirror() -> Path:
    """The Go module mirror the Makefile puts first in GOPROXY when it exists."""
    return Path(os.environ.get("WSGAPS_GO_MIRROR") or ROOT.parent / "shared" / "goproxy")


def required_reason(name: str) -> str | None:
    """Why ``name`` must not be skipped here, or None when a skip is acceptable.

    Under CI=true with the Go module mirror beside the checkout, GoFr can always be built,
    and with cargo on the PATH, axum can (its crates come from crates.io, which CI reaches,
    as npm's registry): a skip means its verdicts went unchecked, so it fails instead of
    passing silently.
    """
    if os.environ.get("CI") != "true":
        return None
    if name == "axum":
        cargo = shutil.which("cargo")
        return f"CI=true and cargo is on the PATH ({cargo}), so axum must build" if cargo else None
    if name != "gofr":
        return None
    mirror = go_mirror()
    if not mirror.is_dir():
        return None
    return (f"CI=true and the Go module mirror {mirror} exists, so GoFr must build; "
            f"GOPROXY here: {os.environ.get('GOPROXY', '<unset>')!r} (`make test` and "
            f"`make report` put the mirror first)")


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
