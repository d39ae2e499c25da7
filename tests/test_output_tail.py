"""OutputTail: the bounded tail of a target's output, and the head of its first crash report."""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
import threading
import time

from gaps.output import (
    CRASH_CONTEXT,
    CRASH_HEAD_LIMIT,
    OUTPUT_LIMIT,
    OutputTail,
    _Stream,
    bound_logs,
)

SKIP = re.compile(r"^\[wsgaps: (\d+) bytes skipped after the start of the first crash report "
                  r"above\]\n", re.MULTILINE)

# What a Go runtime throw looks like on stderr: two runtime lines, the throw, then every
# goroutine (GoFr's stack overflow dumped 50-70 KiB).
GO_CRASH_HEAD = (b"runtime: goroutine stack exceeds 1000000000-byte limit\n"
                 b"runtime: sp=0xc020160398 stack=[0xc020160000, 0xc040160000]\n"
                 b"fatal error: stack overflow\n\nruntime stack:\nruntime.throw(...)\n")


# Python source of ``dump(size)``: about ``size`` bytes of goroutines blocked in gorilla's
# ReadMessage, as GoFr's dump lists its idle connections.
DUMP_SOURCE = """
def dump(size):
    parts, count, n = [], 0, 0
    while count < size:
        line = (f"goroutine {n} gp=0xc000{n:06x} m=nil [IO wait]:\\n"
                f"github.com/gorilla/websocket.(*Conn).ReadMessage(0xc000{n:06x})\\n"
                f"\\t/go/pkg/mod/github.com/gorilla/websocket@v1.5.3/conn.go:1093 +0x13\\n\\n")
        parts.append(line)
        count += len(line)
        n += 1
    return "".join(parts).encode()
"""


def run(code: str, tail: OutputTail) -> None:
    """Run ``code`` in a Python child with stdout and stderr captured by ``tail``."""
    process = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout is not None and process.stderr is not None
    tail.follow(process.stdout, "out")
    tail.follow(process.stderr, "err")
    assert process.wait(30) == 0
    tail.join(10)


def feed(tail: OutputTail, stream: _Stream, *chunks: bytes) -> None:
    """Chunks as the reader thread would take them, each one read."""
    for chunk in chunks:
        tail._take(stream, chunk)


def split(text: str) -> tuple[str, int, str]:
    """(head, skipped, tail) of a text with a kept crash head; AssertionError otherwise."""
    marker = SKIP.search(text)
    assert marker is not None, text[:300]
    return text[:marker.start()], int(marker.group(1)), text[marker.end():]


def test_a_go_crash_whose_dump_outgrows_the_tail_keeps_its_first_lines() -> None:
    code = (
        "import sys\n" + DUMP_SOURCE +
        "for i in range(300): print(f'request {i} served', flush=True)\n"
        "sys.stderr.buffer.write(b'{\"level\":\"ERROR\",\"message\":\"a log line\"}\\n')\n"
        f"sys.stderr.buffer.write({GO_CRASH_HEAD!r}); sys.stderr.flush()\n"
        # The dump in many writes, as a runtime prints it, with stdout still going between.
        f"dump = dump({3 * OUTPUT_LIMIT})\n"
        "for i in range(0, len(dump), 4000):\n"
        "    sys.stderr.buffer.write(dump[i:i + 4000]); sys.stderr.flush()\n"
        "    if i < 40000 and i % 8000 == 0: print('still serving', flush=True)\n"
    )
    tail = OutputTail()
    run(code, tail)
    head, skipped, rest = split(tail.text())
    lines = head.splitlines()
    # The context before the throw: whole stderr lines only, never stdout's.
    assert lines[0] == '[stderr] {"level":"ERROR","message":"a log line"}'
    assert lines[1:4] == ["[stderr] runtime: goroutine stack exceeds 1000000000-byte limit",
                          "[stderr] runtime: sp=0xc020160398 stack=[0xc020160000, 0xc040160000]",
                          "[stderr] fatal error: stack overflow"]
    assert len(head.encode()) <= CRASH_HEAD_LIMIT + 1
    assert tail.text().count("fatal error: stack overflow") == 1
    assert len(rest.encode()) == OUTPUT_LIMIT
    # The dump's end (stdout's reader may add its lines after it: the two threads race).
    assert [line for line in rest.splitlines() if line.startswith("[stderr]")][-2:] == [
        "[stderr] \t/go/pkg/mod/github.com/gorilla/websocket@v1.5.3/conn.go:1093 +0x13",
        "[stderr] "]
    assert skipped > OUTPUT_LIMIT  # what lay between the head and the tail
    # crash_head: the report's first lines, two lines of context before it, no prefix.
    shown = tail.crash_head().splitlines()
    assert shown[:3] == ["runtime: goroutine stack exceeds 1000000000-byte limit",
                         "runtime: sp=0xc020160398 stack=[0xc020160000, 0xc040160000]",
                         "fatal error: stack overflow"]
    assert len(shown) <= 2 + 12


