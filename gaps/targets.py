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
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, NamedTuple

from gaps.manifest import (
    Manifest,
    ManifestError,
    load_manifest,
    url_manifest,
)
from gaps.resources import cache_root, shipped_dir
from gaps.wire.client import handshake_ok

# The built-in targets: the checkout's targets/ folder, or the wheel's copy of it.
BUILTIN_DIR = shipped_dir("targets", "reference/target.toml") or Path(
    __file__).resolve().parent.parent / "targets"
# Build outputs never copied into a build folder (they are made there).
NOT_COPIED = {".wsgaps-build", "node_modules", "__pycache__"}
OUTPUT_LIMIT = 64 * 1024
BUILD_TAIL = 4 * 1024
GUARD = Path(__file__).resolve().with_name("_guard.py")
# Bound on the guard's own start-up (an interpreter start and one fork/exec).
GUARD_REPORT_TIMEOUT = 30.0
READ_SIZE = 64 * 1024


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


# -- output capture --------------------------------------------------------------------------

# Besides the tail, the start of the first crash report is kept apart: a runtime that dumps
# every thread (Go prints all goroutines on a fatal error, 50-70 KiB for GoFr) pushes the
# lines naming the cause out of the tail before the process is gone.
CRASH_HEAD_LIMIT = 8 * 1024
# Bytes of the same stream kept before a report's first line, cut to whole lines: Go writes
# "runtime: goroutine stack exceeds ..." before "fatal error: stack overflow", and Node the
# offending source line and the error before the first stack frame.
CRASH_CONTEXT = 1024
# The first bytes of a line that suffice to recognise every report start below.
LINE_PROBE = 96
STDERR_PREFIX = b"[stderr] "

# A line that starts a crash report (after the stderr prefix).  Go: an unrecovered panic, a
# runtime throw ("fatal error: concurrent map writes"), a fatal signal ("SIGSEGV: ...",
# "SIGQUIT: quit").  Python: a traceback, or a fatal error of the interpreter itself.  A stack
# frame line ("    at f (file:1:2)", group ``frame``) starts one only when the line before
# names an error (``_ERROR_LINE``): an uncaught exception in Node (and in Java) looks so,
# while a frame alone may belong to any logged error.  Logged tracebacks count too: the
# first report is kept, and that is usually where the trouble began.
# The match starts at the newline before the line: a literal first byte lets the regex engine
# skip to line ends at memchr speed, where ``^`` made it try every byte (six times slower).
_REPORT_START = re.compile(
    rb"\n(?:\[stderr\] )?(?:(?P<frame>[ \t]+at \S)|panic: |fatal error: |SIG[A-Z]+: "
    rb"|Traceback \(most recent call last\):|Fatal Python error: )")
# "TypeError: ...", "Error [ERR_UNHANDLED_ERROR]: ...", "java.lang.IllegalStateException: ..."
_ERROR_LINE = re.compile(rb"(?:\[stderr\] )?(?:Uncaught )?[\w$.]*(?:Error|Exception)\b")
# The line ``OutputTail.text`` puts between a kept crash head and the tail.
_SKIP_MARKER = re.compile(r"^\[wsgaps: \d+ bytes skipped after the start of the first crash "
                          r"report above\]$", re.MULTILINE)


def _skip_line(count: int) -> str:
    return f"[wsgaps: {count} bytes skipped after the start of the first crash report above]\n"


