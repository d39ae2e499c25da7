"""The check runner: declared facts, skips, errors, budgets and k-of-n retries."""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from gaps.manifest import Declared
from gaps.model import Method, Verdict, load_results
from gaps.probe import (
    DECLARED,
    Placement,
    ProbeContext,
    check,
    declared,
    failed,
    non_strict,
    passed,
)
from gaps.targets import Instance
from tests.conftest import ROOT, reference_ctx, reference_manifest

pytestmark = pytest.mark.asyncio(loop_scope="session")


def context(**changes) -> ProbeContext:
    manifest = dataclasses.replace(reference_manifest(), **changes)
    return ProbeContext(manifest, Instance(manifest), time_scale=0.1, seed=3)


def scripted(verdicts: list[str], *, timing: bool = True):
    calls = iter(verdicts)

    @check("heartbeat.server-pings", timing=timing, budget=5)
    async def fake(ctx: ProbeContext):
        verdict = next(calls)
        if verdict == "raise":
            raise ValueError("bad probe")
        if verdict == "non-strict":
            return non_strict("ok, but not the canonical way")
        return passed("ok") if verdict == "pass" else failed("no")

    return fake


@pytest.mark.parametrize(("script", "verdict", "tries"), [
    (["pass", "pass"], Verdict.PASS, 2),
    (["fail", "pass", "pass"], Verdict.PASS, 3),
    (["fail", "fail"], Verdict.FAIL, 2),
    (["pass", "fail", "fail"], Verdict.FAIL, 3),
    (["pass", "fail", "raise"], Verdict.ERROR, 3),
    # Agreeing passes: non-strict if any was, in whatever order the tries came back.
    (["pass", "non-strict"], Verdict.NON_STRICT, 2),
    (["non-strict", "pass"], Verdict.NON_STRICT, 2),
    (["non-strict", "fail", "pass"], Verdict.NON_STRICT, 3),
    (["pass", "fail", "pass"], Verdict.PASS, 3),
])
async def test_k_of_n(script: list[str], verdict: Verdict, tries: int) -> None:
    result = await scripted(script)(context())
    assert result.verdict is verdict
    assert len(result.tries) == tries


async def test_exception_and_budget_become_error() -> None:
    result = await scripted(["raise"], timing=False)(context())
    assert result.verdict is Verdict.ERROR
    assert "ValueError: bad probe" in result.summary

    @check("heartbeat.server-pings", budget=2)
    async def slow(ctx: ProbeContext):
        await asyncio.sleep(10)
        return passed("never")

    result = await slow(context())  # time scale 0.1: budget 0.2 s
    assert result.verdict is Verdict.ERROR
    assert "budget of 0.2 s" in result.summary


async def test_observed_before_declared() -> None:
    """A declaration decides only a check whose endpoint the target lacks; otherwise the wire
    decides and the declaration is kept beside the observed verdict."""
    @check("message-types.text", needs=("echo", "chat"))
    async def needs_chat(ctx: ProbeContext):
        return passed("ran")

    echo_only = {"echo": reference_manifest().endpoints["echo"]}
    result = await needs_chat(context(endpoints=echo_only))
    assert result.verdict is Verdict.SKIP and "no chat endpoint" in result.summary
    declared = {"message-types.text": Declared("message-types.text", "fail", "docs/x.md")}
    result = await needs_chat(context(endpoints=echo_only, declared=declared))
    assert (result.verdict, result.method, result.source) == (
        Verdict.FAIL, Method.DECLARED, "docs/x.md")
    result = await needs_chat(context(declared=declared))  # the reference has a chat endpoint
    assert (result.verdict, result.method) == (Verdict.PASS, Method.OBSERVED)
    assert result.declaration is not None and result.declaration["source"] == "docs/x.md"
    assert result.contradiction and "but the wire shows pass" in result.contradiction
    trusting = context(declared=declared)
    trusting.trust_declarations = True
    result = await needs_chat(trusting)
    assert (result.verdict, result.method) == (Verdict.FAIL, Method.DECLARED)


async def test_an_agreeing_declaration_is_no_manifest_error() -> None:
    @check("heartbeat.server-pings", absent="heartbeat")
    async def no_pings(ctx: ProbeContext):
        return failed("no Ping within 1.0 s")

    result = await no_pings(context(absent={"heartbeat": "src/x.js: no ping timer"}))
    assert (result.verdict, result.method) == (Verdict.FAIL, Method.OBSERVED)
    assert result.declaration == {"verdict": "fail", "source": "src/x.js: no ping timer",
                                  "summary": "declared absent: heartbeat"}
    assert result.contradiction is None


