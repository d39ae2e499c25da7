"""How often gap 6 catches GoFr 1.56.6's race: the detection rate of ``concurrency.churn``.

Usage: python bench/churn_gofr.py [--runs 20] [--target gofr] [--check-only]

Runs ``wsgaps run --target gofr --gap concurrency`` (the whole gap 6, as a user runs it;
``--check-only`` runs ``concurrency.churn`` alone) ``--runs`` times, one after another, and
prints per run the gap's status, the churn's verdict, its figures and, when GoFr's process
died, its exit status and the crash report's first line; then the detection rate: runs whose
gap read ``fail`` or ``partial`` with the crash as evidence.  GoFr's race (targets/gofr/
expected.toml, error-handling.isolation) is nondeterministic, so this is a rate, measured
outside CI.  Goal (issue 33): at least 19 of 20.  Take the bench lock first (BRIEF):
``flock /work/coord/bench.lock python bench/churn_gofr.py``.  With ``--target`` another
built-in target is run the same way, to show that a stack without the race never fails it.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gaps.model import load_results

CHECK = "concurrency.churn"


def one_run(target: str, check_only: bool) -> tuple[float, Path]:
    out = Path(tempfile.mkdtemp(prefix="wsgaps-churn-"))
    selection = ["--check", CHECK] if check_only else ["--gap", "concurrency"]
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "gaps", "run", "--target", target, *selection,
                    "--out", str(out)], check=False, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.monotonic() - started, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--target", default="gofr")
    parser.add_argument("--check-only", action="store_true",
                        help=f"run {CHECK} alone instead of the whole gap 6")
    args = parser.parse_args()
    caught = 0
    for index in range(1, args.runs + 1):
        wall, out = one_run(args.target, args.check_only)
        run = load_results(out / args.target / "results.json")
        gap = run.gaps["concurrency"]
        churn = next((c for c in gap.checks if c.id == CHECK), None)
        if churn is None:
            print(f"run {index:2d}: no {CHECK} result ({wall:.0f} s)", flush=True)
            continue
        facts = churn.evidence
        crashed = "exit_status" in facts
        hit = crashed and str(gap.status) in ("fail", "partial", "missing")
        caught += hit
        head = (facts.get("crash_head") or "").splitlines()
        first = next((x for x in head if x.startswith(("fatal error", "panic"))), "")
        print(f"run {index:2d}: gap {gap.status}, churn {churn.verdict}, "
              f"{facts.get('connections', 0)} connections in {facts.get('seconds', 0)} s "
              f"({facts.get('handshakes_per_s', 0)}/s)"
              + (f", exit status {facts['exit_status']} {first}" if crashed else "")
              + f" [{wall:.0f} s]", flush=True)
    print(f"detected: {caught} of {args.runs} runs ({100 * caught / max(1, args.runs):.0f}%)")


if __name__ == "__main__":
    main()
