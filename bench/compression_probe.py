"""Wall time of the compression probe (gap 7) per target, next to what it covered.

Usage: python bench/compression_probe.py [--target NAME ...] [--runs N] [--verbose]

For each built-in target (default: all of them; builds as ``wsgaps run`` does, cached), one
fresh instance, then the gap's four checks at once, as the runner runs them (all shared):
prints the probe's wall time (instance start-up not included, shown apart), the number of
offers written (handshakes and connections), how many the server agreed to, and each
check's verdict.  With ``--verbose``, the sub-result line of every offer that was not a
pass.  Goal (issue 29): under 10 s per target for all the checks of the gap at once.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from gaps.model import CheckResult
from gaps.probe import ProbeContext
from gaps.targets import TargetSkipped, builtin_names, resolve, run_build, start_instance
from wsgaps_probes import compression

CHECKS = (compression.negotiates, compression.round_trip, compression.parameters,
          compression.malformed_offer)


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
        results: list[CheckResult] = await asyncio.gather(*(c(ctx) for c in CHECKS))
        wall = time.monotonic() - begun
    finally:
        await instance.astop()
    offers = results[2].evidence.get("offers", [])
    agreed = sum(1 for o in offers if o.get("negotiation", {}).get("state") == "agreed")
    written = 2 + len(offers) + len(results[3].evidence.get("handshakes", []))
    verdicts = " ".join(f"{r.id.split('.')[1]}={r.verdict}" for r in results)
    print(f"{name:11} {wall:6.2f} s  offers {written:2d} (parameters {len(offers)}, "
          f"agreed {agreed:2d})  start {started:5.2f} s  {verdicts}")
    if verbose:
        for result in results:
            if str(result.verdict) != "pass":
                print(f"    {result.id}: {result.summary[:400]}")
        for offer in offers:
            if offer["verdict"] != "pass":
                print(f"    [{offer['verdict']}] {offer['line'][:300]}")
        for shake in results[3].evidence.get("handshakes", []):
            answer = shake.get("headers", {}) if isinstance(shake.get("headers"), dict) else {}
            print(f"    malformed [{shake['verdict']}] {shake['offer']} -> "
                  f"{shake.get('status', shake.get('problem'))} {answer}"[:300])


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--target", action="append", default=[])
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    for _ in range(args.runs):
        for name in args.target or builtin_names():
            await one_target(name, args.verbose)


if __name__ == "__main__":
    asyncio.run(main())