@dataclass
class _Stream:
    """One captured stream, and what its reader remembers of the lines it split across reads
    (a report's first line may arrive in pieces; nothing waits for its end)."""

    label: str
    prefix: bytes
    at_line_start: bool = True
    pos: int = 0  # bytes of this stream captured so far (with prefixes)
    line_start: int = 0  # where the unfinished last line began
    line_head: bytes = b""  # its first LINE_PROBE bytes
    prev_start: int = -1  # the last complete line: where it began,
    prev_head: bytes = b""  # and its first LINE_PROBE bytes

    def report_start(self, chunk: bytes) -> int | None:
        """Where (a position in this stream) a crash report starts in ``chunk`` or in the line
        it continues; None if nowhere."""
        whole = len(self.line_head) == self.pos - self.line_start
        if whole:  # the unfinished line is short: search it again with what follows
            # The newline in front stands for the end of the line before (or no line at all).
            text, base, begin = b"\n" + self.line_head + chunk, self.line_start - 1, 0
        else:  # too long already to start a report: search from the next line on
            text, base, begin = chunk, self.pos, chunk.find(b"\n")
            if begin < 0:
                return None
        for match in _REPORT_START.finditer(text, begin):
            at = match.start() + 1  # where the line begins, after its newline
            if match.group("frame") is None:
                return base + at
            if whole and at == 1:  # the frame line is the unfinished one: the line before is stored
                start, before = self.prev_start, self.prev_head
            else:
                line = text.rfind(b"\n", 0, at - 1) + 1
                if line == 0:  # (never when whole) the line before began in an earlier read
                    start, before = self.line_start, self.line_head
                else:
                    start, before = base + line, text[line:min(at - 1, line + LINE_PROBE)]
            if start >= 0 and _ERROR_LINE.match(before):
                return start
        return None

    def advance(self, chunk: bytes) -> None:
        """Take ``chunk`` as read: update the position and the remembered line starts."""
        last = chunk.rfind(b"\n")
        if last < 0:
            # Bounded: once the line is LINE_PROBE long, this keeps line_head unchanged.
            self.line_head = (self.line_head + chunk)[:LINE_PROBE]
        else:
            before = chunk.rfind(b"\n", 0, last)
            if before >= 0:
                self.prev_start = self.pos + before + 1
                self.prev_head = chunk[before + 1:min(last, before + 1 + LINE_PROBE)]
            else:  # the line that just ended began in an earlier read
                self.prev_start = self.line_start
                self.prev_head = (self.line_head + chunk[:last])[:LINE_PROBE]
            self.line_start = self.pos + last + 1
            self.line_head = chunk[last + 1:last + 1 + LINE_PROBE]
        self.pos += len(chunk)


class _Piece(NamedTuple):
    """Bytes of one stream: where they sit in all the output captured (``offset``) and in
    their own stream (``pos``)."""

    stream: _Stream
    offset: int
    pos: int
    data: bytes

    def cut(self, count: int) -> _Piece:
        """This piece without its first ``count`` bytes."""
        return _Piece(self.stream, self.offset + count, self.pos + count, self.data[count:])


class OutputTail:
    """The last ``limit`` bytes of a process's stdout and stderr, read by a thread each, and
    the head of the first crash report seen in them (at most ``head_limit`` bytes).

    Streams are read in chunks of at most 64 KiB, never whole lines, so a line of any
    length costs no more memory than the bounds (a few LINE_PROBE-byte line starts aside).
    Lines from stderr start with ``[stderr] ``.  The bytes are the target's and untrusted:
    they are only matched, counted and decoded with replacement.
    """

    def __init__(self, limit: int = OUTPUT_LIMIT, head_limit: int = CRASH_HEAD_LIMIT) -> None:
        self.limit = limit
        self.head_limit = head_limit
        self._pieces: deque[_Piece] = deque()
        self._size = 0
        self._total = 0  # bytes captured so far: the offset of the next one
        self._head: list[_Piece] = []  # the first crash report's start, with its context
        self._head_size = 0
        self._head_stream: _Stream | None = None
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def follow(self, stream: BinaryIO, label: str) -> None:
        """Read ``stream`` to EOF in a daemon thread, then close it."""
        fd = stream.fileno()
        state = _Stream(label, b"" if label == "out" else STDERR_PREFIX)

        def pump() -> None:
            try:
                # os.read returns what is there now: nothing waits for a newline.
                while chunk := os.read(fd, READ_SIZE):
                    self._take(state, chunk)
            except OSError:
                pass  # a broken stream ends the capture like EOF
            finally:
                stream.close()

        thread = threading.Thread(target=pump, daemon=True, name=f"wsgaps-{label}")
        thread.start()
        self._threads.append(thread)

    def _take(self, state: _Stream, chunk: bytes) -> None:
        if state.prefix:
            chunk = _prefix_lines(chunk, state.prefix, state.at_line_start)
        state.at_line_start = chunk.endswith(b"\n")
        with self._lock:
            piece = _Piece(state, self._total, state.pos, chunk)
            self._total += len(chunk)
            if self._head_stream is None:
                # Searched before the piece joins the tail, which may drop part of it at once.
                start = state.report_start(chunk)
                state.advance(chunk)
                if start is not None:
                    self._start_head(state, start, piece)
            else:
                state.advance(chunk)
                if self._head_stream is state:
                    self._extend_head(piece)
            self._add(piece)

    def _start_head(self, state: _Stream, start: int, piece: _Piece) -> None:
        """Keep the report starting at ``start`` in ``state``'s stream: up to CRASH_CONTEXT
        bytes of whole lines before it, from the tail, then all of ``piece`` from there."""
        first = max(start - CRASH_CONTEXT, 0)
        earlier = [p.cut(max(0, first - p.pos)) for p in self._pieces
                   if p.stream is state and p.pos + len(p.data) > first]
        parts = [*earlier, piece.cut(max(0, first - piece.pos))]
        begin = parts[0].pos  # the tail may have lost some of the context already
        if begin > 0:  # not the stream's start: the context begins after its first newline
            context = b"".join(p.data for p in parts)[:max(0, start - begin)]
            newline = context.find(b"\n")
            begin = start if newline < 0 else begin + newline + 1
        self._head_stream = state
        for part in parts:
            if part.pos + len(part.data) > begin:
                self._extend_head(part.cut(max(0, begin - part.pos)))

    def _extend_head(self, piece: _Piece) -> None:
        room = self.head_limit - self._head_size
        if room > 0 and piece.data:
            kept = piece.data[:room]
            self._head.append(piece._replace(data=kept))
            self._head_size += len(kept)

    def _add(self, piece: _Piece) -> None:
        if len(piece.data) > self.limit:
            piece = piece.cut(len(piece.data) - self.limit)
        self._pieces.append(piece)
        self._size += len(piece.data)
        excess = self._size - self.limit
        while excess > 0:
            first = self._pieces[0]
            if len(first.data) <= excess:
                self._pieces.popleft()
                cut = len(first.data)
            else:
                self._pieces[0] = first.cut(excess)
                cut = excess
            self._size -= cut
            excess -= cut

    def join(self, timeout: float = 2.0) -> None:
        for thread in self._threads:
            thread.join(timeout)

    def buffered(self) -> int:
        """Bytes held now (tail and crash head): for the memory bound's tests."""
        with self._lock:
            return self._size + self._head_size

    def text(self) -> str:
        """The tail; when the head of the first crash report is no longer in it, that head
        first, then one line saying how many bytes were skipped between the two."""
        with self._lock:
            tail = b"".join(p.data for p in self._pieces)
            tail_start = self._total - self._size
            shown = [p.data[:tail_start - p.offset] for p in self._head
                     if p.offset < tail_start]
            head_offset = self._head[0].offset if self._head else 0
        head = b"".join(shown)
        skipped = tail_start - head_offset - len(head)
        if not shown or skipped == 0:  # no head outside the tail, or the tail goes on from it
            return (head + tail).decode("utf-8", "replace")
        if not head.endswith(b"\n"):
            head += b"\n"
        return head.decode("utf-8", "replace") + _skip_line(skipped) + tail.decode(
            "utf-8", "replace")


