"""Ctrl-C during ``wsgaps run --target all``, again and again: how long until it has ended.

Usage: python bench/interrupt.py [--tries 50] [--moments build,probe,render] [--seed N]

Each try starts ``wsgaps run --target all`` in a session of its own (as a terminal's
foreground job), sends SIGINT to its whole process group at one moment, and measures the
time until the CLI has exited.  Moments, in turn:

- build: a fresh cache folder (``WSGAPS_CACHE_DIR``), so node-ws's ``npm ci`` and GoFr's
  ``go build`` run; the signal comes once one of them is seen running.
- probe: builds cached; the signal comes at a random second of the probing.
- render: the signal comes as the CLI prints its first summary table, right before the
  reports are rendered (a whole run each, so use few of these).

A try passes when the CLI exits within 2 s with status 130, its stderr is exactly the one
line ``wsgaps: interrupted (SIGINT); ...`` (no traceback), and no process of the run is
left.  Prints one line per try, then per moment: tries, failures, median and max seconds
to exit.  Goal (issue 24): 50 of 50 within 2 s.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIMIT = 2.0
LINE = "wsgaps: interrupted (SIGINT); results written so far are kept"


def processes(needle: str, proc_file: str = "cmdline") -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle.encode() in (entry / proc_file).read_bytes() \
                    and (entry / "stat").read_text().split()[2] != "Z":
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def building(cache: Path) -> bool:
    """A build of this try is running: a process whose working folder is in its cache."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if str(cache) in os.readlink(entry / "cwd"):
                    return True
            except OSError:
                continue
    return False


def one_try(moment: str, rng: random.Random) -> tuple[bool, float, str]:
    out = Path(tempfile.mkdtemp(prefix="wsgaps-interrupt-"))
    env = dict(os.environ)
    cache = out / "cache"
    if moment == "build":
        env["WSGAPS_CACHE_DIR"] = str(cache)
    cli = subprocess.Popen(
        [sys.executable, "-m", "gaps", "run", "--target", "all", "--out", str(out / "r")],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        start_new_session=True)
    assert cli.stdout is not None
    what = ""
    try:
        if moment == "build":
            deadline = time.monotonic() + 60
            while not building(cache) and time.monotonic() < deadline and cli.poll() is None:
                time.sleep(0.05)
            time.sleep(rng.uniform(0, 3))
            what = "building" if building(cache) else "no build seen"
        elif moment == "probe":
            delay = rng.uniform(2, 45)
            time.sleep(delay)
            what = f"at {delay:.1f} s"
        else:
            while (line := cli.stdout.readline()) and b"wsgaps: " not in line:
                pass
            what = "at the first summary table"
        sent = time.monotonic()
        if cli.poll() is not None:
            err = cli.communicate()[1].decode(errors="replace").strip()
            return False, 0.0, f"{what}; ended by itself before the signal (exit " \
                f"{cli.returncode}): {' | '.join(err.splitlines()[-3:])}"
        os.killpg(cli.pid, signal.SIGINT)
        try:
            _, err = cli.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(cli.pid, signal.SIGKILL)
            _, err = cli.communicate()
        took = time.monotonic() - sent
        text = err.decode(errors="replace").strip()
        left = processes(str(out))
        time.sleep(0.5)
        problems = []
        if cli.returncode != 130:
            problems.append(f"exit {cli.returncode}")
        if text.splitlines() != [LINE]:
            problems.append("stderr: " + " | ".join(text.splitlines()[:3]))
        if took > LIMIT:
            problems.append(f"took {took:.2f} s")
        if left and processes(str(out)):
            problems.append(f"left processes {left}")
        return not problems, took, f"{what}; " + ("; ".join(problems) or "ok")
    finally:
        if cli.poll() is None:
            os.killpg(cli.pid, signal.SIGKILL)
            cli.wait()
        shutil.rmtree(out, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tries", type=int, default=50)
    parser.add_argument("--moments", default="build,probe,render")
    parser.add_argument("--seed", type=int, default=24)
    args = parser.parse_args()
    moments = args.moments.split(",")
    rng = random.Random(args.seed)
    seen: dict[str, list[tuple[bool, float]]] = {m: [] for m in moments}
    for n in range(args.tries):
        moment = moments[n % len(moments)]
        ok, took, note = one_try(moment, rng)
        seen[moment].append((ok, took))
        print(f"try {n + 1:>2} {moment:<6} {took:5.2f} s {'pass' if ok else 'FAIL'}: {note}",
              flush=True)
    failed = 0
    for moment, results in seen.items():
        if not results:
            continue
        times = [t for _, t in results]
        bad = sum(1 for ok, _ in results if not ok)
        failed += bad
        print(f"{moment:<6} tries {len(results):>2}  failures {bad}  median "
              f"{statistics.median(times):.2f} s  max {max(times):.2f} s")
    print(f"all    tries {args.tries}  within {LIMIT:.0f} s, one line, nothing left: "
          f"{args.tries - failed} of {args.tries}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
