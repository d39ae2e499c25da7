"""Wall time of a full analysis of one target, next to the waits the probes inherently need.

Usage: python bench/full_run.py [--target reference] [--runs N]

Prints, per run: the wall time of ``wsgaps run`` (start-up, every gap on a fresh instance,
rendering), the time the timing checks spend waiting for the target's own timers (the
inherent part), the sum of the check durations, and the longest wait allowed; then per
check its duration and wait.  The gap between wall time and the sum of durations is the harness's
overhead (process start, instance start and stop, rendering).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gaps.model import load_results


def one_run(target: str) -> tuple[float, Path]:
    out = Path(tempfile.mkdtemp(prefix="wsgaps-bench-"))
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "gaps", "run", "--target", target, "--out", str(out)],
                   check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.monotonic() - started, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--target", default="reference")
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    for index in range(args.runs):
        wall, out = one_run(args.target)
        (results,) = out.glob("*/results.json")
        run = load_results(results)
        checks = [c for gap in run.gaps.values() for c in gap.checks]
        total = sum(c.duration for c in checks)
        # Timing checks (those with tries) spend their time waiting for the target's own
        # timers (Ping interval, Pong timeout): time no harness speed-up can remove.
        inherent = sum(c.duration for c in checks if c.tries)
        longest = max(run.waits.values(), default=0.0)
        print(f"run {index + 1}: target {run.target.name}: wall time {wall:.1f} s; "
              f"inherent waiting in timing checks {inherent:.1f} s; "
              f"sum of check durations {total:.1f} s; longest wait allowed {longest:.1f} s; "
              f"{len(checks)} checks")
        for check in checks:
            wait = f"{check.wait:.1f} s" if check.wait is not None else "-"
            print(f"  {check.id:<38} {check.verdict:<10} {check.duration:6.2f} s  wait {wait}"
                  f"  tries {len(check.tries) or 1}")


if __name__ == "__main__":
    main()
