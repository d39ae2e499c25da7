"""The wsgaps CLI: one run and render, exit codes, skipped targets."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema

from gaps.model import SCHEMA_PATH, load_results
from tests.conftest import ROOT

NEVER_READY = """
name = "never-ready"
[start]
command = ["{python}", "-c", "import time; time.sleep(60)", "{port}"]
[ready]
timeout = 1
[endpoints.echo]
path = "/echo"
"""

NO_RUNTIME = """
name = "no-runtime"
[start]
command = ["wsgaps-no-such-runtime", "{port}"]
requires = ["wsgaps-no-such-runtime"]
[endpoints.echo]
path = "/echo"
"""


def wsgaps(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gaps", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=600, check=False)


def manifest(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "t" / "target.toml"
    path.parent.mkdir()
    path.write_text(text)
    return path


def test_run_reference_writes_results_and_reports(tmp_path: Path) -> None:
    done = wsgaps("run", "--target", "reference", "--out", str(tmp_path), "--seed", "5",
                  cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    results = tmp_path / "reference" / "results.json"
    jsonschema.validate(json.loads(results.read_text()), json.loads(SCHEMA_PATH.read_text()))
    run = load_results(results)
    assert run.seed == 5
    assert run.gaps["heartbeat"].status == "pass"
    for name in ("reference/gap-report.md", "reference/gap-report.html", "matrix.md",
                 "index.html"):
        assert (tmp_path / name).is_file(), name
    assert "Ping/Pong Heartbeat" in done.stdout
    assert f"report: {tmp_path / 'index.html'}" in done.stdout


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    assert wsgaps("run", "--target", "no-such-target").returncode == 2
    assert wsgaps("run", "--time-scale", "0").returncode == 2
    bad = manifest(tmp_path, "name = 'x'\n")
    done = wsgaps("run", "--target", str(bad))
    assert done.returncode == 2
    assert "start: missing" in done.stderr


def test_target_that_never_starts_exits_3(tmp_path: Path) -> None:
    done = wsgaps("run", "--target", str(manifest(tmp_path, NEVER_READY)), "--out",
                  str(tmp_path / "out"))
    assert done.returncode == 3, done.stdout[-3000:]
    run = load_results(tmp_path / "out" / "never-ready" / "results.json")
    heartbeat = run.gaps["heartbeat"]
    assert heartbeat.status == "unknown"
    assert "not ready within 1.0 s" in (heartbeat.error or "")


def test_missing_runtime_is_skipped_not_failed(tmp_path: Path) -> None:
    done = wsgaps("run", "--target", str(manifest(tmp_path, NO_RUNTIME)), "--out",
                  str(tmp_path / "out"))
    assert done.returncode == 0, done.stdout[-3000:]
    run = load_results(tmp_path / "out" / "no-runtime" / "results.json")
    assert run.target.skipped == "wsgaps-no-such-runtime not found on PATH"
    assert "skipped" in done.stdout


def test_remote_and_tls_targets_need_an_opt_in(tmp_path: Path) -> None:
    for url in ("ws://192.0.2.1:9/echo", "wss://127.0.0.1:9/echo"):
        done = wsgaps("run", "--target", url, "--out", str(tmp_path))
        assert done.returncode == 2
        assert "--allow-remote" in done.stderr
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-m", "gaps", "-p", "no:cacheprovider",
         "--gaps-target", "ws://192.0.2.1:9/echo", str(ROOT / "probes")],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 4 and "--gaps-allow-remote" in done.stderr
