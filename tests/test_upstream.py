"""The recovery probe's upstream server, and how the harness starts it before the target."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidMessage, InvalidStatus

from gaps import __version__
from gaps.model import RunResult, TargetInfo, Verdict
from gaps.plan import RunConfig, TargetRun, run_plan
from gaps.probe import UPSTREAM, ProbeContext, check, failed, passed
from gaps.upstream import Feed, Upstream
from tests.conftest import reference_manifest

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def dial(url: str) -> str:
    """What one websockets client dial ends with, in a word."""
    try:
        async with connect(url, open_timeout=2) as ws:
            try:
                await asyncio.wait_for(ws.recv(), 5)
            except ConnectionClosed as exc:
                return f"closed {exc.rcvd.code if exc.rcvd else None}"
            return "message"
    except InvalidStatus as exc:
        return f"status {exc.response.status_code}"
    except (OSError, InvalidMessage):
        return "reset"


async def test_refusals_cycle_then_dials_are_accepted_and_times_recorded() -> None:
    async with Upstream(accept_from=4) as up:
        words = [await dial(up.url) for _ in range(3)]
        assert words == ["reset", "status 503", "reset"]
        task = asyncio.create_task(dial(up.url))
        link = await up.wait_link(1, asyncio.get_running_loop().time() + 5)
        assert link is not None and link.path == "/wsgaps-upstream"
        await link.send_text("hello")
        assert await task == "message"
    assert [a.outcome for a in up.attempts] == ["reset", "503", "reset", "accepted"]
    times = up.times()
    assert times == sorted(times) and times[0] >= 0
    assert up.evidence()["attempt_count"] == 4


@pytest.mark.parametrize(("how", "seen"), [("drop", "closed None"), ("close", "closed 1001")])
async def test_an_accepted_link_is_dropped_or_closed_with_1001(how: str, seen: str) -> None:
    async with Upstream(accept_from=1) as up:
        task = asyncio.create_task(dial(up.url))
        link = await up.wait_link(1, asyncio.get_running_loop().time() + 5)
        assert link is not None
        if how == "drop":
            link.drop()
        else:
            await link.close(1001)
        assert await task == seen
        assert await up.wait_ended(link, asyncio.get_running_loop().time() + 5)


async def test_a_tight_loop_stops_the_upstream_answering_but_keeps_its_port() -> None:
    async with Upstream(accept_from=None, refusals=("reset",)) as up:
        for _ in range(60):
            if up.stopped_answering:
                break
            await dial(up.url)
        assert up.stopped_answering and len(up.attempts) == 50
        assert up.tight_loop is not None and "50 attempts within" in up.tight_loop
        with socket.socket() as other, pytest.raises(OSError):
            other.bind(("127.0.0.1", up.port))  # still ours: no other instance can take it
        assert await dial(up.url) == "reset"  # a dial now hangs: the client's timeout ends it
        assert len(up.attempts) == 50


async def test_dials_are_timed_and_reset_even_while_the_event_loop_is_busy() -> None:
    async with Upstream(accept_from=None, refusals=("reset",)) as up:

        def dial_raw() -> tuple[float, float]:
            started = time.monotonic()
            # The reset can come while connect() still runs, or at the first read.
            with (contextlib.suppress(ConnectionResetError),
                  socket.create_connection(("127.0.0.1", up.port), timeout=5) as sock):
                sock.recv(1)
            return started, time.monotonic()

        done = asyncio.get_running_loop().run_in_executor(None, dial_raw)
        time.sleep(0.6)  # the loop is blocked, as while an instance's guard starts
        started, ended = await done
        assert ended - started < 0.3  # reset at once, not when the loop got free
        assert abs(up.attempts[0].at - started) < 0.1


async def test_the_feed_names_positions_by_seq_or_token() -> None:
    feed = Feed()
    first, second = feed.publish(), feed.publish()
    assert (first["seq"], second["seq"]) == (1, 2)
    assert feed.position("seq", "1") == 1 and feed.position("seq", "x") is None
    assert feed.position("token", second["token"]) == 2
    assert feed.position("token", "nope") is None
    assert len(feed.after(1)) == 1


# -- the hook: upstream checks start their own instance, the upstream first -----------------

def plan_config(tmp_path: Path, jobs: int) -> RunConfig:
    manifest = reference_manifest()
    run = RunResult(TargetInfo("reference"), __version__)
    target = TargetRun("reference", manifest, run, tmp_path / "results.json")
    return RunConfig(targets={"reference": target}, jobs=jobs, seed=5)


async def test_an_upstream_check_gets_a_target_that_dials_its_upstream(tmp_path: Path) -> None:
    seen: dict[str, object] = {}

    @check("recovery.retries-first-dial", needs=("upstream",), placement=UPSTREAM, budget=30)
    async def dialled(ctx: ProbeContext):
        async with ctx.with_upstream(accept_from=1) as (up, instance):
            link = await up.wait_link(1, asyncio.get_running_loop().time() + 10)
            seen.update(url=up.url, upstream=instance.upstream, link=link,
                        shared=ctx.instance.process)
        return passed("dialled") if link else failed("no dial")

    @check("recovery.redials-after-drop", needs=("upstream",), budget=30)
    async def on_the_gap_instance(ctx: ProbeContext):
        seen["gap_instance_upstream"] = ctx.instance.upstream
        return passed("shared")

    cfg = plan_config(tmp_path, jobs=2)
    await run_plan(cfg, {"reference": {"recovery": [dialled, on_the_gap_instance]}})
    gap = cfg.targets["reference"].run.gaps["recovery"]
    assert [c.verdict for c in gap.checks] == [Verdict.PASS, Verdict.PASS], gap.checks
    assert seen["upstream"] == seen["url"] and seen["link"] is not None
    assert seen["shared"] is None  # the upstream check never got the gap's instance
    assert seen["gap_instance_upstream"] is None  # other instances dial nothing
    assert "upstream: connected" in (gap.logs or "")  # fresh instances' logs are kept


async def test_waiting_for_a_slot_does_not_eat_an_upstream_checks_budget(
        tmp_path: Path) -> None:
    hold = 3.0

    def holding(check_id: str):
        # Without the slot wait and start-up outside it, the second check would need about
        # 2 x (start + hold + stop), some 9 s, well over this budget.
        @check(check_id, needs=("upstream",), placement=UPSTREAM, budget=hold + 3.0)
        async def body(ctx: ProbeContext):
            async with ctx.with_upstream(accept_from=1):
                await asyncio.sleep(hold)
            return passed("held")
        return body

    cfg = plan_config(tmp_path, jobs=1)
    started = time.monotonic()
    await run_plan(cfg, {"reference": {"recovery": [holding("recovery.backoff"),
                                                    holding("recovery.jitter")]}})
    gap = cfg.targets["reference"].run.gaps["recovery"]
    # One slot: the second check waited for the first (its start and hold, longer than its
    # budget) and still passed.
    assert [c.verdict for c in gap.checks] == [Verdict.PASS, Verdict.PASS], gap.checks
    assert time.monotonic() - started > 2 * hold
