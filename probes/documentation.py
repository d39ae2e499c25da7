"""Gap 14, documentation: a text heuristic, and labelled as one everywhere it is shown.

For each of the other thirteen gaps (a "topic"), the probe looks for the best passage in the
documentation the manifest points at (``[docs] paths``): local files, or the stack's own
docs that the build step fetched from its package registry into the per-user cache
(``[docs] fetch``, ``gaps.docfetch``; never at probe time).  It starts no instance and reads
nothing from the wire (placement ``OWN``: it starts nothing itself either).

What is read.  Every path is a file or a folder (walked in name order, links never followed,
hidden folders skipped).  Text documents (``.md``, ``.rst``, ``.txt``, ``.adoc``, README-like
names) are cut into paragraphs at blank lines, each scored with the heading above it;
sources contribute their documentation only: Python docstrings (read with ``ast``, never
imported), Rust ``///`` and ``//!`` comments, Go ``//`` comment blocks, Java and JavaScript
``/** */`` comments.  Other files are not read.  Reading is bounded: a file over
``MAX_FILE`` bytes is skipped, a file with a NUL byte in its head or that is not UTF-8 is
binary and skipped, and reading stops after ``MAX_FILES`` files or ``MAX_TOTAL`` bytes
(the evidence says so); a passage is scored on its first ``MAX_PASSAGE`` characters.  The
text is untrusted: the evidence keeps only a short excerpt per topic (``EXCERPT``
characters), which the reports escape like everything else a target brings.

How a passage scores.  Each topic has a list of terms (``TOPICS``, case-insensitive regular
expressions, the one place they are kept).  A passage's score for a topic is the number of
distinct terms of that topic it contains (its heading included); a topic is covered when its
best passage scores at least ``MIN_SCORE`` (two different terms: one word such as "error" or
"test" alone is too common to mean anything).  Only files that mention WebSocket at least
once (in their text or path) count: a framework's HTTP docs say "middleware" and "metrics"
about HTTP.  The best passage is the highest score, the first in reading order on a tie.

``documentation.coverage`` [capability]: ``pass`` when at least ``PASS_AT`` (11) of the 13
topics are covered, ``fail`` below, the count in the summary; ``skip`` with the reason when
the manifest points at no docs, the docs fetch failed, or nothing readable was found.  The
evidence lists, per topic, the file and line of the best passage, its score and terms.

This measures whether words about a capability are there, not whether the docs are good or
right: a heuristic.  It never gates (``gaps.gate.NEVER_GATED``).
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gaps.catalog import BY_SLUG
from gaps.manifest import Manifest
from gaps.probe import OWN, Outcome, ProbeContext, check, failed, passed, skipped
from gaps.targets import docs_dir, docs_problem, docs_values

PASS_AT = 11
MIN_SCORE = 2
MAX_FILE = 2 * 1024 * 1024
MAX_FILES = 5000
MAX_TOTAL = 64 * 1024 * 1024
MAX_PASSAGE = 4000
EXCERPT = 160
BINARY_HEAD = 8192
WORD_LIST_LINES = 5
SHOWN = 10  # skipped files named in the evidence, per reason

HEURISTIC = ("heuristic: a topic counts as documented when one passage of the docs holds at "
             f"least {MIN_SCORE} of its terms; this finds words, not whether the docs are "
             "good or right")

TEXT_SUFFIXES = {".md", ".markdown", ".rst", ".txt", ".adoc", ".asciidoc"}
TEXT_NAMES = {"readme", "changes", "changelog", "history"}
SOURCE_SUFFIXES = {".py", ".go", ".rs", ".java", ".js"}
WEBSOCKET = re.compile(r"web[\s_-]?sockets?", re.IGNORECASE)


Term = tuple[str, re.Pattern[str]]


def _terms(*items: str | tuple[str, str]) -> tuple[Term, ...]:
    """A topic's terms as (label, regex); a plain string is its own label, a pair gives
    the label shown for a regex.  Regexes are written in lower case: they are matched on
    the lower-cased passage (``has_term``), at the start of a word."""
    out = []
    for item in items:
        label, pattern = (item, re.escape(item.lower())) if isinstance(item, str) else item
        out.append((label, re.compile(pattern)))
    return tuple(out)


def has_term(pattern: re.Pattern[str], lowered: str) -> bool:
    """Whether ``pattern`` matches ``lowered`` at the start of a word.  The word start is
    checked here, not with a look-behind in the regex: a regex that begins with a literal
    lets ``re`` skip ahead to it, several times faster over thousands of passages."""
    for match in pattern.finditer(lowered):
        start = match.start()
        if start == 0 or not lowered[start - 1].isalnum():
            return True
    return False


# The thirteen topics' terms: the one place they are kept.
TOPICS: dict[str, tuple[Term, ...]] = {
    "heartbeat": _terms(("heartbeat", r"heart-?beat"), ("keepalive", r"keep-?alive"),
                        "ping", "pong", ("ping interval", r"ping[_ ]?interval"),
                        ("ping timeout", r"ping[_ ]?timeout"),
                        ("dead peer", r"dead (?:peer|connection|client)s?"),
                        ("idle timeout", r"idle[_ ]?timeout")),
    "broadcast": _terms("broadcast", ("fan-out", r"fan-?out"), ("room", r"rooms?\b"),
                        ("channel", r"channels?\b"), ("publish", r"pub-?sub|publish"),
                        ("all clients", r"(?:all|every) (?:the )?(?:connected )?clients?"),
                        ("group", r"groups?\b")),
    "message-types": _terms("binary", ("text message", r"text (?:message|frame|data)s?"),
                            "opcode", "fragment", ("UTF-8", r"utf-?8"),
                            ("message type", r"message[_ ]?types?"), "continuation"),
    "connection-state": _terms("graceful", ("shutdown", r"shutdown|shut down"),
                               ("close code", r"close[_ ]?codes?|status[_ ]?codes?"),
                               ("going away", r"going[_ ]?away|1001"),
                               ("connection state", r"connection (?:state|lifecycle)"),
                               ("ready state", r"ready[_ ]?state"),
                               ("open connections", r"(?:open|active) connections"),
                               "disconnect"),
    "error-handling": _terms(("error", r"errors?\b"), ("exception", r"exceptions?\b"),
                             ("error handling", r"error[_ ]?handl"), "protocol error",
                             "invalid", ("1002/1007/1011", r"1002|1007|1011"),
                             ("bad request", r"bad request|400\b"), "malformed"),
    "concurrency": _terms(("concurrent", r"concurren"), ("thread-safe", r"thread[- ]?safe"),
                          ("goroutine", r"goroutines?"), ("lock", r"mutex|locks?\b"),
                          ("race", r"races?\b|race condition"), ("coroutine", r"coroutines?"),
                          ("at the same time", r"simultaneous|at the same time"),
                          ("serialize", r"seriali[sz]e[sd]? (?:reads|writes|access)")),
    "compression": _terms(("compress", r"compress"),
                          ("permessage-deflate", r"permessage[-_]deflate|per-message deflate"),
                          "deflate", "zlib", ("window bits", r"window[_ ]?bits"),
                          ("context takeover", r"context[_ ]?takeover")),
    "middleware": _terms(("middleware", r"middlewares?"), ("hook", r"hooks?\b"),
                         ("authenticate", r"authenticat"), ("authorize", r"authori[sz]"),
                         "origin", "handshake", ("token", r"tokens?\b"), "intercept"),
    "subprotocols": _terms(("subprotocol", r"sub-?protocols?"), "Sec-WebSocket-Protocol",
                           "protocol negotiation",
                           ("select subprotocol", r"select_?subprotocol"),
                           ("negotiate", r"negotiat")),
    "limits": _terms(("limit", r"limits?\b"),
                     ("max size", r"max[_ ]?(?:message[_ ]?)?size|maxpayload|max_msg_size"),
                     ("rate limit", r"rate[- ]?limit"), ("too big", r"too (?:big|large)|1009"),
                     ("backpressure", r"back-?pressure"),
                     ("max connections", r"max(?:imum)?[_ ](?:number of )?connections"),
                     "timeout", "quota"),
    "recovery": _terms("reconnect", ("retry", r"retr(?:y|ies)"), ("backoff", r"back-?off"),
                       "exponential", "jitter", ("resume", r"resum")),
    "testing-utilities": _terms(("test", r"tests?\b|testing"),
                                ("test runner", r"pytest|unittest|go test|cargo test|junit"),
                                ("mock", r"mocks?\b|mocking"), ("fixture", r"fixtures?"),
                                ("test client", r"test ?client"), "stub"),
    "metrics": _terms(("metric", r"metrics?\b"), "prometheus", ("monitor", r"monitor"),
                      "observability", "gauge", ("counter", r"counters?\b"), "histogram",
                      ("telemetry", r"open-?telemetry|telemetry")),
}
assert set(TOPICS) == set(BY_SLUG) - {"documentation"}


@dataclass
class Passage:
    path: str  # as shown: the placeholder of its root and the path under it
    line: int
    text: str
    heading: str = ""


@dataclass
class Reading:
    """What reading the docs found: passages, and what was skipped and why."""

    passages: list[Passage] = field(default_factory=list)
    files: int = 0
    bytes: int = 0
    skipped: dict[str, list[str]] = field(default_factory=dict)
    skipped_counts: dict[str, int] = field(default_factory=dict)
    stopped: str = ""  # a limit that ended the reading early
    missing: list[str] = field(default_factory=list)  # paths that do not exist

    def skip(self, reason: str, path: str) -> None:
        self.skipped_counts[reason] = self.skipped_counts.get(reason, 0) + 1
        shown = self.skipped.setdefault(reason, [])
        if len(shown) < SHOWN:
            shown.append(path)


# -- reading ------------------------------------------------------------------------------

def _kind(path: Path) -> str | None:
    suffix = path.suffix.lower()
    if suffix in TEXT_SUFFIXES or (not suffix and path.name.lower() in TEXT_NAMES) or (
            path.stem.lower() in TEXT_NAMES and suffix not in SOURCE_SUFFIXES):
        return "text"
    if suffix in SOURCE_SUFFIXES:
        return suffix[1:]
    return None


HEADING_MD = re.compile(r"^\s{0,3}#{1,6}\s+(.*)$")
UNDERLINE = re.compile(r"^([=\-~^\"'`#*+.:_])\1{2,}\s*$")


def text_passages(text: str) -> list[tuple[int, str, str]]:
    """(line, text, heading) for each paragraph of a text document (blank-line separated);
    Markdown ``#`` headings and reStructuredText underlined titles set the heading."""
    out: list[tuple[int, str, str]] = []
    heading = ""
    lines = text.splitlines()
    block: list[str] = []
    start = 0

    def flush() -> None:
        if block:
            out.append((start + 1, "\n".join(block), heading))
            block.clear()

    for number, line in enumerate(lines):
        if not line.strip():
            flush()
            continue
        title = HEADING_MD.match(line)
        nxt = lines[number + 1] if number + 1 < len(lines) else ""
        if title or (UNDERLINE.match(nxt) and not UNDERLINE.match(line)
                     and len(nxt.strip()) >= len(line.strip())):
            flush()
            heading = (title.group(1) if title else line).strip()[:200]
            continue
        if UNDERLINE.match(line):
            continue
        if not block:
            start = number
        block.append(line)
    flush()
    return out