def _prefix_lines(chunk: bytes, prefix: bytes, at_line_start: bool) -> bytes:
    """``chunk`` with ``prefix`` at the start of each line it begins (not after a final \\n)."""
    body = chunk[:-1].replace(b"\n", b"\n" + prefix) + chunk[-1:]
    return prefix + body if at_line_start else body


def bound_logs(texts: Sequence[str], limit: int) -> str:
    """``texts`` (``OutputTail.text()`` of several instances) joined by newlines and cut to
    their last ``limit`` characters, except that the first crash head one of them kept, with
    its skip line, stays in front when the cut would drop it; a second line then counts the
    characters cut after it."""
    joined = "\n".join(texts)
    cut = max(0, len(joined) - limit)
    where = 0
    for text in texts:
        marker = _SKIP_MARKER.search(text)
        # A target can print a look-alike line: only a head of the size OutputTail keeps is
        # taken as one, so the bound holds whatever the target writes.
        if marker is not None and marker.start() <= CRASH_HEAD_LIMIT + 1:
            if where >= cut:
                break  # the tail keeps it anyway
            head_end = where + marker.end() + 1  # after the skip line's newline
            rest = max(cut, head_end)
            more = (f"[wsgaps: {rest - head_end} more characters skipped]\n"
                    if rest > head_end else "")
            return joined[where:head_end] + more + joined[rest:]
        where += len(text) + 1
    return joined[cut:]


# -- build and version --------------------------------------------------------------------------

def _missing_runtime(requires: tuple[str, ...]) -> str | None:
    for tool in requires:
        if tool != "python" and shutil.which(tool) is None:
            return f"{tool} not found on PATH"
    return None


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


def _sync_work_dir(manifest: Manifest) -> None:
    """Copy the target's files into its build folder (changed files only, outputs never)."""
    source, dest = manifest.directory, work_dir(manifest)
    if source == dest:
        return
    skip = NOT_COPIED | {Path(o).parts[0] for o in manifest.build.outputs} if manifest.build \
        else NOT_COPIED
    for path in sorted(source.rglob("*")):
        relative = path.relative_to(source)
        if relative.parts[0] in skip or not path.is_file():
            continue
        target = dest / relative
        if target.is_file() and target.read_bytes() == path.read_bytes():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)


def _base_values(manifest: Manifest) -> dict[str, str]:
    return {"python": sys.executable, "target_dir": str(work_dir(manifest))}


