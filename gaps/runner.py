"""Runs the probes of every target in one pytest subprocess and follows its progress.

The CLI starts ``pytest -m gaps`` once for the whole run (so the run planner's one bound on
live instances holds across all targets, and a crash or a flood stays inside that process
group) and reads the planner's progress events, JSON lines on a pipe of their own
(``--gaps-events FD``), never pytest's text output.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import wsgaps_probes
from gaps.options import forward

PROBES_DIR = Path(wsgaps_probes.__file__).resolve().parent
OUTPUT_TAIL = 16 * 1024
EVENT_LINE_LIMIT = 64 * 1024  # bytes of one event line; longer ones are dropped


@dataclass
class TargetProgress:
    """What one target's share of the run has done so far, from the planner's events."""

    name: str
    total: int | None = None
    done: int = 0
    current: str = "waiting"
    errors: list[str] = field(default_factory=list)  # check IDs whose verdict is error
    gaps_done: list[dict[str, Any]] = field(default_factory=list)
    running: dict[str, float] = field(default_factory=dict)  # gap -> its longest check budget
    skipped: str | None = None
    unwritten: str | None = None  # why its results.json could not be written (path, reason)
    # Its build, on the CLI's clock (time.monotonic): when it began and when it was done
    # (built, found cached or failed), and what became of it (the results' build word).
    build_started: float | None = None
    build_done: float | None = None
    build: str | None = None
    finished: float | None = None  # when its last selected gap was done (monotonic)

    def apply(self, event: dict[str, Any], now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        kind = event.get("event")
        if kind == "results-unwritten":
            self.unwritten = str(event.get("reason"))
        if kind == "build-started":
            self.build_started = now
            self.current = "building"
        elif kind == "target-prepared":
            self.skipped = event.get("skipped")
            self.build = event.get("build")
            self.build_done = now
            self.current = "skipped" if self.skipped else "probing"
        elif kind == "gap-started":
            self.current = str(event.get("gap"))
            self.running[str(event.get("gap"))] = float(event.get("longest_wait") or 0)
        elif kind == "check-done":
            self.done += 1
            if event.get("verdict") == "error":
                self.errors.append(str(event.get("check")))
        elif kind == "gap-done":
            event = {**event, "at": now}
            self.gaps_done.append(event)
            self.running.pop(str(event.get("gap")), None)
            self.finished = now

    def building(self, now: float) -> float | None:
        """Seconds its build has taken so far, while it is building; else None."""
        if self.build_started is None or self.build_done is not None:
            return None
        return now - self.build_started


@dataclass
class RunProgress:
    """The whole run: per-target progress, pytest's exit status and the tail of its output."""

    targets: dict[str, TargetProgress]
    returncode: int | None = None
    output: bytearray = field(default_factory=bytearray)
    interrupted: str | None = None  # the signal that interrupted the run, if one did

    def tail(self) -> str:
        return bytes(self.output[-OUTPUT_TAIL:]).decode("utf-8", "replace")


def pytest_argv(specs: list[str], options: dict[str, Any], events_fd: int | None = None,
                probes_dir: Path = PROBES_DIR) -> list[str]:
    """The pytest command line for a run; ini values are given so no config file is needed.

    The probes folder is the only path given: it holds no test file, so pytest collects
    nothing of the folder it runs in; the plugin adds the probe items.

    ``options`` are the CLI's parsed options (argparse ``dest`` names); each run option is
    passed on as its ``--gaps-`` twin.
    """
    argv = [
        sys.executable, "-m", "pytest", str(probes_dir), "-m", "gaps", "-q", "--color=no",
        "-p", "gaps.plugin", "-p", "no:cacheprovider", "--strict-markers",
        # Start-up the probe run does not need: assertion rewriting of every gaps module
        # (the plugin runs the probes; no assert statement decides anything), and the
        # plugins installed beside pytest (run_probes turns their autoloading off).
        "--assert=plain",
        # Hermetic: no ini file found above the probes folder (a project's, or this
        # checkout's pyproject.toml) and no PYTEST_ADDOPTS (run_probes drops it) reach the
        # child; their options belong to plugins the child does not load.
        "-c", os.devnull,
        "--rootdir", str(probes_dir.parent),
        "-o", "gaps_reports=false",  # the CLI renders once, after the run
        *forward(options),
    ]
    for spec in specs:
        argv += ["--gaps-target", spec]
    if events_fd is not None:
        argv += ["--gaps-events", str(events_fd)]
    return argv


async def _follow_events(read_fd: int, progress: RunProgress,
                         on_change: Callable[[], None]) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=EVENT_LINE_LIMIT, loop=loop)
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(read_fd, "rb", buffering=0))
    try:
        while True:
            try:
                line = await reader.readline()
            except ValueError:  # a line over the limit: skip it, keep following
                continue
            if not line:
                return
            try:
                event = json.loads(line)
            except ValueError:
                continue
            target = progress.targets.get(str(event.get("target", "")))
            if target is not None:
                target.apply(event)
                on_change()
    finally:
        transport.close()


async def _follow_output(stream: asyncio.StreamReader, progress: RunProgress) -> None:
    while chunk := await stream.read(65536):
        progress.output += chunk
        del progress.output[:-OUTPUT_TAIL]


async def run_probes(argv_for: Callable[[int], list[str]], progress: RunProgress,
                     on_change: Callable[[], None] = lambda: None) -> int:
    """Run pytest with ``argv_for(events_fd)``, updating ``progress`` from its events
    (``progress.targets`` is keyed by the target names the plugin reports)."""
    read_fd, write_fd = os.pipe()
    # Only the gaps plugin (given with -p): pytest-asyncio, anyio's plugin (pulled in by
    # starlette) and whatever else is installed cost about 0.3 s of start-up and run nothing
    # here, as the plugin drives its own event loop.
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_ADDOPTS"}
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    try:
        process = await asyncio.create_subprocess_exec(
            *argv_for(write_fd), stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, stdin=asyncio.subprocess.DEVNULL,
            pass_fds=(write_fd,), env=env)
    except BaseException:
        os.close(read_fd)
        raise
    finally:
        os.close(write_fd)  # the child holds its own copy; EOF comes when it exits
    assert process.stdout is not None
    followers = asyncio.gather(_follow_events(read_fd, progress, on_change),
                               _follow_output(process.stdout, progress))
    try:
        progress.returncode = await process.wait()
        await followers
    except asyncio.CancelledError:
        # Interrupted: the child gets the same signal (a second one, when Ctrl-C reached
        # its whole process group, is ignored; the same name either way, although each
        # may reach another of its threads first), tears its targets down in order and
        # ends within about a second; CHILD_WAIT is the backstop, after which its targets'
        # guards clean up.
        await asyncio.shield(_end_child(process, followers, progress.interrupted))
        raise
    on_change()
    return progress.returncode


CHILD_WAIT = 10.0  # seconds an interrupted pytest child gets to stop its targets and exit


async def _end_child(process: asyncio.subprocess.Process, followers: asyncio.Future[Any],
                     signal_name: str | None) -> None:
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.Signals[signal_name] if signal_name
                                else signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), CHILD_WAIT)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
    # The pipes end with the child; what they still hold is read, never left to warn.
    try:
        await asyncio.wait_for(asyncio.shield(followers), 2.0)
    except (TimeoutError, Exception):
        followers.cancel()
        await asyncio.gather(followers, return_exceptions=True)