def docstring_passages(text: str) -> list[tuple[int, str, str]] | None:
    """Paragraphs of a Python file's docstrings (module, classes, functions), read with
    ``ast`` (nothing is imported or run); None when the file does not parse."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError, RecursionError):
        return None
    out: list[tuple[int, str, str]] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef
                          | ast.AsyncFunctionDef):
            continue
        body = node.body
        if not body or not isinstance(body[0], ast.Expr) or not isinstance(
                body[0].value, ast.Constant) or not isinstance(body[0].value.value, str):
            continue
        raw = body[0].value.value
        # cleandoc (which get_docstring applies) drops the leading blank lines: count them
        # back, so that line numbers are the file's.
        lines = raw.split("\n")
        blank = next((i for i, line in enumerate(lines) if line.strip()), len(lines))
        where = body[0].lineno + blank
        name = "" if isinstance(node, ast.Module) else node.name
        for line, paragraph, _ in text_passages(inspect.cleandoc(raw)):
            out.append((where + line - 1, paragraph, name))
    return sorted(out)


COMMENT = {
    "rs": re.compile(r"^\s*//[/!]\s?(.*)$"),
    "go": re.compile(r"^\s*//(?!go:)\s?(.*)$"),
}


def comment_passages(text: str, kind: str) -> list[tuple[int, str, str]]:
    """Blocks of documentation comments: Rust ``///``/``//!``, Go ``//``, Java ``/** */``;
    each block cut into paragraphs."""
    blocks: list[tuple[int, list[str]]] = []
    lines = text.splitlines()
    if kind in ("java", "js"):
        inside = False
        for number, line in enumerate(lines):
            stripped = line.strip()
            if not inside and stripped.startswith("/**"):
                inside = True
                blocks.append((number, []))
                stripped = stripped[3:]
            if inside:
                end = stripped.find("*/")
                body = stripped[:end] if end >= 0 else stripped
                blocks[-1][1].append(body.lstrip("*").strip())
                inside = end < 0
    else:
        pattern = COMMENT[kind]
        previous = -2
        for number, line in enumerate(lines):
            match = pattern.match(line)
            if match is None:
                continue
            if number != previous + 1:
                blocks.append((number, []))
            blocks[-1][1].append(match.group(1))
            previous = number
    out = []
    for first, body in blocks:
        for line, paragraph, heading in text_passages("\n".join(body)):
            out.append((first + line, paragraph, heading))
    return out


def _walk(root: Path) -> list[Path]:
    """Files under ``root`` in name order: links are not followed, hidden folders skipped."""
    found: list[Path] = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [Path(folder) / name for name in sorted(files)]
    return found


def read_docs(roots: list[tuple[str, Path]]) -> Reading:
    """Read the docs under ``roots`` (each: the name shown for it, its path), bounded."""
    reading = Reading()
    for shown_root, root in roots:
        if root.is_symlink() or not root.exists():
            reading.missing.append(shown_root)
            continue
        files = [root] if root.is_file() else _walk(root)
        for path in files:
            shown = shown_root if path == root else f"{shown_root}/{path.relative_to(root)}"
            if reading.stopped:
                return reading
            _read_one(reading, path, shown)
    return reading


def _read_one(reading: Reading, path: Path, shown: str) -> None:
    kind = _kind(path)
    if kind is None:
        reading.skip("not documentation", shown)
        return
    if path.is_symlink() or not path.is_file():
        reading.skip("a link or not a regular file", shown)
        return
    size = path.stat().st_size
    if size > MAX_FILE:
        reading.skip(f"over {MAX_FILE} bytes", shown)
        return
    if reading.files >= MAX_FILES or reading.bytes + size > MAX_TOTAL:
        reading.stopped = (f"reading stopped at {reading.files} files, {reading.bytes} bytes "
                           f"(limits: {MAX_FILES} files, {MAX_TOTAL} bytes)")
        return
    with path.open("rb") as handle:
        data = handle.read(MAX_FILE + 1)
    if b"\0" in data[:BINARY_HEAD]:
        reading.skip("binary", shown)
        return
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        reading.skip("not UTF-8 text", shown)
        return
    reading.files += 1
    reading.bytes += len(data)
    if not (WEBSOCKET.search(text) or WEBSOCKET.search(shown)):
        reading.skip("never mentions WebSocket", shown)
        return
    if kind == "text":
        found = text_passages(text)
    elif kind == "py":
        parsed = docstring_passages(text)
        if parsed is None:
            reading.skip("Python that does not parse", shown)
            return
        found = parsed
    else:
        found = comment_passages(text, kind)
    reading.passages += [Passage(shown, line, body, heading) for line, body, heading in found
                         if not word_list(body)]


def word_list(text: str) -> bool:
    """A paragraph of one word per line (a spelling list, an index): words, not prose about
    anything, so it never counts for a topic."""
    lines = [line for line in text.splitlines() if line.strip()]
    return len(lines) >= WORD_LIST_LINES and all(len(line.split()) == 1 for line in lines)


# -- scoring --------------------------------------------------------------------------------

@dataclass
class Best:
    score: int = 0
    passage: Passage | None = None
    terms: tuple[str, ...] = ()

    @property
    def found(self) -> bool:
        return self.score >= MIN_SCORE

    def line(self) -> str:
        """``file:line (n terms: a, b)``, or why no passage counts, in one line."""
        if self.passage is None:
            return "no passage with any of its terms"
        where = f"{self.passage.path}:{self.passage.line}"
        terms = f"{self.score} term{'s' if self.score != 1 else ''}: {', '.join(self.terms)}"
        return f"{where} ({terms})" if self.found else f"none counts; best {where} ({terms})"

    def evidence(self) -> dict[str, Any]:
        if self.passage is None:
            return {"found": False, "score": 0}
        excerpt = " ".join(self.passage.text.split())
        if len(excerpt) > EXCERPT:
            excerpt = excerpt[:EXCERPT] + " …"
        return {"found": self.found, "score": self.score, "file": self.passage.path,
                "line": self.passage.line, "heading": self.passage.heading[:120],
                "terms": list(self.terms), "excerpt": excerpt}


def score(passage: Passage, topic: str, lowered: str | None = None) -> tuple[str, ...]:
    """The distinct terms of ``topic`` that ``passage`` (with its heading) contains."""
    if lowered is None:
        lowered = f"{passage.heading}\n{passage.text[:MAX_PASSAGE]}".lower()
    return tuple(label for label, pattern in TOPICS[topic] if has_term(pattern, lowered))


def best_passages(passages: list[Passage]) -> dict[str, Best]:
    """Per topic, the passage with the most distinct terms (the first of equals)."""
    best = {topic: Best() for topic in TOPICS}
    for passage in passages:
        lowered = f"{passage.heading}\n{passage.text[:MAX_PASSAGE]}".lower()
        for topic in TOPICS:
            terms = score(passage, topic, lowered)
            if len(terms) > best[topic].score:
                best[topic] = Best(len(terms), passage, terms)
    return best


# -- the check ------------------------------------------------------------------------------

def doc_roots(manifest: Manifest) -> list[tuple[str, Path]]:
    """The manifest's docs paths: (as shown, with its placeholder; the path itself)."""
    assert manifest.docs is not None
    values = docs_values(manifest)
    roots = []
    for text in manifest.docs.paths:
        path = Path(text.format_map(values))
        if not path.is_absolute():
            path = manifest.directory / path
        roots.append((text, path))
    return roots


