"""Target lifecycle: readiness bounds, stop, and no orphan process in any way a run can end."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from gaps.manifest import load_manifest
from gaps.plugin import start_instance
from gaps.targets import Instance, TargetFailed
from tests.conftest import ROOT

ASYNC = pytest.mark.asyncio(loop_scope="session")

REFERENCE = """
name = "marked"
[start]
command = ["{python}", "-m", "gaps.reference", "--port", "{port}"]
env = { WSGAPS_TEST_MARK = "@MARK@" }
[ready]
timeout = READY
[endpoints.echo]
path = "/echo"
[hints]
ping_interval = 1.0
ping_timeout = 1.0
"""

BOOM_PROBE = '''
import asyncio
import pytest
from gaps.plugin import probe_test
from gaps.probe import check

GAP = "GAPSLUG"
pytestmark = pytest.mark.gaps

@check("CHECKID")
async def body(ctx):
    BODY

test_body = probe_test(body)
'''


def marked_manifest(tmp_path: Path, *, ready: float = 20, command: str | None = None) -> Path:
    mark = uuid.uuid4().hex
    text = REFERENCE.replace("@MARK@", mark).replace("READY", str(ready))
    if command:
        text = text.replace('["{python}", "-m", "gaps.reference", "--port", "{port}"]', command)
    path = tmp_path / "target" / "target.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def marked_processes(manifest_path: Path) -> list[int]:
    mark = load_manifest(manifest_path).start.env["WSGAPS_TEST_MARK"].encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().split()[2]
        except OSError:
            continue
        if mark in environ and state != "Z":
            found.append(int(entry.name))
    return found


def probe_dir(tmp_path: Path, modules: dict[str, tuple[str, str, str]]) -> Path:
    folder = tmp_path / "probes"
    folder.mkdir(exist_ok=True)
    for name, (slug, check_id, body) in modules.items():
        text = BOOM_PROBE.replace("GAPSLUG", slug).replace("CHECKID", check_id)
        (folder / f"{name}.py").write_text(text.replace("BODY", body))
    return folder


def pytest_cmd(manifest: Path, probes: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "pytest", "-c", str(ROOT / "pyproject.toml"), "-m", "gaps",
            "-p", "no:cacheprovider", "-p", "gaps.plugin", "--rootdir", str(probes.parent),
            "--gaps-target", str(manifest), "--gaps-out", str(out), str(probes)]


def wait_for(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


@ASYNC
async def test_never_ready_is_bounded(tmp_path: Path) -> None:
    path = marked_manifest(
        tmp_path, ready=2,
        command='["{python}", "-c", "import time; time.sleep(60)", "{port}"]')
    started = time.monotonic()
    with pytest.raises(TargetFailed, match=r"not ready within 2\.0 s"):
        await start_instance(load_manifest(path), 1.0)
    assert time.monotonic() - started < 6
    assert wait_for(lambda: not marked_processes(path), 5)


@ASYNC
async def test_exit_before_ready_reports_logs(tmp_path: Path) -> None:
    path = marked_manifest(
        tmp_path, command='["{python}", "-c", "import sys; sys.exit(\'boom {port}\')"]')
    with pytest.raises(TargetFailed, match="exited with status 1") as info:
        await start_instance(load_manifest(path), 1.0)
    assert "boom" in info.value.logs


def test_stop_uses_sigterm_then_sigkill(tmp_path: Path) -> None:
    # A server that ignores SIGTERM is killed after the grace period.
    code = ("import signal, socket, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "time.sleep(60)")
    path = marked_manifest(tmp_path, command=f'["{{python}}", "-c", "{code}", "{{port}}"]')
    instance = Instance(load_manifest(path))
    instance.start()
    time.sleep(0.5)
    started = time.monotonic()
    status = instance.stop(grace=1.0)
    assert status == -signal.SIGKILL
    assert 0.9 < time.monotonic() - started < 4
    assert not marked_processes(path)


def test_no_orphan_after_a_run_and_a_failing_probe(tmp_path: Path) -> None:
    path = marked_manifest(tmp_path)
    probes = probe_dir(tmp_path, {
        "fine": ("heartbeat", "heartbeat.server-pings", "from gaps.probe import passed\n"
                 "    return passed('ok')"),
        "boom": ("broadcast", "broadcast.fan-out", "raise RuntimeError('probe bug')"),
    })
    done = subprocess.run(pytest_cmd(path, probes, tmp_path / "out"), capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 1, done.stdout[-2000:]
    assert "probe could not complete: probe: RuntimeError: probe bug" in done.stdout
    assert not marked_processes(path)
    results = json.loads((tmp_path / "out" / "marked" / "results.json").read_text())
    gaps = {g["slug"]: g for g in results["gaps"]}
    assert gaps["heartbeat"]["status"] == "pass"
    assert gaps["broadcast"]["status"] == "unknown"
    assert "RuntimeError" in gaps["broadcast"]["error"]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL],
                         ids=["SIGINT", "SIGTERM", "SIGKILL"])
def test_no_orphan_when_pytest_is_interrupted(tmp_path: Path, sig: int) -> None:
    path = marked_manifest(tmp_path)
    probes = probe_dir(tmp_path, {
        "a_fast": ("heartbeat", "heartbeat.server-pings", "from gaps.probe import passed\n"
                   "    return passed('ok')"),
        "b_slow": ("broadcast", "broadcast.fan-out", "await asyncio.sleep(50)"),
    })
    out = tmp_path / "out"
    process = subprocess.Popen(pytest_cmd(path, probes, out), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, start_new_session=True)
    try:
        results = out / "marked" / "results.json"

        def second_gap_running() -> bool:
            if not results.exists() or not marked_processes(path):
                return False
            data = json.loads(results.read_text())
            return data["gaps"][0]["status"] == "pass"

        assert wait_for(second_gap_running, 30), "the slow gap never started"
        os.kill(process.pid, sig)
        process.wait(30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert wait_for(lambda: not marked_processes(path), 5), "target outlived pytest"
    # Killed between gaps: the file is whole and holds the gap that finished.
    data = json.loads(results.read_text())
    assert data["gaps"][0]["status"] == "pass"
    assert len(data["gaps"]) == 14


def test_build_is_cached_and_a_failed_build_skips(tmp_path: Path) -> None:
    from gaps.targets import TargetSkipped, run_build

    folder = tmp_path / "t"
    folder.mkdir()
    (folder / "input.txt").write_text("v1")
    (folder / "target.toml").write_text("""
name = "built"
[build]
command = ["{python}", "-c", "open('out.bin', 'w').write('x')"]
inputs = ["input.txt"]
outputs = ["out.bin"]
[start]
command = ["{python}", "-m", "gaps.reference", "--port", "{port}"]
[endpoints.echo]
path = "/echo"
""")
    manifest = load_manifest(folder / "target.toml")
    assert run_build(manifest) == "built"
    assert run_build(manifest) == "cached"
    (folder / "input.txt").write_text("v2")
    assert run_build(manifest) == "built"
    (folder / "out.bin").unlink()
    assert run_build(manifest) == "built"
    failing = load_manifest(folder / "target.toml")
    failing.build = dataclasses.replace(
        manifest.build, argv=("{python}", "-c", "import sys; print('403 Forbidden'); sys.exit(3)"))
    with pytest.raises(TargetSkipped, match="exit status 3: 403 Forbidden"):
        run_build(failing)
