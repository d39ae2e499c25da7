"""A process's output as evidence: the last 64 KiB of its stdout and stderr, and the head of
the first crash report in it (``OutputTail``), and several instances' output cut to a bound
the same way (``bound_logs``).

Everything here is a target's untrusted bytes: matched, counted and decoded with
replacement, never interpreted.  Nothing waits for a newline that may never come.
"""

from __future__ import annotations

import os
import re
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import BinaryIO, NamedTuple

OUTPUT_LIMIT = 64 * 1024
READ_SIZE = 64 * 1024

# Besides the tail, the start of the first crash report is kept apart: a runtime that dumps
# every thread (Go prints all goroutines on a fatal error, 50-70 KiB for GoFr) pushes the
# lines naming the cause out of the tail before the process is gone.
CRASH_HEAD_LIMIT = 8 * 1024
# Bytes of the same stream kept before a report's first line, cut to whole lines: Go writes
# "runtime: goroutine stack exceeds ..." before "fatal error: stack overflow", and Node the
# offending source line and the error before the first stack frame.
CRASH_CONTEXT = 1024
# The first bytes of a line that suffice to recognise every report start below.
LINE_PROBE = 96
STDERR_PREFIX = b"[stderr] "

# A line that starts a crash report (after the stderr prefix).  Go: an unrecovered panic, a
# runtime throw ("fatal error: concurrent map writes"), a fatal signal ("SIGSEGV: ...",
# "SIGQUIT: quit").  Python: a traceback, or a fatal error of the interpreter itself.  A stack
# frame line ("    at f (file:1:2)", group ``frame``) starts one only when the line before
# names an error (``_ERROR_LINE``): an uncaught exception in Node (and in Java) looks so,
# while a frame alone may belong to any logged error.  Logged tracebacks count too: the
# first report is kept, and that is usually where the trouble began.
# The match starts at the newline before the line: a literal first byte lets the regex engine
# skip to line ends at memchr speed, where ``^`` made it try every byte (six times slower).
_REPORT_START = re.compile(
    rb"\n(?:\[stderr\] )?(?:(?P<frame>[ \t]+at \S)|panic: |fatal error: |SIG[A-Z]+: "
    rb"|Traceback \(most recent call last\):|Fatal Python error: )")
# "TypeError: ...", "Error [ERR_UNHANDLED_ERROR]: ...", "java.lang.IllegalStateException: ..."
_ERROR_LINE = re.compile(rb"(?:\[stderr\] )?(?:Uncaught )?[\w$.]*(?:Error|Exception)\b")
# ``OutputTail.crash_head``: the lines shown of a crash report, from its first line, with up to
# ``CRASH_CONTEXT_LINES`` before it (Go's "runtime: goroutine stack exceeds ..."), each cut to
# ``CRASH_LINE_LIMIT`` characters.
CRASH_HEAD_LINES = 12
CRASH_CONTEXT_LINES = 2
CRASH_LINE_LIMIT = 240
# The line ``OutputTail.text`` puts between a kept crash head and the tail.
_SKIP_MARKER = re.compile(r"^\[wsgaps: \d+ bytes skipped after the start of the first crash "
                          r"report above\]$", re.MULTILINE)


def _skip_line(count: int) -> str:
    return f"[wsgaps: {count} bytes skipped after the start of the first crash report above]\n"


@dataclass
class _Stream:
    """One captured stream, and what its reader remembers of the lines it split across reads
    (a report's first line may arrive in pieces; nothing waits for its end)."""

    label: str
    prefix: bytes
    at_line_start: bool = True
    pos: int = 0  # bytes of this stream captured so far (with prefixes)
    line_start: int = 0  # where the unfinished last line began
    line_head: bytes = b""  # its first LINE_PROBE bytes
    prev_start: int = -1  # the last complete line: where it began,
    prev_head: bytes = b""  # and its first LINE_PROBE bytes

    def report_start(self, chunk: bytes) -> int | None:
        """Where (a position in this stream) a crash report starts in ``chunk`` or in the line
        it continues; None if nowhere."""
        whole = len(self.line_head) == self.pos - self.line_start
        if whole:  # the unfinished line is short: search it again with what follows
            # The newline in front stands for the end of the line before (or no line at all).
            text, base, begin = b"\n" + self.line_head + chunk, self.line_start - 1, 0
        else:  # too long already to start a report: search from the next line on
            text, base, begin = chunk, self.pos, chunk.find(b"\n")
            if begin < 0:
                return None
        for match in _REPORT_START.finditer(text, begin):
            at = match.start() + 1  # where the line begins, after its newline
            if match.group("frame") is None:
                return base + at
            if whole and at == 1:  # the frame line is the unfinished one: the line before is stored
                start, before = self.prev_start, self.prev_head
            else:
                line = text.rfind(b"\n", 0, at - 1) + 1
                if line == 0:  # (never when whole) the line before began in an earlier read
                    start, before = self.line_start, self.line_head
                else:
                    start, before = base + line, text[line:min(at - 1, line + LINE_PROBE)]
            if start >= 0 and _ERROR_LINE.match(before):
                return start
        return None

    def advance(self, chunk: bytes) -> None:
        """Take ``chunk`` as read: update the position and the remembered line starts."""
        last = chunk.rfind(b"\n")
        if last < 0:
            # Bounded: once the line is LINE_PROBE long, this keeps line_head unchanged.
            self.line_head = (self.line_head + chunk)[:LINE_PROBE]
        else:
            before = chunk.rfind(b"\n", 0, last)
            if before >= 0:
                self.prev_start = self.pos + before + 1
                self.prev_head = chunk[before + 1:min(last, before + 1 + LINE_PROBE)]
            else:  # the line that just ended began in an earlier read
                self.prev_start = self.line_start
                self.prev_head = (self.line_head + chunk[:last])[:LINE_PROBE]
            self.line_start = self.pos + last + 1
            self.line_head = chunk[last + 1:last + 1 + LINE_PROBE]
        self.pos += len(chunk)


