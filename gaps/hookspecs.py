"""Hooks the wsgaps plugin adds to pytest, for other plugins (and the CLI) to observe a run."""

from __future__ import annotations

import pytest

from gaps.plan import Event


@pytest.hookspec
def pytest_gaps_event(config: pytest.Config, event: Event) -> None:
    """Called for every progress event of the run planner (``gaps.plan``): a target
    prepared, a gap started, a check done, a gap done.  Structured: never parse output."""
