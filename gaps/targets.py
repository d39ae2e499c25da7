"""Target lifecycle: resolve, build (cached), start with free ports, wait ready, stop.

Managed targets run as a process group of their own.  Stopping sends SIGTERM to the group,
waits the grace period, then SIGKILL.  Every live instance is also registered for an exit
hook, and the child asks the kernel to kill it if the harness dies (PR_SET_PDEATHSIG), so no
server outlives the harness: not on a failing test, not on Ctrl-C, not on a crash.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import ctypes
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from gaps.manifest import (
    Manifest,
    ManifestError,
    load_manifest,
    url_manifest,
)

BUILTIN_DIR = Path(__file__).resolve().parent.parent / "targets"
OUTPUT_LIMIT = 64 * 1024
BUILD_TAIL = 4 * 1024


class TargetSkipped(Exception):
    """The target cannot run here (build failed, runtime missing); not a failed run."""


class TargetFailed(Exception):
    """The target was built but did not come up, or died; the probe cannot run."""

    def __init__(self, message: str, logs: str = "") -> None:
        super().__init__(message)
        self.logs = logs


def builtin_names() -> list[str]:
    return sorted(p.parent.name for p in BUILTIN_DIR.glob("*/target.toml"))


def resolve(spec: str) -> Manifest:
    """A target from a built-in name, a manifest path (file or folder), or a ws:// URL."""
    if spec.startswith(("ws://", "wss://")):
        return url_manifest(spec)
    builtin = BUILTIN_DIR / spec / "target.toml"
    if "/" not in spec and builtin.exists():
        return load_manifest(builtin)
    path = Path(spec)
    if path.is_dir():
        path = path / "target.toml"
    if path.exists():
        return load_manifest(path)
    known = ", ".join(builtin_names())
    raise ManifestError(f"{spec}: not a built-in target ({known}), manifest path or ws:// URL")


# -- ports ---------------------------------------------------------------------------------

_given_ports: set[int] = set()


def free_port() -> int:
    """A port free on 127.0.0.1 now, never handed out twice by this process."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in _given_ports:
            _given_ports.add(port)
            return port
    raise OSError("no free port found on 127.0.0.1")


# -- output capture --------------------------------------------------------------------------

class OutputTail:
    """The last ``limit`` bytes of a process's stdout and stderr, read by a thread each."""

    def __init__(self, limit: int = OUTPUT_LIMIT) -> None:
        self.limit = limit
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def follow(self, stream, label: str) -> None:
        def pump() -> None:
            for line in iter(stream.readline, b""):
                self._add(line if label == "out" else b"[stderr] " + line)
            stream.close()

        thread = threading.Thread(target=pump, daemon=True, name=f"wsgaps-{label}")
        thread.start()
        self._threads.append(thread)

    def _add(self, data: bytes) -> None:
        with self._lock:
            self._chunks.append(data)
            self._size += len(data)
            while self._size > self.limit and len(self._chunks) > 1:
                self._size -= len(self._chunks.popleft())

    def join(self, timeout: float = 2.0) -> None:
        for thread in self._threads:
            thread.join(timeout)

    def text(self) -> str:
        with self._lock:
            data = b"".join(self._chunks)
        return data[-self.limit :].decode("utf-8", "replace")


# -- build and version --------------------------------------------------------------------------

def _missing_runtime(requires: tuple[str, ...]) -> str | None:
    for tool in requires:
        if tool != "python" and shutil.which(tool) is None:
            return f"{tool} not found on PATH"
    return None


def _expand(text: str, values: dict[str, str]) -> str:
    return text.format_map(values)


def _base_values(manifest: Manifest) -> dict[str, str]:
    return {"python": sys.executable, "target_dir": str(manifest.directory)}


def build_stamp(manifest: Manifest) -> str:
    """The cache key of the build: command, env and the content of every declared input."""
    assert manifest.build is not None
    digest = hashlib.sha256(json.dumps([manifest.build.argv, manifest.build.env]).encode())
    for name in manifest.build.inputs:
        path = manifest.directory / name
        digest.update(name.encode())
        digest.update(path.read_bytes() if path.is_file() else b"<missing>")
    return digest.hexdigest()


def run_build(manifest: Manifest, *, time_scale: float = 1.0) -> str:
    """Build if needed; returns "cached", "built" or "none".  TargetSkipped on failure."""
    if manifest.start and (missing := _missing_runtime(manifest.start.requires)):
        raise TargetSkipped(missing)
    build = manifest.build
    if build is None:
        return "none"
    if missing := _missing_runtime(build.requires):
        raise TargetSkipped(f"build: {missing}")
    stamp_path = manifest.directory / ".wsgaps-build" / "stamp"
    stamp = build_stamp(manifest)
    outputs_exist = all((manifest.directory / o).exists() for o in build.outputs)
    if outputs_exist and stamp_path.is_file() and stamp_path.read_text() == stamp:
        return "cached"
    values = _base_values(manifest)
    argv = [_expand(a, values) for a in build.argv]
    timeout = build.timeout * time_scale
    try:
        done = subprocess.run(
            argv, cwd=manifest.directory / build.cwd, env={**os.environ, **build.env},
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            timeout=timeout, start_new_session=True, check=False,
        )
    except subprocess.TimeoutExpired as exc:
        tail = (exc.stdout or b"")[-BUILD_TAIL:].decode("utf-8", "replace")
        raise TargetSkipped(f"build timed out after {timeout:.0f} s\n{tail}") from None
    except OSError as exc:
        raise TargetSkipped(f"build could not start: {exc}") from None
    if done.returncode != 0:
        tail = done.stdout[-BUILD_TAIL:].decode("utf-8", "replace")
        last = next((line.strip() for line in reversed(tail.splitlines()) if line.strip()), "")
        raise TargetSkipped(
            f"build failed with exit status {done.returncode}: {last[:300]}\n{tail}")
    stamp_path.parent.mkdir(exist_ok=True)
    stamp_path.write_text(stamp)
    return "built"


