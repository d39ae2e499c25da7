"""What the wire client's permessage-deflate costs: throughput, and a bomb's memory.

Usage: python bench/wire_deflate.py [--size MiB]

Prints, for a text payload of ``--size`` MiB (default 1): the compressed size and the
MB/s of ``Deflater.compress`` and of ``Inflater.feed`` with the full 32 KiB window and
with a 512-byte one (which inflates a quarter window per zlib call); then, for a 200 MiB
decompression bomb (about 200 KB on the wire) against the default 32 MiB bound: how long
it takes to be refused and the peak memory traced while inflating it.
Goals: a bomb is refused with a peak near the bound, never near its inflated size.
"""

from __future__ import annotations

import argparse
import time
import tracemalloc
import zlib

from gaps.wire.deflate import DEFAULT_MAX_INFLATED, Deflater, InflateError, Inflater, Params


def rate(size: int, seconds: float) -> str:
    return f"{size / seconds / 1e6:8.1f} MB/s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=float, default=1.0, help="payload size in MiB")
    size = int(parser.parse_args().size * 1024 * 1024)
    line = b"wsgaps 000123 the quick brown fox jumps over the lazy dog\n"
    payload = (line * (size // len(line) + 1))[:size]

    for bits in (15, 9):
        params = Params(client_max_window_bits=bits, server_max_window_bits=bits)
        started = time.perf_counter()
        wire = Deflater(params).compress(payload)
        deflated = time.perf_counter() - started
        started = time.perf_counter()
        assert Inflater(params).feed(wire, True) == payload
        inflated = time.perf_counter() - started
        print(f"window 2^{bits:<2}  {size} B -> {len(wire)} B   "
              f"deflate {rate(size, deflated)}   inflate {rate(size, inflated)}")

    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    bomb = compressor.compress(b"\0" * (200 * 1024 * 1024)) + compressor.flush(zlib.Z_SYNC_FLUSH)
    tracemalloc.start()
    started = time.perf_counter()
    try:
        Inflater(Params()).feed(bomb[:-4], True)
        outcome = "INFLATED (the bound did not hold)"
    except InflateError as exc:
        outcome = f"refused: {str(exc)[:60]}..."
    seconds = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    print(f"bomb: {len(bomb)} B for 200 MiB, bound {DEFAULT_MAX_INFLATED} B: {outcome} "
          f"in {seconds:.2f} s, peak traced {peak / 1024 / 1024:.1f} MiB")


if __name__ == "__main__":
    main()
