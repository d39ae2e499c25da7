"""Each subprotocols check tells both states apart on the reference server.

The passing state is the reference as shipped (websockets' own rule on ``/subprotocols``);
the failing ones switch the capability off or a deliberately defective mode on.  A raw TCP
server stands in for the two handshake answers the reference never gives: a dropped
connection (non-strict) and a 5xx (fail).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator

import pytest

from gaps.manifest import EndpointSpec, Manifest
from gaps.model import Method, Verdict
from gaps.probe import ProbeContext
from gaps.targets import Instance
from tests.conftest import reference_ctx, reference_manifest
from wsgaps_probes import subprotocols

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_selects_offered_on_and_off(full: ProbeContext) -> None:
    on = await subprotocols.selects_offered(full)
    async with reference_ctx("--without", "subprotocols") as ctx:
        off = await subprotocols.selects_offered(ctx)
    async with reference_ctx("--profile", "seed") as ctx:
        seed = await subprotocols.selects_offered(ctx)
    async with reference_ctx("--defect", "echo-any-subprotocol") as ctx:
        blind = await subprotocols.selects_offered(ctx)
    assert on.verdict is Verdict.PASS, on
    assert on.evidence["selected"] == "wsgaps.v2"  # the server's preference, not offer order
    assert on.evidence["offer"][0].startswith("wsgaps-bogus-")
    assert off.verdict is Verdict.FAIL, off
    assert "without selecting a protocol" in off.summary
    assert seed.verdict is Verdict.FAIL, seed
    assert blind.verdict is Verdict.FAIL, blind
    assert "does not support" in blind.summary


async def test_selects_offered_declared_absent_and_skips() -> None:
    base = reference_manifest()
    absent = dataclasses.replace(base, absent={"subprotocols": "example: no subprotocol API"})
    no_endpoint = dataclasses.replace(base, endpoints={
        k: v for k, v in base.endpoints.items() if k != "subprotocols"})
    unlisted = dataclasses.replace(base, endpoints={
        **base.endpoints, "subprotocols": EndpointSpec("subprotocols", path="/subprotocols")})
    absent_no_endpoint = dataclasses.replace(no_endpoint, absent=absent.absent)
    async with reference_ctx(manifest=absent) as ctx:
        contradicted = await subprotocols.selects_offered(ctx)
    async with reference_ctx(manifest=absent_no_endpoint) as ctx:
        declared = await subprotocols.selects_offered(ctx)
    async with reference_ctx(manifest=no_endpoint) as ctx:
        missing = [await check(ctx) for check in (
            subprotocols.selects_offered, subprotocols.never_unoffered,
            subprotocols.refuses_bogus, subprotocols.no_offer)]
    async with reference_ctx(manifest=unlisted) as ctx:
        nothing_to_offer = await subprotocols.selects_offered(ctx)
    assert declared.verdict is Verdict.FAIL and declared.method is Method.DECLARED
    # Observed before declared: with the endpoint there, the wire decides.
    assert contradicted.verdict is Verdict.PASS and contradicted.method is Method.OBSERVED
    assert contradicted.contradiction is not None
    assert all(r.verdict is Verdict.SKIP for r in missing), missing
    assert "no subprotocols endpoint" in missing[0].summary
    assert nothing_to_offer.verdict is Verdict.SKIP, nothing_to_offer


async def test_never_unoffered_on_and_defective(full: ProbeContext) -> None:
    on = await subprotocols.never_unoffered(full)
    async with reference_ctx("--defect", "unoffered-subprotocol") as ctx:
        unoffered = await subprotocols.never_unoffered(ctx)
    async with reference_ctx("--defect", "subprotocol-without-offer") as ctx:
        without_offer = await subprotocols.never_unoffered(ctx)
    async with reference_ctx("--defect", "echo-any-subprotocol") as ctx:
        echo_any = await subprotocols.never_unoffered(ctx)
    assert on.verdict is Verdict.PASS, on
    assert len(on.evidence["handshakes"]) == 6
    assert unoffered.verdict is Verdict.FAIL, unoffered
    assert "[wsgaps.v1] -> 'wsgaps.v2'" in unoffered.summary
    assert without_offer.verdict is Verdict.FAIL, without_offer
    assert "no offer -> 'wsgaps.v2'" in without_offer.summary
    # Echoing the offer back is blind, but never unoffered: refuses-bogus catches it.
    assert echo_any.verdict is Verdict.PASS, echo_any


async def test_refuses_bogus_on_and_defective(full: ProbeContext) -> None:
    on = await subprotocols.refuses_bogus(full)
    async with reference_ctx("--without", "subprotocols") as ctx:
        ignored = await subprotocols.refuses_bogus(ctx)
    async with reference_ctx("--defect", "echo-any-subprotocol") as ctx:
        blind = await subprotocols.refuses_bogus(ctx)
    assert on.verdict is Verdict.PASS, on
    assert "refused with HTTP 400" in on.summary
    assert ignored.verdict is Verdict.PASS, ignored  # 101 without the header
    assert "without a Sec-WebSocket-Protocol header" in ignored.summary
    assert blind.verdict is Verdict.FAIL, blind
    assert "accepted with Sec-WebSocket-Protocol: 'wsgaps-bogus-" in blind.summary


async def test_no_offer_on_and_defective(full: ProbeContext) -> None:
    on = await subprotocols.no_offer(full)
    async with reference_ctx("--defect", "subprotocol-without-offer") as ctx:
        off = await subprotocols.no_offer(ctx)
    assert on.verdict is Verdict.PASS, on
    assert off.verdict is Verdict.FAIL, off
    assert "'wsgaps.v2'" in off.summary


@contextlib.asynccontextmanager
async def raw_server(answer: bytes | None) -> AsyncIterator[ProbeContext]:
    """A TCP server that reads a request head, then writes ``answer`` (None: just closes).

    Its context has only the endpoints the subprotocol checks use, as URLs.
    """

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            if answer is not None:
                writer.write(answer)
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    url = f"ws://127.0.0.1:{port}/subprotocols"
    manifest = Manifest(name="raw", path=None, url=url, endpoints={
        "echo": EndpointSpec("echo", url=url),
        "subprotocols": EndpointSpec("subprotocols", url=url,
                                     extra={"subprotocols": ("wsgaps.v1",)}),
    })
    try:
        async with server:
            yield ProbeContext(manifest, Instance(manifest), seed=1)
    finally:
        server.close()


async def test_dropped_handshake_is_non_strict_and_5xx_fails() -> None:
    async with raw_server(None) as ctx:
        dropped = [await subprotocols.refuses_bogus(ctx), await subprotocols.no_offer(ctx)]
    error = b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n"
    async with raw_server(error) as ctx:
        broken = [await subprotocols.refuses_bogus(ctx), await subprotocols.no_offer(ctx)]
    assert [r.verdict for r in dropped] == [Verdict.NON_STRICT] * 2, dropped
    assert "without an HTTP answer" in dropped[0].summary
    assert [r.verdict for r in broken] == [Verdict.FAIL] * 2, broken
    assert "HTTP 500" in broken[1].summary
