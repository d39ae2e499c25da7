"""wsgaps in a user's own project: the wheel carries what a run needs, and nothing built.

Builds the wheel from this checkout, installs it into a fresh virtualenv in a temporary
folder outside the checkout, and there runs ``wsgaps targets``, ``wsgaps run --target
reference`` and ``pytest -m gaps`` (one gap, beside a user's own test file) as a user would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from gaps.model import TargetInfo, load_results
from gaps.targets import builtin_names
from tests.conftest import ROOT

DATA = "wsgaps-0.1.0.data/data/share/wsgaps/"
USER_TEST = '''import pytest

@pytest.mark.gaps
def test_my_own_gate():
    pass

def test_unmarked_is_not_collected():
    raise AssertionError("a user's unmarked test ran under -m gaps")
'''


def tracked(folder: str) -> set[str]:
    done = subprocess.run(["git", "ls-files", folder], cwd=ROOT, capture_output=True, text=True,
                          check=True)
    return set(done.stdout.split())


BUILD_LOG: list[str] = []  # the verbose output of the wheel build (the backend's warnings)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-v", "-w",
                           str(out), str(ROOT)], check=True, timeout=600, capture_output=True,
                          text=True)
    BUILD_LOG[:] = [done.stdout + done.stderr]
    (found,) = out.glob("wsgaps-*.whl")
    return found


def test_the_build_is_silent(wheel: Path) -> None:
    """No backend warning (setuptools' 45-line "Package would be ignored" for gaps.schema,
    or any other) in the build; PYTHONDONTWRITEBYTECODE's own note is not about us."""
    log = BUILD_LOG[0]
    assert "would be ignored" not in log and "!!" not in log, log[-3000:]
    assert not [line for line in log.splitlines() if "Warning" in line], log[-3000:]


def test_the_wheel_carries_what_a_run_needs_and_no_build_output(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    data = tracked("targets") | tracked("templates") | tracked("docs/examples")
    for path in data:
        assert DATA + path in names, f"{path} is not in the wheel"
    shipped = {n[len(DATA):] for n in names if n.startswith(DATA)}
    assert shipped <= data, shipped - data
    assert "gaps/schema/results.schema.json" in names
    assert {f"wsgaps_probes/{Path(p).name}" for p in tracked("probes")} <= names
    assert not any(n.startswith("probes/") for n in names)  # never a bare top-level `probes`
    assert wheel.stat().st_size < 1_000_000, wheel.stat().st_size


def test_a_new_target_folder_ships_whole_without_touching_anything_else(tmp_path: Path) -> None:
    """A copy of this checkout plus one new target folder (a src/ tree, dot files, a build
    output git ignores) builds a wheel carrying that folder as git tracks it."""
    project = tmp_path / "project"
    for name in tracked("."):
        if (ROOT / name).is_file():
            (project / name).parent.mkdir(parents=True, exist_ok=True)
            (project / name).write_bytes((ROOT / name).read_bytes())
    new = project / "targets" / "newstack"
    for relative, text in {"target.toml": "name = 'newstack'\n", "src/main/deep/App.txt": "x",
                           ".gitignore": "/target/\n", "config/.env": "A=1\n",
                           "target/built.bin": "a build output"}.items():
        (new / relative).parent.mkdir(parents=True, exist_ok=True)
        (new / relative).write_text(text)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(project)]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "copy"]):
        subprocess.run([*git, *args], check=True, capture_output=True, timeout=60)
    out = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out),
                    str(project)], check=True, timeout=600, capture_output=True)
    (found,) = out.glob("wsgaps-*.whl")
    names = set(zipfile.ZipFile(found).namelist())
    for relative in ("target.toml", "src/main/deep/App.txt", ".gitignore", "config/.env"):
        assert f"{DATA}targets/newstack/{relative}" in names, relative
    assert f"{DATA}targets/newstack/target/built.bin" not in names


