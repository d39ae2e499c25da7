"""The run options, defined once for both front ends.

DESIGN.md: one option name for the same thing everywhere.  The CLI spells each option
``--NAME``, the pytest plugin ``--gaps-NAME``; both register them from this table, so their
names, defaults and help cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gaps.gate import FAIL_ON

DEFAULT_TARGET = "reference"


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
    Option("without", "switch capabilities off on the reference target, e.g. heartbeat",
           {"default": "", "metavar": "LIST"}),
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
    Option("probes", "collect the checks of this probe package (dotted name) or folder "
           "instead of the built-in probes (for probe authors)",
           {"default": None, "metavar": "PACKAGE|DIR"}),
)


def add_options(add_argument: Any, prefix: str = "") -> None:
    """Register every option through ``add_argument`` (argparse's or pytest's addoption)."""
    for option in OPTIONS:
        add_argument(f"--{prefix}{option.name}", help=option.help, **option.settings)
