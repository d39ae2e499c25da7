"""Timelines of dials for the reports: when the target dialled its upstream, and how each
dial ended (recovery, gap 11), drawn as inline SVG by ``templates/_timeline.html.j2`` and
written out as one line of text per row in Markdown (``Row.text``).

Built from a check's evidence: ``attempts`` (``[[seconds, outcome], ...]``, one row) or
``runs`` (a list of ``{"attempts": ...}``, one row each), with ``link_ends``
(``[[seconds, how], ...]``) marked on the same row.  Each row starts at its first dial: the
evidence counts from when the upstream began listening, which includes any wait for an
instance slot and the target's start-up.  Evidence is untrusted: numbers are
checked, outcomes only choose among fixed colours and appear as escaped tooltip text, and
rows and marks are bounded.  No script: the reports' content policy allows none.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gaps.report.safe import clip

ROWS_MAX = 4
MARKS_MAX = 60  # per row, the upstream's own evidence bound
TEXT_MARKS = 16  # dials and ends written out per row in Markdown
WIDTH = 1000  # SVG user units across the time axis
ROW_HEIGHT = 22
LABEL = 70  # user units left of the axis for the row label
COLOURS = {"reset": "#cf222e", "503": "#9a6700", "accepted": "#1a7f37"}
OTHER = "#6e7781"
END = "#1f2328"


@dataclass(frozen=True)
class Mark:
    x: float  # user units from the axis start
    colour: str
    title: str  # tooltip text (escaped by the template)
    end: bool = False  # a connection's end, not a dial


@dataclass(frozen=True)
class Row:
    label: str
    y: float
    marks: tuple[Mark, ...]
    text: str  # the same marks in words, in time order: "0.000 s reset, 0.512 s 503, ..."


@dataclass(frozen=True)
class Tick:
    x: float
    label: str


@dataclass(frozen=True)
class Timeline:
    width: int
    height: int
    axis_y: float
    rows: tuple[Row, ...]
    ticks: tuple[Tick, ...]
    legend: tuple[tuple[str, str], ...]  # (colour, word)
    span: str


def _points(value: Any) -> list[tuple[float, str]]:
    """Valid ``[seconds, word]`` pairs of ``value``, bounded."""
    found = []
    if isinstance(value, list):
        for item in value[:MARKS_MAX]:
            if (isinstance(item, list | tuple) and len(item) == 2
                    and isinstance(item[0], int | float) and not isinstance(item[0], bool)
                    and math.isfinite(item[0]) and item[0] >= 0):
                found.append((float(item[0]), clip(item[1], 80)))
    return found


def _nice(span: float) -> float:
    """A round axis length just above ``span`` seconds."""
    for step in (1, 2, 5, 10, 15, 20, 30, 60, 90, 120, 180, 300, 600):
        if span <= step:
            return float(step)
    return math.ceil(span / 600) * 600.0


def _words(dials: list[tuple[float, str]], ends: list[tuple[float, str]]) -> str:
    """The row's dials and connection ends in time order, bounded to ``TEXT_MARKS``."""
    items = sorted(dials + [(t, f"ended ({word})") for t, word in ends])
    text = ", ".join(f"{t:.3f} s {word}" for t, word in items[:TEXT_MARKS])
    if len(items) > TEXT_MARKS:
        text += f", … ({len(items) - TEXT_MARKS} more)"
    return text


def timeline_view(evidence: Any) -> Timeline | None:
    """The dials in ``evidence`` as a timeline, or None when it records none."""
    if not isinstance(evidence, Mapping):
        return None
    sources: list[tuple[str, Any]] = []
    if isinstance(evidence.get("attempts"), list):
        sources.append(("dials", evidence))
    runs = evidence.get("runs")
    if isinstance(runs, list):
        sources += [(f"run {i + 1}", r) for i, r in enumerate(runs[:ROWS_MAX])
                    if isinstance(r, Mapping)]
    rows_data = []
    for label, src in sources[:ROWS_MAX]:
        dials, ends = _points(src.get("attempts")), _points(src.get("link_ends"))
        if dials:
            first = min(t for t, _ in dials)
            rows_data.append((label, [(t - first, w) for t, w in dials],
                              [(t - first, w) for t, w in ends if t >= first]))
    if not rows_data:
        return None
    latest = max(t for _, dials, ends in rows_data for t, _ in dials + ends)
    span = _nice(max(latest, 0.001))
    scale = WIDTH / span
    rows = []
    for index, (label, dials, ends) in enumerate(rows_data):
        marks = [Mark(round(t * scale, 1), COLOURS.get(word, OTHER),
                      f"dial {n} at {t:.3f} s: {word}") for n, (t, word) in enumerate(dials, 1)]
        marks += [Mark(round(t * scale, 1), END, f"at {t:.3f} s: {word}", end=True)
                  for t, word in ends]
        rows.append(Row(label, ROW_HEIGHT * index + ROW_HEIGHT / 2, tuple(marks),
                        _words(dials, ends)))
    axis_y = ROW_HEIGHT * len(rows) + 2
    ticks = tuple(Tick(round(WIDTH * i / 5, 1), f"{span * i / 5:g} s") for i in range(6))
    legend = (("#cf222e", "reset"), ("#9a6700", "503"), ("#1a7f37", "accepted"),
              (END, "connection ended"))
    return Timeline(WIDTH + LABEL + 40, int(axis_y + 18), axis_y, tuple(rows), ticks, legend,
                    f"{span:g} s")
