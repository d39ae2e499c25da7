"""Every built-in target's verdicts agree with its expected.toml (researched from its source).

Runs each target the way a user does (``pytest -m gaps --gaps-target NAME``) in a subprocess,
then compares every check the probes implement.  A target whose runtime or build is missing
here is skipped with the reason, as the harness itself reports it.
"""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import probes
from gaps.expectations import compare, load_expectations
from gaps.model import load_results
from gaps.probe import module_checks
from gaps.targets import BUILTIN_DIR, builtin_names

ROOT = Path(__file__).resolve().parent.parent


def implemented_checks() -> set[str]:
    ids: set[str] = set()
    for info in pkgutil.iter_modules(probes.__path__):
        module = importlib.import_module(f"probes.{info.name}")
        ids |= {d.id for d in module_checks(module)}
    return ids


@pytest.mark.parametrize("name", builtin_names())
def test_target_matches_expectations(name: str, tmp_path: Path) -> None:
    expected_path = BUILTIN_DIR / name / "expected.toml"
    assert expected_path.exists(), f"{name} has no expected.toml"
    expected = load_expectations(expected_path)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-m", "gaps", "-q", "-p", "no:cacheprovider",
         "--gaps-target", name, "--gaps-out", str(tmp_path), str(ROOT / "probes")],
        cwd=ROOT, capture_output=True, text=True, timeout=900, check=False,
    )
    results_path = tmp_path / name / "results.json"
    assert results_path.exists(), done.stdout[-3000:] + done.stderr[-2000:]
    run = load_results(results_path)
    if run.target.skipped:
        pytest.skip(f"{name}: {run.target.skipped.splitlines()[0]}")
    problems = compare(expected, run, implemented_checks())
    assert not problems, "\n".join(problems) + "\n\n" + done.stdout[-3000:]
