"""Each limits check tells both states apart on the reference server (gap 10)."""

from __future__ import annotations

import dataclasses

import pytest

from gaps.manifest import url_manifest
from gaps.model import Verdict
from gaps.probe import ProbeContext
from gaps.targets import Instance
from tests.conftest import reference_ctx, reference_manifest
from wsgaps_probes import limits

pytestmark = pytest.mark.asyncio(loop_scope="session")

LIMIT = 8 * 1024 * 1024  # the reference's --max-message-size, as its manifest declares


async def test_max_message_size_enforced_from_the_header_and_by_total() -> None:
    async with reference_ctx() as ctx:
        on = await limits.max_message_size(ctx)
    assert on.verdict is Verdict.PASS, on
    assert "refused from the header alone with Close 1009" in on.summary
    assert "fragments, never ended: refused with Close 1009" in on.summary
    # websockets counts a fragmented message's total: it stops within the limit + slack.
    # ("taken" is measured before each write, so it may lag the refusal: a lower bound.)
    assert 0 < on.evidence["fragments_taken"] <= LIMIT + on.evidence["slack"]
    assert "came back as TEXT, identical" in on.summary


async def test_max_message_size_without_a_limit() -> None:
    async with reference_ctx("--without", "max-message-size") as ctx:
        off = await limits.max_message_size(ctx)
    assert off.verdict is Verdict.FAIL, off
    assert "(limit + 1): accepted, a message came back" in off.summary
    assert off.evidence["fragments_taken"] > LIMIT + off.evidence["slack"]


async def test_max_message_size_that_reads_everything_first() -> None:
    async with reference_ctx("--defect", "size-reads-all") as ctx:
        late = await limits.max_message_size(ctx)
    assert late.verdict is Verdict.FAIL, late
    # The complete oversized frame is refused, after every byte was read: fine.
    assert "(limit + 1): refused with Close 1009" in late.summary
    # The never-ended fragmented message is buffered without bound: the defect.
    assert "fragments, never ended: accepted past the limit" in late.summary


async def test_max_message_size_stricter_than_declared() -> None:
    # A declared limit above the real one: the message just below it is refused.
    manifest = dataclasses.replace(reference_manifest(),
                                   hints={**reference_manifest().hints,
                                          "max_message_size": 2 * LIMIT})
    async with reference_ctx(manifest=manifest) as ctx:
        strict = await limits.max_message_size(ctx)
    assert strict.verdict is Verdict.FAIL, strict
    assert "below the limit" in strict.summary


async def test_handshake_timeout_with_and_without() -> None:
    async with reference_ctx() as ctx:
        on = await limits.handshake_timeout(ctx)
    assert on.verdict is Verdict.PASS, on
    assert 1.5 < on.evidence["stall_s"] < 4.0
    manifest = dataclasses.replace(reference_manifest(),
                                   hints={**reference_manifest().hints, "handshake_timeout": 1.0})
    async with reference_ctx("--without", "handshake-timeout", manifest=manifest) as ctx:
        off = await limits.handshake_timeout(ctx)
    assert off.verdict is Verdict.PASS, off  # evidence only: the figure is the result
    assert off.evidence["stall_s"] is None
    assert "not dropped within 6.5 s" in off.summary


async def test_message_rate_with_and_without_a_limit() -> None:
    async with reference_ctx() as ctx:
        on = await limits.message_rate(ctx)
    assert on.verdict is Verdict.PASS, on
    assert "refused with Close 1008" in on.summary
    # 500 tokens at the start, then 500 a second while the burst is written.
    assert 500 <= on.evidence["echoed"] < 2000
    async with reference_ctx("--without", "rate-limit") as ctx:
        off = await limits.message_rate(ctx)
    assert off.verdict is Verdict.FAIL, off
    assert off.summary.startswith("no refusal: all 2000 messages of the burst came back")


async def test_message_rate_that_drops_silently() -> None:
    async with reference_ctx("--defect", "rate-drops-silently") as ctx:
        silent = await limits.message_rate(ctx)
    assert silent.verdict is Verdict.FAIL, silent
    assert silent.summary.startswith("dropped silently")


async def test_without_limits_switches_all_off() -> None:
    async with reference_ctx("--without", "limits") as ctx:
        size = await limits.max_message_size(ctx)
        rate = await limits.message_rate(ctx)
    assert (size.verdict, rate.verdict) == (Verdict.FAIL, Verdict.FAIL), (size, rate)


async def test_a_url_target_gets_the_header_test_and_nothing_over_1_mib() -> None:
    async with reference_ctx() as running:
        url = url_manifest(running.url("echo"))
        url.hints["max_message_size"] = float(LIMIT)
        ctx = ProbeContext(url, Instance(url))
        size = await limits.max_message_size(ctx)
        rate = await limits.message_rate(ctx)
    assert size.verdict is Verdict.PASS, size
    assert "a 1,048,576-byte message below the limit came back" in size.summary
    assert "refused from the header alone with Close 1009" in size.summary
    assert size.evidence["fragments"].startswith("not sent")
    assert rate.verdict is Verdict.SKIP and "URL target" in rate.summary
