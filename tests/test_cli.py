"""The wsgaps CLI: one run and render, exit codes, skipped targets."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import pytest

from gaps.model import SCHEMA_PATH, Verdict, load_results
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


def wsgaps(*args: str, cwd: Path = ROOT,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gaps", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=600, check=False,
                          env=None if env is None else {**os.environ, **env})


def manifest(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "t" / "target.toml"
    path.parent.mkdir()
    path.write_text(text)
    return path


def test_run_reference_writes_results_and_reports(tmp_path: Path) -> None:
    # The pytest child is hermetic: options meant for the caller's own pytest runs (here one
    # no plugin knows, as after a plugin that is not loaded there) do not reach it.
    done = wsgaps("run", "--target", "reference", "--out", str(tmp_path), "--seed", "5",
                  cwd=tmp_path, env={"PYTEST_ADDOPTS": "--asyncio-mode=strict --no-such-opt"})
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
    assert f"matrix: {tmp_path / 'matrix.md'}" in done.stdout
    # Not on a terminal: a line per finished gap as it finishes, no progress bar.
    # Each line starts with the time from the start of the run.
    assert re.search(r"^ *\d+\.\d s  reference heartbeat: pass in \d+\.\d s$", done.stdout,
                     re.M), done.stdout
    assert "━━━━━━━━━━ " not in done.stdout  # no progress bar


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    assert wsgaps("run", "--target", "no-such-target").returncode == 2
    assert wsgaps("run", "--time-scale", "0").returncode == 2
    bad = manifest(tmp_path, "name = 'x'\n")
    done = wsgaps("run", "--target", str(bad))
    assert done.returncode == 2
    assert "start: missing" in done.stderr


@pytest.mark.parametrize("args", [
    ("--target", "ws://127.0.0.1:abc/echo"),
    ("--target", "ws://127.0.0.1:99999/echo"),
    ("--without", "bogus"),
    ("--jobs", "0"),
])
def test_bad_values_are_one_line_usage_errors(args: tuple[str, ...]) -> None:
    done = wsgaps("run", *args)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("wsgaps: ") and done.stderr.count("\n") == 1, done.stderr
    assert "Traceback" not in done.stderr


def test_version_and_help() -> None:
    version = wsgaps("--version")
    assert version.returncode == 0 and version.stdout.startswith("wsgaps 0.")
    helped = wsgaps("run", "--help").stdout
    assert "``" not in helped
    assert "heartbeat" in helped and "subprotocols" in helped  # --without names them
    assert "bogus" in wsgaps("run", "--without", "bogus").stderr
    assert "the reference knows: heartbeat" in wsgaps("run", "--without", "bogus").stderr


def test_target_that_never_starts_exits_3(tmp_path: Path) -> None:
    done = wsgaps("run", "--target", str(manifest(tmp_path, NEVER_READY)), "--out",
                  str(tmp_path / "out"))
    assert done.returncode == 3, done.stdout[-3000:]
    # The whole reason, once, under the table; the gap reads "error" there.
    assert "target not ready: never-ready did not become ready within 1.0 s" in done.stdout \
        or "not ready within 1.0 s" in done.stdout
    assert re.search(r"Ping/Pong Heartbeat\s+│\s+High\s+│\s+error", done.stdout), done.stdout
    assert "[1] error: target not ready" in done.stdout
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


def test_an_out_folder_that_cannot_be_written_is_one_line_before_any_probe(
        tmp_path: Path) -> None:
    a_file = tmp_path / "taken"
    a_file.write_text("not a folder")
    for out, words in ((a_file, "is a file, not a folder"),
                       (a_file / "below", "cannot write in")):
        started = time.monotonic()
        done = wsgaps("run", "--target", "reference", "--out", str(out))
        assert done.returncode == 2, done.stdout[-2000:] + done.stderr
        assert done.stderr.startswith(f"wsgaps: --out {out}: ") and words in done.stderr
        assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
        assert time.monotonic() - started < 15  # no probe ran
    tested = subprocess.run(
        [sys.executable, "-m", "pytest", "-m", "gaps", "-p", "no:cacheprovider",
         "--gaps-target", "reference", "--gaps-out", str(a_file), str(ROOT / "probes")],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert tested.returncode == 4, tested.stdout[-2000:] + tested.stderr[-2000:]
    assert f"--gaps-out {a_file}: {a_file} is a file, not a folder" in tested.stderr
    assert "INTERNALERROR" not in tested.stdout + tested.stderr


def test_results_that_cannot_be_written_fail_the_run_with_path_and_reason(
        tmp_path: Path) -> None:
    out = tmp_path / "out"
    blocked = out / "no-runtime" / "results.json"
    blocked.mkdir(parents=True)  # a folder where the file goes: every write of it fails
    done = wsgaps("run", "--target", str(manifest(tmp_path, NO_RUNTIME)), "--out", str(out))
    assert done.returncode == 3, done.stdout[-3000:] + done.stderr[-2000:]
    said = " ".join(done.stdout.split())
    assert f"no-runtime: results not written: cannot write {blocked}: Is a directory" in said, \
        done.stdout[-3000:]
    tested = subprocess.run(
        [sys.executable, "-m", "pytest", "-m", "gaps", "-p", "no:cacheprovider",
         "--gaps-target", str(tmp_path / "t" / "target.toml"), "--gaps-out", str(out),
         str(ROOT / "probes")], cwd=ROOT, capture_output=True, text=True, timeout=120,
        check=False)
    assert tested.returncode == 3, tested.stdout[-2000:] + tested.stderr[-2000:]
    assert (f"wsgaps: results not written: cannot write {blocked}: Is a directory"
            in " ".join(tested.stdout.split()))


def test_a_url_nobody_listens_on_is_error_for_every_check_said_once_at_the_top(
        tmp_path: Path) -> None:
    """Not "parallel-echo fail" and "concurrency missing" beside the other gaps' errors:
    nothing could be observed, so nothing is judged."""
    from gaps.targets import free_port

    url = f"ws://127.0.0.1:{free_port()}/echo"  # free: nobody listens there
    done = wsgaps("run", "--target", url, "--out", str(tmp_path))
    assert done.returncode == 3, done.stdout[-3000:] + done.stderr[-2000:]
    name = f"127.0.0.1-{url.split(':')[2].split('/')[0]}"
    run = load_results(tmp_path / name / "results.json")
    checks = [c for gap in run.gaps.values() for c in gap.checks]
    assert checks and all(c.verdict is Verdict.ERROR for c in checks), \
        [(c.id, c.verdict, c.summary) for c in checks if c.verdict is not Verdict.ERROR]
    (reason,) = {c.summary for c in checks}  # one reason for all
    assert reason.startswith(f"target unreachable: cannot connect to 127.0.0.1:"
                             f"{url.split(':')[2].split('/')[0]}: ConnectionRefusedError")
    assert all(g.status == "unknown" for g in run.gaps.values() if g.checks)
    said = " ".join(done.stdout.split())
    top = said.index(f"{name}: no check could run: target unreachable: cannot connect")
    assert top < said.index("Ping/Pong Heartbeat")  # above the table
    assert said.count("target unreachable") == 1, done.stdout


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


def test_summary_prints_reasons_whole_and_errors_as_error() -> None:
    from gaps.model import CheckResult, RunResult, TargetInfo, Verdict
    from gaps.summary import render_summary

    long_reason = "probe: ConnectionRefusedError: [Errno 111] " + "x" * 150 + " end"
    run = RunResult(TargetInfo("t"), "0")
    run.gaps["heartbeat"].checks = [
        CheckResult("heartbeat.server-pings", Verdict.ERROR, long_reason),
        CheckResult("heartbeat.reaps-silent-peer", Verdict.PASS, "ok")]
    run.gaps["subprotocols"].checks = [
        CheckResult("subprotocols.selects-offered", Verdict.SKIP, "target has no subprotocols "
                    "endpoint")]
    text = render_summary(run, width=200)
    heartbeat = next(line for line in text.splitlines() if "Heartbeat" in line)
    assert "error" in heartbeat and "1/1" in heartbeat and "see [1] below" in heartbeat
    subprotocols = next(line for line in text.splitlines() if "Subprotocol" in line)
    assert "0/1" not in subprotocols and "see [2] below" in subprotocols
    assert f"[1] error: {long_reason}" in text
    assert "[2] skip: target has no subprotocols endpoint" in text
    # results.json keeps the derived status and its error flag; only the display says error
    assert run.to_json()["gaps"][0]["status"] == "pass" and run.to_json()["gaps"][0]["error"]


def test_reference_banner_names_what_is_off() -> None:
    from gaps.targets import free_port

    def banner(*args: str) -> str:
        process = subprocess.Popen(
            [sys.executable, "-m", "gaps.reference", "--port", str(free_port()), *args],
            stdout=subprocess.PIPE, text=True)
        try:
            assert process.stdout is not None
            return process.stdout.readline()
        finally:
            process.terminate()
            process.wait(10)

    assert "every capability on" in banner()
    off = banner("--without", "heartbeat,subprotocols")
    assert "switched off: heartbeat, subprotocols" in off and "[" not in off


def test_progress_follows_the_planner_events_and_the_long_waits_pending() -> None:
    from gaps.runner import TargetProgress

    progress = TargetProgress("t")
    progress.apply({"event": "target-prepared", "target": "t", "skipped": None})
    progress.apply({"event": "gap-started", "target": "t", "gap": "heartbeat", "longest_wait": 95})
    progress.apply({"event": "gap-started", "target": "t", "gap": "message-types",
                    "longest_wait": 60})
    progress.apply({"event": "check-done", "target": "t", "check": "x.y", "verdict": "error"})
    assert progress.running == {"heartbeat": 95.0, "message-types": 60.0}
    progress.apply({"event": "gap-done", "target": "t", "gap": "message-types"})
    assert progress.running == {"heartbeat": 95.0}  # what the terminal shows as waiting
    assert progress.done == 1 and progress.errors == ["x.y"]


def test_readme_exit_codes_match_the_cli() -> None:
    import gaps.__main__ as cli

    readme = " ".join((ROOT / "README.md").read_text().split())
    codes = {cli.EXIT_OK: "0 all probes completed", cli.EXIT_GATE: "1 a gate failed",
             cli.EXIT_USAGE: "2 usage error", cli.EXIT_PROBE_ERROR: "3 a probe could not",
             cli.EXIT_INTERRUPTED: "130 interrupted"}
    for text in codes.values():
        assert text in readme, text


HIDE_MODULES = '''
import sys

class Hide:
    """Makes the named modules not importable, as in a venv where they are not installed."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {HIDDEN}:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, Hide())
