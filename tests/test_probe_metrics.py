"""Each metrics check tells both states apart on the reference server.

The passing state is the reference as shipped (its ``/metrics`` page); the failing ones
switch the ``metrics`` capability off (only the HTTP-only families stay, which must not
count) or a deliberately defective mode on (a gauge that never decreases, counters that
count every message twice).  Pure functions (the selector, which families count, values)
are judged on pages written here, the page the parser refuses included.
"""

from __future__ import annotations

import pytest

from gaps.model import Verdict
from gaps.probe import ProbeContext
from tests.conftest import reference_ctx
from wsgaps_probes import metrics as mx

aio = pytest.mark.asyncio(loop_scope="session")


@aio
async def test_connections_gauge_on_off_and_never_decreasing(full: ProbeContext) -> None:
    on = await mx.connections_gauge(full)
    assert on.verdict is Verdict.PASS, on
    assert "wsgaps_websocket_connections moved by exactly 3 and 7" in on.summary
    async with reference_ctx("--without", "metrics") as ctx:
        off = await mx.connections_gauge(ctx)
    assert off.verdict is Verdict.FAIL, off
    assert "no WebSocket connections gauge" in off.summary
    # The HTTP-only families are there, and the evidence says why each did not count.
    assert any(line.startswith("wsgaps_http_requests (counter): not counted: HTTP-only")
               for line in off.evidence["families"]), off.evidence["families"]
    async with reference_ctx("--defect", "gauge-never-decreases") as ctx:
        stuck = await mx.connections_gauge(ctx)
    assert stuck.verdict is Verdict.FAIL, stuck
    assert "after the 3 clients closed, not back to" in stuck.summary


@aio
async def test_message_counters_on_off_and_twice(full: ProbeContext) -> None:
    on = await mx.message_counters(full)
    assert on.verdict is Verdict.PASS, on
    assert "moved by 20 and 50" in on.summary
    async with reference_ctx("--without", "metrics") as ctx:
        off = await mx.message_counters(ctx)
    assert off.verdict is Verdict.FAIL, off
    assert "no WebSocket received and sent message counter" in off.summary
    async with reference_ctx("--defect", "counts-twice") as ctx:
        twice = await mx.message_counters(ctx)
    assert twice.verdict is Verdict.FAIL, twice
    assert "moved by 40 for 20 messages" in twice.summary


@aio
async def test_errors_and_latency_on_and_off(full: ProbeContext) -> None:
    on = await mx.errors_and_latency(full)
    assert on.verdict is Verdict.PASS, on
    assert on.summary.startswith("wsgaps_websocket_errors moved on the protocol error and "
                                 "wsgaps_websocket_connection_duration_seconds counted")
    async with reference_ctx("--without", "metrics") as ctx:
        off = await mx.errors_and_latency(ctx)
    assert off.verdict is Verdict.FAIL, off
    assert "error counter and latency histogram" in off.summary
    # The upgrade's response-time histogram is HTTP-only: named, and not counted.
    assert any(line.startswith("wsgaps_http_request_duration_seconds (histogram): not "
                               "counted: HTTP-only") for line in off.evidence["families"])
