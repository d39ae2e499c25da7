"""Each heartbeat check tells both states apart on the reference server."""

from __future__ import annotations

import dataclasses

import pytest

from gaps.model import Method, Verdict
from tests.conftest import reference_ctx, reference_manifest
from wsgaps_probes import heartbeat

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_server_pings_with_and_without_heartbeat() -> None:
    async with reference_ctx() as ctx:
        on = await heartbeat.server_pings(ctx)
    async with reference_ctx("--without", "heartbeat") as ctx:
        off = await heartbeat.server_pings(ctx)
    assert on.verdict is Verdict.PASS, on
    assert on.evidence["ping_times"][0] == pytest.approx(2.0, abs=0.5)
    assert off.verdict is Verdict.FAIL, off
    assert "no Ping within 5.0 s" in off.summary
    assert len(off.tries) == 2  # timing check: 2 of 3 tries agreed


async def test_reaps_silent_peer_with_and_without_heartbeat() -> None:
    async with reference_ctx() as ctx:
        on = await heartbeat.reaps_silent_peer(ctx)
    async with reference_ctx("--without", "heartbeat") as ctx:
        off = await heartbeat.reaps_silent_peer(ctx)
    assert on.verdict is Verdict.PASS, on
    assert on.evidence["close_code"] == 1011  # websockets: "keepalive ping timeout"
    assert 2.0 < on.evidence["time_to_close"] < 9.0
    assert off.verdict is Verdict.FAIL, off
    assert "still open" in off.summary


async def test_pings_without_reaping() -> None:
    async with reference_ctx("--ping-timeout", "0") as ctx:
        pings = await heartbeat.server_pings(ctx)
        reaps = await heartbeat.reaps_silent_peer(ctx)
    assert pings.verdict is Verdict.PASS, pings
    assert reaps.verdict is Verdict.FAIL, reaps
    assert "unanswered Ping" in reaps.summary


async def test_declared_absent_is_observed_unless_trusted() -> None:
    manifest = dataclasses.replace(reference_manifest(),
                                   absent={"heartbeat": "example: no keepalive in this stack"})
    async with reference_ctx(manifest=manifest) as ctx:
        observed = await heartbeat.server_pings(ctx)
        ctx.trust_declarations = True
        trusted = await heartbeat.server_pings(ctx)
    assert (observed.verdict, observed.method) == (Verdict.PASS, Method.OBSERVED)
    assert observed.contradiction is not None  # the reference does ping: a manifest error
    assert (trusted.verdict, trusted.method) == (Verdict.FAIL, Method.DECLARED)
    assert trusted.source == "example: no keepalive in this stack"
    assert trusted.duration < 1.0
