"""Target lifecycle: resolve, build (cached), start with free ports, wait ready, stop.

Managed targets run as a process group of their own, under a guard process (``gaps._guard``)
that sits outside the group and kills the whole group when the harness dies, even by
SIGKILL.  Stopping sends SIGTERM to the group, waits the grace period, then SIGKILL.  Every
live instance is also registered for an exit hook.  Builds run in a group of their own that
is killed once the build ends, times out or is interrupted.  So no process a target or build
starts outlives the harness: not on a failing test, not on Ctrl-C, not on a crash.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import hashlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from gaps.manifest import (
    Manifest,
    ManifestError,
    ProbeKey,
    load_manifest,
    url_manifest,
)
from gaps.output import OutputTail
from gaps.resources import cache_root, shipped_dir
from gaps.wire.client import handshake_ok, harness_side

# The built-in targets: the checkout's targets/ folder, or the wheel's copy of it.
BUILTIN_DIR = shipped_dir("targets", "reference/target.toml") or Path(
    __file__).resolve().parent.parent / "targets"
# The harness's own folder in a build folder (the build stamp): never copied, never hashed.
# What else a target's folder may hold that is no source (node_modules, target/, caches) is
# its manifest's business: build.outputs and build.exclude.
BUILD_STATE = ".wsgaps-build"
BUILD_TAIL = 4 * 1024
GUARD = Path(__file__).resolve().with_name("_guard.py")
# Bound on the guard's own start-up (an interpreter start and one fork/exec).
GUARD_REPORT_TIMEOUT = 30.0


class TargetSkipped(Exception):
    """The target cannot run here (build failed, runtime missing); not a failed run.

    ``build`` is what became of the build step, for the results: "failed" (it ran, or tried
    to, and failed or timed out), "not-run" (a runtime it needs is missing) or "none" (the
    target has no build step).
    """

    def __init__(self, message: str, build: str = "failed") -> None:
        super().__init__(message)
        self.build = build


class TargetFailed(Exception):
    """The target was built but did not come up, or died; the probe cannot run."""

    def __init__(self, message: str, logs: str = "") -> None:
        super().__init__(message)
        self.logs = logs


def builtin_names() -> list[str]:
    return sorted(p.parent.name for p in BUILTIN_DIR.glob("*/target.toml"))


def resolve(spec: str, *, keys: Iterable[ProbeKey] | None = None) -> Manifest:
    """A target from a built-in name, a manifest path (file or folder), or a ws:// URL;
    ``keys``: the probe-declared manifest keys it may use (the built-in probes' by default)."""
    if spec.startswith(("ws://", "wss://")):
        return url_manifest(spec)
    builtin = BUILTIN_DIR / spec / "target.toml"
    if "/" not in spec and builtin.exists():
        return load_manifest(builtin, keys=keys)
    path = Path(spec)
    if path.is_dir():
        path = path / "target.toml"
    if path.exists():
        return load_manifest(path, keys=keys)
    known = ", ".join(builtin_names())
    raise ManifestError(f"{spec}: not a built-in target ({known}), manifest path or ws:// URL")


# -- ports ---------------------------------------------------------------------------------

_given_ports: set[int] = set()
_ports_lock = threading.Lock()  # instances start in worker threads


def free_port() -> int:
    """A port free on 127.0.0.1 now, never handed out twice by this process."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        with _ports_lock:
            if port not in _given_ports:
                _given_ports.add(port)
                return port
    raise OSError("no free port found on 127.0.0.1")


# -- build and version --------------------------------------------------------------------------

def missing_runtime(requires: tuple[str, ...]) -> str | None:
    """Why a command needing ``requires`` cannot run here (the first tool not on the PATH),
    or None when all are there."""
    for tool in requires:
        if tool != "python" and shutil.which(tool) is None:
            return f"{tool} not found on PATH"
    return None


# How a user of the package gets the stacks of the built-in Python targets (pyproject.toml).
TARGETS_EXTRA = "pip install 'wsgaps[targets]'"


def _missing_modules(manifest: Manifest) -> str | None:
    """Why the target cannot start here when a module its start command imports is not
    installed in the harness's environment; None when all are (or none are named)."""
    assert manifest.start is not None
    missing = [name for name in manifest.start.imports if not _importable(name)]
    if not missing:
        return None
    names = ", ".join(missing)
    reason = f"{names} {'is' if len(missing) == 1 else 'are'} not installed in this environment"
    return f"{reason}; {TARGETS_EXTRA}" if is_builtin(manifest) else reason


def _importable(module: str) -> bool:
    """Whether ``module`` can be found by this interpreter, without importing it (a
    package's parents are imported to search them; their failure counts as not found)."""
    try:
        return importlib.util.find_spec(module) is not None
    except Exception:  # a broken parent package, or an import hook that refuses it
        return False


def _expand(text: str, values: dict[str, str]) -> str:
    return text.format_map(values)


def is_builtin(manifest: Manifest) -> bool:
    return manifest.path is not None and manifest.path.resolve().parent.parent == BUILTIN_DIR


def work_dir(manifest: Manifest) -> Path:
    """Where a target is built and run from: its own folder, except for a built-in target
    with a build step, which builds in a folder of the per-user cache (an installed package
    is never written to; ``{target_dir}`` names that folder)."""
    if manifest.build is None or not is_builtin(manifest):
        return manifest.directory
    key = hashlib.sha256(str(manifest.directory).encode()).hexdigest()[:10]
    return cache_root() / "targets" / f"{manifest.name}-{key}"


def _not_sources(manifest: Manifest) -> set[str]:
    """Top-level names in a target's folder that are no build input: the harness's build
    state, the first part of each declared output, and the manifest's ``build.exclude``."""
    build = manifest.build
    if build is None:
        return {BUILD_STATE}
    return {BUILD_STATE, *build.exclude, *(Path(o).parts[0] for o in build.outputs)}


def _source_files(folder: Path, root: Path, skip: set[str]) -> list[Path]:
    """Every file under ``folder`` (recursively, sorted) except those whose first path part
    relative to ``root`` (the target's folder) is in ``skip``."""
    return [path for path in sorted(folder.rglob("*"))
            if path.relative_to(root).parts[0] not in skip and path.is_file()]


def _sync_work_dir(manifest: Manifest) -> None:
    """Copy the target's files into its build folder (changed files only, outputs never)."""
    source, dest = manifest.directory, work_dir(manifest)
    if source == dest:
        return
    for path in _source_files(source, source, _not_sources(manifest)):
        target = dest / path.relative_to(source)
        if target.is_file() and target.read_bytes() == path.read_bytes():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)


