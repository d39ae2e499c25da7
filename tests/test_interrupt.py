"""Interrupted runs: Ctrl-C or SIGTERM ends a run within 2 s, with one line and no
traceback, at any moment (a build, the probes, the rendering), and what it leaves behind
says it was interrupted.  bench/interrupt.py repeats the same on every built-in target."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from gaps.interrupt import Interrupted, interruptible
from gaps.targets import BuildCancelled, Cancel, run_bounded
from tests.test_lifecycle import (
    build_manifest,
    marked_manifest,
    marked_processes,
    probe_dir,
    processes_marked,
    pytest_cmd,
    wait_for,
)

EXIT_WITHIN = 2.0  # seconds from the signal to the CLI's exit (issue 24)
LINE = "wsgaps: interrupted ({}); results written so far are kept"
REPEAT = 2  # tries per moment here; bench/interrupt.py makes the 50


def slow_probes(tmp_path: Path) -> Path:
    """A gap that finishes at once (heartbeat) and one that would take 50 s (broadcast)."""
    return probe_dir(tmp_path, {
        "a_fast": ("heartbeat", "heartbeat.server-pings", "from gaps.probe import passed\n"
                   "    return passed('ok')"),
        "b_slow": ("broadcast", "broadcast.fan-out", "await asyncio.sleep(50)"),
    })


def slow_build_manifest(tmp_path: Path) -> tuple[Path, str]:
    """A target named slow-build whose build sleeps for 60 s: (manifest path, mark)."""
    return build_manifest(tmp_path, '["{python}", "-c", "import time; time.sleep(60)"]',
                          name="slow-build")


def building(mark: str) -> bool:
    return bool(processes_marked(mark))


# A CLI whose rendering is slow (each report file half a second late): Ctrl-C lands in it.
SLOW_RENDER = """
import sys, time
import gaps.report.write as write
original = write.write_text
def slow(path, text):
    time.sleep(0.5)
    original(path, text)
