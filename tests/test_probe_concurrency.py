"""Each concurrency check tells both states apart on the reference server.

The passing state is the reference as shipped; the failing ones switch a defect on
(``--defect echo-reorders``, ``fan-in-drops``, ``fan-in-reorders``) or change what the
manifest declares.  Skips (no fan-out endpoint, an endpoint that does not fan out, nothing
declared) are shown too, since gap 6 must not count gap 2 again.  Failing fan-in states run
at a small time scale so that a lost barrier costs seconds, not half a minute.
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno

import pytest

from gaps.manifest import Declared, Manifest, url_manifest
from gaps.model import Method, Verdict
from gaps.probe import DECLARED, Outcome, ProbeContext
from gaps.targets import Instance
from gaps.wire.client import Message
from gaps.wire.frames import Opcode
from probes import concurrency
from tests.conftest import reference_ctx, reference_manifest

pytestmark = pytest.mark.asyncio(loop_scope="session")

FAST = 0.2  # fan-in failing states: 6 s delivery wait, 4 s warm-up, 0.2 s per warm-up step


def without_endpoints(*removed: str) -> Manifest:
    manifest = reference_manifest()
    endpoints = {k: v for k, v in manifest.endpoints.items() if k not in removed}
    return dataclasses.replace(manifest, endpoints=endpoints)


# -- parallel-echo -------------------------------------------------------------------------

async def test_parallel_echo_keeps_every_client_in_order(full: ProbeContext) -> None:
    result = await concurrency.parallel_echo(full)
    assert result.verdict is Verdict.PASS, result
    figures = result.evidence
    # The figures lead the evidence: the report shows the first entries as key figures.
    assert list(figures)[:4] == ["messages_per_s", "p50_ms", "p99_ms", "max_ms"]
    assert figures["messages_per_s"] > 0
    assert 0 <= figures["p50_ms"] <= figures["p99_ms"] <= figures["max_ms"]
    assert figures["echoes_in_order"] == concurrency.CLIENTS * concurrency.MESSAGES
    assert figures["round_trips_timed"] == concurrency.CLIENTS * concurrency.MESSAGES
    assert "all 10000 echoes intact and in order" in result.summary
    assert "messages/s, round trip p50" in result.summary
    assert result.wait == 60.0


async def test_parallel_echo_catches_an_echo_that_reorders_under_load() -> None:
    async with reference_ctx("--defect", "echo-reorders") as ctx:
        result = await concurrency.parallel_echo(ctx)
    assert result.verdict is Verdict.FAIL, result
    assert "came back while message 1 was due (out of order)" in result.summary
    assert result.evidence["echoes_in_order"] < concurrency.CLIENTS * concurrency.MESSAGES
    assert "p50_ms" not in result.evidence  # no figures for a failed exchange


async def test_parallel_echo_probes_a_url_target_gently(full: ProbeContext) -> None:
    url = url_manifest(full.url("echo"))
    result = await concurrency.parallel_echo(ProbeContext(url, Instance(url), seed=4))
    assert result.verdict is Verdict.PASS, result
    assert result.summary.startswith("a URL target is probed gently: 2 clients x 10 messages "
                                     "instead of 50 x 200; ")
    assert result.evidence["gentle"] is True
    assert result.evidence["clients"] == 2 and result.evidence["messages_per_client"] == 10
    assert "load_slot_wait_s" not in result.evidence


async def test_parallel_echo_keeps_under_a_declared_connection_cap(full: ProbeContext) -> None:
    capped = dataclasses.replace(reference_manifest(), hints={"max_connections": 20.0})
    result = await concurrency.parallel_echo(ProbeContext(capped, full.instance, seed=5))
    assert result.verdict is Verdict.PASS, result
    assert result.evidence["clients"] == 20
    assert "declares max_connections = 20: 20 clients" in result.summary


@pytest.mark.parametrize("cap, verdict, clients", [
    (1.0, Verdict.SKIP, None), (9.0, Verdict.SKIP, None), (10.0, Verdict.PASS, 10)])
async def test_a_connection_cap_never_lowers_parallel_echo_below_ten_clients(
        full: ProbeContext, cap: float, verdict: Verdict, clients: int | None) -> None:
    capped = dataclasses.replace(reference_manifest(), hints={"max_connections": cap})
    result = await concurrency.parallel_echo(ProbeContext(capped, full.instance, seed=5))
    assert result.verdict is verdict, result
    if clients is None:
        assert f"declares max_connections = {cap:g}, below the 10 clients" in result.summary
    else:
        assert result.evidence["clients"] == clients


async def test_parallel_echo_out_of_files_is_a_harness_error(
        monkeypatch: pytest.MonkeyPatch) -> None:
    def no_room(needed: int) -> int:
        raise OSError(errno.EMFILE, f"the harness needs {needed} more open files")

    monkeypatch.setattr(concurrency, "open_files_for", no_room)
    manifest = reference_manifest()
    result = await concurrency.parallel_echo(ProbeContext(manifest, Instance(manifest)))
    assert result.verdict is Verdict.ERROR, result
    assert result.summary.startswith("harness side: OSError")


class FakeClient:
    closed = False


async def test_a_wrong_echo_is_named_for_what_it_is() -> None:
    nonce = "0badcafe"
    flows = [concurrency.Flow(i, FakeClient(), [concurrency._payload(nonce, i, k, "pad")
                                                for k in (1, 2, 3)]) for i in (0, 1)]
    flow = flows[0]
    flow.echoed = 1  # message 2 is due

    def came(data: bytes, opcode: int = Opcode.TEXT) -> str:
        return concurrency._what_came(flow, flows, nonce, Message(opcode, data))

    assert "message 3 came back while message 2 was due (out of order)" in came(
        flow.payloads[2])
    assert "message 1 came back a second time" in came(flow.payloads[0])
    assert "received client 1's message 2 while its own echo 2 was due" in came(
        flows[1].payloads[1])
    assert "came back as BINARY" in came(flow.payloads[1], Opcode.BINARY)
    assert "came back altered" in came(flow.payloads[1][:-1] + b"X")


# -- fan-in --------------------------------------------------------------------------------

async def test_fan_in_keeps_every_senders_order(full: ProbeContext) -> None:
    result = await concurrency.fan_in(full)
    assert result.verdict is Verdict.PASS, result
    evidence = result.evidence
    assert next(iter(evidence)) == "messages_per_s"
    assert evidence["endpoint"] == "broadcast"
    assert evidence["delivered"] == concurrency.SENDERS * (concurrency.FAN_IN_MESSAGES + 1)
    assert evidence["warmup_complete"] is True and evidence["barriers_arrived"] is True
    # The senders' messages really met: the receiver's stream switched sender often.
    assert evidence["sender_switches"] > 10 * concurrency.SENDERS
    assert "all 1010 arrived intact, once each, every sender's in the order sent" in (
        result.summary)


async def test_fan_in_through_a_room_when_there_is_no_broadcast(full: ProbeContext) -> None:
    rooms_only = without_endpoints("broadcast")
    result = await concurrency.fan_in(ProbeContext(rooms_only, full.instance, seed=6))
    assert result.verdict is Verdict.PASS, result
    assert result.evidence["endpoint"] == "room"
    assert "through the room endpoint (room wsgaps-" in result.summary


async def test_fan_in_catches_lost_messages() -> None:
    async with reference_ctx("--defect", "fan-in-drops", time_scale=FAST) as ctx:
        result = await concurrency.fan_in(ctx)
    assert result.verdict is Verdict.FAIL, result
    assert "never reached the receiver" in result.summary or "after its message" in (
        result.summary)
    assert result.evidence["lost"] > 0


async def test_fan_in_catches_one_senders_messages_out_of_order() -> None:
    async with reference_ctx("--defect", "fan-in-reorders", time_scale=FAST) as ctx:
        result = await concurrency.fan_in(ctx)
    assert result.verdict is Verdict.FAIL, result
    assert "reached the receiver after its message" in result.summary
    assert "(per-sender order broken)" in result.summary
    assert result.evidence["late"] > 0 and result.evidence["lost"] == 0


async def test_fan_in_reorders_through_a_room_too() -> None:
    async with reference_ctx("--defect", "fan-in-reorders", time_scale=FAST,
                             manifest=without_endpoints("broadcast")) as ctx:
        result = await concurrency.fan_in(ctx)
    assert result.verdict is Verdict.FAIL, result
    assert result.evidence["endpoint"] == "room" and result.evidence["late"] > 0


async def test_fan_in_skips_without_a_fan_out_endpoint() -> None:
    none = without_endpoints("broadcast", "room")
    absent = dataclasses.replace(none, absent={"broadcast": "example: none"})
    url = url_manifest("ws://127.0.0.1:9/echo")
    for manifest in (none, absent, url):
        result = await concurrency.fan_in(ProbeContext(manifest, Instance(manifest)))
        assert result.verdict is Verdict.SKIP, result
        assert result.method is Method.OBSERVED  # never decided by absent.broadcast
        assert "gap 2's finding" in result.summary


async def test_fan_in_skips_an_endpoint_that_does_not_fan_out() -> None:
    async with reference_ctx("--without", "broadcast", time_scale=FAST) as ctx:
        result = await concurrency.fan_in(ctx)
    assert result.verdict is Verdict.SKIP, result
    assert "the receiver never heard client 1" in result.summary
    assert "broadcast.fan-out is the capability check" in result.summary


# -- documented ----------------------------------------------------------------------------

async def test_documented_is_decided_by_the_manifest() -> None:
    check_id = "concurrency.documented"
    base = reference_manifest()

    def declaring(verdict: str | None) -> ProbeContext:
        declared = dict(base.declared)
        declared.pop(check_id, None)
        if verdict is not None:
            declared[check_id] = Declared(check_id, verdict, "docs/x.md#concurrency",
                                          f"example: {verdict}")
        manifest = dataclasses.replace(base, declared=declared)
        return ProbeContext(manifest, Instance(manifest))

    documented = await concurrency.documented(declaring("pass"))
    undocumented = await concurrency.documented(declaring("fail"))
    silent = await concurrency.documented(declaring(None))
    assert (documented.verdict, documented.method) == (Verdict.PASS, Method.DECLARED)
    assert documented.source == "docs/x.md#concurrency"
    assert (undocumented.verdict, undocumented.method) == (Verdict.FAIL, Method.DECLARED)
    assert silent.verdict is Verdict.SKIP and "the manifest declares nothing" in silent.summary
    assert concurrency.documented.placement is DECLARED and concurrency.documented.fn is None
    assert concurrency.documented.needs == ()


# -- churn ---------------------------------------------------------------------------------

SHORT_CHURN = 2.0  # seconds of churn in these tests (the check's bound is CHURN_TIME, 8 s)
CHURN_SCALE = 0.5  # settle 4 s, handshake and echo waits 2.5 s


async def test_churn_passes_a_stack_that_answers_every_connection_and_stays_up(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(concurrency, "CHURN_TIME", SHORT_CHURN)
    async with reference_ctx(time_scale=CHURN_SCALE) as ctx:
        result = await concurrency.churn(ctx)
    assert result.verdict is Verdict.PASS, result
    facts = result.evidence
    assert list(facts)[:2] == ["handshakes_per_s", "connections"]  # key figures first
    assert facts["connections"] == facts["exchanges"] == facts["attempted"] > 100
    assert facts["failures"] == {} and facts["at_once"] == concurrency.AT_ONCE
    assert facts["settle_s"] >= concurrency.SETTLE_WAIT * CHURN_SCALE
    assert "every handshake and echo answered" in result.summary
    assert "exit_status" not in facts


async def test_churn_fails_a_stack_whose_process_dies_under_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(concurrency, "CHURN_TIME", SHORT_CHURN)
    async with reference_ctx("--defect", "churn-crashes", time_scale=CHURN_SCALE) as ctx:
        result = await concurrency.churn(ctx)
    assert result.verdict is Verdict.FAIL, result
    facts = result.evidence
    assert facts["exit_status"] == 2
    assert facts["crash_head"].startswith("fatal error: wsgaps reference defect churn-crashes")
    assert "the target's process ended with status 2 (fatal error: wsgaps reference " \
           "defect churn-crashes" in result.summary
    assert facts["connections"] >= 300  # the 300th connection doomed it
    # The check said it itself: the runner adds no second "process ended" in front.
    assert result.summary.count("process ended") == 1


async def test_churn_keeps_its_connections_in_flight_and_settles_out_of_the_load_slot(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # A steady AT_ONCE, not waves: one slow connection does not hold the others up (a wave
    # would wait for it, and the target would idle meanwhile).
    from gaps.toolkit import load

    flight = {"now": 0, "most": 0, "during_slow": 0}
    slow_done = asyncio.Event()

    async def fake_one(ctx: ProbeContext, churn: concurrency.Churn, seq: int,
                       waits: tuple[float, float]) -> None:
        churn.started += 1
        flight["now"] += 1
        flight["most"] = max(flight["most"], flight["now"])
        if seq == 1:  # the slow one: 0.5 s while the other lanes go on
            await asyncio.sleep(0.5)
            slow_done.set()
        else:
            if not slow_done.is_set():
                flight["during_slow"] += 1
            await asyncio.sleep(0.01)
        churn.made += 1
        churn.echoed += 1
        flight["now"] -= 1

    slot_held: list[bool] = []
    real_judge = concurrency._judge_churn

    async def judge(ctx: ProbeContext, seen: concurrency.Churned) -> Outcome:
        lock = load._LOAD_LOCKS.get(id(asyncio.get_running_loop()))
        slot_held.append(lock is not None and lock.locked())
        return await real_judge(ctx, seen)

    monkeypatch.setattr(concurrency, "CHURN_TIME", 1.0)
    monkeypatch.setattr(concurrency, "SETTLE_WAIT", 0.2)
    monkeypatch.setattr(concurrency, "_churn_one", fake_one)
    monkeypatch.setattr(concurrency, "_judge_churn", judge)
    async with reference_ctx() as ctx:
        result = await concurrency.churn(ctx)
    assert flight["most"] == concurrency.AT_ONCE
    # In 0.5 s, 19 lanes of 10 ms connections: far more than one wave of 19.
    assert flight["during_slow"] > 5 * (concurrency.AT_ONCE - 1), flight
    assert slot_held == [False]
    assert result.verdict is Verdict.PASS, result


async def test_churn_probes_a_url_target_gently(full: ProbeContext) -> None:
    url = url_manifest(full.url("echo"))
    result = await concurrency.churn(ProbeContext(url, Instance(url), seed=4))
    assert result.verdict is Verdict.PASS, result
    assert result.summary.startswith("a URL target is probed gently: 10 connections, 2 at a "
                                     "time; ")
    assert result.evidence["connections"] == 10 and "settle_s" not in result.evidence


async def test_churn_out_of_files_is_a_harness_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_room(needed: int) -> int:
        raise OSError(errno.EMFILE, f"the harness needs {needed} more open files")

    monkeypatch.setattr(concurrency, "open_files_for", no_room)
    manifest = reference_manifest()
    result = await concurrency.churn(ProbeContext(manifest, Instance(manifest)))
    assert result.verdict is Verdict.ERROR, result
    assert result.summary.startswith("harness side: OSError")


async def test_a_lost_handshake_fails_only_when_its_retry_fails_too(
        full: ProbeContext, monkeypatch: pytest.MonkeyPatch) -> None:
    from gaps.wire.errors import NoAnswer

    real = concurrency.WireClient.connect
    lost = {"count": 0, "every": 1}

    async def lossy(url: str, **options: object) -> concurrency.WireClient:
        lost["count"] += 1
        if lost["count"] % lost["every"] == 1 % lost["every"]:  # the first lost
            raise NoAnswer("connection reset without an HTTP answer (test)")
        return await real(url, **options)

    monkeypatch.setattr(concurrency.WireClient, "connect", lossy)
    ctx = full.for_try(concurrency.churn, 1)
    once = concurrency.Churn("00000000")
    lost["every"] = 2  # every other handshake lost: each is answered on its retry
    await concurrency._churn_one(ctx, once, 1, (2.0, 2.0))
    assert (once.failed, once.retried, once.echoed) == (0, 1, 1)
    twice = concurrency.Churn("00000000")
    lost["every"] = 1  # every handshake lost: the retry too
    await concurrency._churn_one(ctx, twice, 2, (2.0, 2.0))
    assert twice.failures == {"handshake": 1} and twice.echoed == 0
    assert "handshake lost twice" in twice.named[0]
