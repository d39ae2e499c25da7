"""The run planner: gaps, checks and tries overlap under one bound of live instances."""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path

import pytest

from gaps import __version__
from gaps.model import RunResult, TargetInfo, Verdict
from gaps.plan import CheckDone, GapDone, RunConfig, TargetRun, run_plan
from gaps.probe import (
    ALONE,
    FRESH,
    UPSTREAM,
    Placement,
    ProbeContext,
    check,
    declared,
    failed,
    passed,
)
from tests.conftest import reference_manifest

pytestmark = pytest.mark.asyncio(loop_scope="session")

HOLD = 1.0  # seconds each check keeps its instance busy


def config(tmp_path: Path, jobs: int) -> RunConfig:
    manifest = reference_manifest()
    run = RunResult(TargetInfo("reference"), __version__)
    target = TargetRun("reference", manifest, run, tmp_path / "results.json")
    return RunConfig(targets={"reference": target}, jobs=jobs, seed=5)


def holding(check_id: str, seen: list[tuple[str, int, float, float]], hold: float = HOLD,
            **options):
    @check(check_id, **options)
    async def body(ctx: ProbeContext):
        started = time.monotonic()
        client = await ctx.connect("echo")  # proves the instance is live
        await asyncio.sleep(hold)
        await client.aclose()
        seen.append((check_id, ctx.instance.process.pid, started, time.monotonic()))
        return passed("held")

    return body


async def test_gaps_and_checks_overlap_and_alone_checks_get_their_own_instance(
        tmp_path: Path) -> None:
    seen: list[tuple[str, int, float, float]] = []
    selection = {"reference": {
        "heartbeat": [holding("heartbeat.server-pings", seen),
                      holding("heartbeat.reaps-silent-peer", seen)],
        "message-types": [holding("message-types.text", seen),
                          holding("message-types.binary", seen, placement=ALONE)],
    }}
    events: list[object] = []
    started = time.monotonic()
    await run_plan(config(tmp_path, jobs=6), selection, events.append)
    wall = time.monotonic() - started
    assert len(seen) == 4
    # Four checks of HOLD each, all at once: far less than their sum.
    assert wall < 4 * HOLD, wall
    pids = {check_id: pid for check_id, pid, _, _ in seen}
    assert pids["heartbeat.server-pings"] == pids["heartbeat.reaps-silent-peer"]
    assert pids["message-types.binary"] != pids["message-types.text"]
    assert len(set(pids.values())) == 3  # heartbeat's, message-types', binary's own
    assert sum(isinstance(e, CheckDone) for e in events) == 4
    assert sum(isinstance(e, GapDone) for e in events) == 2


async def test_the_bound_on_live_instances_holds(tmp_path: Path) -> None:
    seen: list[tuple[str, int, float, float]] = []
    selection = {"reference": {
        "heartbeat": [holding("heartbeat.server-pings", seen, placement=ALONE),
                      holding("heartbeat.reaps-silent-peer", seen, placement=ALONE)],
        "message-types": [holding("message-types.text", seen, placement=ALONE)],
    }}
    await run_plan(config(tmp_path, jobs=1), selection)
    spans = sorted((start, end) for _, _, start, end in seen)
    assert all(later[0] >= earlier[1] for earlier, later in itertools.pairwise(spans))


async def test_tries_overlap_and_fresh_tries_each_get_one(tmp_path: Path) -> None:
    seen: list[tuple[str, int, float, float]] = []

    @check("heartbeat.server-pings", timing=True, placement=FRESH)
    async def fresh(ctx: ProbeContext):
        started = time.monotonic()
        await asyncio.sleep(HOLD)
        seen.append(("fresh", ctx.instance.process.pid, started, time.monotonic()))
        return failed("no Ping")

    selection = {"reference": {"heartbeat": [fresh]}}
    started = time.monotonic()
    await run_plan(config(tmp_path, jobs=6), selection)
    assert len(seen) == 2 and seen[0][1] != seen[1][1]  # two tries, two instances
    assert time.monotonic() - started < 2 * HOLD + 4  # the tries overlapped


async def test_a_gap_records_its_verdicts_in_the_results_file(tmp_path: Path) -> None:
    cfg = config(tmp_path, jobs=2)
    await run_plan(cfg, {"reference": {"message-types": [
        holding("message-types.text", [])]}})
    gap = cfg.targets["reference"].run.gaps["message-types"]
    assert [c.verdict for c in gap.checks] == [Verdict.PASS]
    assert (tmp_path / "results.json").exists()


