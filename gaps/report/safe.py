"""Bounding and escaping of untrusted text for the reports.

Everything a target sends (close reasons, headers, protocol names, logs, version output) and
everything a manifest or results file holds is untrusted.  The view layer bounds and cleans it
(``clean``, ``clip``, ``tail``, ``compact_json``); the templates then escape it: Jinja2's
autoescape for HTML, and the Markdown filters below (``md_text``, ``md_code``, ``md_fence``),
which the Markdown environment applies by default to every expression, for Markdown.
"""

from __future__ import annotations

import json
import re
from typing import Any

# Characters that would let text change the rendering: C0/C1 controls (except tab and
# newline, which callers handle), and the bidirectional overrides and isolates that can make
# text display differently from what it is ("Trojan Source").
_INVISIBLE = re.compile(
    r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]"
)


def clean(text: str) -> str:
    """``text`` with CRLF made LF, and control and bidi-override characters shown as
    ``\\uXXXX`` escapes (tab and newline kept)."""
    text = text.replace("\r\n", "\n")
    return _INVISIBLE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def clip(value: Any, limit: int) -> str:
    """``value`` as cleaned text of at most about ``limit`` characters.

    A longer text keeps its head and ends with a marker saying how much was cut, so a reader
    knows the report is not the whole story.
    """
    text = clean(value if isinstance(value, str) else str(value))
    if len(text) <= limit:
        return text
    return f"{text[:limit]} … [truncated: {len(text) - limit} more characters]"


def tail(value: Any, limit: int) -> str:
    """The last ``limit`` characters of ``value`` (cleaned), after a marker if any were cut.

    Used for logs, where the end (a panic, the last request) matters most.
    """
    text = clean(value if isinstance(value, str) else str(value))
    if len(text) <= limit:
        return text
    return f"[… {len(text) - limit} earlier characters omitted]\n{text[-limit:]}"


def one_line(text: str) -> str:
    """``text`` on one line: line breaks become a visible ``⏎``, tabs a space.

    Inline Markdown must stay on one line: a line break inside a paragraph lets the next line
    start a heading, a list or an HTML block.
    """
    return re.sub(r"\r\n|\r|\n", " ⏎ ", text).replace("\t", " ")


def compact_json(value: Any, limit: int) -> str:
    """``value`` as one-line JSON (key order kept), bounded by ``clip``.

    JSON escapes line breaks inside strings, so the result never spans lines.  Values JSON
    cannot hold (bytes from an in-memory run) are shown through ``str``.
    """
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    return clip(text, limit)


class MdSafe(str):
    """Markdown that is already escaped; the Markdown environment emits it unchanged."""


# Inline Markdown syntax that can appear mid-line: escapes, code, emphasis, strike-through,
# links and images, raw HTML and entities, autolinks, table cells, GitHub math.  Line-start
# syntax (headings, lists, quotes) cannot trigger because text never starts a line.
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>&|~$])")


def md_text(value: Any) -> MdSafe:
    """``value`` as Markdown prose that renders literally: one line, syntax backslash-escaped.

    Backslash escapes also work in GFM table cells (``\\|``), so the result is safe there.
    """
    if isinstance(value, MdSafe):
        return value
    text = one_line(value if isinstance(value, str) else str(value))
    return MdSafe(_MD_SPECIAL.sub(r"\\\1", text))


def _longest_run(text: str, char: str) -> int:
    runs = re.findall(f"{re.escape(char)}+", text)
    return max((len(run) for run in runs), default=0)


def md_code(value: Any, *, table: bool = False) -> MdSafe:
    """``value`` as an inline code span that no backtick inside can close early.

    The delimiter is one backtick longer than the longest run inside; a space pads content
    that starts or ends with a backtick or a space (CommonMark strips one of each).  With
    ``table``, ``|`` is escaped, which GFM requires even inside code in a table cell.
    """
    text = one_line(value if isinstance(value, str) else str(value))
    if not text:
        return MdSafe("*(empty)*")
    ticks = "`" * (_longest_run(text, "`") + 1)
    pad = " " if text[0] in "` " or text[-1] in "` " else ""
    if table:
        text = text.replace("|", "\\|")
    return MdSafe(f"{ticks}{pad}{text}{pad}{ticks}")


def md_fence(value: Any, info: str = "text") -> MdSafe:
    """``value`` as a fenced code block whose fence no line inside can close.

    The fence is a backtick run longer than any inside (at least three).  The block must sit
    at the start of a line, outside any list, so that no indentation rule can end it early.
    """
    text = value if isinstance(value, str) else str(value)
    fence = "`" * max(3, _longest_run(text, "`") + 1)
    body = text if text.endswith("\n") else text + "\n"
    return MdSafe(f"{fence}{info}\n{body}{fence}")


def md_finalize(value: Any) -> Any:
    """Jinja2 ``finalize`` for Markdown: escape every expression unless already ``MdSafe``.

    This is the Markdown counterpart of HTML autoescape: a template that forgets a filter
    shows escaped text instead of letting target text through as Markdown.
    """
    return md_text("" if value is None else value)
