"""CI gates: a status floor and a baseline, in plain functions and through pytest and the CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from gaps.gate import regressions, status_failures
from gaps.model import CheckResult, GapResult, RunResult, TargetInfo, Verdict
from tests.conftest import ROOT

V = Verdict


def run_with(checks: dict[str, list[tuple[str, Verdict]]]) -> RunResult:
    run = RunResult(TargetInfo("t"), "0.1.0", started=1.0)
    for slug, pairs in checks.items():
        run.gaps[slug] = GapResult(slug, [CheckResult(c, v, f"{c} {v}") for c, v in pairs])
    return run


HEARTBEAT_OK = [("heartbeat.server-pings", V.PASS), ("heartbeat.reaps-silent-peer", V.PASS)]
HEARTBEAT_HALF = [("heartbeat.server-pings", V.PASS), ("heartbeat.reaps-silent-peer", V.FAIL)]
HEARTBEAT_NONE = [("heartbeat.server-pings", V.FAIL), ("heartbeat.reaps-silent-peer", V.FAIL)]


def test_status_floor() -> None:
    half, none = run_with({"heartbeat": HEARTBEAT_HALF}), run_with({"heartbeat": HEARTBEAT_NONE})
    assert status_failures(half, None) == []
    assert status_failures(half, "missing") == []
    assert status_failures(half, "partial") == ["t: gap 1 heartbeat is partial"]
    assert status_failures(none, "missing") == ["t: gap 1 heartbeat is missing"]
    # Unknown (not probed) never gates.
    assert status_failures(run_with({}), "partial") == []


def test_documentation_never_gates() -> None:
    run = run_with({"documentation": [("documentation.coverage", V.FAIL)]})
    assert status_failures(run, "partial") == []
    before = run_with({"documentation": [("documentation.coverage", V.PASS)]})
    assert regressions(run, before) == []


def test_regressions_name_the_check() -> None:
    before = run_with({"heartbeat": HEARTBEAT_OK,
                       "message-types": [("message-types.ping-pong", V.NON_STRICT)]})
    now = run_with({"heartbeat": HEARTBEAT_HALF,
                    "message-types": [("message-types.ping-pong", V.PASS)]})
    assert regressions(now, before) == [
        "t: heartbeat.reaps-silent-peer: pass -> fail (heartbeat.reaps-silent-peer fail)"]
    assert regressions(before, now) == [
        "t: message-types.ping-pong: pass -> non-strict (message-types.ping-pong non-strict)"]


def test_gap_not_run_cannot_regress_but_a_vanished_check_does() -> None:
    before = run_with({"heartbeat": HEARTBEAT_OK})
    assert regressions(run_with({}), before) == []
    now = run_with({"heartbeat": HEARTBEAT_OK[:1]})
    assert regressions(now, before) == [
        "t: heartbeat.reaps-silent-peer: pass in the baseline, not checked now"]


def test_gates_through_pytest_and_the_cli(tmp_path: Path) -> None:
    pytest_cmd = [sys.executable, "-m", "pytest", "-m", "gaps", "-q", "-p", "no:cacheprovider",
                  "-k", "heartbeat"]
    # The passing run keeps the full waits; the failing ones may halve them (they fail anyway).
    good = subprocess.run([*pytest_cmd, "--gaps-out", str(tmp_path / "good")], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, check=False)
    assert good.returncode == 0, good.stdout[-2000:]
    baseline = tmp_path / "good" / "reference" / "results.json"
    bad = subprocess.run(
        [*pytest_cmd, "--gaps-time-scale", "0.5", "--gaps-out", str(tmp_path / "bad"),
         "--gaps-without", "heartbeat",
         "--gaps-fail-on", "missing", "--gaps-baseline", str(baseline)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert bad.returncode == 1, bad.stdout[-2000:]
    assert "wsgaps gate: reference: gap 1 heartbeat is missing" in bad.stdout
    assert "wsgaps gate: reference: heartbeat.server-pings: pass -> fail" in bad.stdout
    cli = subprocess.run(
        [sys.executable, "-m", "gaps", "run", "--out", str(tmp_path / "cli"), "--time-scale",
         "0.5", "--without", "heartbeat", "--baseline", str(baseline)],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False)
    assert cli.returncode == 1, cli.stdout[-2000:]
    assert "heartbeat.reaps-silent-peer: pass -> fail" in cli.stdout
    wrong = subprocess.run(
        [sys.executable, "-m", "gaps", "run", "--target", "node-ws", "--baseline",
         str(baseline)], cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False)
    assert wrong.returncode == 2 and "no target named reference" in wrong.stderr


def test_checks_not_selected_are_not_gone_for_the_baseline() -> None:
    ids = ["heartbeat.server-pings", "heartbeat.reaps-silent-peer"]
    before = run_with({"heartbeat": [(i, V.PASS) for i in ids]})
    now = run_with({"heartbeat": [(ids[0], V.PASS)]})
    assert regressions(now, before)  # a passed check gone from a probed gap: worse
    now.gaps["heartbeat"].unselected = [ids[1]]
    assert not regressions(now, before)  # not selected this run: not counted


def test_plugin_selects_by_gap_check_and_k_and_names_unknown_ones(tmp_path: Path) -> None:
    base = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-m", "gaps",
            "--gaps-target", "reference"]

    def results(out: Path) -> dict[str, dict]:
        import json

        return {g["slug"]: g for g in
                json.loads((out / "reference" / "results.json").read_text())["gaps"]}

    by_gap = subprocess.run([*base, "--gaps-out", str(tmp_path / "a"), "--gaps-gap", "heartbeat",
                             "--gaps-check", "message-types.text", "--gaps-fail-on", "missing"],
                            cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert by_gap.returncode == 0, by_gap.stdout[-2000:]
    gaps = results(tmp_path / "a")
    assert gaps["heartbeat"]["status"] == "pass"
    assert [c["id"] for c in gaps["message-types"]["checks"]] == ["message-types.text"]
    assert gaps["recovery"]["note"] == "not selected" and gaps["recovery"]["status"] == "unknown"
    by_k = subprocess.run([*base, "--gaps-out", str(tmp_path / "k"), "-k",
                           "heartbeat.server-pings"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert by_k.returncode == 0, by_k.stdout[-2000:]
    gaps = results(tmp_path / "k")
    assert [c["id"] for c in gaps["heartbeat"]["checks"]] == ["heartbeat.server-pings"]
    assert gaps["heartbeat"]["unselected"] == ["heartbeat.reaps-silent-peer"]
    assert gaps["broadcast"]["note"] == "not selected"
    # -k that deselects every check probes nothing and leaves no reports folder behind.
    none = subprocess.run([*base, "--gaps-out", str(tmp_path / "none" / "reports"), "-k",
                           "no-such-check"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert none.returncode == 5, none.stdout[-2000:]  # pytest: no tests ran
    assert not (tmp_path / "none").exists()
    bad = subprocess.run([*base, "--gaps-gap", "nope"], cwd=ROOT, capture_output=True,
                         text=True, timeout=60, check=False)
    assert bad.returncode == 4 and "--gaps-gap nope: no such gap" in bad.stderr, bad.stderr
    assert "1 heartbeat" in bad.stderr