'''


def test_builtin_python_target_without_its_stack_is_skipped(tmp_path: Path) -> None:
    # A user's venv without the targets extra: skipped with the reason, like a missing node.
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(HIDE_MODULES.replace("HIDDEN", "'aiohttp'"))
    done = wsgaps("run", "--target", "aiohttp", "--out", str(tmp_path / "out"),
                  env={"PYTHONPATH": str(site)})
    reason = "aiohttp is not installed in this environment; pip install 'wsgaps[targets]'"
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert f"aiohttp skipped: {reason}" in done.stdout
    run = load_results(tmp_path / "out" / "aiohttp" / "results.json")
    assert run.target.skipped == reason
    assert run.target.build == "none"


def test_gap_and_check_select_what_runs_and_the_rest_reads_not_selected(
        tmp_path: Path) -> None:
    done = wsgaps("run", "--target", "reference", "--out", str(tmp_path), "--gap", "1",
                  "--check", "message-types.text", "--fail-on", "missing")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    data = json.loads((tmp_path / "reference" / "results.json").read_text())
    jsonschema.validate(data, json.loads(SCHEMA_PATH.read_text()))
    gaps = {g["slug"]: g for g in data["gaps"]}
    assert gaps["heartbeat"]["status"] == "pass" and not gaps["heartbeat"]["unselected"]
    assert [c["id"] for c in gaps["message-types"]["checks"]] == ["message-types.text"]
    assert "message-types.binary" in gaps["message-types"]["unselected"]
    assert gaps["broadcast"]["status"] == "unknown"
    assert gaps["broadcast"]["note"] == "not selected" and not gaps["broadcast"]["checks"]
    report = (tmp_path / "reference" / "gap-report.md").read_text()
    assert "not selected" in report


@pytest.mark.parametrize("args", [("--gap", "nope"), ("--gap", "99"),
                                  ("--check", "heartbeat.nope")])
def test_unknown_gap_or_check_is_a_one_line_usage_error_listing_valid_names(
        args: tuple[str, ...]) -> None:
    done = wsgaps("run", *args)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    assert "heartbeat" in done.stderr and "valid:" in done.stderr


def test_targets_says_which_can_run_here_and_why_not(tmp_path: Path) -> None:
    done = wsgaps("targets", env={"PATH": str(tmp_path)})  # no go, node, cargo, java here
    assert done.returncode == 0, done.stderr
    lines = {line.split()[0]: line for line in done.stdout.splitlines()}
    assert lines["reference"].split()[1:3] == ["runs", "here"], lines["reference"]
    assert lines["gofr"].split()[1:3] == ["cannot", "run"], lines["gofr"]
    assert "(build: go not found on PATH)" in lines["gofr"]


def test_targets_into_a_closed_pipe_ends_quietly() -> None:
    """``wsgaps targets | head -1``: no BrokenPipe traceback, the status of a SIGPIPE end.
    The reader here has gone before the first line is written."""
    process = subprocess.Popen([sys.executable, "-m", "gaps", "targets"], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()
    stderr = process.stderr.read()
    assert process.wait(timeout=60) == 141
    assert stderr == ""


def test_builds_show_as_progress_on_the_run_clock(monkeypatch) -> None:
    """A log (no terminal) says which target builds, while it builds and how long it took;
    every line's time counts from the start of the run, builds included."""
    import argparse
    import asyncio
    import io
    import time

    from rich.console import Console

    import gaps.__main__ as cli

    monkeypatch.setattr(cli, "TICK", 0.02)
    monkeypatch.setattr(cli, "BUILD_QUIET", 0.1)
    monkeypatch.setattr(cli, "BUILD_NOTE", 0.2)
    monkeypatch.setattr(cli, "_preload_reports", lambda: None)

    async def fake_probes(argv_for, progress, on_change) -> int:
        events = [({"event": "build-started", "target": "slow"}, 0.0),
                  ({"event": "build-started", "target": "quick"}, 0.0),
                  ({"event": "target-prepared", "target": "quick", "build": "none"}, 0.05),
                  ({"event": "target-prepared", "target": "slow", "build": "built"}, 0.4),
                  ({"event": "gap-done", "target": "slow", "gap": "heartbeat",
                    "status": "pass", "seconds": 0.1}, 0.1)]
        for event, wait in events:
            await asyncio.sleep(wait)
            progress.targets[event["target"]].apply(event)
            on_change()
        return 0

    monkeypatch.setattr(cli, "run_probes", fake_probes)
    out = io.StringIO()
    args = argparse.Namespace(out="reports")
    started = time.monotonic() - 5.0  # the run began before the probes did
    asyncio.run(cli.run_all(["slow", "quick"], ["slow", "quick"], args,
                            Console(file=out, width=120), started))
    lines = out.getvalue().splitlines()
    said = [line.split(" s  ", 1)[1] for line in lines]
    assert said[0] == "slow: building"
    assert any(line.startswith("slow: still building (") for line in said)
    assert re.fullmatch(r"slow: built in 0\.[4-9]\d* s|slow: built in \d\.\d s",
                        said[-2]), said
    assert said[-1] == "slow heartbeat: pass in 0.1 s"
    assert not any(line.startswith("quick") for line in said)  # no build step: nothing
    times = [float(line.split(" s  ", 1)[0]) for line in lines]
    assert times[0] >= 5.0 and times[-1] >= 5.5  # on the run's clock, not the build's


def test_readme_documents_every_run_option_bench_script_and_placeholder() -> None:
    from gaps.manifest import FIXED_PLACEHOLDERS
    from gaps.options import OPTIONS

    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("## Options"):readme.index("### Gating CI")]
    for option in OPTIONS:
        assert f"`--{option.name}" in table and f"`--gaps-{option.name}" in table, option.name
    benchmarks = readme[readme.index("## Benchmarks"):readme.index("## Layout")]
    for script in sorted((ROOT / "bench").glob("*.py")):
        assert f"`bench/{script.name}`" in benchmarks, \
            f"describe bench/{script.name} in the README's Benchmarks section"
    manifest = readme[readme.index("## Probing your own server"):
                      readme.index("## In your own project")]
    for name in FIXED_PLACEHOLDERS | {"port"}:
        assert f"`{{{name}}}`" in manifest, name
    assert "Relative paths are resolved against the manifest's folder" in manifest
    own = readme[readme.index("## In your own project"):readme.index("## Testing your own")]
    assert "python -m pip wheel --no-deps -w dist ." in own
    # The job summary is the linkless summary.md, never matrix.md's relative links.
    assert own.count('cat reports/summary.md >> "$GITHUB_STEP_SUMMARY"') == 2
    assert "matrix.md >>" not in own
    assert "wsgaps gaps" in readme[:readme.index("## The two commands")]


def test_gaps_lists_the_fourteen_and_which_are_probed(tmp_path: Path) -> None:
    from gaps.catalog import GAPS
    from gaps.probe import load_checks

    done = wsgaps("gaps")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == len(GAPS)
    probed = load_checks()
    for gap, line in zip(GAPS, lines, strict=True):
        assert line.split()[:2] == [str(gap.id), gap.slug]
        assert ("not probed by this version" in line) == (gap.slug not in probed), line
    # Another probe set: one module, one of its gap's checks.
    (tmp_path / "mine.py").write_text(
        "from gaps.probe import check\n\n@check('heartbeat.server-pings')\n"
        "async def pings(ctx):\n    raise NotImplementedError\n")
    own = wsgaps("gaps", "--probes", str(tmp_path))
    assert own.returncode == 0, own.stderr
    first, second = own.stdout.splitlines()[:2]
    assert first.endswith("probed: 1 of 2 checks (not yet: heartbeat.reaps-silent-peer)")
    assert second.endswith("not probed by this version")
