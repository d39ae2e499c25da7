"""Runs the probes for one target in a pytest subprocess and reports progress.

The CLI runs every target in its own ``pytest -m gaps`` process (so a crash, a flood or a
runaway target stays inside one process group) and follows its verbose output to drive the
progress display.
"""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import probes
from gaps.options import forward

PROBES_DIR = Path(probes.__file__).resolve().parent
COLLECTED = re.compile(rb"collected (\d+) items?")
RESULT = re.compile(rb"^wsgaps::([a-z-]+)::([a-z-]+)\[[^\]]*\] (PASSED|FAILED|ERROR|SKIPPED)")
OUTPUT_TAIL = 16 * 1024


@dataclass
class TargetProgress:
    """What one target's probe run has done so far."""

    spec: str
    total: int | None = None
    done: int = 0
    current: str = "starting"
    failed: list[str] = field(default_factory=list)
    returncode: int | None = None
    output: bytearray = field(default_factory=bytearray)

    def tail(self) -> str:
        return bytes(self.output[-OUTPUT_TAIL:]).decode("utf-8", "replace")


def pytest_argv(spec: str, options: dict[str, Any],
                probes_dir: Path = PROBES_DIR) -> list[str]:
    """The pytest command line for one target; ini values are given so no config file is needed.

    ``options`` are the CLI's parsed options (argparse ``dest`` names); each run option is
    passed on as its ``--gaps-`` twin.
    """
    return [
        sys.executable, "-m", "pytest", str(probes_dir), "-m", "gaps", "-v", "--color=no",
        "-p", "gaps.plugin", "-p", "no:cacheprovider", "--strict-markers",
        "--rootdir", str(probes_dir.parent),
        "-o", "asyncio_mode=strict",
        "-o", "asyncio_default_fixture_loop_scope=session",
        "-o", "asyncio_default_test_loop_scope=session",
        "-o", "gaps_reports=false",  # the CLI renders once, for all its targets
        "--gaps-target", spec, *forward(options),
    ]


async def run_target(argv: list[str], progress: TargetProgress,
                     on_change: Callable[[], None] = lambda: None) -> int:
    """Run one target's probes, updating ``progress`` from pytest's verbose lines."""
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        stdin=asyncio.subprocess.DEVNULL,
    )
    assert process.stdout is not None
    try:
        while line := await process.stdout.readline():
            progress.output += line
            del progress.output[:-OUTPUT_TAIL]
            if match := COLLECTED.search(line):
                progress.total = int(match.group(1))
            elif match := RESULT.match(line):
                module, test, outcome = (g.decode() for g in match.groups())
                progress.done += 1
                progress.current = module
                if outcome in ("FAILED", "ERROR"):
                    progress.failed.append(f"{module}.{test}")
            on_change()
        progress.returncode = await process.wait()
    except asyncio.CancelledError:
        # Ctrl-C: the pytest child turns SIGTERM into an orderly teardown of its targets.
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 30)
            except TimeoutError:
                process.kill()
        raise
    on_change()
    return progress.returncode