class _Piece(NamedTuple):
    """Bytes of one stream: where they sit in all the output captured (``offset``) and in
    their own stream (``pos``)."""

    stream: _Stream
    offset: int
    pos: int
    data: bytes

    def cut(self, count: int) -> _Piece:
        """This piece without its first ``count`` bytes."""
        return _Piece(self.stream, self.offset + count, self.pos + count, self.data[count:])


class OutputTail:
    """The last ``limit`` bytes of a process's stdout and stderr, read by a thread each, and
    the head of the first crash report seen in them (at most ``head_limit`` bytes).

    Streams are read in chunks of at most 64 KiB, never whole lines, so a line of any
    length costs no more memory than the bounds (a few LINE_PROBE-byte line starts aside).
    Lines from stderr start with ``[stderr] ``.  The bytes are the target's and untrusted:
    they are only matched, counted and decoded with replacement.
    """

    def __init__(self, limit: int = OUTPUT_LIMIT, head_limit: int = CRASH_HEAD_LIMIT) -> None:
        self.limit = limit
        self.head_limit = head_limit
        self._pieces: deque[_Piece] = deque()
        self._size = 0
        self._total = 0  # bytes captured so far: the offset of the next one
        self._head: list[_Piece] = []  # the first crash report's start, with its context
        self._head_size = 0
        self._head_stream: _Stream | None = None
        self._report_at = 0  # where in the head the report's first line begins
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def follow(self, stream: BinaryIO, label: str) -> None:
        """Read ``stream`` to EOF in a daemon thread, then close it."""
        fd = stream.fileno()
        state = _Stream(label, b"" if label == "out" else STDERR_PREFIX)

        def pump() -> None:
            try:
                # os.read returns what is there now: nothing waits for a newline.
                while chunk := os.read(fd, READ_SIZE):
                    self._take(state, chunk)
            except OSError:
                pass  # a broken stream ends the capture like EOF
            finally:
                stream.close()

        thread = threading.Thread(target=pump, daemon=True, name=f"wsgaps-{label}")
        thread.start()
        self._threads.append(thread)

    def _take(self, state: _Stream, chunk: bytes) -> None:
        if state.prefix:
            chunk = _prefix_lines(chunk, state.prefix, state.at_line_start)
        state.at_line_start = chunk.endswith(b"\n")
        with self._lock:
            piece = _Piece(state, self._total, state.pos, chunk)
            self._total += len(chunk)
            if self._head_stream is None:
                # Searched before the piece joins the tail, which may drop part of it at once.
                start = state.report_start(chunk)
                state.advance(chunk)
                if start is not None:
                    self._start_head(state, start, piece)
            else:
                state.advance(chunk)
                if self._head_stream is state:
                    self._extend_head(piece)
            self._add(piece)

    def _start_head(self, state: _Stream, start: int, piece: _Piece) -> None:
        """Keep the report starting at ``start`` in ``state``'s stream: up to CRASH_CONTEXT
        bytes of whole lines before it, from the tail, then all of ``piece`` from there."""
        first = max(start - CRASH_CONTEXT, 0)
        earlier = [p.cut(max(0, first - p.pos)) for p in self._pieces
                   if p.stream is state and p.pos + len(p.data) > first]
        parts = [*earlier, piece.cut(max(0, first - piece.pos))]
        begin = parts[0].pos  # the tail may have lost some of the context already
        if begin > 0:  # not the stream's start: the context begins after its first newline
            context = b"".join(p.data for p in parts)[:max(0, start - begin)]
            newline = context.find(b"\n")
            begin = start if newline < 0 else begin + newline + 1
        self._head_stream = state
        self._report_at = max(0, start - begin)
        for part in parts:
            if part.pos + len(part.data) > begin:
                self._extend_head(part.cut(max(0, begin - part.pos)))

    def _extend_head(self, piece: _Piece) -> None:
        room = self.head_limit - self._head_size
        if room > 0 and piece.data:
            kept = piece.data[:room]
            self._head.append(piece._replace(data=kept))
            self._head_size += len(kept)

    def _add(self, piece: _Piece) -> None:
        if len(piece.data) > self.limit:
            piece = piece.cut(len(piece.data) - self.limit)
        self._pieces.append(piece)
        self._size += len(piece.data)
        excess = self._size - self.limit
        while excess > 0:
            first = self._pieces[0]
            if len(first.data) <= excess:
                self._pieces.popleft()
                cut = len(first.data)
            else:
                self._pieces[0] = first.cut(excess)
                cut = excess
            self._size -= cut
            excess -= cut

    def join(self, timeout: float = 2.0) -> None:
        for thread in self._threads:
            thread.join(timeout)

    def buffered(self) -> int:
        """Bytes held now (tail and crash head): for the memory bound's tests."""
        with self._lock:
            return self._size + self._head_size

    def crash_head(self, lines: int = CRASH_HEAD_LINES) -> str | None:
        """The first ``lines`` lines of the first crash report seen (a Go ``fatal error:`` or
        ``panic:``, a Python traceback, ...), after at most ``CRASH_CONTEXT_LINES`` lines that
        came just before it, without the stderr prefix, each cut to ``CRASH_LINE_LIMIT``
        characters; None when no report was seen.  The target's bytes, decoded with
        replacement: for evidence, escaped wherever it is shown."""
        with self._lock:
            head = b"".join(p.data for p in self._head)
            at = self._report_at
        if not head:
            return None
        before = head[:at].splitlines()[-CRASH_CONTEXT_LINES:]
        shown = [*before, *head[at:].splitlines()[:lines]]
        text = [line.removeprefix(STDERR_PREFIX).decode("utf-8", "replace")
                for line in shown]
        return "\n".join(line[:CRASH_LINE_LIMIT] for line in text)

    def text(self) -> str:
        """The tail; when the head of the first crash report is no longer in it, that head
        first, then one line saying how many bytes were skipped between the two."""
        with self._lock:
            tail = b"".join(p.data for p in self._pieces)
            tail_start = self._total - self._size
            shown = [p.data[:tail_start - p.offset] for p in self._head
                     if p.offset < tail_start]
            head_offset = self._head[0].offset if self._head else 0
        head = b"".join(shown)
        skipped = tail_start - head_offset - len(head)
        if not shown or skipped == 0:  # no head outside the tail, or the tail goes on from it
            return (head + tail).decode("utf-8", "replace")
        if not head.endswith(b"\n"):
            head += b"\n"
        return head.decode("utf-8", "replace") + _skip_line(skipped) + tail.decode(
            "utf-8", "replace")