async def test_a_declared_check_starts_no_instance(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import gaps.plan

    starts: list[str] = []
    real_start = gaps.plan.start_instance

    async def counting(*args, **kwargs):
        starts.append("start")
        return await real_start(*args, **kwargs)

    monkeypatch.setattr(gaps.plan, "start_instance", counting)

    documented = declared("concurrency.documented")

    cfg = config(tmp_path, jobs=2)
    cfg.targets["reference"].manifest.declared = {}  # nothing declared: a skip
    await run_plan(cfg, {"reference": {"concurrency": [documented]}})
    (result,) = cfg.targets["reference"].run.gaps["concurrency"].checks
    assert starts == []
    assert result.verdict is Verdict.SKIP  # this manifest declares nothing about it


async def test_the_bound_serves_the_longest_budget_first_and_passes_on_cancelled_slots() -> None:
    from gaps.plan import Bound

    bound = Bound(1)
    order: list[str] = []
    release = asyncio.Event()

    async def take(name: str, priority: float) -> None:
        async with bound.hold(priority):
            order.append(name)
            await release.wait()

    holder = asyncio.ensure_future(take("first", 0))
    await asyncio.sleep(Bound.SETTLE * 3)  # alone: it gets the free slot
    waiting = {name: asyncio.ensure_future(take(name, priority)) for name, priority in
               [("short", 10), ("long", 200), ("cancelled", 500), ("long-later", 200)]}
    await asyncio.sleep(0)
    waiting["cancelled"].cancel()
    release.set()
    await asyncio.gather(holder, *waiting.values(), return_exceptions=True)
    # Longest budget first, equal budgets in arrival order; the cancelled waiter never ran.
    assert order == ["first", "long", "long-later", "short"]
    assert bound.free == 1


async def test_requests_at_the_same_moment_compete_by_priority() -> None:
    from gaps.plan import Bound

    bound = Bound(2)
    order: list[str] = []

    async def take(name: str, priority: float) -> None:
        async with bound.hold(priority):
            order.append(name)
            await asyncio.sleep(0.01)

    # The first comers do not take the free slots before the longer checks have asked.
    await asyncio.gather(*(take(name, priority) for name, priority in
                           [("a", 1), ("b", 2), ("c", 30), ("d", 20)]))
    assert order[:2] == ["c", "d"]


async def test_a_slot_handed_to_a_waiter_cancelled_meanwhile_is_passed_on() -> None:
    from gaps.plan import Bound

    bound = Bound(1)
    got: list[str] = []

    async def take(name: str) -> None:
        async with bound.hold(1):
            got.append(name)

    async with bound.hold(1):
        first = asyncio.ensure_future(take("a"))
        second = asyncio.ensure_future(take("b"))
        await asyncio.sleep(0)
    # The slot is handed to "a", which is cancelled before it runs: "b" must get it.
    first.cancel()
    await asyncio.gather(first, second, return_exceptions=True)
    assert got == ["b"] and bound.free == 1


@pytest.mark.parametrize("placement", [UPSTREAM, FRESH])
async def test_time_queued_for_a_slot_is_recorded_apart_from_the_try(
        tmp_path: Path, placement: Placement) -> None:
    seen: list[tuple[str, int, float, float]] = []

    # A budget shorter than the wait for the slot: the cap does not run while queued.  The
    # budget still leaves room for what it does cover (the upstream server, stopping the
    # instance: a second or more on a loaded machine), the hold being longer still.  A
    # FRESH try's instance comes from the same slots as the upstream check's.
    hold = 3 * HOLD

    @check("recovery.retries-first-dial", placement=placement, budget=hold / 2)
    async def dials(ctx: ProbeContext):
        if placement is FRESH:
            return passed("on a fresh instance")
        async with ctx.with_upstream():
            return passed("dialled")

    selection = {"reference": {
        "heartbeat": [holding("heartbeat.server-pings", seen, hold=hold, budget=500)],
        "recovery": [dials]}}
    cfg = config(tmp_path, jobs=1)
    await run_plan(cfg, selection)
    (result,) = cfg.targets["reference"].run.gaps["recovery"].checks
    # One slot: the upstream check waited for the heartbeat check (larger budget, first).
    assert result.verdict is Verdict.PASS, result
    assert result.queued >= hold * 0.8 > hold / 2, result
    assert result.duration >= result.queued
    assert cfg.targets["reference"].run.target.version  # recorded beside the probing


async def test_a_heavy_request_takes_its_weight_and_is_not_passed_by_light_ones() -> None:
    from gaps.plan import Bound

    bound = Bound(2)
    inside: list[tuple[str, float]] = []
    peak = 0.0
    order: list[str] = []

    async def take(name: str, priority: float, weight: float) -> None:
        nonlocal peak
        async with bound.hold(priority, weight):
            order.append(name)
            inside.append((name, min(weight, 2.0)))
            peak = max(peak, sum(w for _, w in inside))
            if any(n == "heavy" for n, _ in inside) and len(inside) > 1:
                order.append("not alone")
            await asyncio.sleep(0.05)
            inside.remove((name, min(weight, 2.0)))

    await asyncio.gather(take("light-a", 1, 1), take("heavy", 5, 3.0), take("light-b", 1, 1),
                         take("light-c", 1, 1))
    # The heavy one (weight above the limit: the whole bound) went first and alone.
    assert order[0] == "heavy" and "not alone" not in order and peak == 2.0
    assert bound.free == 2.0


async def test_the_start_bound_weighs_each_target_by_its_start_cost(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Unknown cost: the first start measures it alone; then a cheap target's starts run
    beside each other and a dear one's one at a time; start.cost in the manifest wins."""
    import dataclasses

    import gaps.plan
    from gaps.manifest import parse_manifest
    from gaps.plan import Bound, Bounds, Slots

    at_once: list[int] = []
    running = 0

    def fake_start(seconds: float):
        async def start(manifest, scale, extra_args=(), *, upstream=None):
            nonlocal running
            running += 1
            at_once.append(running)
            await asyncio.sleep(0.05)
            running -= 1
            instance = gaps.plan.Instance(manifest)
            instance.start_seconds = seconds
            return instance
        return start

    async def starts(target: TargetRun, count: int) -> list[int]:
        at_once.clear()
        bounds = Bounds(Bound(10), Bound(2))
        slots = Slots(RunConfig(targets={target.label: target}), target, bounds)

        async def one() -> None:
            async with slots.instance():
                await asyncio.sleep(0.01)

        await asyncio.gather(*(one() for _ in range(count)))
        return list(at_once)

    manifest = reference_manifest()
    for seconds, expected_peak in ((0.3, 2), (3.0, 1)):
        monkeypatch.setattr(gaps.plan, "start_instance", fake_start(seconds))
        target = TargetRun("t", manifest, RunResult(TargetInfo("t"), __version__),
                           tmp_path / "r.json")
        seen = await starts(target, 5)
        assert seen[0] == 1 and seen[1] == 1, seen  # the first start measured alone
        assert target.start_cost == seconds
        assert max(seen) == expected_peak, (seconds, seen)
    # A declared cost is used from the first start on, whatever a start measures.
    monkeypatch.setattr(gaps.plan, "start_instance", fake_start(0.1))
    data = {"name": "dear", "start": {"command": ["x"], "cost": 4},
            "endpoints": {"echo": {"path": "/echo"}}}
    dear = dataclasses.replace(parse_manifest(data, None))
    target = TargetRun("dear", dear, RunResult(TargetInfo("dear"), __version__),
                       tmp_path / "d.json")
    assert target.start_cost == 4.0
    assert max(await starts(target, 4)) == 1
    assert target.start_cost == 4.0


async def test_running_out_of_files_while_starting_is_a_harness_error_not_not_ready(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    import gaps.targets

    async def no_files(url: str, timeout: float) -> None:
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(gaps.targets, "handshake_ok", no_files)
    seen: list[tuple[str, int, float, float]] = []
    selection = {"reference": {
        "heartbeat": [holding("heartbeat.server-pings", seen)],
        "message-types": [holding("message-types.text", seen, placement=FRESH)]}}
    cfg = config(tmp_path, jobs=4)
    await run_plan(cfg, selection)
    results = [c for gap in cfg.targets["reference"].run.gaps.values() for c in gap.checks]
    assert len(results) == 2 and not seen
    for result in results:
        assert result.verdict is Verdict.ERROR, result
        assert result.summary.startswith("harness side: OSError: [Errno 24] Too many open "
                                         "files"), result.summary


def loading(check_id: str, live: dict[str, int], **options):
    """A check whose try is one load: it holds the harness's load slot for a moment."""
    from gaps.toolkit import heavy_load

    @check(check_id, **options)
    async def body(ctx: ProbeContext):
        live["now"] += 1
        live["most"] = max(live["most"], live["now"])
        async with heavy_load(ctx):
            await asyncio.sleep(HOLD)  # longer than a start: the next admitted one is up
        live["now"] -= 1
        return passed("loaded")

    return body


async def test_load_checks_start_their_instances_only_when_admitted(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from gaps import plan

    # Four loads: without the admission all four instances would start at once and three
    # would wait in the load slot's queue, each holding a live slot.
    monkeypatch.setattr(plan, "LOADS_ADMITTED", 2)
    live = {"now": 0, "most": 0}
    selection = {"reference": {
        "concurrency": [loading("concurrency.churn", live, placement=ALONE, load=True)],
        "limits": [loading("limits.message-rate", live, placement=ALONE, load=True),
                   loading("limits.connection-cap", live, placement=ALONE, load=True)],
        "broadcast": [loading("broadcast.scale", live, placement=ALONE, load=True)],
    }}
    await run_plan(config(tmp_path, jobs=8), selection)
    assert live["most"] == 2, live


async def test_admitted_loads_and_a_shared_load_cannot_wait_for_each_other(
        tmp_path: Path) -> None:
    # One live slot: the shared instance's load and the admitted load take turns.
    live = {"now": 0, "most": 0}
    selection = {"reference": {
        "concurrency": [loading("concurrency.parallel-echo", live)],
        "limits": [loading("limits.message-rate", live, placement=ALONE, load=True)],
    }}
    events: list[object] = []
    await asyncio.wait_for(run_plan(config(tmp_path, jobs=1), selection, events.append), 30)
    assert sum(isinstance(e, CheckDone) for e in events) == 2


def test_load_is_for_alone_checks_only() -> None:
    with pytest.raises(ValueError, match="load=True is for ALONE checks"):
        check("concurrency.churn", load=True)
