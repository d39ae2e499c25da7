"""Expectations for built-in targets (``targets/<name>/expected.toml``) and comparing them.

Each entry is the verdict the stack's real behaviour implies, with the source it was
researched from (file and symbol at the pinned version, or a doc page)::

    [checks."heartbeat.server-pings"]
    verdict = "pass"
    source = "websockets 17.4: src/websockets/asyncio/connection.py Connection.keepalive"

``method`` is ``observed`` unless the entry says ``method = "declared"``: a fact that the
manifest declares must not silently replace one that was measured, nor the other way round.

These are the harness's own test oracle; a user's ``--gaps-baseline`` is a separate thing.
"""

from __future__ import annotations

import tomllib
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from pathlib import Path

from gaps.catalog import CHECKS
from gaps.model import RunResult, Verdict

KEYS = {"verdict", "source", "method", "note", "also"}
METHODS = {"observed", "declared"}


class ExpectationError(Exception):
    """An expected.toml that cannot be used; one line naming file and field."""


@dataclass(frozen=True)
class Expectation:
    check_id: str
    verdict: Verdict
    source: str
    method: str = "observed"
    note: str = ""
    # Verdicts the real stack was also seen to give, nondeterministically (a race inside
    # the stack); each needs a note saying what was seen.  The check itself stays strict.
    also: tuple[Verdict, ...] = ()


def load_expectations(path: Path) -> dict[str, Expectation]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ExpectationError(f"{path}: {exc}") from None
    unknown_top = set(data) - {"checks"}
    if unknown_top:
        raise ExpectationError(f"{path}: {sorted(unknown_top)[0]}: unknown key")
    found: dict[str, Expectation] = {}
    for check_id, entry in data.get("checks", {}).items():
        where = f"{path}: checks.{check_id}"
        if check_id not in CHECKS:
            raise ExpectationError(f"{where}: unknown check ID")
        if not isinstance(entry, dict):
            raise ExpectationError(f"{where}: must be a table")
        extra = set(entry) - KEYS
        if extra:
            raise ExpectationError(f"{where}.{sorted(extra)[0]}: unknown key")
        try:
            verdict = Verdict(entry["verdict"])
        except (KeyError, ValueError):
            raise ExpectationError(f"{where}.verdict: missing or not a verdict") from None
        source = entry.get("source")
        if not isinstance(source, str) or not source.strip():
            raise ExpectationError(f"{where}.source: missing (every expectation needs one)")
        method = entry.get("method", "observed")
        if method not in METHODS:
            raise ExpectationError(f"{where}.method: must be observed or declared")
        also = entry.get("also", [])
        try:
            also_verdicts = tuple(Verdict(v) for v in also)
        except (TypeError, ValueError):
            raise ExpectationError(f"{where}.also: must be a list of verdicts") from None
        note = entry.get("note", "")
        if also_verdicts and not (isinstance(note, str) and note.strip()):
            raise ExpectationError(f"{where}.note: `also` needs a note saying what was seen")
        found[check_id] = Expectation(check_id, verdict, source, method, note, also_verdicts)
    return found


def compare(expected: dict[str, Expectation], run: RunResult,
            implemented: AbstractSet[str]) -> list[str]:
    """Every disagreement between expectations and results, one line each.

    ``implemented`` are the check IDs the probes have: each needs an expectation, and an
    expectation for a check that did not run is reported too.
    """
    problems: list[str] = []
    results = {c.id: c for gap in run.gaps.values() for c in gap.checks}
    for check_id in sorted(implemented - set(expected)):
        problems.append(f"{check_id}: no expectation")
    for check_id, exp in sorted(expected.items()):
        if check_id not in implemented:
            continue
        got = results.get(check_id)
        if got is None:
            problems.append(f"{check_id}: expected {exp.verdict}, but the check did not run")
            continue
        if got.verdict is not exp.verdict and got.verdict not in exp.also:
            problems.append(f"{check_id}: expected {exp.verdict} ({exp.source}), "
                            f"got {got.verdict}: {got.summary}")
        elif str(got.method) != exp.method:
            problems.append(f"{check_id}: expected method {exp.method}, got {got.method}")
    return problems
