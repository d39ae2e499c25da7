"""Shared helpers for checks: what more than one probe needs, in one place.

A probe module imports from here (``from gaps.toolkit import ...``), from ``gaps.probe``
(the check contract) and from ``gaps.wire`` (clients, frames, errors); never from another
probe.  One module per concern:

- ``waiting``: ``wait_until`` a condition or a deadline, ``frames_until`` a deadline;
- ``closing``: ``expect_close``, how a connection ended against the Close codes expected;
- ``clients``: ``connect_many``, K clients at once, harness errors first;
- ``echo``: ``receive``, ``judge_echo``, ``echo_once``; ``combine`` sub-results;
- ``load``: the harness's load slot, open files, stalls of its own event loop (and
  ``again_if_harness_slow`` for a check that must run its body again after one);
- ``audience``: clients on fan-out endpoints (broadcast, room);
- ``quoting``: bounded quotes of what a target sent.

See the probe section of ``docs/design-notes.md`` for which helper is for what.
"""

from gaps.toolkit.audience import (
    MAX_MESSAGE,
    NAMED,
    PAD,
    READ_SLICE,
    ROUND_INTERVAL,
    Audience,
    Listener,
    Sent,
    WarmUp,
    endpoint_rule,
    missing_evidence,
    names,
)
from gaps.toolkit.clients import connect_many
from gaps.toolkit.closing import CLOSE, DATA, OPEN, TCP, Ending, expect_close, since_open
from gaps.toolkit.echo import NoMessage, combine, echo_once, judge_echo, receive, worst
from gaps.toolkit.load import (
    DEFAULT_PONG_DEADLINE,
    HARNESS_SLOW_RUNS,
    LAG_SHARE,
    again_if_harness_slow,
    harness_stall,
    heavy_load,
    open_files_for,
    percentile,
)
from gaps.toolkit.quoting import SHOWN, quote, show
from gaps.toolkit.waiting import Changes, deadline_in, frames_until, left, now, wait_until

__all__ = [
    "CLOSE", "DATA", "DEFAULT_PONG_DEADLINE", "HARNESS_SLOW_RUNS", "LAG_SHARE", "MAX_MESSAGE",
    "NAMED", "OPEN", "PAD", "READ_SLICE", "ROUND_INTERVAL", "SHOWN", "TCP", "Audience", "Changes",
    "Ending", "Listener", "NoMessage", "Sent", "WarmUp", "again_if_harness_slow", "combine",
    "connect_many", "deadline_in", "echo_once", "endpoint_rule", "expect_close", "frames_until",
    "harness_stall", "heavy_load", "judge_echo", "left", "missing_evidence", "names", "now",
    "open_files_for", "percentile", "quote", "receive", "show", "since_open", "wait_until",
    "worst",
]