def build_stamp(manifest: Manifest) -> str:
    """The cache key of the build: command, env and the content of every declared input."""
    assert manifest.build is not None
    digest = hashlib.sha256(json.dumps([manifest.build.argv, manifest.build.env]).encode())
    for name in manifest.build.inputs:
        path = manifest.directory / name
        digest.update(name.encode())
        digest.update(path.read_bytes() if path.is_file() else b"<missing>")
    return digest.hexdigest()


class BuildCancelled(Exception):
    """The run was interrupted while a build ran in a worker thread; the build was killed."""


def _run_bounded(argv: list[str], *, cwd: Path, env: Mapping[str, str], timeout: float,
                 limit: int, cancel: threading.Event | None = None) -> tuple[int | None, str]:
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
    deadline = time.monotonic() + timeout
    try:
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                status = process.wait(min(remaining, 0.2))
                break
            except subprocess.TimeoutExpired:
                if cancel is not None and cancel.is_set():
                    raise BuildCancelled(f"{argv[0]}: interrupted") from None
    finally:
        # Also after a clean exit: what the command left running in its group goes too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        output.join()
    return status, output.text()


def run_build(manifest: Manifest, *, time_scale: float = 1.0,
              cancel: threading.Event | None = None) -> str:
    """Build if needed; returns "cached", "built" or "none".  TargetSkipped on failure.

    The build runs in a process group of its own that is killed when the build ends, times
    out or is interrupted; only the last 4 KiB of its output are kept, for the skip reason.
    """
    if manifest.start and (missing := _missing_runtime(manifest.start.requires)):
        raise TargetSkipped(missing, build="none" if manifest.build is None else "not-run")
    build = manifest.build
    if build is None:
        return "none"
    if missing := _missing_runtime(build.requires):
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
        status, tail = _run_bounded(argv, cwd=where / build.cwd,
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


def target_version(manifest: Manifest, timeout: float = 30.0,
                   cancel: threading.Event | None = None) -> str | None:
    """The first line of the manifest's version command, bounded; None when there is none.

    Run like a build (its own process group, taken down afterwards), so nothing it starts
    outlives it; ``cancel`` ends it as it ends a build (BuildCancelled).
    """
    if manifest.version is None:
        return None
    values = _base_values(manifest)
    try:
        status, text = _run_bounded(
            [_expand(a, values) for a in manifest.version.argv],
            cwd=work_dir(manifest) / manifest.version.cwd, env=os.environ, timeout=timeout,
            limit=BUILD_TAIL, cancel=cancel)
    except OSError as exc:
        return f"unknown ({type(exc).__name__})"
    if status is None:
        return f"unknown (no answer within {timeout:.0f} s)"
    return (text.strip().splitlines() or ["unknown"])[0][:200]


# -- instances ------------------------------------------------------------------------------

_live: set[Instance] = set()


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
    # The harness's end of the guard's socket: closing it (or dying) tells the guard to go.
    _link: socket.socket | None = field(default=None, repr=False)

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
            return
        status = self.stop(grace=0)
        if "error" in report:
            filename = report.get("filename")
            error = OSError(report.get("errno"), str(report["error"]),
                            None if filename is None else str(filename))
            raise TargetFailed(_cannot_start(argv[0], error), self.logs())
        raise TargetFailed(f"cannot start {argv[0]}: its guard ended with status {status} "
                           f"({report.get('guard', 'no report')})", self.logs())

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
        if process.poll() is None:
            if self.target_pid is None:
                # The start was interrupted before the guard named the target: closing the
                # link makes the guard stop it (SIGTERM, the manifest's grace, SIGKILL).
                self._close_link()
                grace = self.manifest.grace + 1
            else:
                self.signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(grace)
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


async def start_instance(manifest: Manifest, scale: float,
                         extra_args: tuple[str, ...] = (), *,
                         upstream: str | None = None) -> Instance:
    """A fresh, ready instance of a managed target; TargetFailed (stopped) if never ready.

    ``upstream`` fills the ``{upstream}`` placeholder (the recovery probe's server, already
    listening); without it the placeholder is empty and the target dials nothing.
    """
    instance = Instance(manifest, upstream=upstream)
    # The start waits for the guard's report (an interpreter start and a fork/exec, about
    # 0.1 s): in a worker thread, so the event loop and the other checks' timing go on.
    starting = asyncio.ensure_future(asyncio.to_thread(instance.start, extra_args))
    try:
        await asyncio.shield(starting)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await starting  # bounded by the guard's report timeout
        await instance.astop()
        raise
    try:
        await instance.wait_ready(manifest.ready_timeout * scale, handshake_ok)
    except BaseException:
        await instance.astop()
        raise
    return instance