def target_version(manifest: Manifest, timeout: float = 30.0) -> str | None:
    """The first line of the manifest's version command, bounded; None when there is none."""
    if manifest.version is None:
        return None
    values = _base_values(manifest)
    try:
        done = subprocess.run(
            [_expand(a, values) for a in manifest.version.argv],
            cwd=manifest.directory / manifest.version.cwd, stdin=subprocess.DEVNULL,
            capture_output=True, timeout=timeout, check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unknown ({type(exc).__name__})"
    text = done.stdout.decode("utf-8", "replace").strip() or done.stderr.decode(
        "utf-8", "replace").strip()
    return (text.splitlines() or ["unknown"])[0][:200]


# -- instances ------------------------------------------------------------------------------

_live: set[Instance] = set()


def _stop_all() -> None:
    for instance in list(_live):
        instance.stop(grace=1.0)


atexit.register(_stop_all)


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


@dataclass(eq=False)
class Instance:
    """One running (or external) server: its ports, process and captured output."""

    manifest: Manifest
    ports: dict[str, int] = field(default_factory=dict)
    upstream: str | None = None
    process: subprocess.Popen[bytes] | None = None
    output: OutputTail = field(default_factory=OutputTail)
    started_at: float = 0.0
    stopped: bool = False

    @property
    def managed(self) -> bool:
        return self.manifest.managed

    def _values(self) -> dict[str, str]:
        values = _base_values(self.manifest)
        values.update({k: str(v) for k, v in self.ports.items()})
        values["upstream"] = self.upstream or ""
        return values

    def url(self, endpoint: str, **fields: str) -> str:
        """The endpoint's URL for this instance; KeyError if the manifest has no such endpoint."""
        spec = self.manifest.endpoints[endpoint]
        values = {**self._values(), **fields}
        if spec.url is not None:
            return spec.url.format_map(values)
        assert spec.path is not None
        return f"ws://127.0.0.1:{self.ports['port']}{spec.path.format_map(values)}"

    def start(self, extra_args: tuple[str, ...] = ()) -> None:
        if not self.managed:
            return
        start = self.manifest.start
        assert start is not None
        for name in self.manifest.placeholders() | {"port"}:
            self.ports.setdefault(name, free_port())
        values = self._values()
        argv = [_expand(a, values) for a in start.argv] + list(extra_args)
        env = {**os.environ, "PYTHONUNBUFFERED": "1",
               **{k: _expand(v, values) for k, v in start.env.items()}}
        self.process = subprocess.Popen(
            argv, cwd=self.manifest.directory / start.cwd, env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        _live.add(self)
        self.started_at = time.monotonic()
        assert self.process.stdout is not None and self.process.stderr is not None
        self.output.follow(self.process.stdout, "out")
        self.output.follow(self.process.stderr, "err")

    async def wait_ready(
        self, timeout: float, handshake: Callable[[str, float], Awaitable[object]]
    ) -> float:
        """Wait until ``handshake(echo_url, timeout)`` succeeds; returns seconds taken.

        TargetFailed if the process exits first or the timeout passes.  The handshake is
        passed in so the lifecycle does not depend on the wire toolkit.
        """
        loop = asyncio.get_running_loop()
        started = loop.time()
        last_error = "no attempt"
        while True:
            if self.process is not None and self.process.poll() is not None:
                self.output.join()
                raise TargetFailed(
                    f"{self.manifest.name} exited with status {self.process.returncode} "
                    f"before it was ready", self.output.text())
            remaining = timeout - (loop.time() - started)
            if remaining <= 0:
                raise TargetFailed(
                    f"{self.manifest.name} not ready within {timeout:.1f} s "
                    f"(last handshake attempt: {last_error})", self.output.text())
            try:
                await handshake(self.url("echo"), min(2.0, remaining))
            except Exception as exc:
                last_error = f"{type(exc).__name__}: {exc}"[:300]
                await asyncio.sleep(min(0.1, max(remaining, 0)))
                continue
            return loop.time() - started

    def signal(self, sig: int) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)

    def stop(self, grace: float | None = None) -> int | None:
        """SIGTERM to the process group, ``grace`` seconds, then SIGKILL; the exit status."""
        process = self.process
        if process is None or self.stopped:
            return None if process is None else process.returncode
        grace = self.manifest.grace if grace is None else grace
        self.signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(grace)
        # The group may hold children even after the leader exited: kill what is left.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(5)
        self.output.join()
        self.stopped = True
        _live.discard(self)
        return process.returncode

    async def astop(self, grace: float | None = None) -> int | None:
        """``stop`` in a worker thread, so the event loop keeps running meanwhile.

        Probes abort their sockets on the way out and asyncio closes them on the next loop
        iterations; stopping from the loop thread would freeze those closes, and the server
        would wait out its closing handshakes until the grace period ends.
        """
        return await asyncio.to_thread(self.stop, grace)

    def logs(self) -> str:
        return self.output.text()
