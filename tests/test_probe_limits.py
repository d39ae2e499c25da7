"""Each limits check tells both states apart on the reference server (gap 10)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator

import pytest

from gaps.manifest import Command, EndpointSpec, Manifest, url_manifest
from gaps.model import ErrorReason, Verdict
from gaps.probe import ProbeContext
from gaps.targets import Instance
from tests.conftest import reference_ctx, reference_manifest
from tests.rawserver import raw_server, read_request
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
    cap = await limits.connection_cap(ctx)
    assert cap.verdict is Verdict.SKIP and "URL target" in cap.summary


# -- limits.connection-cap -------------------------------------------------------------------

CAP = 40  # a small cap for the tests (the reference's default, 600, takes a second longer)


def capped(cap: float | None) -> Manifest:
    """The reference manifest with ``max_connections`` declared as ``cap`` (None: not)."""
    base = reference_manifest()
    hints = {k: v for k, v in base.hints.items() if k != "max_connections"}
    return dataclasses.replace(base, hints=hints if cap is None
                               else {**hints, "max_connections": cap})


async def test_connection_cap_declared_and_enforced() -> None:
    async with reference_ctx("--max-connections", str(CAP), manifest=capped(CAP)) as ctx:
        on = await limits.connection_cap(ctx)
    assert on.verdict is Verdict.PASS, on
    assert on.summary.startswith(f"refused at handshake {CAP + 1} with {CAP} connections held "
                                 f"(the declared cap of {CAP}): handshake {CAP + 1}: HTTP 503")
    assert f"all {CAP} held connections still echoed" in on.summary
    assert on.evidence["reached"] == CAP and len(on.evidence["past_cap"]) == limits.PAST_CAP
    # The guard gave the target room for far more descriptors than the check needs.
    assert on.evidence["target_open_files"] >= 4096


async def test_connection_cap_found_within_the_budget() -> None:
    async with reference_ctx("--max-connections", str(CAP), manifest=capped(None)) as ctx:
        found = await limits.connection_cap(ctx)
    assert found.verdict is Verdict.PASS, found
    assert f"refused at handshake {CAP + 1} with {CAP} connections held (a budget of 1,000" \
        in found.summary
    assert found.evidence["refused_at"] == CAP + 1


async def test_connection_cap_off_declared_and_not(monkeypatch: pytest.MonkeyPatch) -> None:
    async with reference_ctx("--without", "connection-cap", manifest=capped(CAP)) as ctx:
        declared = await limits.connection_cap(ctx)
    assert declared.verdict is Verdict.FAIL, declared
    assert f"past the declared cap of {CAP}, not refused: handshake {CAP + 1}: 101, open" \
        in declared.summary
    monkeypatch.setattr(limits, "CONNECTION_BUDGET", 120)  # the default 1,000 costs a second
    async with reference_ctx("--without", "limits", manifest=capped(None)) as ctx:
        budget = await limits.connection_cap(ctx)
    assert budget.verdict is Verdict.FAIL, budget
    assert budget.summary.startswith("no refusal within a budget of 120 (no cap declared): "
                                     "120 connections held")
    assert budget.evidence["reached"] == 120


async def test_connection_cap_that_drops_existing_connections() -> None:
    async with reference_ctx("--max-connections", str(CAP), "--defect", "cap-drops-existing",
                             manifest=capped(CAP)) as ctx:
        drops = await limits.connection_cap(ctx)
    assert drops.verdict is Verdict.FAIL, drops
    assert f"not refused: handshake {CAP + 1}: 101, open" in drops.summary
    assert f"1 of the {CAP} held connections no longer echoed (connection 1: Close frame " \
        "1013 b'make room')" in drops.summary


@contextlib.asynccontextmanager
async def stalling_after(accepted: int, upstream: str) -> AsyncIterator[str]:
    """A server that passes its first ``accepted`` connections through to ``upstream`` (a
    reference without a cap) and reads the next handshakes without ever answering them."""
    host, port = upstream.split("//")[1].split("/")[0].split(":")
    seen = 0
    over = asyncio.Event()  # the stalled handshakes end with the server, not before

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal seen
        seen += 1
        if seen > accepted:
            await read_request(reader)
            await over.wait()
            return
        up_reader, up_writer = await asyncio.open_connection(host, int(port))
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async with raw_server(script) as url:
        yield url


def stalling_ctx(url: str, cap: float | None) -> ProbeContext:
    manifest = Manifest(name="stalling", path=None, start=Command(("unused",)),
                        endpoints={"echo": EndpointSpec("echo", url=url)},
                        hints={} if cap is None else {"max_connections": cap})
    return ProbeContext(manifest, Instance(manifest), seed=1, time_scale=0.4)


async def test_connection_cap_that_stalls_handshakes() -> None:
    async with reference_ctx("--without", "connection-cap") as running:
        async with stalling_after(CAP, running.url("echo")) as url:
            stalled = await limits.connection_cap(stalling_ctx(url, CAP))
        async with stalling_after(CAP, running.url("echo")) as url:
            searched = await limits.connection_cap(stalling_ctx(url, None))
    assert stalled.verdict is Verdict.FAIL, stalled
    assert stalled.summary.startswith(f"not refused, stalled: past the declared cap of {CAP}, "
                                      f"handshake {CAP + 1}: no handshake answer")
    assert f"all {CAP} held connections still echoed" in stalled.summary
    assert searched.verdict is Verdict.FAIL, searched
    assert searched.summary.startswith("not refused, stalled: handshake")
    assert searched.evidence["reached"] == CAP
    assert searched.reason is not ErrorReason.HARNESS_TOO_SLOW
