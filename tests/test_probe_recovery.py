"""Each recovery check tells both states apart on the reference server's outbound client."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator

import pytest
from websockets.asyncio.client import connect

from gaps.manifest import Manifest, ManifestError, parse_manifest
from gaps.model import Method, Verdict
from gaps.probe import ProbeContext
from gaps.targets import Instance, start_instance
from gaps.upstream import Upstream
from tests.conftest import reference_manifest
from wsgaps_probes import recovery
from wsgaps_probes.recovery import first_difference, judge_backoff, presented

pytestmark = pytest.mark.asyncio(loop_scope="session")


def reference(*args: str, manifest: Manifest | None = None) -> ProbeContext:
    """A context whose instances are reference servers started with ``args``."""
    manifest = manifest or reference_manifest()

    @contextlib.asynccontextmanager
    async def instances(*, upstream: str | None = None) -> AsyncIterator[Instance]:
        instance = await start_instance(manifest, 1.0, args, upstream=upstream)
        try:
            yield instance
        finally:
            await instance.astop()

    return ProbeContext(manifest, Instance(manifest), seed=1, new_instance=instances)


def quick_hints() -> Manifest:
    """The reference manifest with small backoff hints: short waits for a client that never
    retries (the hints do not change what the reference does)."""
    manifest = reference_manifest()
    hints = {**manifest.hints, "backoff_initial": 0.1, "backoff_factor": 2.0,
             "backoff_max": 0.4}
    return dataclasses.replace(manifest, hints=hints)


async def run(ctx: ProbeContext, *checks):
    return await asyncio.gather(*(c(ctx) for c in checks))


# -- the judgements on their own ------------------------------------------------------------

@pytest.mark.parametrize(("intervals", "cap", "verdict", "words"), [
    ([0.3, 0.5, 1.0, 2.0, 2.0], 2.0, Verdict.PASS, "levelled off at about 2.00 s"),
    ([4.0, 0.5, 1.0, 2.0, 1.9], None, Verdict.PASS, "levelled off"),  # the first is exempt
    ([0.0, 0.5, 0.5], 0.5, Verdict.FAIL, "fixed interval"),  # GoFr: first retry at once
    ([0.5, 1.0, 2.0, 1.0], None, Verdict.FAIL, "shorter than"),
    ([0.5, 1.0, 2.0, 2.6, 2.0], None, Verdict.FAIL, "shorter than"),
])
async def test_judge_backoff_decides_as_soon_as_it_can(intervals, cap, verdict, words) -> None:
    judged = judge_backoff(intervals, final=False, cap=cap)
    assert judged.verdict is verdict and words in judged.summary, judged


async def test_judge_backoff_at_the_end_of_the_wait() -> None:
    growing = [0.2, 0.5, 1.0, 2.0, 4.0]
    assert judge_backoff(growing, final=False).verdict is None
    assert judge_backoff(growing, final=True, ended="within 9 s").verdict is Verdict.PASS
    capped = judge_backoff(growing, final=True, cap=8.0, ended="within 9 s")
    assert capped.verdict is Verdict.FAIL and "declared cap of 8 s" in capped.summary
    once = judge_backoff([], final=True, ended="within 9 s")
    assert once.verdict is Verdict.FAIL and "dialled once" in once.summary
    assert judge_backoff([0.5, 1.0], final=True).verdict is Verdict.FAIL


async def test_judge_backoff_leaves_a_fast_loop_to_the_upstream_count() -> None:
    fast = [0.002, 0.003, 0.002, 0.004]
    assert judge_backoff(fast, final=False).verdict is None
    assert judge_backoff(fast, final=True).verdict is Verdict.FAIL
    tight = judge_backoff(fast, final=False, tight="tight loop: 50 attempts within 0.1 s")
    assert tight.verdict is Verdict.FAIL and tight.summary.startswith("tight loop")


async def test_first_difference_ignores_the_first_interval_and_noise() -> None:
    assert first_difference([0.1, 0.5, 1.0, 1.0], [4.0, 0.52, 1.02, 1.0], 0.1) is None
    assert first_difference([0.5, 0.5, 1.0, 2.0], [0.5, 0.5, 0.85, 1.7], 0.1) == (3, 1.0, 0.85)
    # 20% apart, but only 0.04 s: scheduling noise alone does not count
    assert first_difference([0.1, 0.2, 0.2], [0.1, 0.16, 0.2], 0.1) is None
    # The longer interval is judged only once its run has a later one (it may be a late
    # dial); the shorter may be the latest of its run.
    assert first_difference([0.5, 0.5, 1.0], [0.5, 0.5, 0.85], 0.1) is None
    assert first_difference([0.5, 1.0, 2.0, 2.0], [0.5, 0.84], 0.1) == (2, 1.0, 0.84)


async def test_first_difference_ignores_one_late_dial() -> None:
    # GoFr in a full matrix run: a fixed 0.5 s interval, one dial 0.34 s late.
    late = [0.001, 0.502, 0.84, 0.501, 0.506, 0.508, 0.505]
    punctual = [0.002, 0.504, 0.502, 0.501, 0.502, 0.501, 0.5]
    assert first_difference(late, punctual, 0.1) is None
    assert first_difference(punctual, late, 0.1) is None
    # The reference's jitter (two bands, 0.83-0.85 and 0.97-0.99, capped at 2 s) is never a
    # spike: capped delays stay within 20% of each other.
    low, high = [0.4, 0.98, 1.68, 1.66, 1.69], [0.5, 0.84, 1.96, 1.97, 1.68]
    assert first_difference(low, high, 0.1) == (2, 0.98, 0.84)


# -- both states on the reference -------------------------------------------------------------

ALL = (recovery.retries_first_dial, recovery.redials_after_drop, recovery.backoff,
       recovery.jitter, recovery.resume)


async def test_with_and_without_recovery_and_resume() -> None:
    # At once: the clients that give up only wait, so they cost the full one no timing.
    full, without, no_resume = await asyncio.gather(
        run(reference(), *ALL),
        run(reference("--without", "recovery,resume", manifest=quick_hints()), *ALL),
        recovery.resume(reference("--without", "resume")))

    assert [r.verdict for r in full] == [Verdict.PASS] * 5, full
    retries, redials, backoff, jitter, resume = full
    assert [a[1] for a in retries.evidence["attempts"]] == ["reset", "503", "reset", "accepted"]
    assert len(redials.evidence["redials"]) == 2
    assert "levelled off" in backoff.summary and len(backoff.tries) == 2
    assert jitter.evidence["jitter_index"] >= 2
    assert resume.evidence["presented"] == "3"

    retries, redials, backoff, jitter, resume = without
    assert retries.verdict is Verdict.FAIL and "dialled once" in retries.summary
    assert redials.verdict is Verdict.FAIL and "no redial" in redials.summary
    assert backoff.verdict is Verdict.FAIL and "dialled once" in backoff.summary
    assert jitter.verdict is Verdict.SKIP and "no interval sequence" in jitter.summary
    assert len(jitter.evidence["runs"][1]["intervals"]) == 0  # no second instance started
    assert resume.verdict is Verdict.FAIL and "no reconnect" in resume.summary

    assert no_resume.verdict is Verdict.FAIL and "named no position" in no_resume.summary


async def test_a_fixed_interval_and_no_redial_fail_their_checks() -> None:
    fixed, no_redial = await asyncio.gather(
        run(reference("--defect", "backoff-fixed"), recovery.backoff, recovery.jitter),
        run(reference("--defect", "no-redial"), recovery.retries_first_dial,
            recovery.redials_after_drop))
    backoff, jitter = fixed
    assert backoff.verdict is Verdict.FAIL, backoff
    assert jitter.verdict is Verdict.FAIL and "agree within 10%" in jitter.summary
    retries, redials = no_redial
    assert retries.verdict is Verdict.PASS, retries
    assert redials.verdict is Verdict.FAIL and "TCP close" in redials.summary


async def test_a_tight_loop_fails_backoff() -> None:
    backoff = await recovery.backoff(reference("--defect", "tight-loop"))
    assert backoff.verdict is Verdict.FAIL and "tight loop" in backoff.summary
    assert backoff.evidence["attempt_count"] == 50


# -- declarations and manifests ------------------------------------------------------------

async def test_a_target_without_an_outbound_client_is_decided_by_its_declaration() -> None:
    manifest = reference_manifest()
    endpoints = {k: v for k, v in manifest.endpoints.items() if k != "upstream"}
    bare = dataclasses.replace(manifest, endpoints=endpoints)
    skipped = await recovery.backoff(reference(manifest=bare))
    assert skipped.verdict is Verdict.SKIP and "no upstream endpoint" in skipped.summary
    absent = dataclasses.replace(bare, absent={"recovery": "example: no client in this stack",
                                               "resume": "example: no replay"})
    ctx = reference(manifest=absent)
    declared = await run(ctx, recovery.retries_first_dial, recovery.resume)
    assert [(r.verdict, r.method) for r in declared] == [(Verdict.FAIL, Method.DECLARED)] * 2


async def test_resume_without_a_declared_mechanism_is_not_observed() -> None:
    manifest = reference_manifest()
    upstream = dataclasses.replace(manifest.endpoints["upstream"], extra={})
    plain = dataclasses.replace(manifest, endpoints={**manifest.endpoints,
                                                     "upstream": upstream})
    result = await recovery.resume(reference(manifest=plain))
    assert result.verdict is Verdict.SKIP
    assert result.summary == "target declares no resume on its upstream endpoint"


@pytest.mark.parametrize(("how", "dial"), [
    (recovery.Resume("query", "after"), {"query": "?after=7"}),
    (recovery.Resume("header", "X-Resume-From"), {"headers": {"X-Resume-From": "7"}}),
    (recovery.Resume("message", "resume"), {"message": '{"resume": 7}'}),
])
async def test_a_position_is_read_the_way_the_manifest_says(how: recovery.Resume,
                                                            dial: dict) -> None:
    async with Upstream(accept_from=1) as up:
        url = up.url + dial.get("query", "")
        async with connect(url, additional_headers=dial.get("headers")) as client:
            if "message" in dial:
                await client.send(dial["message"])
            link = await up.wait_link(1, asyncio.get_running_loop().time() + 5)
            assert link is not None
            assert await presented(link, how, 5.0) == "7"


async def test_manifest_resume_is_validated() -> None:
    base = {"name": "x", "start": {"command": ["true"]}, "endpoints": {"echo": {"path": "/e"}}}

    def with_upstream(table: dict) -> dict:
        return {**base, "endpoints": {**base["endpoints"], "upstream": table}}

    ok = parse_manifest(with_upstream({"resume": {"via": "query", "name": "after"}}), None)
    assert recovery.RESUME.value(ok) == recovery.Resume("query", "after", "seq")
    for bad, words in [({"resume": {"via": "carrier-pigeon", "name": "x"}}, "resume.via"),
                       ({"resume": {"via": "query"}}, "resume.name: missing"),
                       ({"resume": {"via": "query", "name": "a", "value": "x"}}, "value")]:
        with pytest.raises(ManifestError, match=words):
            parse_manifest(with_upstream(bad), None)
    echo_resume = {**base, "endpoints": {"echo": {"path": "/e", "resume": {"via": "query",
                                                                          "name": "a"}}}}
    with pytest.raises(ManifestError, match="only the upstream endpoint"):
        parse_manifest(echo_resume, None)


@pytest.mark.parametrize("second_error, words", [
    (OSError(24, "Too many open files"), ["harness side", "ValueError: a bug in run 1",
                                          "OSError: [Errno 24] Too many open files"]),
    (None, ["target not ready", "run 1 never ready", "run 2 never ready"]),
])
async def test_jitter_reports_every_error_of_its_two_runs(
        monkeypatch: pytest.MonkeyPatch, second_error: Exception | None,
        words: list[str]) -> None:
    """Both runs failing: every error is in the summary, not the first alone."""
    from gaps.targets import TargetFailed

    async def failing(ctx, run, wait, stop, progress) -> None:
        if not started:
            started.append(run)
            run.intervals = [1.0, 1.0]
            progress(run)  # starts the second run
            try:
                await asyncio.sleep(5)
            except asyncio.CancelledError:
                # The second run's error cancelled this one, which fails on its way out.
                raise (ValueError("a bug in run 1") if second_error
                       else TargetFailed("run 1 never ready")) from None
        raise second_error or TargetFailed("run 2 never ready")

    started: list[object] = []
    monkeypatch.setattr(recovery, "_jitter_run", failing)
    result = await recovery.jitter(reference())
    assert result.verdict is Verdict.ERROR
    for word in words:
        assert word in result.summary, result.summary


async def test_a_target_that_dies_during_a_recovery_check_is_said_first() -> None:
    """The check's own instance (with_upstream's), not the gap's, is the one that died: its
    end is said first, not read as a client that never dialled."""
    import signal

    manifest = quick_hints()

    @contextlib.asynccontextmanager
    async def dying(*, upstream: str | None = None) -> AsyncIterator[Instance]:
        # A refusing upstream is never dialled by a reference started without one; the
        # instance then dies, as a target crashing during the check would.
        instance = await start_instance(manifest, 1.0, upstream=None)
        instance.signal(signal.SIGKILL)
        await asyncio.to_thread(instance.process.wait, 10)
        try:
            yield instance
        finally:
            await instance.astop()

    ctx = ProbeContext(manifest, Instance(manifest), seed=1, new_instance=dying)
    result = await recovery.retries_first_dial(ctx)
    assert result.verdict is Verdict.FAIL
    assert result.summary.startswith("the target's process ended (status -9) during the "
                                     "check; see its output; "), result.summary
    assert result.evidence["exit_status"] == -9
