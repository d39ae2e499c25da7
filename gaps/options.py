"""The run options, defined once for both front ends.

DESIGN.md: one option name for the same thing everywhere.  The CLI spells each option
``--NAME``, the pytest plugin ``--gaps-NAME``; both register them from this table, so their
names, defaults and help cannot drift apart.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gaps.gate import FAIL_ON
from gaps.reference.config import CAPABILITIES as REFERENCE_CAPABILITIES

DEFAULT_TARGET = "reference"
# Live target instances at once, across the whole run.  An instance mostly waits (that is
# what the checks measure: a silent peer, a redial that never comes), so this bound is about
# memory and the harness's own loop, not CPU: the CPU goes to starting instances, which
# ``gaps.plan.STARTS`` bounds on its own.  24 keep the nine-target matrix's long waits from
# queueing behind each other (16 did before this wave's checks: 129 s against 163 s, design
# notes "Loads are admitted").
DEFAULT_JOBS = 24


@dataclass(frozen=True)
class Option:
    name: str  # without dashes or prefix, e.g. "time-scale"
    help: str
    settings: dict[str, Any] = field(default_factory=dict)  # add_argument keywords


OPTIONS: tuple[Option, ...] = (
    Option("target", "target to probe: a built-in name, a target.toml path or a ws:// URL "
           f"(repeatable; default {DEFAULT_TARGET}; the wsgaps CLI also takes 'all')",
           {"action": "append", "default": [], "metavar": "NAME|PATH|URL"}),
    Option("out", "folder for <target>/results.json and the reports (default reports)",
           {"default": "reports", "metavar": "DIR"}),
    Option("time-scale", "multiply every wait by X, for slow machines (default 1.0)",
           {"type": float, "default": 1.0, "metavar": "X"}),
    Option("seed", "seed for random payloads (default: random, recorded in the results)",
           {"type": int, "default": None, "metavar": "N"}),
    Option("without", "switch capabilities off on the reference target (comma list of: "
           f"{', '.join(REFERENCE_CAPABILITIES)})", {"default": "", "metavar": "LIST"}),
    Option("fail-on", "fail when a gap is missing (or, with partial, partial or missing); "
           "the documentation gap never gates",
           {"choices": sorted(FAIL_ON), "default": None}),
    Option("baseline", "fail on any check that got worse than in this earlier results file "
           "(one per target; repeatable)",
           {"action": "append", "default": [], "metavar": "RESULTS.json"}),
    Option("allow-remote", "allow targets beyond 127.0.0.1 and wss:// targets",
           {"action": "store_true", "default": False}),
    Option("ca-file", "CA certificates (PEM) to verify wss:// targets with",
           {"default": None, "metavar": "PATH"}),
    Option("trust-declarations", "decide checks from the manifest's absent declarations "
           "without observing them (faster; by default the wire decides wherever it can)",
           {"action": "store_true", "default": False}),
    Option("jobs", f"live target instances at once, across the whole run (default "
           f"{DEFAULT_JOBS})", {"type": int, "default": DEFAULT_JOBS, "metavar": "N"}),
    Option("gap", "probe only this gap, by name or number (repeatable; gaps not selected "
           "read unknown, \"not selected\", and never gate)",
           {"action": "append", "default": [], "metavar": "NAME|NUMBER"}),
    Option("check", "run only this check, by ID such as heartbeat.server-pings (repeatable; "
           "with --gap, the checks of those gaps and these checks)",
           {"action": "append", "default": [], "metavar": "ID"}),
    Option("probes", "collect the checks of this probe package (dotted name) or folder "
           "instead of the built-in probes (for probe authors)",
           {"default": None, "metavar": "PACKAGE|DIR"}),
)


def add_options(add_argument: Any, prefix: str = "") -> None:
    """Register every option through ``add_argument`` (argparse's or pytest's addoption)."""
    for option in OPTIONS:
        add_argument(f"--{prefix}{option.name}", help=option.help, **option.settings)


def forward(values: dict[str, Any], prefix: str = "gaps-",
            skip: tuple[str, ...] = ("target", "baseline", "fail-on")) -> list[str]:
    """The command-line words that pass the options in ``values`` (argparse ``dest`` names)
    on to another front end; options left at their default are left out."""
    words: list[str] = []
    for option in OPTIONS:
        if option.name in skip:
            continue
        value = values.get(option.name.replace("-", "_"))
        if value is None or value == option.settings.get("default"):
            continue
        flag = f"--{prefix}{option.name}"
        if option.settings.get("action") == "store_true":
            words.append(flag)
        elif option.settings.get("action") == "append":
            for item in value:
                words += [flag, str(item)]
        else:
            words += [flag, str(value)]
    return words


def without_problem(text: str) -> str | None:
    """Why ``--without`` is unusable (an unknown capability), or None."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in REFERENCE_CAPABILITIES]
    if unknown:
        return (f"--without: unknown capability {', '.join(unknown)} (the reference knows: "
                f"{', '.join(REFERENCE_CAPABILITIES)})")
    return None


def chosen_checks(checks: dict[str, list[Any]], gaps: list[str],
                  check_ids: list[str]) -> set[str] | None:
    """The IDs of the checks ``--gap``/``--check`` select among ``checks`` (gap slug -> its
    CheckDefs), or None when neither is given (everything runs).  A name that matches no gap
    or check raises ValueError with one line that lists the valid names."""
    if not gaps and not check_ids:
        return None
    from gaps.catalog import GAPS

    by_name = {}
    for gap in GAPS:
        if gap.slug in checks:
            by_name[gap.slug] = by_name[str(gap.id)] = gap.slug
    chosen: set[str] = set()
    for name in gaps:
        slug = by_name.get(name.strip().lower())
        if slug is None:
            valid = ", ".join(f"{g.id} {g.slug}" for g in GAPS if g.slug in checks)
            raise ValueError(f"--gap {name}: no such gap probed by this version "
                             f"(valid: {valid})")
        chosen |= {d.id for d in checks[slug]}
    known = [d.id for defs in checks.values() for d in defs]
    for name in check_ids:
        if name.strip() not in known:
            raise ValueError(f"--check {name}: no such check (valid: {', '.join(known)})")
        chosen.add(name.strip())
    return chosen


def out_problem(out: Path, names: Iterable[str]) -> str | None:
    """Why results cannot be written under ``out`` (a file there, or a folder this process
    may not write), in one line, or None.  Asked before any probe starts, so a run never
    spends its minutes only to lose its record.  It tries for real (makes ``out`` and each
    ``out/<name>`` and a file in each), then removes the folders it made: a run that ends
    up probing nothing (``-k`` deselected every check) leaves no empty folder behind; the
    results and report writers make the folders they write in."""
    made: list[Path] = []
    try:
        for folder in [out, *(out / name for name in names)]:
            if folder.exists() and not folder.is_dir():
                return f"{folder} is a file, not a folder"
            missing = [p for p in (folder, *folder.parents) if not p.exists()]
            try:
                folder.mkdir(parents=True, exist_ok=True)
                made.extend(reversed(missing))  # outermost first
                with tempfile.TemporaryFile(dir=folder):
                    pass
            except OSError as exc:
                return f"cannot write in {folder}: {exc.strerror or exc}"
        return None
    finally:
        for folder in reversed(made):  # innermost first
            with contextlib.suppress(OSError):
                folder.rmdir()