def _base_values(manifest: Manifest) -> dict[str, str]:
    return {"python": sys.executable, "target_dir": str(work_dir(manifest))}


def build_stamp(manifest: Manifest) -> str:
    """The cache key of the build: command, env and the content of every declared input.

    An input that is a directory counts by the names and contents of every file under it,
    however deep (``inputs = ["src"]``), outputs and excluded names left out.
    """
    assert manifest.build is not None
    digest = hashlib.sha256(json.dumps([manifest.build.argv, manifest.build.env]).encode())
    skip = _not_sources(manifest)
    for name in manifest.build.inputs:
        path = manifest.directory / name
        # An input named explicitly counts even where it lies under an excluded name.
        own = set(Path(name).parts[:1])
        digest.update(b"\0input\0" + name.encode())
        if path.is_file():
            digest.update(hashlib.sha256(path.read_bytes()).digest())
        elif path.is_dir():
            for file in _source_files(path, manifest.directory, skip - own):
                # Length-prefixed fields: no two different trees hash alike.
                relative = file.relative_to(path).as_posix().encode()
                digest.update(len(relative).to_bytes(4, "big") + relative)
                digest.update(hashlib.sha256(file.read_bytes()).digest())
        else:
            digest.update(b"<missing>")
    return digest.hexdigest()


class BuildCancelled(Exception):
    """The run was interrupted while a build ran in a worker thread; the build was killed."""


