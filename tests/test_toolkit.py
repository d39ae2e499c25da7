"""The probe toolkit: collection from the probe package, the wire error family, Close values."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from gaps.catalog import BY_SLUG
from gaps.probe import ProbeError, check, load_checks
from gaps.wire.client import WireClient, attempt
from gaps.wire.errors import (
    HandshakeFailed,
    ReceiveError,
    ReceiveTimeout,
    Unreachable,
    WireError,
)
from gaps.wire.frames import Close, CloseCode
from tests.conftest import ROOT

ASYNC = pytest.mark.asyncio(loop_scope="session")


def write_probe(folder: Path, name: str, *check_ids: str) -> None:
    folder.mkdir(exist_ok=True)
    body = ["from gaps.probe import check, passed"]
    for n, check_id in enumerate(check_ids):
        body += [f"@check({check_id!r})", f"async def c{n}(ctx):", "    return passed('ok')"]
    (folder / f"{name}.py").write_text("\n".join(body) + "\n")


def test_builtin_probes_are_found_by_gap_in_catalog_order() -> None:
    checks = load_checks()
    order = list(BY_SLUG)  # robust to probes added later: catalog order, whatever is there
    assert list(checks) == sorted(checks, key=order.index)
    assert {"heartbeat", "broadcast", "message-types"} <= set(checks)
    assert [d.id for d in checks["heartbeat"]] == ["heartbeat.server-pings",
                                                   "heartbeat.reaps-silent-peer"]


def test_a_module_with_two_gaps_is_refused(tmp_path: Path) -> None:
    write_probe(tmp_path / "p", "mixed", "heartbeat.server-pings", "metrics.connections-gauge")
    with pytest.raises(ProbeError, match="more than one gap"):
        load_checks(str(tmp_path / "p"))


def test_two_modules_for_one_gap_are_refused(tmp_path: Path) -> None:
    write_probe(tmp_path / "p", "one", "heartbeat.server-pings")
    write_probe(tmp_path / "p", "two", "heartbeat.reaps-silent-peer")
    with pytest.raises(ProbeError, match="already probed"):
        load_checks(str(tmp_path / "p"))


def test_a_capability_typo_in_a_check_is_refused() -> None:
    with pytest.raises(KeyError, match="not a capability"):
        check("heartbeat.server-pings", absent="heartbeats")


def test_probes_collect_from_any_directory(tmp_path: Path) -> None:
    """The plugin imports the probe package: no probe file under the rootdir is needed."""
    (tmp_path / "test_mine.py").write_text("def test_unmarked():\n    pass\n")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-m", "gaps", "--collect-only", "-q",
         "-p", "no:cacheprovider", "--gaps-target", "reference"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False)
    assert "wsgaps::heartbeat::server-pings[reference]" in done.stdout, done.stdout
    assert "test_unmarked" not in done.stdout
    assert str(ROOT) not in done.stdout


@ASYNC
async def test_socket_failures_are_wire_errors() -> None:
    with pytest.raises(Unreachable) as refused:
        await WireClient.connect("ws://127.0.0.1:9/echo", timeout=5)
    assert isinstance(refused.value, HandshakeFailed) and isinstance(refused.value, WireError)
    with pytest.raises(Unreachable):
        await attempt("ws://127.0.0.1:9/echo", timeout=5)


@ASYNC
async def test_receive_timeout_is_a_wire_error_and_a_timeout(full) -> None:
    client = await full.connect("echo")
    try:
        with pytest.raises(ReceiveTimeout) as waited:
            await client.recv_message(0.2)
        assert isinstance(waited.value, ReceiveError) and isinstance(waited.value, TimeoutError)
    finally:
        await client.aclose()


@ASYNC
async def test_a_refusal_is_a_value(full) -> None:
    answer = await full.handshake("echo", wait=5, key=None)
    assert answer.status == 400 and not answer.accepted
    assert answer.evidence()["status"] == 400


@pytest.mark.parametrize(("payload", "code", "problem"), [
    (b"", None, ""),
    (b"\x03\xe8bye", CloseCode.NORMAL_CLOSURE, ""),
    (b"\x03", None, "one-byte"),
    (b"\x03\xee", CloseCode.ABNORMAL_CLOSURE, "MUST NOT"),
    (b"\x0b\xb8", 3000, ""),
])
def test_close_is_a_value_that_never_raises(payload: bytes, code: int | None,
                                             problem: str) -> None:
    close = Close.parse(payload)
    assert close.code == code
    assert (problem in close.problem()) if problem else close.problem() == ""
    if not close.truncated:
        assert Close.parse(close.encode()) == close


def test_a_failure_during_a_harness_stall_is_an_error_only_if_the_target_closed_clients(
) -> None:
    import dataclasses

    from gaps.probe import ProbeContext, failed, passed
    from gaps.targets import Instance
    from gaps.toolkit import harness_stall
    from tests.conftest import reference_manifest

    manifest = dataclasses.replace(reference_manifest(), hints={"ping_timeout": 2.0})
    ctx = ProbeContext(manifest, Instance(manifest))
    ctx.harness_lag = lambda: 1.5  # type: ignore[method-assign]  # past half of 2 s
    stalled = harness_stall(ctx, failed("client 3 missing"), closed=2)
    assert stalled.verdict.value == "error" and stalled.summary.startswith("harness too slow")
    assert harness_stall(ctx, failed("client 3 missing"), closed=0).verdict.value == "fail"
    assert harness_stall(ctx, passed("fine"), closed=2).verdict.value == "pass"
    ctx.harness_lag = lambda: 0.2  # type: ignore[method-assign]
    assert harness_stall(ctx, failed("client 3 missing"), closed=2).verdict.value == "fail"


# -- expect_close, wait_until, connect_many ----------------------------------------------

def _ending_script(action: str):
    """A server that accepts, reads one frame header, then does ``action``."""
    from tests.rawserver import read_request, switching

    async def script(reader, writer) -> None:
        headers = await read_request(reader)
        writer.write(switching(headers))
        await writer.drain()
        await reader.read(2)  # the client's first frame has come
        if action == "close":
            writer.write(b"\x88\x08\x03\xeawsgaps")  # Close 1002 "wsgaps"
            await writer.drain()
            await reader.read(100)  # until the client answers or goes
        elif action == "data":
            writer.write(b"\x81\x02hi")
            await writer.drain()
            await asyncio.sleep(5)
        elif action == "open":
            await asyncio.sleep(5)
        # "tcp": return, and raw_server aborts the connection

    return script


@ASYNC
@pytest.mark.parametrize(("action", "how", "as_expected", "said"), [
    ("close", "close", True, "Close 1002"),
    ("tcp", "tcp", False, "TCP ended without a Close"),
    ("data", "data", False, "TEXT frame instead"),
    ("open", "open", False, "still open"),
])
async def test_expect_close_says_how_a_connection_ended(action: str, how: str,
                                                        as_expected: bool, said: str) -> None:
    from gaps.toolkit import expect_close
    from tests.rawserver import raw_server

    async with raw_server(_ending_script(action)) as url:
        client = await WireClient.connect(url, timeout=5)
        try:
            await client.send_text(b"x")
            ending = await expect_close(client, (CloseCode.PROTOCOL_ERROR,), 0.5,
                                        data_decides=True, until_tcp_end=True)
        finally:
            await client.aclose()
    assert (ending.how, ending.as_expected) == (how, as_expected)
    assert said in str(ending)
    if how == "close":
        assert ending.close is not None and ending.close.reason == b"wsgaps"
        assert ending.tcp_ended and client.close_sent  # the Close was answered
    assert ending.evidence()["ending"] == how


@ASYNC
async def test_expect_close_passes_over_data_unless_it_decides() -> None:
    from gaps.toolkit import expect_close
    from tests.rawserver import raw_server

    async with raw_server(_ending_script("data")) as url:
        client = await WireClient.connect(url, timeout=5)
        try:
            await client.send_text(b"x")
            ending = await expect_close(client, (1000,), 0.3)
        finally:
            await client.aclose()
    assert ending.how == "open" and not ending.tcp_ended


@ASYNC
async def test_wait_until_a_condition_a_change_or_the_deadline() -> None:
    from gaps.toolkit import Changes, deadline_in, now, wait_until

    assert await wait_until(lambda: True, deadline_in(0))  # holds already: at once
    started = now()
    assert not await wait_until(lambda: False, deadline_in(0.2))
    assert 0.19 <= now() - started < 1.0
    changes, box = Changes(), []
    loop = asyncio.get_running_loop()
    loop.call_later(0.05, lambda: (box.append(1), changes.notify()))
    started = now()
    assert await wait_until(lambda: box, deadline_in(5), changes, poll=10)
    assert now() - started < 1.0  # woken by the change, not by a poll or the deadline
    moving = [now() + 5]
    loop.call_later(0.05, lambda: moving.__setitem__(0, now()))
    assert not await wait_until(lambda: False, lambda: moving[0])  # a deadline that moves
    with pytest.raises(OSError):
        await wait_until(lambda: (_ for _ in ()).throw(OSError("harness")), deadline_in(1))


@ASYNC
async def test_connect_many_raises_a_harness_error_before_a_wire_error(full) -> None:
    import errno

    from gaps.toolkit import connect_many

    clients = await connect_many(full, "echo", 3, at_once=3)
    assert len(clients) == 3 and all(c.auto_pong for c in clients)
    calls = {"n": 0}
    real = full.connect

    async def flaky(endpoint, **options):
        calls["n"] += 1
        if calls["n"] == 1:
            raise HandshakeFailed("refused by the target")
        if calls["n"] == 2:
            raise OSError(errno.EMFILE, "out of descriptors")
        return await real(endpoint, **options)

    full.connect = flaky
    got: list[WireClient] = []
    try:
        with pytest.raises(OSError) as first:
            await connect_many(full, "echo", 3, into=got)
    finally:
        del full.connect
        for client in clients + got:
            await client.aclose()
    assert first.value.errno == errno.EMFILE and len(got) == 1


# -- the harness's own ceiling -------------------------------------------------------------

def test_harness_ceiling_marks_evidence_and_never_a_verdict() -> None:
    from gaps.probe import HARNESS_BOUND, harness_ceiling

    evidence = {"messages_per_s": 9000.0}
    assert harness_ceiling(evidence, None) is evidence
    assert harness_ceiling(evidence, 0.5) == {**evidence, "harness_cpu_share": 0.5}
    assert harness_ceiling(evidence, HARNESS_BOUND) == {
        **evidence, "harness_cpu_share": HARNESS_BOUND, "harness_bound": True}


@pytest.mark.asyncio(loop_scope="session")
async def test_heavy_load_notes_the_harness_cpu_share_of_the_try() -> None:
    import time

    from gaps.probe import ProbeContext
    from gaps.targets import Instance
    from gaps.toolkit import heavy_load
    from tests.conftest import reference_manifest

    manifest = reference_manifest()
    ctx = ProbeContext(manifest, Instance(manifest))
    async with heavy_load(ctx):
        await asyncio.sleep(0.4)  # the harness idle: a load the target would bound
    assert ctx.harness_cpu is not None and ctx.harness_cpu < 0.5
    async with heavy_load(ctx):
        end = time.monotonic() + 0.4
        while time.monotonic() < end:  # the harness's event loop busy all along
            pass
    assert ctx.harness_cpu is not None and ctx.harness_cpu >= 0.9  # the highest load's
    async with heavy_load(ctx):
        pass  # too short to say anything: not noted, the earlier share stays
    assert ctx.harness_cpu >= 0.9