def test_no_crash_head_without_a_crash_report() -> None:
    tail = OutputTail()
    feed(tail, _Stream("err", b"[stderr] "), b"a log line\nanother one\n")
    assert tail.crash_head() is None


def test_a_chatty_process_without_a_crash_keeps_only_its_tail() -> None:
    code = ("import sys\n"
            "for i in range(20000):\n"
            "    print(f'GET /echo 101 {i}', flush=i % 97 == 0)\n"
            "    if i % 1000 == 0: print(f'warning {i}: at a glance', file=sys.stderr)\n")
    tail = OutputTail()
    run(code, tail)
    text = tail.text()
    assert SKIP.search(text) is None
    assert len(text.encode()) == OUTPUT_LIMIT
    # stdout's last line ends it (stderr's reader thread may lag, so it is left out here).
    assert [line for line in text.splitlines() if not line.startswith("[stderr]")][-1] == (
        "GET /echo 101 19999")


def test_memory_stays_within_tail_and_head_bounds_however_much_comes() -> None:
    tail = OutputTail(limit=4096, head_limit=1024)
    read, write = os.pipe()
    tail.follow(os.fdopen(read, "rb"), "err")
    highest = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal highest
        while not stop.is_set():
            highest = max(highest, tail.buffered())
            time.sleep(0.001)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        with os.fdopen(write, "wb") as out:
            for i in range(300):
                out.write(b"panic: again\n" if i % 10 == 0 else b"x" * 997 + b"\n")
                out.flush()
                out.write(b"y" * 5000)  # no newline for a while: nothing waits for one
                out.flush()
                out.write(b"\n")
    finally:
        tail.join(10)
        stop.set()
        sampler.join()
    assert tail.buffered() == 4096 + 1024
    assert highest <= 4096 + 1024
    head, _, _ = split(tail.text())
    assert head.startswith("[stderr] panic: again\n")  # the first report; later ones are not


def test_a_report_line_split_across_reads_is_recognised_and_prefixed() -> None:
    tail = OutputTail(limit=200)
    err = _Stream("err", b"[stderr] ")
    feed(tail, err, b"starting\npa", b"n", b"ic: runtime error: index out of range\n",
         b"goroutine 1 [running]:\n" + b"z" * 500 + b"\n")
    # The head reaches the tail: nothing between them was lost, so no marker and no repeat.
    whole = ("[stderr] starting\n[stderr] panic: runtime error: index out of range\n"
             "[stderr] goroutine 1 [running]:\n[stderr] " + "z" * 500 + "\n")
    assert tail.text() == whole
    feed(tail, err, b"z" * 10_000)
    head, skipped, rest = split(tail.text())
    assert head.startswith("[stderr] starting\n[stderr] panic: runtime error: index out of "
                           "range\n[stderr] goroutine 1 [running]:\n")
    assert len(head) == CRASH_HEAD_LIMIT + 1  # its own newline before the marker
    assert rest == "z" * 200
    assert skipped == len(whole) + len("[stderr] ") + 10_000 - CRASH_HEAD_LIMIT - 200


def test_a_report_start_inside_a_long_line_is_not_one() -> None:
    tail = OutputTail(limit=100)
    out = _Stream("out", b"")
    feed(tail, out, b"a log line that mentions panic: and goes on " * 5,
         b"fatal error: only after a newline\n", b"filler\n" * 100)
    assert SKIP.search(tail.text()) is None


def test_a_report_line_that_never_ends_is_kept_without_waiting_for_a_newline() -> None:
    tail = OutputTail(limit=1000, head_limit=300)
    err = _Stream("err", b"[stderr] ")
    feed(tail, err, b"Traceback (most recent call last):", b"q" * 5000)
    head, skipped, _ = split(tail.text())
    assert head == "[stderr] Traceback (most recent call last):" + "q" * 257 + "\n"
    assert skipped == len("[stderr] Traceback (most recent call last):") + 5000 - 1000 - 300