class Cancel:
    """A cancel token for commands run in worker threads (builds, version commands).

    ``set()`` kills the process group of every command running under the token, from
    whichever thread calls it, so the worker blocked in ``wait()`` returns at once: a worker
    thread cannot receive Ctrl-C itself, and polling a flag would add up to one poll interval
    to every interrupted run (issue 24: the 2 s bound was once missed by 40 ms)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._set = False
        self._groups: set[int] = set()

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        with self._lock:
            self._set = True
            groups = list(self._groups)
        for group in groups:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(group, signal.SIGKILL)

    def enter(self, group: int) -> bool:
        """Run ``group`` under the token; False (nothing registered) when already set."""
        with self._lock:
            if not self._set:
                self._groups.add(group)
            return not self._set

    def leave(self, group: int) -> None:
        with self._lock:
            self._groups.discard(group)


def run_bounded(argv: list[str], *, cwd: Path, env: Mapping[str, str], timeout: float,
                limit: int, cancel: Cancel | None = None) -> tuple[int | None, str]:
    """Run ``argv`` to its end in a process group of its own; its status and output tail.

    stdout and stderr are read together, keeping only the last ``limit`` bytes.  The status
    is None when ``timeout`` passed first.  However the wait ends (exit, timeout, Ctrl-C or
    any other exception), the whole group is SIGKILLed and reaped, so no background child of
    the command outlives it.  OSError if the command cannot be started.  ``cancel`` set from
    another thread ends the wait the same way (BuildCancelled): a build in a worker thread
    cannot receive Ctrl-C itself.
    """
    output = OutputTail(limit)
    process = subprocess.Popen(
        argv, cwd=cwd, env=dict(env), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, start_new_session=True,
    )
    assert process.stdout is not None
    output.follow(process.stdout, "out")
    status: int | None = None
    try:
        if cancel is not None and not cancel.enter(process.pid):
            raise BuildCancelled(f"{argv[0]}: interrupted")
        with contextlib.suppress(subprocess.TimeoutExpired):  # status stays None: timed out
            status = process.wait(timeout)
        if cancel is not None and cancel.is_set():
            raise BuildCancelled(f"{argv[0]}: interrupted")
    finally:
        if cancel is not None:
            cancel.leave(process.pid)
        # Also after a clean exit: what the command left running in its group goes too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        output.join()
    return status, output.text()


def cannot_run(manifest: Manifest) -> str | None:
    """Why the target cannot run on this machine (a tool its start or build needs is not on
    the PATH, a Python stack it imports is not installed), or None; nothing is built."""
    if manifest.start and (missing := missing_runtime(manifest.start.requires)
                           or _missing_modules(manifest)):
        return missing
    if manifest.build and (missing := missing_runtime(manifest.build.requires)):
        return f"build: {missing}"
    return None


def run_build(manifest: Manifest, *, time_scale: float = 1.0,
              cancel: Cancel | None = None) -> str:
    """Build if needed; returns "cached", "built" or "none".  TargetSkipped on failure.

    The build runs in a process group of its own that is killed when the build ends, times
    out or is interrupted; only the last 4 KiB of its output are kept, for the skip reason.
    """
    if manifest.start and (missing := missing_runtime(manifest.start.requires)
                           or _missing_modules(manifest)):
        raise TargetSkipped(missing, build="none" if manifest.build is None else "not-run")
    build = manifest.build
    if build is None:
        return "none"
    if missing := missing_runtime(build.requires):
        raise TargetSkipped(f"build: {missing}", build="not-run")
    _sync_work_dir(manifest)
    where = work_dir(manifest)
    stamp_path = where / ".wsgaps-build" / "stamp"
    stamp = build_stamp(manifest)
    outputs_exist = all((where / o).exists() for o in build.outputs)
    if outputs_exist and stamp_path.is_file() and stamp_path.read_text() == stamp:
        return "cached"
    values = _base_values(manifest)
    argv = [_expand(a, values) for a in build.argv]
    timeout = build.timeout * time_scale
    try:
        status, tail = run_bounded(argv, cwd=where / build.cwd,
                                    env={**os.environ, **build.env}, timeout=timeout,
                                    limit=BUILD_TAIL, cancel=cancel)
    except OSError as exc:
        raise TargetSkipped(f"build could not start: {exc}") from None
    if status is None:
        raise TargetSkipped(f"build timed out after {timeout:.0f} s\n{tail}")
    if status != 0:
        last = next((line.strip() for line in reversed(tail.splitlines()) if line.strip()), "")
        raise TargetSkipped(f"build failed with exit status {status}: {last[:300]}\n{tail}")
    stamp_path.parent.mkdir(exist_ok=True)
    stamp_path.write_text(stamp)
    return "built"


# -- documentation (gap 14) -----------------------------------------------------------------

DOCS_STATE = ".wsgaps-docs"
# A failed docs fetch is tried again after this many seconds (or when its command changes):
# a registry that has no docs for a package (Maven's mirror without -sources.jars) says so
# once a day, not on every run.
DOCS_RETRY = 24 * 3600.0


def docs_dir(manifest: Manifest) -> Path:
    """Where a target's ``[docs] fetch`` puts the stack's docs: a folder of the per-user
    cache, keyed like the build folder (never the checkout or an installed package)."""
    key = hashlib.sha256(str(manifest.directory).encode()).hexdigest()[:10]
    return cache_root() / "docs" / f"{manifest.name}-{key}"


def docs_values(manifest: Manifest) -> dict[str, str]:
    """The placeholders of ``[docs]``: ``{python}``, ``{target_dir}``, ``{docs_dir}`` and
    ``{package_dir}`` (the installed ``gaps`` package, where the reference's docs live)."""
    return {**_base_values(manifest), "docs_dir": str(docs_dir(manifest)),
            "package_dir": str(Path(__file__).resolve().parent)}


def _docs_stamp(manifest: Manifest) -> str:
    assert manifest.docs is not None
    return hashlib.sha256(json.dumps([manifest.docs.fetch, manifest.docs.env]).encode()
                          ).hexdigest()


def docs_problem(manifest: Manifest) -> str | None:
    """Why the fetched docs are not there (the fetch failed, or never ran), or None when
    they are, or when the manifest fetches none."""
    if manifest.docs is None or not manifest.docs.fetch:
        return None
    state = docs_dir(manifest) / DOCS_STATE
    stamp = state / "stamp"
    if stamp.is_file() and stamp.read_text() == _docs_stamp(manifest):
        return None
    failed = state / "failed"
    if failed.is_file():
        return failed.read_text(errors="replace")[:BUILD_TAIL]
    return "the docs fetch has not run (it runs with the build, when gap 14 is selected)"


def run_docs_fetch(manifest: Manifest, *, time_scale: float = 1.0,
                   cancel: Cancel | None = None) -> str:
    """Run ``[docs] fetch`` if its docs are not cached: "none", "cached", "fetched" or
    "failed".  Like a build: in the build folder, in a process group of its own, bounded by
    ``docs.timeout``.  A failure is kept (``docs_problem``) and tried again next run; it
    never skips the target: the documentation check says ``skip`` with the reason."""
    docs = manifest.docs
    if docs is None or not docs.fetch:
        return "none"
    if docs_problem(manifest) is None:
        return "cached"
    where = docs_dir(manifest)
    failed = where / DOCS_STATE / "failed"
    tried = where / DOCS_STATE / "failed-stamp"
    if (failed.is_file() and tried.is_file() and tried.read_text() == _docs_stamp(manifest)
            and time.time() - failed.stat().st_mtime < DOCS_RETRY):
        return "failed"  # kept: docs_problem says why
    shutil.rmtree(where, ignore_errors=True)
    state = where / DOCS_STATE
    state.mkdir(parents=True)
    values = docs_values(manifest)
    argv = [_expand(a, values) for a in docs.fetch]
    env = {**os.environ, **{k: _expand(v, values) for k, v in docs.env.items()}}
    timeout = docs.timeout * time_scale
    cwd = work_dir(manifest)
    try:
        status, tail = run_bounded(argv, cwd=cwd if cwd.is_dir() else where, env=env,
                                    timeout=timeout, limit=BUILD_TAIL, cancel=cancel)
    except OSError as exc:
        status, tail = -1, _cannot_start(argv[0], exc)
    if status == 0:
        (state / "stamp").write_text(_docs_stamp(manifest))
        return "fetched"
    why = (f"docs fetch timed out after {timeout:.0f} s" if status is None
           else f"docs fetch failed with exit status {status}")
    (state / "failed").write_text(f"{why} (tried again after {DOCS_RETRY / 3600:.0f} h, or "
                                  f"when [docs] fetch changes)\n{tail}")
    (state / "failed-stamp").write_text(_docs_stamp(manifest))
    return "failed"


UNKNOWN_VERSION = "unknown"


def target_version(manifest: Manifest, timeout: float = 30.0,
                   cancel: Cancel | None = None) -> tuple[str | None, str | None]:
    """The manifest's version command's answer: (version, problem).

    The version is the first line of the command's output, bounded, or None when the
    manifest has none.  A command that cannot start, fails or does not answer in time gives
    ``"unknown"`` and a one-line problem (its exit status and last line of output), never
    its output as the version: a Python traceback's first line is not a version.  Run like
    a build (its own process group, taken down afterwards), so nothing it starts outlives
    it; ``cancel`` ends it as it ends a build (BuildCancelled).
    """
    if manifest.version is None:
        return None, None
    values = _base_values(manifest)
    argv = [_expand(a, values) for a in manifest.version.argv]
    try:
        status, text = run_bounded(
            argv, cwd=work_dir(manifest) / manifest.version.cwd, env=os.environ,
            timeout=timeout, limit=BUILD_TAIL, cancel=cancel)
    except OSError as exc:
        return UNKNOWN_VERSION, f"version command: {_cannot_start(argv[0], exc)}"
    if status is None:
        return UNKNOWN_VERSION, f"version command: no answer within {timeout:.0f} s"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if status != 0:
        last = f": {lines[-1][:300]}" if lines else " and printed nothing"
        return UNKNOWN_VERSION, f"version command exited with status {status}{last}"
    if not lines:
        return UNKNOWN_VERSION, "version command printed nothing"
    return lines[0][:200], None


# -- instances ------------------------------------------------------------------------------

_live: set[Instance] = set()

# Seconds an interrupted run gives each target to stop, instead of its manifest's grace: a
# shutdown's Close frames are of no use then, and Ctrl-C should be over within 2 s.
INTERRUPT_GRACE = 0.25
_interrupted = threading.Event()


def interrupting() -> None:
    """The run was interrupted: every live target gets SIGTERM now and SIGKILL
    ``INTERRUPT_GRACE`` seconds later, and every stop from now on waits that long at most,
    however long the stops already under way meant to wait."""
    _interrupted.set()
    for instance in list(_live):
        instance.signal(signal.SIGTERM)
    killer = threading.Timer(INTERRUPT_GRACE, _kill_live)
    killer.daemon = True
    killer.start()


def interrupt_over() -> None:
    """Back to the manifests' grace periods (a test that interrupted a run in-process)."""
    _interrupted.clear()


def _kill_live() -> None:
    for instance in list(_live):
        instance.signal(signal.SIGKILL)


def _stop_all() -> None:
    for instance in list(_live):
        instance.stop(grace=1.0)


atexit.register(_stop_all)


def _cannot_start(program: str, exc: OSError) -> str:
    """The one-line reason a command could not be started, e.g. for a missing binary."""
    reason = exc.strerror or str(exc)
    if exc.filename is not None and str(exc.filename) != program:
        reason += f": {exc.filename}"  # e.g. the cwd is missing, not the program
    return f"cannot start {program}: {reason}"


@dataclass(eq=False)
class Instance:
    """One running (or external) server: its ports, process and captured output.

    ``process`` is the target's guard (see ``gaps._guard``): it exits when the target does,
    with the target's status, after clearing the target's process group.  ``target_pid`` is
    the target's own pid, which is also its process group id.
    """

    manifest: Manifest
    ports: dict[str, int] = field(default_factory=dict)
    upstream: str | None = None
    process: subprocess.Popen[bytes] | None = None
    target_pid: int | None = None
    output: OutputTail = field(default_factory=OutputTail)
    started_at: float = 0.0
    stopped: bool = False
    queued: float = 0.0  # seconds the harness waited for a slot to start it (gaps.plan)
    # The open-file limits [soft, hard] it started with (-1: unlimited), as its guard set
    # them (gaps._guard raise_open_files: at least 4,096 where the hard limit allows).
    open_files: list[int] | None = None
    start_seconds: float = 0.0  # from the start command to ready (start_instance)
    ended_by_itself: int | None = None  # its exit status when stop() found it ended
    # When stop() sent SIGTERM (time.monotonic(), the event loop's clock), and whether the
    # grace period ran out so that SIGKILL ended it: the shutdown probe's time base and
    # its evidence of a shutdown that did not finish.
    terminated_at: float | None = None
    killed_after_grace: bool = False
    # The harness's end of the guard's socket: closing it (or dying) tells the guard to go.
    _link: socket.socket | None = field(default=None, repr=False)

    @property
    def managed(self) -> bool:
        return self.manifest.managed

    def exit_status(self) -> int | None:
        """The target's exit status if it has ended by itself (its guard exits alike), also
        after the harness's stop came too late for it; None while it runs, when the harness
        stopped it, or when the harness does not run it."""
        if self.process is None:
            return None
        if self.stopped:
            return self.ended_by_itself
        return self.process.poll()

    def _values(self) -> dict[str, str]:
        values = _base_values(self.manifest)
        values.update({k: str(v) for k, v in self.ports.items()})
        values["upstream"] = self.upstream or ""
        return values

    def expand(self, text: str) -> str:
        """``text`` with this instance's placeholders filled (``{port}``, ``{upstream}``...)."""
        return _expand(text, self._values())

    def url(self, endpoint: str, **fields: str) -> str:
        """The endpoint's URL for this instance; KeyError if the manifest has no such endpoint."""
        spec = self.manifest.endpoints[endpoint]
        values = {**self._values(), **fields}
        if spec.url is not None:
            return spec.url.format_map(values)
        assert spec.path is not None
        return f"ws://127.0.0.1:{self.ports['port']}{spec.path.format_map(values)}"

    def start(self, extra_args: tuple[str, ...] = ()) -> None:
        """Start the target under its guard, with free ports; returns once it runs.

        TargetFailed("cannot start <program>: <reason>") when the command cannot be run
        (missing, not executable, missing cwd); nothing is left running then.
        """
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
        ours, theirs = socket.socketpair()
        guard = [sys.executable, "-I", str(GUARD), str(theirs.fileno()),
                 "--grace", str(self.manifest.grace), "--", *argv]
        try:
            # A session of its own: Ctrl-C in a terminal reaches the harness only, which
            # then stops the target in order.  No preexec_fn: forking with reader threads
            # running must not run Python code in the child.
            self.process = subprocess.Popen(
                guard, cwd=work_dir(self.manifest) / start.cwd, env=env,
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                start_new_session=True, pass_fds=(theirs.fileno(),),
            )
        except OSError as exc:
            ours.close()
            raise TargetFailed(_cannot_start(argv[0], exc)) from None
        finally:
            theirs.close()
        self._link = ours
        _live.add(self)
        self.started_at = time.monotonic()
        assert self.process.stdout is not None and self.process.stderr is not None
        self.output.follow(self.process.stdout, "out")
        self.output.follow(self.process.stderr, "err")
        report = self._guard_report()
        pid = report.get("pid")
        if isinstance(pid, int):
            self.target_pid = pid
            limits = report.get("open_files")
            if isinstance(limits, list) and all(isinstance(v, int) for v in limits):
                self.open_files = limits
            return
        status = self.stop(grace=0)
        if "error" in report:
            filename = report.get("filename")
            error = OSError(report.get("errno"), str(report["error"]),
                            None if filename is None else str(filename))
            raise TargetFailed(_cannot_start(argv[0], error), self.logs())
        raise TargetFailed(f"cannot start {argv[0]}: its guard ended with status {status} "
                           f"({report.get('guard', 'no report')})", self.logs())

    def open_file_limit(self) -> int | None:
        """The target's soft open-file limit now (-1: unlimited): from ``/proc`` where the
        system has it (a runtime may raise its own, as Go and the JVM do), else as its
        guard started it; None for a target the harness does not run."""
        if self.target_pid is not None:
            with contextlib.suppress(OSError, ValueError), \
                    open(f"/proc/{self.target_pid}/limits", encoding="ascii") as f:
                for line in f:
                    if line.startswith("Max open files"):
                        soft = line.split()[3]
                        return -1 if soft == "unlimited" else int(soft)
        return self.open_files[0] if self.open_files else None

    def _guard_report(self) -> dict[str, object]:
        """The guard's one-line report: {"pid": n}, {"error": ...} or {"guard": problem}."""
        assert self._link is not None
        self._link.settimeout(GUARD_REPORT_TIMEOUT)
        data = b""
        try:
            while not data.endswith(b"\n"):
                chunk = self._link.recv(4096)
                if not chunk:
                    return {"guard": "exited without a report"}
                data += chunk
        except TimeoutError:
            return {"guard": f"no report within {GUARD_REPORT_TIMEOUT:.0f} s"}
        except OSError as exc:
            return {"guard": f"report unreadable: {exc}"}
        try:
            report = json.loads(data)
        except ValueError:
            return {"guard": f"malformed report {data[:200]!r}"}
        return report if isinstance(report, dict) else {"guard": "malformed report"}

    async def wait_ready(
        self, timeout: float, handshake: Callable[[str, float], Awaitable[object]]
    ) -> float:
        """Wait until ``handshake(echo_url, timeout)`` succeeds; returns seconds taken.

        TargetFailed if the process exits first or the timeout passes.  The handshake is
        passed in so the lifecycle does not depend on the wire toolkit.  A harness-side
        error of an attempt (out of descriptors or memory here) is raised as it is: it says
        nothing about the target's readiness.
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
                if harness_side(exc):
                    raise
                last_error = f"{type(exc).__name__}: {exc}"[:300]
                await asyncio.sleep(min(0.1, max(remaining, 0)))
                continue
            return loop.time() - started

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the target's process group: the target and its children.

        The guard is outside that group, so even SIGKILL or SIGSTOP leaves it watching.
        """
        # Only while the guard runs: it reaps the target only after emptying the target's
        # group, so until then the id names that group and no other.
        if (self.target_pid is not None and self.process is not None
                and self.process.poll() is None):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.target_pid, sig)

    def stop(self, grace: float | None = None) -> int | None:
        """SIGTERM to the target's group, ``grace`` seconds, then SIGKILL; the exit status.

        The status is the target's own, as its guard reports it by exiting alike (``-9``
        when it had to be killed).  Idempotent.
        """
        process = self.process
        if process is None or self.stopped:
            return None if process is None else process.returncode
        grace = self.manifest.grace if grace is None else grace
        if _interrupted.is_set():
            grace = min(grace, INTERRUPT_GRACE)
        self.ended_by_itself = process.poll()
        if self.ended_by_itself is None:
            if self.target_pid is None:
                # The start was interrupted before the guard named the target: closing the
                # link makes the guard stop it (SIGTERM, the manifest's grace, SIGKILL).
                self._close_link()
                grace = self.manifest.grace + 1
            else:
                self.terminated_at = time.monotonic()
                self.signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(grace)
            self.killed_after_grace = process.poll() is None
        # Whatever is left of the group goes now; the guard then reaps the target and exits
        # (a guard that has exited already emptied the group).
        self.signal(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(5)
        self._close_link()
        if process.poll() is None:
            # Only a stuck guard gets here; the kernel then SIGKILLs the target (PDEATHSIG).
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        self.output.join()
        self.stopped = True
        _live.discard(self)
        return process.returncode

    def _close_link(self) -> None:
        if self._link is not None:
            self._link.close()

    async def astop(self, grace: float | None = None) -> int | None:
        """``stop`` in a worker thread, so the event loop keeps running meanwhile.

        Probes abort their sockets on the way out and asyncio closes them on the next loop
        iterations; stopping from the loop thread would freeze those closes, and the server
        would wait out its closing handshakes until the grace period ends.
        """
        return await asyncio.to_thread(self.stop, grace)

    def logs(self) -> str:
        return self.output.text()


_discards: set[asyncio.Task[None]] = set()  # stops of starts cancelled half-way


async def _discard(starting: asyncio.Future[None], instance: Instance) -> None:
    with contextlib.suppress(Exception):
        await starting  # bounded by the guard's report timeout
    await instance.astop()


async def start_instance(manifest: Manifest, scale: float,
                         extra_args: tuple[str, ...] = (), *,
                         upstream: str | None = None) -> Instance:
    """A fresh, ready instance of a managed target; TargetFailed (stopped) if never ready.

    ``upstream`` fills the ``{upstream}`` placeholder (the recovery probe's server, already
    listening); without it the placeholder is empty and the target dials nothing.
    """
    instance = Instance(manifest, upstream=upstream)
    begun = time.monotonic()
    # The start waits for the guard's report (an interpreter start and a fork/exec, about
    # 0.1 s): in a worker thread, so the event loop and the other checks' timing go on.
    starting = asyncio.ensure_future(asyncio.to_thread(instance.start, extra_args))
    try:
        await asyncio.shield(starting)
    except asyncio.CancelledError:
        # The start goes on in its thread: a task of its own waits for it and stops the
        # instance, so a second cancel of this one cannot leave the target running.
        cleanup = asyncio.get_running_loop().create_task(_discard(starting, instance))
        _discards.add(cleanup)
        cleanup.add_done_callback(_discards.discard)
        raise
    try:
        await instance.wait_ready(manifest.ready_timeout * scale, handshake_ok)
    except BaseException:
        await instance.astop()
        raise
    instance.start_seconds = time.monotonic() - begun
    return instance