async def test_url_target_is_probed_as_external(tmp_path: Path) -> None:
    async with reference_ctx() as ctx:
        url = ctx.url("echo")
        done = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "pytest", "-m", "gaps", "-q", "-p", "no:cacheprovider",
             "--gaps-target", url, "--gaps-out", str(tmp_path), "-k", "heartbeat"],
            cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    (folder,) = (path for path in tmp_path.iterdir() if path.is_dir())  # beside the matrix
    run = load_results(folder / "results.json")
    assert run.target.kind == "url" and run.target.url == url, done.stdout[-2000:]
    # No hints for an external server: default waits, and the reference pings every second.
    assert run.gaps["heartbeat"].checks[0].verdict is Verdict.PASS
    assert run.waits["heartbeat.server-pings"] == 65.0


async def test_a_long_wait_extends_the_budget() -> None:
    @check("heartbeat.server-pings", budget=1)
    async def waits(ctx: ProbeContext):
        seconds = ctx.plan_wait(5.0)  # 0.5 s at time scale 0.1, past the 0.1 s budget
        await asyncio.sleep(seconds)
        return passed(f"waited {seconds} s")

    result = await waits(context())
    assert result.verdict is Verdict.PASS, result


async def test_a_handshake_timeout_is_not_reported_as_a_budget_overrun() -> None:
    from gaps.manifest import EndpointSpec
    from tests.rawserver import raw_server, read_request

    async def silent(reader, writer) -> None:
        await read_request(reader)
        await asyncio.sleep(10)

    @check("heartbeat.server-pings", budget=100)
    async def connects(ctx: ProbeContext):
        await ctx.connect("echo", timeout=5)
        return passed("connected")

    async with raw_server(silent) as url:
        ctx = context(endpoints={"echo": EndpointSpec("echo", url=url)})
        result = await connects(ctx)
    assert result.verdict is Verdict.ERROR
    assert "no handshake answer" in result.summary and "budget" not in result.summary


async def test_a_declared_check_is_decided_by_its_declaration_or_skipped() -> None:
    """``declared``: the manifest decides; nothing declared is a skip saying so; there is
    no function to run, whatever endpoints the target has."""
    documented = declared("concurrency.documented")
    assert documented.needs == () and documented.fn is None
    fact = {"concurrency.documented": Declared("concurrency.documented", "pass",
                                               "docs/concurrency.md", "one writer per connection")}
    decided = await documented(context(declared=fact))
    nothing = await documented(context(declared={}))
    failing = await documented(context(declared={"concurrency.documented": Declared(
        "concurrency.documented", "fail", "docs/index.md: no word on it")}))
    assert (decided.verdict, decided.method, decided.source, decided.summary) == (
        Verdict.PASS, Method.DECLARED, "docs/concurrency.md", "one writer per connection")
    assert (nothing.verdict, nothing.method) == (Verdict.SKIP, Method.DECLARED)
    assert "the manifest declares nothing" in nothing.summary
    assert (failing.verdict, failing.method) == (Verdict.FAIL, Method.DECLARED)


async def test_placement_is_one_value_and_declared_checks_have_no_function() -> None:
    with pytest.raises(ValueError, match=r"declared\(\)"):
        check("concurrency.documented", placement=DECLARED)
    with pytest.raises(TypeError):
        check("concurrency.documented", exclusive=True)  # type: ignore[call-arg]
    with pytest.raises(KeyError, match="not a check ID"):
        declared("concurrency.undocumented")
    assert [p.starts_per_try for p in Placement] == [False, False, True, True, True, False]
    assert [p.observes for p in Placement] == [True, True, True, True, True, False]


async def test_time_queued_for_the_load_slot_is_given_back_to_the_budget() -> None:
    from gaps import toolkit

    @check("heartbeat.server-pings", budget=5)  # 0.5 s at time scale 0.1
    async def queued(ctx: ProbeContext):
        async with toolkit.heavy_load(ctx) as waited:
            await asyncio.sleep(0.3)
        return passed(f"queued {waited:.2f} s")

    async def hold_the_slot() -> None:
        async with toolkit.heavy_load():
            await asyncio.sleep(0.4)

    holder = asyncio.create_task(hold_the_slot())
    await asyncio.sleep(0)  # the holder takes the slot first
    result = await queued(context())  # 0.4 s queued + 0.3 s measured > 0.5 s budget
    await holder
    assert result.verdict is Verdict.PASS, result