def test_node_uncaught_exception_starts_at_its_error_line_with_the_source_line_before() -> None:
    report = (b"/srv/app.js:12\n    socket.send(undefined.x)\n                      ^\n\n"
              b"TypeError: Cannot read properties of undefined (reading 'x')\n"
              b"    at WebSocket.<anonymous> (/srv/app.js:12:23)\n"
              b"    at WebSocket.emit (node:events:519:28)\n")
    frames = (b"    at process.processTicksAndRejections (node:internal/process/task_queues:95:5)"
              b"\n" * 40)
    # A frame without an error line before it (part of some logged object) starts nothing.
    calm = OutputTail(limit=500, head_limit=400)
    feed(calm, _Stream("err", b"[stderr] "), b"listening on 8080\n", frames, b"done\n" * 200)
    assert SKIP.search(calm.text()) is None
    tail = OutputTail(limit=500, head_limit=400)
    err = _Stream("err", b"[stderr] ")
    feed(tail, err, b"listening on 8080\n", report[:70], report[70:], frames,
         b"\nNode.js v20.11.0\n")
    head, _, _ = split(tail.text())
    lines = head.splitlines()
    assert lines[0] == "[stderr] listening on 8080"  # context before the report, whole lines
    error = "[stderr] TypeError: Cannot read properties of undefined (reading 'x')"
    assert lines.index("[stderr]     socket.send(undefined.x)") < lines.index(error)


def test_context_before_a_report_is_bounded_and_starts_at_a_whole_line() -> None:
    tail = OutputTail(limit=4096)
    err = _Stream("err", b"")
    before = b"".join(b"line %04d\n" % i for i in range(500))
    feed(tail, err, before, b"panic: boom\n", b"d" * 20_000)
    head, _, _ = split(tail.text())
    context = head[:head.index("panic: boom")]
    assert len(context) <= CRASH_CONTEXT
    assert context.startswith("line ") and context.endswith("line 0499\n")
    assert len(context) > CRASH_CONTEXT - 10  # as much as the bound allows


def test_a_short_crash_still_inside_the_tail_is_shown_once_without_a_marker() -> None:
    tail = OutputTail()
    run("import sys\nprint('up')\nsys.stderr.write('panic: boom\\n\\ngoroutine 1 [running]:\\n')",
        tail)
    text = tail.text()
    assert text.count("panic: boom") == 1 and SKIP.search(text) is None
    assert "[stderr] panic: boom\n[stderr] \n[stderr] goroutine 1 [running]:\n" in text


def test_bound_logs_keeps_a_crash_head_that_a_cut_would_drop() -> None:
    tail = OutputTail(limit=1000, head_limit=100)
    err = _Stream("err", b"")
    feed(tail, err, b"panic: first instance\n", b"w" * 5000)
    crashed = tail.text()
    calm = "ok\n" * 2000
    bounded = bound_logs([crashed, calm], 1200)
    head, skipped, rest = split(bounded)
    assert head == "panic: first instance\n" + "w" * 78 + "\n"
    assert skipped == 5022 - 100 - 1000
    assert rest.startswith("[wsgaps: ") and rest.endswith(calm[-1200:])
    assert bound_logs([calm, "short"], 100) == ("\n".join([calm, "short"]))[-100:]
    # Already inside what the cut keeps: nothing moves.
    assert bound_logs(["x" * 50, crashed], len(crashed) + 10) == ("x" * 50 + "\n" + crashed)[
        -(len(crashed) + 10):]


def test_what_is_kept_does_not_depend_on_where_reads_split_the_stream() -> None:
    rng = random.Random(7)
    filler = b"".join(b"request %d served at 127.0.0.1\n" % i for i in range(300))
    streams = [
        filler + GO_CRASH_HEAD + b"goroutine 1 [running]:\n" * 800,
        filler + b"x" * 3000 + b"panic: inside a long line\n" + filler + b"panic: real\n"
        + filler * 3,
        filler + b"    at lone (frame.js:1:1)\n" + filler
        + b"RangeError: bad\n    at f (a.js:1:1)\n" + filler * 3,
        filler + b"Traceback (most recent call last):\n  File \"app.py\", line 3\n" + filler * 3,
        filler * 5,  # no report at all
    ]
    for label, prefix in (("out", b""), ("err", b"[stderr] ")):
        for data in streams:
            once = OutputTail(limit=4096, head_limit=2048)
            feed(once, _Stream(label, prefix), data)
            for _ in range(20):
                cuts = sorted(rng.sample(range(1, len(data)), rng.randint(1, 60)))
                pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
                split_up = OutputTail(limit=4096, head_limit=2048)
                feed(split_up, _Stream(label, prefix), *pieces)
                assert split_up.text() == once.text()
            if b"panic: real" in data:
                assert SKIP.search(once.text()) and "panic: real" in once.text().split("[wsgaps")[0]
                assert "inside a long line" not in once.text().split("[wsgaps")[0]
            if b"RangeError" in data:
                head = once.text().split("[wsgaps")[0]
                assert "RangeError: bad" in head and "lone (frame.js" not in head
