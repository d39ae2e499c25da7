"""Each broadcast check tells both states apart on the reference server.

The passing state is the reference as shipped (``/broadcast`` includes the sender, rooms on
``/room/{room}`` leave it out); the failing ones switch a capability off (``--without
broadcast``, ``--without rooms``) or a defect on (``--defect broadcast-skips-one``,
``room-leaks``), change what the manifest declares, or take the harness's room away.
Failing states run at a small time scale, so that a warm-up that can never complete costs
about two seconds instead of twenty.
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import json
import resource

import pytest

from gaps import toolkit
from gaps.manifest import EndpointSpec, Manifest, url_manifest
from gaps.model import Method, Verdict
from gaps.probe import Outcome, ProbeContext, failed, passed
from gaps.targets import Instance
from gaps.wire.client import FrameRecord, Violation, WireClient
from probes import broadcast
from tests.conftest import reference_ctx, reference_manifest

pytestmark = pytest.mark.asyncio(loop_scope="session")

FAST = 0.1  # time scale for failing states: 2 s warm-up, 1 s delivery wait


def with_endpoint(name: str, **changes: object) -> Manifest:
    """The reference manifest with endpoint ``name`` changed (or removed, for None)."""
    manifest = reference_manifest()
    endpoints = dict(manifest.endpoints)
    if changes.get("remove"):
        del endpoints[name]
    else:
        endpoints[name] = dataclasses.replace(endpoints[name], **changes)
    return dataclasses.replace(manifest, endpoints=endpoints)


# -- fan-out -------------------------------------------------------------------------------

async def test_fan_out_reaches_every_client(full: ProbeContext) -> None:
    result = await broadcast.fan_out(full)
    assert result.verdict is Verdict.PASS, result
    assert result.evidence["clients"] == broadcast.FAN_OUT_CLIENTS
    assert result.evidence["warmup_complete"] is True
    assert result.evidence["sender_got_own"] is True  # includes_sender = true
    assert "reached all 20 clients" in result.summary
    assert result.wait == 10.0


async def test_fan_out_without_broadcast() -> None:
    async with reference_ctx("--without", "broadcast", time_scale=FAST) as ctx:
        result = await broadcast.fan_out(ctx)
    assert result.verdict is Verdict.FAIL, result
    assert result.evidence["warmup_complete"] is False
    assert result.evidence["warmup_rounds"] > 1
    assert "never heard from" in result.summary
    assert result.duration < 10


async def test_fan_out_broadcast_that_skips_one_client() -> None:
    async with reference_ctx("--defect", "broadcast-skips-one", time_scale=FAST) as ctx:
        result = await broadcast.fan_out(ctx)
    assert result.verdict is Verdict.FAIL, result
    # The first to join is the one left out: it never receives anything.
    assert "client 0 received no warm-up message at all" in result.summary
    assert result.evidence["missing"] == ["client 0"]


async def test_fan_out_sender_rule_of_the_manifest() -> None:
    manifest = with_endpoint("broadcast", includes_sender=False)
    async with reference_ctx(manifest=manifest, time_scale=FAST) as ctx:
        result = await broadcast.fan_out(ctx)
    assert result.verdict is Verdict.FAIL, result
    assert "although the manifest says includes_sender = false" in result.summary


async def test_fan_out_sender_rule_unset_accepts_either(full: ProbeContext) -> None:
    manifest = with_endpoint("broadcast", includes_sender=None)
    ctx = ProbeContext(manifest, full.instance, seed=2)
    result = await broadcast.fan_out(ctx)
    assert result.verdict is Verdict.PASS, result
    assert "includes_sender not set" in result.summary
    assert result.evidence["sender_got_own"] is True  # recorded, not required


async def test_fan_out_declared_absent_and_no_endpoint(full: ProbeContext) -> None:
    """Without the endpoint a declaration decides (or nothing does: skip); with it, the wire
    decides and a contradicting declaration is shown beside the observed verdict."""
    none = with_endpoint("broadcast", remove=True)
    absent = dataclasses.replace(none, absent={"broadcast": "example: none"})
    declared = await broadcast.fan_out(ProbeContext(absent, Instance(absent)))
    skip = await broadcast.fan_out(ProbeContext(none, Instance(none)))
    there = dataclasses.replace(reference_manifest(), absent={"broadcast": "example: none"})
    observed = await broadcast.fan_out(ProbeContext(there, full.instance, seed=3))
    assert declared.verdict is Verdict.FAIL and declared.method is Method.DECLARED
    assert declared.source == "example: none"
    assert skip.verdict is Verdict.SKIP and "no broadcast endpoint" in skip.summary
    assert observed.verdict is Verdict.PASS and observed.method is Method.OBSERVED
    assert "but the wire shows pass" in (observed.contradiction or "")


# -- rooms ---------------------------------------------------------------------------------

async def test_rooms_reach_members_only(full: ProbeContext) -> None:
    result = await broadcast.rooms(full)
    assert result.verdict is Verdict.PASS, result
    assert result.evidence["barrier_arrived"] is True
    assert "received nothing from room A before the barrier" in result.summary
    assert "includes_sender = false" in result.summary


async def test_rooms_that_leak() -> None:
    async with reference_ctx("--defect", "room-leaks", time_scale=FAST) as ctx:
        result = await broadcast.rooms(ctx)
    assert result.verdict is Verdict.FAIL, result
    assert "the room leaks to non-members" in result.summary
    assert result.evidence["leaked_copies"] > 0


async def test_rooms_without_rooms() -> None:
    async with reference_ctx("--without", "rooms", time_scale=FAST) as ctx:
        result = await broadcast.rooms(ctx)
    assert result.verdict is Verdict.FAIL, result
    assert result.evidence["warmup_complete"] is False
    assert "never heard from" in result.summary


async def test_rooms_sender_rule_of_the_manifest() -> None:
    manifest = with_endpoint("room", includes_sender=True)
    async with reference_ctx(manifest=manifest, time_scale=FAST) as ctx:
        result = await broadcast.rooms(ctx)
    assert result.verdict is Verdict.FAIL, result
    assert "never received its own messages" in result.summary


async def test_rooms_declared_absent() -> None:
    manifest = dataclasses.replace(with_endpoint("room", remove=True),
                                   absent={"rooms": "example: none"})
    result = await broadcast.rooms(ProbeContext(manifest, Instance(manifest)))
    assert result.verdict is Verdict.FAIL and result.method is Method.DECLARED


# -- scale ---------------------------------------------------------------------------------

async def test_scale_figures(full: ProbeContext) -> None:
    result = await broadcast.scale(full)
    assert result.verdict is Verdict.PASS, result
    figures = result.evidence
    assert list(figures)[:5] == ["p50_ms", "p99_ms", "max_ms", "clients", "connect_s"]
    assert figures["clients"] == broadcast.SCALE_CLIENTS
    assert 0 <= figures["p50_ms"] <= figures["p99_ms"] <= figures["max_ms"]
    assert figures["connect_s"] > 0
    assert "one message to 500 clients: p50" in result.summary


async def test_scale_without_an_endpoint() -> None:
    none = with_endpoint("broadcast", remove=True)
    result = await broadcast.scale(ProbeContext(none, Instance(none)))
    assert result.verdict is Verdict.SKIP and result.summary == "target has no broadcast endpoint"


async def test_scale_without_broadcast_has_no_figures() -> None:
    async with reference_ctx("--without", "broadcast", time_scale=FAST) as ctx:
        result = await broadcast.scale(ctx)
    assert result.verdict is Verdict.SKIP, result
    assert result.summary.startswith("no figures:")
    assert "p50_ms" not in result.evidence


async def test_scale_skips_a_url_target_and_a_small_cap() -> None:
    url = url_manifest("ws://127.0.0.1:9/echo")
    gentle = await broadcast.scale(ProbeContext(url, Instance(url)))
    url.endpoints["broadcast"] = EndpointSpec("broadcast", url="ws://127.0.0.1:9/broadcast")
    also = await broadcast.scale(ProbeContext(url, Instance(url)))
    capped = dataclasses.replace(reference_manifest(), hints={"max_connections": 100.0})
    small = await broadcast.scale(ProbeContext(capped, Instance(capped)))
    assert gentle.verdict is Verdict.SKIP and "probed gently" in gentle.summary
    assert also.verdict is Verdict.SKIP and "probed gently" in also.summary
    assert small.verdict is Verdict.SKIP and "max_connections = 100" in small.summary


async def test_scale_out_of_files_is_a_harness_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_room(needed: int) -> int:
        raise OSError(errno.EMFILE, f"the harness needs {needed} more open files")

    monkeypatch.setattr(broadcast, "open_files_for", no_room)
    manifest = reference_manifest()
    result = await broadcast.scale(ProbeContext(manifest, Instance(manifest)))
    assert result.verdict is Verdict.ERROR, result
    assert result.summary.startswith("harness side: OSError")


async def test_open_files_for_raises_the_limit_or_refuses(monkeypatch: pytest.MonkeyPatch) -> None:
    limits = {"soft": 256, "hard": 4096}
    monkeypatch.setattr(toolkit.load, "_open_files", lambda: 100)
    monkeypatch.setattr(resource, "getrlimit", lambda _: (limits["soft"], limits["hard"]))

    def setrlimit(_: int, value: tuple[int, int]) -> None:
        limits["soft"] = value[0]

    monkeypatch.setattr(resource, "setrlimit", setrlimit)
    assert toolkit.open_files_for(100) == 256  # room already: limit unchanged
    assert toolkit.open_files_for(600) == 4096  # raised to the hard limit
    with pytest.raises(OSError) as refused:
        toolkit.open_files_for(5000)
    assert refused.value.errno == errno.EMFILE


async def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert broadcast.percentile(values, 0.5) == 50.0
    assert broadcast.percentile(values, 0.99) == 99.0
    assert broadcast.percentile(values, 1.0) == 100.0
    assert broadcast.percentile([7.0], 0.99) == 7.0


# -- the reference's chat rooms ------------------------------------------------------------

@pytest.mark.parametrize("args", [(), ("--without", "rooms"), ("--profile", "seed")],
                         ids=["full", "without-rooms", "seed"])
async def test_chat_fans_out_to_the_other_members_of_its_room(args: tuple[str, ...]) -> None:
    async with reference_ctx(*args) as ctx:
        url = ctx.url("chat")
        alice, bob, carol = [await WireClient.connect(url, timeout=5) for _ in range(3)]
        try:
            for client, user, room in ((alice, "alice", "r1"), (bob, "bob", "r1"),
                                       (carol, "carol", "r2")):
                await client.send_text(json.dumps({"user": user, "message": "hi", "room": room}))
                assert json.loads((await client.recv_message(5)).data)["status"] == "received"
            if not args:  # bob joined r1 by writing to it, so alice, already there, got it
                fanned = json.loads((await alice.recv_message(5)).data)
                assert fanned == {"user": "bob", "message": "hi", "room": "r1"}
            await alice.send_text('{"user":"alice","message":"to r1","room":"r1"}')
            assert json.loads((await alice.recv_message(5)).data)["status"] == "received"
            # A barrier in carol's own room after alice's message: she must see only it.
            await carol.send_text('{"user":"carol","message":"barrier","room":"r2"}')
            carol_next = json.loads((await carol.recv_message(5)).data)
            if args:
                with pytest.raises(TimeoutError):
                    await bob.recv_message(0.5)
            else:
                fanned = json.loads((await bob.recv_message(5)).data)
                assert fanned == {"user": "alice", "message": "to r1", "room": "r1"}
            assert carol_next["status"] == "received" and carol_next["message"] == "barrier"
        finally:
            for client in (alice, bob, carol):
                await client.aclose()


# -- rules the audience applies to its own clients -------------------------------------------

class FakeClient:
    def __init__(self, violation: Violation | None = None, closed: bool = False) -> None:
        self.violation = violation
        self.closed = closed

    async def aclose(self) -> None:
        pass


async def judged(clients: list[FakeClient], outcome: Outcome, lag: float = 0.0) -> Outcome:
    manifest = reference_manifest()
    ctx = ProbeContext(manifest, Instance(manifest))
    ctx.harness_lag = lambda: lag  # type: ignore[method-assign]
    audience = toolkit.Audience(ctx, True)
    audience.clients = clients  # type: ignore[assignment]

    async def body() -> Outcome:
        return outcome

    return await audience.judge(body())


async def test_a_violated_audience_connection_earns_no_pass() -> None:
    record = FrameRecord(0.5, "in", "0x3", True, "000", False, 0, "")
    violation = Violation(0.5, "reserved opcode 0x3 (RFC 6455 5.2)", record)
    result = await judged([FakeClient(), FakeClient(violation)], passed("all reached"))
    assert result.verdict is Verdict.FAIL
    assert "broke RFC 6455" in result.summary and "reserved opcode" in result.summary


async def test_closed_clients_during_a_harness_stall_are_an_error() -> None:
    stalled = await judged([FakeClient(closed=True)], failed("client 3 missing"), lag=1.5)
    calm = await judged([FakeClient(closed=True)], failed("client 3 missing"), lag=0.05)
    assert stalled.verdict is Verdict.ERROR and stalled.summary.startswith("harness too slow")
    assert stalled.evidence["summary_before"] == "client 3 missing"
    assert calm.verdict is Verdict.FAIL


@pytest.mark.parametrize("check, body", [(broadcast.fan_out, "_fan_out"),
                                         (broadcast.rooms, "_rooms")])
@pytest.mark.parametrize("stalls, verdict", [(1, Verdict.PASS), (2, Verdict.ERROR),
                                             (0, Verdict.FAIL)])
async def test_a_harness_stall_runs_the_audience_again_once(
        monkeypatch: pytest.MonkeyPatch, check, body: str, stalls: int,
        verdict: Verdict) -> None:
    """A stall of our own loop while the target closed clients is "harness too slow": the
    body runs again, on a new audience, once; a real failure is never run again."""
    runs: list[int] = []

    async def scripted(ctx: ProbeContext, audience: toolkit.Audience) -> Outcome:
        runs.append(1)
        if len(runs) <= stalls or not stalls:
            audience.clients = [FakeClient(closed=True)]  # type: ignore[list-item]
            return failed("client 3 missing")
        return passed("all reached")

    monkeypatch.setattr(broadcast, body, scripted)
    manifest = reference_manifest()
    ctx = ProbeContext(manifest, Instance(manifest))
    ctx.harness_lag = lambda: 1.5 if stalls else 0.0  # type: ignore[method-assign]
    result = await check(ctx)
    assert result.verdict is verdict, result
    assert len(runs) == (1 if not stalls else 2)
    if stalls:
        assert result.evidence["harness_slow_runs"][0].startswith("harness too slow")
    assert "harness_lag_s" in result.evidence


async def test_heavy_loads_take_turns() -> None:
    order: list[str] = []

    async def load(name: str) -> float:
        async with toolkit.heavy_load() as waited:
            order.append(f"{name} in")
            await asyncio.sleep(0.05)
            order.append(f"{name} out")
        return waited

    first, second = await asyncio.gather(load("a"), load("b"))
    assert order == ["a in", "a out", "b in", "b out"]
    assert first < 0.05 <= second + 0.01
