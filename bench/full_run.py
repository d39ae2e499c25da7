"""Wall time of a run next to its longest single try: how well the waits overlap.

Usage: python bench/full_run.py [--target reference] [--matrix] [--runs N]

Prints, per run: the wall time of ``wsgaps run`` (start-up, builds, every gap on a fresh
instance, rendering), the longest single try of any check (the part no overlap can
remove: its waits and the start of an instance of its own, without the time it queued for
an instance slot), and their ratio: 1.0 would mean the run costs exactly its longest wait.
The same once more without the time loads queued for the harness's one load slot (in a
matrix that queue, not a target's wait, can make a try the longest).
With ``--matrix`` it runs every built-in target at once; then per target the same figures.
Goal (issue 11): 1.3 or less for the reference alone.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gaps.model import RunResult, load_results


def one_run(targets: list[str]) -> tuple[float, Path]:
    out = Path(tempfile.mkdtemp(prefix="wsgaps-bench-"))
    words = [w for t in targets for w in ("--target", t)]
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "gaps", "run", *words, "--out", str(out)],
                   check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.monotonic() - started, out


def longest_try(run: RunResult, *, without_load_queue: bool = False) -> tuple[float, str]:
    """The longest single try of any check of ``run``, and which check it was.

    Time a try spent queued for an instance slot is left out: that is the overlap failing,
    not a wait the try needed.  Starting its own instance is part of the try.  With
    ``without_load_queue``, the time a load waited for the harness's one load slot
    (``load_slot_wait_s``, of the last try) is left out too: the queue of loads that
    must not time each other, which only a shorter load can shorten.
    """
    best = (0.0, "-")
    for gap in run.gaps.values():
        for check in gap.checks:
            tries = [t.get("seconds", 0.0) - t.get("queued", 0.0) for t in check.tries] \
                or [check.duration - check.queued]
            if without_load_queue:
                tries[-1] -= float(check.evidence.get("load_slot_wait_s") or 0.0)
            best = max(best, (max(tries), check.id))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--target", default="reference")
    parser.add_argument("--matrix", action="store_true", help="every built-in target at once")
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    targets = ["all"] if args.matrix else [args.target]
    for index in range(args.runs):
        wall, out = one_run(targets)
        runs = [load_results(p) for p in sorted(out.glob("*/results.json"))]
        probed = [r for r in runs if not r.target.skipped]
        longest, which = max((longest_try(r) for r in probed), default=(0.0, "-"))
        ratio = wall / longest if longest else float("nan")
        bare, bare_which = max((longest_try(r, without_load_queue=True) for r in probed),
                               default=(0.0, "-"))
        bare_ratio = wall / bare if bare else float("nan")
        print(f"run {index + 1}: {', '.join(targets)}: wall time {wall:.1f} s; longest single "
              f"try {longest:.1f} s ({which}); ratio {ratio:.2f}; without the load slot's "
              f"queue {bare:.1f} s ({bare_which}), ratio {bare_ratio:.2f}")
        for run in runs:
            if run.target.skipped:
                print(f"  {run.target.name:<12} skipped: {run.target.skipped.splitlines()[0]}")
                continue
            seconds, check = longest_try(run)
            span = (run.finished or run.started) - run.started
            verdicts = " ".join(f"{g.slug}={g.status}" for g in run.gaps.values() if g.checks)
            print(f"  {run.target.name:<12} {span:6.1f} s, longest try {seconds:5.1f} s "
                  f"({check}); {verdicts}")


if __name__ == "__main__":
    main()