def test_installed_wsgaps_runs_anywhere(wheel: Path, tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "-c",
                    str(ROOT / "constraints.txt"), str(wheel)], check=True, timeout=600,
                   capture_output=True)
    project = tmp_path / "project"
    project.mkdir()
    (project / "probes.py").write_text("RAISE = 'a user module named probes is left alone'\n")
    (project / "test_mine.py").write_text(USER_TEST)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["WSGAPS_CACHE_DIR"] = str(tmp_path / "cache")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(env_dir / "bin" / args[0]), *args[1:]], cwd=project,
                              env=env, capture_output=True, text=True, timeout=600, check=False)

    listed = run("wsgaps", "targets")
    assert listed.returncode == 0, listed.stderr
    assert sorted(line.split()[0] for line in listed.stdout.splitlines()) == builtin_names()
    cli = run("wsgaps", "run", "--target", "reference", "--out", "cli-out")
    assert cli.returncode == 0, cli.stdout[-3000:] + cli.stderr[-2000:]
    run_cli = load_results(project / "cli-out" / "reference" / "results.json")
    assert run_cli.gaps["message-types"].status == "pass"
    # The docs' example tests ship in the wheel: the testing-utilities probe runs them there.
    assert run_cli.gaps["testing-utilities"].status == "pass", run_cli.gaps["testing-utilities"]
    assert (project / "cli-out" / "index.html").is_file()
    out = tmp_path / "existing-out"  # absolute, outside the project, existing
    out.mkdir()
    tested = run("pytest", "-m", "gaps", "--gaps-target", "reference", "--gaps-out", str(out),
                 "-k", "subprotocols or my_own", "-p", "no:cacheprovider")
    assert tested.returncode == 0, tested.stdout[-3000:] + tested.stderr[-2000:]
    assert "5 passed" in tested.stdout, tested.stdout[-2000:]  # 4 checks and the user's test
    # A user's first run is quiet: no pytest-asyncio deprecation about its loop scope.
    assert "warning" not in (tested.stdout + tested.stderr).lower(), tested.stderr[-3000:]
    run_pytest = load_results(out / "reference" / "results.json")
    assert run_pytest.gaps["subprotocols"].status == "pass"
    assert run_pytest.target.version_note is None  # constraints applied: the pinned version
    assert (out / "index.html").is_file()


def test_results_of_separate_runs_merge_into_one_matrix(tmp_path: Path) -> None:
    """The README's CI job matrix: one job per target, then one job merging the results."""
    fixtures = {}
    for name in ("alpha", "beta"):
        folder = tmp_path / f"job-{name}" / name
        folder.mkdir(parents=True)
        data = json.loads((ROOT / "tests" / "data" / "results-minimal.json").read_text())
        data["target"]["name"] = name
        (folder / "results.json").write_text(json.dumps(data))
        fixtures[name] = folder / "results.json"
    merged = tmp_path / "merged"
    done = subprocess.run([sys.executable, "-m", "gaps.report", *map(str, fixtures.values()),
                           "--out", str(merged)], capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stderr
    matrix = (merged / "matrix.md").read_text()
    assert "[alpha](alpha/gap-report.md)" in matrix and "[beta](beta/gap-report.md)" in matrix
    assert (merged / "index.html").is_file()


def test_another_stack_version_than_pinned_is_said_beside_the_version() -> None:
    same = TargetInfo("aiohttp", version="aiohttp 3.14.5", pinned="aiohttp 3.14.5")
    other = TargetInfo("aiohttp", version="aiohttp 3.15.0", pinned="aiohttp 3.14.5")
    assert same.version_note is None
    assert other.version_note and "aiohttp 3.14.5" in other.version_note
    from gaps.model import RunResult
    from gaps.report import render_html, render_markdown

    run = RunResult(other, "0.1.0")
    assert "written for" in render_markdown(run) and "written for" in render_html(run)
