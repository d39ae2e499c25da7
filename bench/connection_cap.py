"""Wall time of ``limits.connection-cap`` (gap 10) per target, next to what it found.

Usage: python bench/connection_cap.py [--target NAME ...] [--runs N] [--budget N] [--verbose]

For each built-in target (default: all of them; builds as ``wsgaps run`` does, cached), one
fresh instance, then the check alone on it, as the runner runs it (``ALONE``, holding the
harness's load slot): prints the check's wall time (instance start-up not included, shown
apart), the connections it held, where it was refused, the target's and the harness's
open-file limits, and the verdict.  ``--budget`` replaces the 1,000 connections dialled at
most where no cap is declared.  Goal (issue 28): 1,000 connections in under 15 s per
target on 2 cores (the nine targets' heavy loads run one after another in a matrix).
"""

from __future__ import annotations

import argparse
import asyncio
import time

from gaps.probe import ProbeContext
from gaps.targets import TargetSkipped, builtin_names, resolve, run_build, start_instance
from wsgaps_probes import limits


async def one_target(name: str, verbose: bool) -> None:
    manifest = resolve(name)
    try:
        await asyncio.to_thread(run_build, manifest)
    except TargetSkipped as exc:
        print(f"{name:11} skipped: {str(exc).splitlines()[0][:100]}")
        return
    begun = time.monotonic()
    instance = await start_instance(manifest, 1.0)
    started = time.monotonic() - begun
    try:
        ctx = ProbeContext(manifest, instance, time_scale=1.0, seed=1)
        begun = time.monotonic()
        result = await limits.connection_cap(ctx)
        wall = time.monotonic() - begun
    finally:
        await instance.astop()
    facts = result.evidence
    print(f"{name:11} {wall:6.2f} s  held {facts.get('reached', '-')!s:>5}  refused at "
          f"{facts.get('refused_at', '-')!s:>5}  connect {facts.get('connect_s', 0):5.2f} s  "
          f"files target {facts.get('target_open_files')} harness "
          f"{facts.get('harness_open_files')}  start {started:5.2f} s  {result.verdict}")
    if verbose:
        print(f"    {result.summary[:600]}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--target", action="append", default=[])
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--budget", type=int, default=limits.CONNECTION_BUDGET)
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    limits.CONNECTION_BUDGET = args.budget
    for _ in range(args.runs):
        for name in args.target or builtin_names():
            await one_target(name, args.verbose)


if __name__ == "__main__":
    asyncio.run(main())
