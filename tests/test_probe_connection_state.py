"""The connection-state probe (gap 4) against the reference, its switches and defects:
every check shown in both states."""

from __future__ import annotations

import dataclasses

import pytest

from gaps.model import Method, Verdict
from gaps.probe import FRESH, run_check
from tests.conftest import reference_ctx, reference_manifest
from wsgaps_probes import connection_state

aio = pytest.mark.asyncio(loop_scope="session")


# -- graceful-shutdown ----------------------------------------------------------------------

@aio
async def test_the_reference_closes_every_client_with_1001_after_the_signal() -> None:
    async with reference_ctx() as ctx:
        result = await connection_state.graceful_shutdown(ctx)
    assert result.verdict is Verdict.PASS, result.summary
    clients = result.evidence["clients"]
    assert [c["client"] for c in clients] == ["idle-1", "idle-2", "mid-fragment", "broadcast"]
    for client in clients:
        assert client["close_code"] == 1001
        assert 0 <= client["close_after_signal_s"] <= result.evidence["grace_s"]
        assert client["tcp_end_after_signal_s"] >= client["close_after_signal_s"]
    assert result.evidence["killed_after_grace"] is False
    # The fragment really went out unfinished before the signal.
    frames = result.evidence["frames"]["mid-fragment"]["frames"]
    assert any(f[1] == "out" and f[2] == "TEXT" and f[3] is False for f in frames), frames


@aio
@pytest.mark.parametrize("args", [("--without", "shutdown"), ("--defect", "shutdown-drops")])
async def test_a_tcp_end_without_a_close_fails(args: tuple[str, ...]) -> None:
    async with reference_ctx(*args) as ctx:
        result = await connection_state.graceful_shutdown(ctx)
    assert result.verdict is Verdict.FAIL
    assert "TCP ended without a Close frame" in result.summary
    assert all(c["ending"] == "tcp" for c in result.evidence["clients"])


@aio
async def test_a_normal_closure_at_shutdown_is_non_strict() -> None:
    async with reference_ctx("--defect", "shutdown-normal-closure") as ctx:
        result = await connection_state.graceful_shutdown(ctx)
    assert result.verdict is Verdict.NON_STRICT, result.summary
    assert {c["close_code"] for c in result.evidence["clients"]} == {1000}


@aio
async def test_another_code_fails() -> None:
    async with reference_ctx("--defect", "close-code-1005") as ctx:
        result = await connection_state.graceful_shutdown(ctx)
    assert result.verdict is Verdict.FAIL
    assert "Close 1005" in result.summary and "not a shutdown code" in result.summary


@aio
async def test_a_shutdown_that_never_finishes_is_killed_and_fails_not_a_crash() -> None:
    async with reference_ctx("--defect", "shutdown-ignores-term") as ctx:
        result = await connection_state.graceful_shutdown(ctx)
    assert result.verdict is Verdict.FAIL
    assert result.evidence["killed_after_grace"] is True
    assert result.evidence["exit_status"] == -9
    assert "SIGKILL after the grace period" in result.summary
    assert "process ended" not in result.summary  # stopped by the harness, not a crash
    for client in result.evidence["clients"]:
        assert client["tcp_end_after_signal_s"] >= result.evidence["grace_s"] - 0.1


def test_shutdown_checks_run_each_try_on_a_fresh_instance() -> None:
    assert connection_state.graceful_shutdown.placement is FRESH
    assert connection_state.close_reason.placement is FRESH


# -- close-reason ------------------------------------------------------------------------------

@aio
async def test_close_reason_passes_a_valid_code_and_fails_an_invalid_one() -> None:
    async with reference_ctx() as ctx:
        good = await connection_state.close_reason(ctx)
    async with reference_ctx("--defect", "close-code-1005") as ctx:
        bad = await connection_state.close_reason(ctx)
    assert good.verdict is Verdict.PASS, good.summary
    assert {c["code"] for c in good.evidence["closes"]} == {1001}
    assert bad.verdict is Verdict.FAIL
    assert "1005" in bad.summary and "7.4.1" in bad.summary


@aio
async def test_close_reason_without_any_server_close_is_skip() -> None:
    async with reference_ctx("--without", "shutdown") as ctx:
        result = await connection_state.close_reason(ctx)
    assert result.verdict is Verdict.SKIP
    assert "no Close frame" in result.summary


# -- introspection ----------------------------------------------------------------------------

@aio
async def test_the_reference_lists_its_connections_with_counts_and_drops_closed_ones() -> None:
    async with reference_ctx() as ctx:
        result = await connection_state.introspection(ctx)
    assert result.verdict is Verdict.PASS, result.summary
    rows = result.evidence["rows"]
    assert rows["a"]["messages_in"] == rows["a"]["messages_out"] == 3
    assert rows["b"]["messages_in"] == rows["b"]["messages_out"] == 1
    assert "message counts match" in result.summary


@aio
async def test_no_listing_fails() -> None:
    async with reference_ctx("--without", "introspection") as ctx:
        result = await connection_state.introspection(ctx)
    assert result.verdict is Verdict.FAIL
    assert "no listing of connections" in result.summary


@aio
async def test_a_listing_that_keeps_closed_connections_fails() -> None:
    async with reference_ctx("--defect", "connections-keep-closed") as ctx:
        result = await connection_state.introspection(ctx)
    assert result.verdict is Verdict.FAIL
    assert "keeps closed connections" in result.summary
    assert "CLOSED" in result.summary


@aio
async def test_counts_off_by_one_fail() -> None:
    async with reference_ctx("--defect", "connections-count-off") as ctx:
        result = await connection_state.introspection(ctx)
    assert result.verdict is Verdict.FAIL
    assert "messages_in 4 after 3" in result.summary


def test_counts_not_kept_are_said_and_rows_are_found_by_port_without_the_header() -> None:
    rows = [{"id": 1, "state": "OPEN", "path": "/echo", "remote": "127.0.0.1:5"},
            {"id": 2, "state": "OPEN", "path": "/echo", "remote": "127.0.0.1:55"}]
    assert connection_state._mine(rows, "nobody", 5) == rows[:1]
    problems, facts = connection_state._judge_row(rows[0], "/echo", 3)
    assert problems == [] and facts["messages_in"] == "not kept"
    closing = {"state": "CLOSING", "path": "/other?x=1", "messages_in": 2}
    problems, _ = connection_state._judge_row(closing, "/echo", 3)
    assert len(problems) == 3


@aio
async def test_without_the_endpoint_a_declared_absence_decides() -> None:
    manifest = reference_manifest()
    endpoints = {k: v for k, v in manifest.endpoints.items() if k != "connections"}
    bare = dataclasses.replace(manifest, endpoints=endpoints)
    absent = dataclasses.replace(bare, absent={**manifest.absent,
                                               "introspection": "no registry (test)"})
    async with reference_ctx(manifest=bare) as ctx:
        skipped = await run_check(connection_state.introspection, ctx)
    async with reference_ctx(manifest=absent) as ctx:
        declared = await run_check(connection_state.introspection, ctx)
    assert skipped.verdict is Verdict.SKIP and "connections" in skipped.summary
    assert declared.verdict is Verdict.FAIL and declared.method is Method.DECLARED