async def test_a_queue_longer_than_the_budget_does_not_run_it_down() -> None:
    from gaps import toolkit

    @check("heartbeat.server-pings", budget=5)  # 0.5 s at time scale 0.1
    async def queued(ctx: ProbeContext):
        async with toolkit.heavy_load(ctx) as waited:
            await asyncio.sleep(0.1)
        return passed(f"queued {waited:.2f} s")

    async def hold_the_slot() -> None:
        async with toolkit.heavy_load():
            await asyncio.sleep(0.8)

    holder = asyncio.create_task(hold_the_slot())
    await asyncio.sleep(0)
    result = await queued(context())  # 0.8 s queued alone exceeds the 0.5 s budget
    await holder
    assert result.verdict is Verdict.PASS, result


async def test_a_target_gone_before_the_check_is_said_first() -> None:
    import signal

    from tests.conftest import reference_ctx

    @check("message-types.text")
    async def text(ctx: ProbeContext):
        return failed("no echo")

    async with reference_ctx() as ctx:
        ctx.instance.signal(signal.SIGKILL)
        await asyncio.to_thread(ctx.instance.process.wait, 10)
        result = await text(ctx)
    assert result.verdict is Verdict.FAIL
    assert result.summary.startswith("the target's process ended (status -9) before the check "
                                     "began; see its output; no echo"), result.summary
    assert result.evidence["exit_status"] == -9


async def test_the_reason_of_an_error_is_a_value_and_wording_never_decides() -> None:
    """The runner branches on ``Outcome.reason``: a harness-side error stays an error on a
    connection the target violated, whatever its summary says, and a probe error worded
    like a harness one is still judged by the wire."""
    from gaps.model import ErrorReason
    from gaps.probe import Outcome, errored, the_wire_decides
    from gaps.wire.client import FrameRecord, Violation

    broken = [Violation(0.5, "RFC 6455 5.1: a masked frame from the server",
                        FrameRecord(0.5, "in", "TEXT", True, "000", True, 3, "abc", ""))]
    harness = errored(ErrorReason.HARNESS_SIDE, "the harness ran out of descriptors")
    looks_like_it = errored(ErrorReason.PROBE, "harness side: OSError (worded like one)")
    assert the_wire_decides(harness, broken).verdict is Verdict.ERROR
    assert the_wire_decides(looks_like_it, broken).verdict is Verdict.FAIL
    with pytest.raises(ValueError, match="reason exactly when"):
        Outcome(Verdict.ERROR, "an error with no reason")
    with pytest.raises(ValueError, match="reason exactly when"):
        Outcome(Verdict.FAIL, "a failure with a reason", reason=ErrorReason.PROBE)


async def test_an_error_result_carries_its_reason_into_the_results_file(tmp_path) -> None:
    from gaps.model import CheckResult, ErrorReason

    raised = await scripted(["raise"], timing=False)(context())
    assert (raised.verdict, raised.reason) == (Verdict.ERROR, ErrorReason.PROBE)
    crashed = await scripted(["pass", "fail", "raise"])(context())
    assert (crashed.verdict, crashed.reason) == (Verdict.ERROR, ErrorReason.PROBE)
    assert crashed.tries[-1]["reason"] == "probe" and "reason" not in crashed.tries[0]
    ctx = context()
    ctx.retry = (3, 4)
    mixed = await scripted(["pass", "fail", "pass", "fail"])(ctx)
    assert (mixed.verdict, mixed.reason) == (Verdict.ERROR, ErrorReason.INCONCLUSIVE)
    fine = await scripted(["pass", "pass"])(context())
    assert fine.reason is None and fine.to_json()["reason"] is None
    assert CheckResult.from_json(mixed.to_json()).reason is ErrorReason.INCONCLUSIVE


async def test_no_message_is_a_value_whatever_its_words() -> None:
    """``receive`` says why nothing came as a value: ``timed_out`` decides, the words do
    not (concurrency's "wait ran out", error handling's "no answer")."""
    from gaps.toolkit import NoMessage

    late = NoMessage("no complete message within 1.0 s", 1.0, timed_out=True)
    closed = NoMessage("no echo within 1.0 s, said a Close frame's reason", 1.0)
    assert (str(late), late.said("answer")) == ("no echo within 1.0 s", "no answer within 1.0 s")
    assert closed.said("answer") == closed.why and not closed.timed_out
