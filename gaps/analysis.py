"""Reading a hand-written gap analysis: the claims ``wsgaps audit`` holds against results.

The shape read is the one wsgaps' own Markdown report writes and hand-written analyses
use: a numbered heading per gap (``### 3. **Message Types**``), under it a ``**Status**:``
line with an icon and a word, a ``**Priority**:`` line and bullet points under
``**Current State**:``, and a summary with one list per priority (``### High Priority
Gaps``).  Headings map to catalog gaps by title, slug or one of the catalog's synonyms,
compared whole after normalising case, emphasis and punctuation; a heading that fits none is
reported as unmapped, never guessed.

Everything read here is untrusted text: the file is bounded in size, every string kept is
cleaned and bounded, and at most ``HEADINGS_MAX`` headings and ``BULLETS_MAX`` bullets per
gap are kept.  The renderers escape it again.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from gaps.catalog import BY_SLUG, GAPS, SYNONYMS, Gap, Priority
from gaps.model import Status
from gaps.report.safe import clip, one_line

MAX_BYTES = 1024 * 1024  # a hand-written analysis is tens of kilobytes
TEXT_LIMIT = 200  # a heading, a status or priority value as written
BULLET_LIMIT = 500  # one "current state" bullet
BULLETS_MAX = 30  # bullets kept per gap
HEADINGS_MAX = 200  # numbered headings read; more is not a gap analysis
SUMMARY_MAX = 200  # summary list items kept


class AnalysisError(Exception):
    """The file is not a gap analysis in the expected shape (a one-line reason)."""


# --- normalising names ------------------------------------------------------------------

def normalise(text: str) -> str:
    """A name reduced for comparison: compatibility form, emphasis and links gone, case
    folded, ``&`` read as "and", every run of other characters one space."""
    text = unicodedata.normalize("NFKC", text)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)  # [text](url) -> text
    text = text.casefold().replace("&", " and ")
    return " ".join(re.findall(r"[^\W_]+", text))


def _name_index() -> dict[str, str]:
    index: dict[str, str] = {}
    for gap in GAPS:
        names = (gap.title, gap.slug.replace("-", " "), *SYNONYMS.get(gap.slug, ()))
        for name in names:
            key = normalise(name)
            if index.setdefault(key, gap.slug) != gap.slug:
                raise AssertionError(f"catalog name {name!r} fits {index[key]} and {gap.slug}")
    return index


NAMES = _name_index()


def map_title(title: str) -> Gap | None:
    """The catalog gap a heading or summary item names, or None when it names none.

    Tried whole; then a link's text (a summary item such as ``❌ [Heartbeat](#gap-1):
    Missing``); then without a trailing parenthesis ("Connection Recovery (improve
    existing)"); then the part before a colon or dash ("Heartbeat: dead peers").  Each
    candidate must equal a catalog name whole: nothing fuzzier, since a wrong mapping would
    audit the wrong claim.
    """
    link = re.search(r"\[([^\]]+)\]\([^)]*\)", title)
    candidates = [title, link.group(1) if link else "",
                  re.sub(r"\s*\([^()]*\)\s*$", "", title),
                  re.split("\\s*(?::|\\s[-\u2013\u2014]\\s)\\s*", title, maxsplit=1)[0]]
    for candidate in candidates:
        key = normalise(candidate) if candidate else ""
        if key in NAMES:
            return BY_SLUG[NAMES[key]]
    return None


# --- reading statuses -------------------------------------------------------------------

# Icons people write beside a status word, by the status they mean.  Variation selectors
# (U+FE0F) are removed before looking an icon up.
ICONS: dict[str, Status] = {
    "✅": Status.PASS, "✔": Status.PASS, "☑": Status.PASS, "🟢": Status.PASS,
    "✓": Status.PASS,
    "⚠": Status.PARTIAL, "🟡": Status.PARTIAL, "🟠": Status.PARTIAL, "🚧": Status.PARTIAL,
    "◐": Status.PARTIAL,
    "❌": Status.MISSING, "✖": Status.MISSING, "✗": Status.MISSING, "🔴": Status.MISSING,
    "⛔": Status.MISSING, "🚫": Status.MISSING,
    "❔": Status.UNKNOWN, "❓": Status.UNKNOWN, "⏭": Status.UNKNOWN,
}

# Status words and phrases, normalised.  The longest one the value starts with (at a word
# boundary) is read, so "not implemented" is never read as "implemented".
WORDS: dict[str, Status] = {
    **dict.fromkeys(
        ("pass", "passes", "passed", "passing", "implemented", "fully implemented",
         "complete", "completed", "done", "supported", "fully supported", "present",
         "available", "exists", "yes", "ok", "built in", "full support"), Status.PASS),
    **dict.fromkeys(
        ("partial", "partially", "partial implementation", "partially implemented",
         "partly", "partly implemented", "partially supported", "partial support",
         "limited", "incomplete", "basic", "in progress"), Status.PARTIAL),
    **dict.fromkeys(
        ("missing", "absent", "not implemented", "not supported", "unsupported",
         "not available", "unavailable", "none", "no", "not present", "no support"),
        Status.MISSING),
    **dict.fromkeys(
        ("unknown", "skipped", "not probed", "n a", "not applicable", "unclear", "tbd",
         "to be determined"), Status.UNKNOWN),
}
_WORDS_LONGEST_FIRST = sorted(WORDS, key=len, reverse=True)


@dataclass(frozen=True)
class Claim:
    """A Status line as read: the status claimed and how it was read from icon and word."""

    text: str  # the value as written, cleaned and bounded
    status: Status | None  # None: neither icon nor word could be read
    icon: str  # the icon as written, or ""
    icon_status: Status | None
    word: str  # the word or phrase read, as written, or ""
    word_status: Status | None
    read: str  # how the status was read, when it was not plain (a disagreement, no word)


def read_status(value: str) -> Claim:
    """The status a Status line's value claims.  The word wins over the icon: an icon is
    picked from a palette and often left unchanged when the text is edited, and when the two
    disagree the claim says so in ``read``."""
    text = clip(one_line(value), TEXT_LIMIT)
    rest = _strip_emphasis(value).strip()
    icon, icon_status = "", None
    bare = rest.replace("\ufe0f", "")
    for mark, status in ICONS.items():
        if bare.startswith(mark):
            icon, icon_status = mark, status
            rest = bare[len(mark):].strip()
            break
    word, word_status = "", None
    key = normalise(rest)
    for phrase in _WORDS_LONGEST_FIRST:
        if key == phrase or key.startswith(phrase + " "):
            word_status = WORDS[phrase]
            word = _leading_words(rest, len(phrase.split()))
            break
    read = ""
    if word_status is not None:
        status: Status | None = word_status
        if icon_status is not None and icon_status != word_status:
            read = (f"the icon {icon} means {icon_status} but the word “{word}” means "
                    f"{word_status}; the word was taken")
    elif icon_status is not None:
        status = icon_status
        read = (f"no status word was recognised; the icon {icon} was taken ({icon_status})"
                if rest else f"icon only; {icon} read as {icon_status}")
    else:
        status = None
        read = "neither an icon nor a status word was recognised"
    return Claim(text, status, icon, icon_status, clip(word, TEXT_LIMIT), word_status, read)


def _strip_emphasis(text: str) -> str:
    return re.sub(r"[*_`]+", "", text)


def _leading_words(text: str, count: int) -> str:
    """The first ``count`` words of ``text`` as written (for quoting the word read)."""
    words = re.findall("[^\\W_]+(?:[/'\u2019-][^\\W_]+)*", text)
    return " ".join(words[:count])


def read_priority(value: str) -> Priority | None:
    key = normalise(value)
    for priority in Priority:
        if key == priority.value.casefold() or key.startswith(priority.value.casefold() + " "):
            return priority
    return None


# --- the document -----------------------------------------------------------------------

@dataclass
class Section:
    """One numbered gap heading and what was read under it."""

    line: int  # 1-based line of the heading
    number: int  # the number as written
    heading: str  # the title as written (emphasis removed), cleaned and bounded
    gap: Gap | None
    claim: Claim | None = None
    priority_text: str = ""
    priority: Priority | None = None
    current_state: list[str] = field(default_factory=list)
    more_bullets: int = 0  # bullets beyond BULLETS_MAX, not kept
    problems: list[str] = field(default_factory=list)
    chapter: bool = False  # a numbered heading with numbered gap headings under it


@dataclass(frozen=True)
class SummaryItem:
    line: int
    text: str  # cleaned and bounded
    priority: Priority
    gap: Gap | None


@dataclass
class Analysis:
    name: str  # the file's name (not its path: audit files are shared)
    sha256: str
    title: str  # the first level-1 heading, or ""
    sections: list[Section]
    summary: list[SummaryItem]

    @property
    def mapped(self) -> dict[str, Section]:
        """The first section for each catalog gap, by slug."""
        found: dict[str, Section] = {}
        for section in self.sections:
            if section.gap is not None:
                found.setdefault(section.gap.slug, section)
        return found

    def summary_priority(self, slug: str) -> Priority | None:
        for item in self.summary:
            if item.gap is not None and item.gap.slug == slug:
                return item.priority
        return None


_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_HEADING = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
# "1. Title", "1) Title", "Gap 1: Title", "#1: Title"; "2.3 Title" (a chapter's numbering)
# reads as number 3.
_NUMBERED = re.compile(
    r"^(?:gap\s*)?#?(?:(?:\d{1,3}\.)+(?P<sub>\d{1,3})\.?\s+|(?P<n>\d{1,3})\s*[.):]\s*)"
    r"(?P<title>\S.*)$", re.IGNORECASE)
_PRIORITY_HEADING = re.compile(r"\b(high|medium|low)[ -]priority\b", re.IGNORECASE)
# "**Status**: x", "**Status:** x", "Status: x", "- __Status__: x": the colon inside or
# after the emphasis, whichever it is.
_LABEL = re.compile(
    r"^ {0,3}(?:[-*+][ \t]+)?(?P<em>[*_]{0,2})[ \t]*(?P<label>[A-Za-z][A-Za-z ]*?)[ \t]*"
    r"(?::[ \t]*(?P=em)|(?P=em)[ \t]*:)[ \t]*(?P<value>.*)$")
_ITEM = re.compile(r"^([ \t]*)(?:[-*+]|\d{1,3}[.)])[ \t]+(.*)$")
LABELS = ("status", "priority", "current state")


def _label(line: str) -> tuple[str, str] | None:
    """``("status", value)`` for a labelled line such as ``**Status**: ❌ Missing``."""
    m = _LABEL.match(line)
    if not m:
        return None
    name = " ".join(m.group("label").lower().split())
    return (name, m.group("value").strip()) if name in LABELS else None


def _visible_lines(text: str) -> list[tuple[int, str]]:
    """Lines outside fenced code blocks and HTML comments, with their 1-based numbers."""
    kept: list[tuple[int, str]] = []
    fence = ""
    comment = False
    for number, line in enumerate(text.split("\n"), start=1):
        if fence:
            m = _FENCE.match(line)
            if m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence) \
                    and not line.strip()[len(m.group(1)):].strip():
                fence = ""
            continue
        if comment:
            if "-->" in line:
                comment = False
            continue
        m = _FENCE.match(line)
        if m:
            fence = m.group(1)
            continue
        if line.lstrip().startswith("<!--") and "-->" not in line:
            comment = True
            continue
        kept.append((number, line))
    return kept


def _text(value: str, limit: int = TEXT_LIMIT) -> str:
    return clip(one_line(_strip_emphasis(value).strip()), limit)


def read_text(text: str, name: str = "analysis", sha256: str = "") -> Analysis:
    """Parse an analysis from its text.  Raises ``AnalysisError`` when it has no numbered
    gap heading, or numbered headings none of which has a Status line."""
    lines = _visible_lines(text.replace("\r\n", "\n").replace("\r", "\n"))
    title = ""
    sections: list[Section] = []
    summary: list[SummaryItem] = []
    current: Section | None = None
    level = 0  # the level of the current gap heading
    in_state = False  # reading bullets under "Current State"
    summary_priority: Priority | None = None
    numbered = 0
    for number, line in lines:
        heading = _HEADING.match(line)
        if heading:
            depth, body = len(heading.group(1)), (heading.group(2) or "").strip()
            plain = _strip_emphasis(body).strip()
            found = _NUMBERED.match(plain)
            if depth == 1 and not title:
                title = _text(body)
            if current is not None and depth > level and normalise(plain) == "current state":
                in_state = True  # "#### Current State" inside a gap
                continue
            in_state = False
            # A heading at the gap's level or above ends it; so does a numbered heading
            # under a numbered heading that named no gap ("## 2. Findings" then "### 2.1
            # Heartbeat": the outer one was a chapter).
            if current is not None and depth > level and found and current.gap is None \
                    and current.claim is None:
                current.chapter = True
                current = None
            if current is not None and depth <= level:
                current = None
            summary_priority = None
            if found and current is None:
                numbered += 1
                if numbered > HEADINGS_MAX:
                    raise AnalysisError(f"more than {HEADINGS_MAX} numbered headings; "
                                        "not a gap analysis")
                words = found.group("title")
                current = Section(number, int(found.group("sub") or found.group("n")),
                                  _text(words), map_title(words))
                level = depth
                sections.append(current)
            elif not found:
                m = _PRIORITY_HEADING.search(plain)
                if m:
                    summary_priority = Priority(m.group(1).capitalize())
            continue
        if current is not None:
            in_state = _read_gap_line(current, line, in_state)
        elif summary_priority is not None:
            item = _ITEM.match(line)
            if item and not item.group(1) and len(summary) < SUMMARY_MAX:
                words = item.group(2)
                summary.append(SummaryItem(number, _text(words), summary_priority,
                                           map_title(_strip_emphasis(words).strip())))
    if not sections:
        raise AnalysisError("no gap headings found (a gap analysis has a numbered heading "
                            "per gap, such as '### 1. Ping/Pong Heartbeat')")
    if not any(s.claim is not None for s in sections):
        raise AnalysisError(f"{len(sections)} numbered headings but none with a "
                            "'**Status**:' line under it; not a gap analysis in the "
                            "expected shape")
    sections = [section for section in sections if not section.chapter]
    for section in sections:
        if section.claim is None:
            section.problems.append("no Status line")
        elif section.claim.status is None:
            section.problems.append(f"status not read: {section.claim.read}")
    return Analysis(name=clip(one_line(name), TEXT_LIMIT), sha256=sha256, title=title,
                    sections=sections, summary=summary)


def _read_gap_line(section: Section, line: str, in_state: bool) -> bool:
    """Read one line under a gap heading; returns whether Current State bullets follow."""
    label = _label(line)
    if label is not None:
        name, value = label
        if name == "status":
            if section.claim is None:
                section.claim = read_status(value)
            else:
                section.problems.append("a second Status line; the first was read")
        elif name == "priority":
            if not section.priority_text:
                section.priority_text = _text(value)
                section.priority = read_priority(value)
        else:  # current state
            if value:
                _add_bullet(section, value)
            return True
        return False
    if not in_state:
        return False
    item = _ITEM.match(line)
    if item:
        if not item.group(1):
            _add_bullet(section, item.group(2))
        return True  # a nested item belongs to the one above; kept out for brevity
    if not line.strip():
        return True
    # An indented line continues the bullet above; any other line (the next bold label, a
    # paragraph) ends the list.
    return line[:1] in (" ", "\t") and bool(section.current_state)


def _add_bullet(section: Section, text: str) -> None:
    if len(section.current_state) < BULLETS_MAX:
        section.current_state.append(clip(one_line(text.strip()), BULLET_LIMIT))
    else:
        section.more_bullets += 1


def read_file(path: Path) -> Analysis:
    """Read and parse an analysis file; ``AnalysisError`` says in one line why it cannot be
    audited (missing, too large, not UTF-8 text, not in the expected shape)."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise AnalysisError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise AnalysisError(f"{path}: is a folder, not a Markdown file") from None
    except OSError as exc:
        raise AnalysisError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if len(data) > MAX_BYTES:
        raise AnalysisError(f"{path}: larger than {MAX_BYTES // 1024} KiB; not a "
                            "hand-written gap analysis")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise AnalysisError(f"{path}: not UTF-8 text; not a Markdown gap analysis") from None
    if "\x00" in text:
        raise AnalysisError(f"{path}: binary data; not a Markdown gap analysis")
    start = text.lstrip()[:1]
    if start in ("{", "["):
        raise AnalysisError(f"{path}: looks like JSON; the analysis is the Markdown file "
                            "(results.json comes second)")
    if start == "<":
        raise AnalysisError(f"{path}: looks like HTML or XML; the analysis must be Markdown")
    try:
        return read_text(text, name=Path(path).name, sha256=hashlib.sha256(data).hexdigest())
    except AnalysisError as exc:
        raise AnalysisError(f"{path}: {exc}") from None