def _prefix_lines(chunk: bytes, prefix: bytes, at_line_start: bool) -> bytes:
    """``chunk`` with ``prefix`` at the start of each line it begins (not after a final \\n)."""
    body = chunk[:-1].replace(b"\n", b"\n" + prefix) + chunk[-1:]
    return prefix + body if at_line_start else body


def bound_logs(texts: Sequence[str], limit: int) -> str:
    """``texts`` (``OutputTail.text()`` of several instances) joined by newlines and cut to
    their last ``limit`` characters, except that the first crash head one of them kept, with
    its skip line, stays in front when the cut would drop it; a second line then counts the
    characters cut after it."""
    joined = "\n".join(texts)
    cut = max(0, len(joined) - limit)
    where = 0
    for text in texts:
        marker = _SKIP_MARKER.search(text)
        # A target can print a look-alike line: only a head of the size OutputTail keeps is
        # taken as one, so the bound holds whatever the target writes.
        if marker is not None and marker.start() <= CRASH_HEAD_LIMIT + 1:
            if where >= cut:
                break  # the tail keeps it anyway
            head_end = where + marker.end() + 1  # after the skip line's newline
            rest = max(cut, head_end)
            more = (f"[wsgaps: {rest - head_end} more characters skipped]\n"
                    if rest > head_end else "")
            return joined[where:head_end] + more + joined[rest:]
        where += len(text) + 1
    return joined[cut:]