write.write_text = slow
from gaps.__main__ import main
sys.exit(main(sys.argv[1:]))
"""


def start_cli(args: list[str], *, slow_render: bool = False) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-c", SLOW_RENDER] if slow_render else \
        [sys.executable, "-m", "gaps"]
    # A session of its own, as a terminal's foreground job: Ctrl-C reaches the whole group.
    return subprocess.Popen([*command, "run", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)


def interrupt(cli: subprocess.Popen[bytes], sig: int = signal.SIGINT,
              group: bool = True) -> tuple[float, str, str]:
    """Send ``sig`` (to the CLI's process group, as Ctrl-C does, or to the CLI alone, as
    ``kill`` does); seconds until it exited, its stdout and its stderr."""
    sent = time.monotonic()
    if group:
        os.killpg(cli.pid, sig)
    else:
        os.kill(cli.pid, sig)
    try:
        out, err = cli.communicate(timeout=30)
    finally:
        if cli.poll() is None:
            os.killpg(cli.pid, signal.SIGKILL)
            cli.wait()
    return time.monotonic() - sent, out.decode(errors="replace"), err.decode(errors="replace")


def assert_one_line(took: float, code: int | None, err: str, sig: str = "SIGINT") -> None:
    assert code == 130, err
    assert "Traceback" not in err and "exception" not in err.lower(), err
    assert err.strip().splitlines() == [LINE.format(sig)], err
    assert took < EXIT_WITHIN, f"took {took:.2f} s to exit"


def read_results(path: Path) -> dict:
    from gaps.model import SCHEMA_PATH

    jsonschema = pytest.importorskip("jsonschema")
    data = json.loads(path.read_text())
    jsonschema.validate(data, json.loads(SCHEMA_PATH.read_text()))
    return data


def assert_reports_say_interrupted(out: Path, target: str, sig: str = "SIGINT") -> None:
    """Every report says so at its top, before any gap."""
    for path, first_gap in [(out / target / "gap-report.md", "### 1."),
                            (out / target / "gap-report.html", 'id="gap-1"'),
                            (out / "matrix.md", "| 1 |"),
                            (out / "index.html", "<table")]:
        text = path.read_text()
        assert "Run interrupted" in text, path
        assert text.index("Run interrupted") < text.index(first_gap), path
        assert f"({sig})" in text, path


# -- the event loop's signal handling ----------------------------------------------------

def test_interruptible_cancels_once_ignores_repeats_and_restores_handlers() -> None:
    unwound: list[str] = []
    before = signal.getsignal(signal.SIGTERM)

    async def work() -> None:
        try:
            await asyncio.sleep(30)
        finally:
            # A second signal while unwinding changes nothing: the unwinding is bounded.
            os.kill(os.getpid(), signal.SIGTERM)
            await asyncio.sleep(0.2)
            unwound.append("done")

    async def main() -> None:
        asyncio.get_running_loop().call_later(0.2, os.kill, os.getpid(), signal.SIGINT)
        await interruptible(work(), unwound.append)

    with pytest.raises(Interrupted) as info:
        asyncio.run(main())
    assert info.value.signal_name == "SIGINT"
    assert unwound == ["SIGINT", "done"]
    assert signal.getsignal(signal.SIGTERM) is before


# -- the cancel token of worker-thread commands ----------------------------------------------

def test_cancel_kills_the_running_command_group_from_another_thread(tmp_path: Path) -> None:
    """``Cancel.set()`` kills the group itself, so the worker blocked in ``wait()`` returns
    at once instead of at its next poll; a grandchild in the group goes too."""
    started = tmp_path / "started"
    cancel = Cancel()
    outcome: list[BaseException | tuple[int | None, str]] = []

    def work() -> None:
        try:
            outcome.append(run_bounded(
                ["sh", "-c", f"sleep 30 & touch {started}; wait"], cwd=tmp_path,
                env=os.environ, timeout=60, limit=4096, cancel=cancel))
        except BaseException as exc:  # the test inspects it
            outcome.append(exc)

    worker = threading.Thread(target=work)
    worker.start()
    assert wait_for(started.exists, 10), "the command never started"
    cancel.set()
    worker.join(10)
    assert not worker.is_alive(), "the worker still waits for a killed command"
    assert len(outcome) == 1 and isinstance(outcome[0], BuildCancelled)


def test_cancel_set_before_the_start_runs_nothing_more(tmp_path: Path) -> None:
    cancel = Cancel()
    cancel.set()
    marker = tmp_path / "ran"
    with pytest.raises(BuildCancelled):
        run_bounded(["sh", "-c", f"sleep 0.5; touch {marker}"], cwd=tmp_path,
                     env=os.environ, timeout=60, limit=4096, cancel=cancel)
    time.sleep(1)
    assert not marker.exists()


# -- wsgaps run, at each moment ------------------------------------------------------------

@pytest.mark.parametrize("attempt", range(REPEAT))
def test_ctrl_c_during_a_build(tmp_path: Path, attempt: int) -> None:
    path, mark = slow_build_manifest(tmp_path)
    out = tmp_path / "out"
    cli = start_cli(["--target", str(path), "--out", str(out)])
    assert wait_for(lambda: building(mark), 30), "the build never started"
    took, _, err = interrupt(cli)
    assert_one_line(took, cli.returncode, err)
    assert wait_for(lambda: not building(mark), 2), "the build outlived the run"
    data = read_results(out / "slow-build" / "results.json")
    assert data["interrupted"] == "SIGINT"
    probed = [g for g in data["gaps"] if g["note"] != "not probed by this version"]
    assert probed and all(g["interrupted"] and g["note"] == "interrupted before it started"
                          for g in probed)
    assert_reports_say_interrupted(out, "slow-build")


@pytest.mark.parametrize("attempt", range(REPEAT))
def test_ctrl_c_during_the_probes(tmp_path: Path, attempt: int) -> None:
    path = marked_manifest(tmp_path)
    out = tmp_path / "out"
    cli = start_cli(["--target", str(path), "--out", str(out), "--probes",
                     str(slow_probes(tmp_path))])
    results = out / "marked" / "results.json"

    def slow_gap_running() -> bool:
        if not results.exists() or not marked_processes(path):
            return False
        return json.loads(results.read_text())["gaps"][0]["status"] == "pass"

    assert wait_for(slow_gap_running, 30), "the slow gap never started"
    took, stdout, err = interrupt(cli)
    assert_one_line(took, cli.returncode, err)
    assert wait_for(lambda: not marked_processes(path), 2), "a target outlived the run"
    data = read_results(results)
    gaps = {g["slug"]: g for g in data["gaps"]}
    assert data["interrupted"] == "SIGINT"
    assert gaps["heartbeat"]["status"] == "pass" and not gaps["heartbeat"]["interrupted"]
    assert gaps["broadcast"]["interrupted"]
    assert gaps["broadcast"]["note"] == ("interrupted: 1 of 1 checks did not finish "
                                         "(broadcast.fan-out)")
    assert "marked: interrupted; 1 gap did not finish" in stdout
    assert_reports_say_interrupted(out, "marked")


@pytest.mark.parametrize("attempt", range(REPEAT))
def test_ctrl_c_during_the_rendering(tmp_path: Path, attempt: int) -> None:
    path = marked_manifest(tmp_path)
    probes = probe_dir(tmp_path, {"a_fast": (
        "heartbeat", "heartbeat.server-pings", "from gaps.probe import passed\n"
        "    return passed('ok')")})
    out = tmp_path / "out"
    cli = start_cli(["--target", str(path), "--out", str(out), "--probes", str(probes)],
                    slow_render=True)
    assert cli.stdout is not None
    # The summary tables are printed once the probes are done, right before rendering.
    seen = b""
    while b"wsgaps: marked" not in seen:
        line = cli.stdout.readline()
        assert line, "the CLI ended before its summary"
        seen += line
    time.sleep(0.2)
    took, stdout, err = interrupt(cli)
    assert_one_line(took, cli.returncode, err)
    assert "report:" not in stdout  # it was interrupted in the rendering, not after it
    # The probes had finished: the results are whole and say nothing was interrupted.
    data = read_results(out / "marked" / "results.json")
    assert data["interrupted"] is None
    assert not any(name.startswith(".") for name in os.listdir(out / "marked"))


def test_sigterm_says_one_line(tmp_path: Path) -> None:
    path = marked_manifest(tmp_path)
    out = tmp_path / "out"
    cli = start_cli(["--target", str(path), "--out", str(out), "--probes",
                     str(slow_probes(tmp_path))])
    assert wait_for(lambda: bool(marked_processes(path)), 30), "the target never started"
    time.sleep(0.5)
    took, _, err = interrupt(cli, signal.SIGTERM, group=False)  # `kill PID`
    assert_one_line(took, cli.returncode, err, "SIGTERM")
    assert wait_for(lambda: not marked_processes(path), 2), "a target outlived the run"
    assert read_results(out / "marked" / "results.json")["interrupted"] == "SIGTERM"


# -- pytest -m gaps ------------------------------------------------------------------------

def test_interrupted_pytest_run_says_so_in_results_and_every_report(tmp_path: Path) -> None:
    path = marked_manifest(tmp_path)
    out = tmp_path / "out"
    process = subprocess.Popen(pytest_cmd(path, slow_probes(tmp_path), out),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               start_new_session=True)
    results = out / "marked" / "results.json"
    try:
        def slow_gap_running() -> bool:
            if not results.exists() or not marked_processes(path):
                return False
            return json.loads(results.read_text())["gaps"][0]["status"] == "pass"

        assert wait_for(slow_gap_running, 30), "the slow gap never started"
        sent = time.monotonic()
        os.killpg(process.pid, signal.SIGINT)
        output = process.communicate(timeout=30)[0].decode(errors="replace")
        took = time.monotonic() - sent
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == 2, output  # pytest's "interrupted"
    assert took < EXIT_WITHIN + 1, f"took {took:.2f} s"  # pytest also renders the reports
    assert "wsgaps: interrupted (SIGINT)" in output
    assert "Traceback" not in output
    data = read_results(results)
    assert data["interrupted"] == "SIGINT"
    broadcast = next(g for g in data["gaps"] if g["slug"] == "broadcast")
    assert broadcast["interrupted"] and broadcast["note"].startswith("interrupted")
    assert_reports_say_interrupted(out, "marked")
    assert "Interrupted" in (out / "marked" / "gap-report.md").read_text().split("### 2.")[1]
    assert not processes_marked(str(path))