def judge(manifest: Manifest) -> Outcome:
    """The coverage verdict for ``manifest``'s docs (blocking: reads files)."""
    docs = manifest.docs
    if docs is None:
        return skipped("the manifest points at no documentation ([docs] paths), so the "
                       "documentation heuristic has nothing to read")
    if problem := docs_problem(manifest):
        first = problem.splitlines()[0] if problem.strip() else "no reason given"
        return skipped(f"no docs: {first}", source=docs.source, fetch_output=problem,
                       docs_dir=str(docs_dir(manifest)))
    reading = read_docs(doc_roots(manifest))
    about: dict[str, Any] = {
        "heuristic": HEURISTIC, "source": docs.source, "paths": list(docs.paths),
        "files_read": reading.files, "bytes_read": reading.bytes,
        "passages": len(reading.passages),
        "skipped": {reason: {"count": reading.skipped_counts[reason], "first": names}
                    for reason, names in reading.skipped.items()},
    }
    if reading.missing:
        about["missing_paths"] = reading.missing
    if reading.stopped:
        about["stopped"] = reading.stopped
    if not reading.passages:
        why = (f"none of {', '.join(reading.missing)} exists" if reading.missing
               and not reading.files else "no readable passage that mentions WebSocket")
        return skipped(f"no documentation found: {why} (looked in {len(docs.paths)} "
                       f"path(s), {reading.files} file(s) read)", **about)
    best = best_passages(reading.passages)
    covered = [topic for topic, b in best.items() if b.found]
    missing = [topic for topic in TOPICS if topic not in covered]
    # The per-topic lines first: the report shows the evidence's head (bounded), and these
    # are what a reader checks; the details (excerpts) follow.
    about = {"count": len(covered), "of": len(TOPICS), "missing": missing,
             "heuristic": HEURISTIC,
             "best_passages": {topic: b.line() for topic, b in best.items()},
             **about, "topics": {topic: b.evidence() for topic, b in best.items()}}
    said = (f"heuristic: {len(covered)} of {len(TOPICS)} topics have a passage in the docs "
            f"holding {MIN_SCORE} or more of their terms"
            + (f"; none for {', '.join(missing)}" if missing else ""))
    if len(covered) >= PASS_AT:
        return passed(said, **about)
    return failed(f"{said}; {PASS_AT} needed", **about)


# One target's docs read at a time: a reading thread holds the GIL while it scores, and the
# matrix reads nine targets' docs while the other gaps' timing checks run on the loop.
_READING = threading.Lock()


def _judge_alone(manifest: Manifest) -> Outcome:
    with _READING:
        return judge(manifest)


@check("documentation.coverage", needs=(), budget=120.0, placement=OWN)
async def coverage(ctx: ProbeContext) -> Outcome:
    # In a worker thread: reading thousands of files must not stall the event loop that
    # the other gaps' timing checks run on.
    return await asyncio.to_thread(_judge_alone, ctx.manifest)
