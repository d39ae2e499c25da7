"""Each message-types check tells both states apart on the reference server.

The passing state is the reference as shipped; the failing one switches a capability off
(a small maximum message size) or a deliberately defective mode on (``--defect``).
"""

from __future__ import annotations

import dataclasses

import pytest

from gaps.model import Method, Verdict
from gaps.probe import ProbeContext
from gaps.wire.frames import Close
from tests.conftest import reference_ctx, reference_manifest
from wsgaps_probes import message_types

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_text_echo_and_binary_only_stack(full: ProbeContext) -> None:
    on = await message_types.text(full)
    async with reference_ctx("--defect", "text-unsupported") as ctx:
        off = await message_types.text(ctx)
    assert on.verdict is Verdict.PASS, on
    assert on.evidence["echo_opcode"] == "TEXT"
    assert off.verdict is Verdict.FAIL, off
    assert "Close frame 1003" in off.summary


async def test_binary_echo_binary_as_text_and_text_only_stack(full: ProbeContext) -> None:
    on = await message_types.binary(full)
    async with reference_ctx("--defect", "binary-as-text") as ctx:
        as_text = await message_types.binary(ctx)
    async with reference_ctx("--defect", "binary-unsupported") as ctx:
        refused = await message_types.binary(ctx)
    assert on.verdict is Verdict.PASS, on
    assert as_text.verdict is Verdict.FAIL, as_text
    assert "came back as TEXT, not BINARY" in as_text.summary
    assert refused.verdict is Verdict.FAIL, refused
    assert "Close frame 1003" in refused.summary


async def test_binary_declared_absent_is_still_observed() -> None:
    """Observed before declared: the echo endpoint is there, so the wire decides, and a
    declaration the wire contradicts is a manifest error shown beside the verdict."""
    manifest = dataclasses.replace(reference_manifest(),
                                   absent={"binary": "example: text frames only"})
    async with reference_ctx(manifest=manifest) as ctx:
        result = await message_types.binary(ctx)
        ctx.trust_declarations = True
        trusted = await message_types.binary(ctx)
    assert result.verdict is Verdict.PASS and result.method is Method.OBSERVED
    assert result.declaration == {"verdict": "fail", "source": "example: text frames only",
                                  "summary": "declared absent: binary"}
    assert "but the wire shows pass" in (result.contradiction or "")
    assert result.to_json()["contradiction"] == result.contradiction
    assert trusted.verdict is Verdict.FAIL and trusted.method is Method.DECLARED


async def test_empty_echo_and_dropped(full: ProbeContext) -> None:
    on = await message_types.empty(full)
    async with reference_ctx("--defect", "drop-empty") as ctx:
        off = await message_types.empty(ctx)
    assert on.verdict is Verdict.PASS, on
    assert on.evidence["echo_length"] == 0 and on.evidence["echo_opcode"] == "TEXT"
    assert off.verdict is Verdict.FAIL, off
    assert "not echoed" in off.summary
    assert off.duration < 5.0  # the marker ends the wait; no full echo wait


async def test_large_echo_and_small_maximum(full: ProbeContext) -> None:
    on = await message_types.large(full)
    async with reference_ctx("--max-message-size", "65536") as ctx:
        off = await message_types.large(ctx)
    assert on.verdict is Verdict.PASS, on
    assert on.evidence["size"] == 1024 * 1024
    assert len(on.evidence["sent_sha256"]) == 64 == len(on.evidence["echo_sha256"])  # whole
    assert off.verdict is Verdict.FAIL, off
    assert "Close frame 1009" in off.summary  # websockets: message too big


async def test_large_uses_the_declared_maximum_when_smaller() -> None:
    manifest = reference_manifest()
    manifest = dataclasses.replace(manifest, hints={**manifest.hints,
                                                    "max_message_size": 65536.0})
    async with reference_ctx("--max-message-size", "65536", manifest=manifest) as ctx:
        result = await message_types.large(ctx)
    assert result.verdict is Verdict.PASS, result
    assert result.evidence["size"] == 65536


@pytest.mark.parametrize("declared", [1.0, 65535.0])
async def test_a_declared_maximum_below_64_kib_skips_large_never_passes(
        full: ProbeContext, declared: float) -> None:
    """A hint of 1 byte would make "large" trivial: below the floor the check says so."""
    manifest = dataclasses.replace(full.manifest, hints={**full.manifest.hints,
                                                         "max_message_size": declared})
    result = await message_types.large(ProbeContext(manifest, full.instance, seed=2))
    assert result.verdict is Verdict.SKIP, result
    assert f"max_message_size = {declared:g} bytes, below the 65536" in result.summary
    assert result.evidence["floor"] == 65536


async def test_fragmented_reassembled_and_refused(full: ProbeContext) -> None:
    on = await message_types.fragmented(full)
    async with reference_ctx("--defect", "no-fragments") as ctx:
        off = await message_types.fragmented(ctx)
    assert on.verdict is Verdict.PASS, on
    assert off.verdict is Verdict.FAIL, off
    assert "Close frame 1003" in off.summary


async def test_ping_pong_identical_and_other_payload(full: ProbeContext) -> None:
    on = await message_types.ping_pong(full)
    async with reference_ctx("--defect", "pong-payload") as ctx:
        off = await message_types.ping_pong(ctx)
    assert on.verdict is Verdict.PASS, on
    assert [a["ping_length"] for a in on.evidence["answered"]] == [0, 11, 16, 125]
    assert off.verdict is Verdict.FAIL, off
    assert "another payload" in off.summary and "5.5.3" in off.summary
    assert off.duration < 5.0  # the mismatch grace, not the whole Pong wait


async def test_close_handshake_and_its_defects(full: ProbeContext) -> None:
    on = await message_types.close_handshake(full)
    async with reference_ctx("--defect", "no-close-reply") as ctx:
        no_reply = await message_types.close_handshake(ctx)
    async with reference_ctx("--defect", "close-code-1005") as ctx:
        code_1005 = await message_types.close_handshake(ctx)
    assert on.verdict is Verdict.PASS, on
    assert [t["close_code"] for t in on.evidence["tries"]] == [1000, 4000]
    assert "the same code as sent" in on.summary
    assert no_reply.verdict is Verdict.FAIL, no_reply
    assert "without a Close frame" in no_reply.summary
    assert code_1005.verdict is Verdict.FAIL, code_1005
    assert "code 1005" in code_1005.summary and "7.4.1" in code_1005.summary


async def test_close_handshake_tcp_left_open() -> None:
    # time_scale 0.2: the 10 s close wait becomes 2 s, so the failing state is quick.
    async with reference_ctx("--defect", "close-linger", time_scale=0.2) as ctx:
        result = await message_types.close_handshake(ctx)
    assert result.verdict is Verdict.FAIL, result
    assert "TCP still open 2.0 s" in result.summary
    assert result.evidence["tries"][0]["close_code"] == 1000  # the Close reply was fine


async def test_close_handshake_with_a_private_use_code() -> None:
    async with reference_ctx("--defect", "close-common-codes-only") as ctx:
        result = await message_types.close_handshake(ctx)
    assert result.verdict is Verdict.FAIL, result
    assert "Close 4000 without a Close frame" in result.summary


@pytest.mark.parametrize(("body", "wanted"), [
    (b"", ""),
    (b"\x03\xe8", ""),
    (b"\x03\xe9going away", ""),
    (b"\x0f\xa0private code", ""),
    (b"\x03", "one-byte"),
    (b"\x03\xed", "1005"),
    (b"\x03\xee", "1006"),
    (b"\x03\xf7", "1015"),
    (b"\x03\xe7", "outside"),
    (b"\x13\x88", "outside"),
    (b"\x03\xe8\xff\xfe", "not UTF-8"),
], ids=lambda value: value.hex() if isinstance(value, bytes) else value or "valid")
async def test_close_body_rules(body: bytes, wanted: str) -> None:
    problem = Close.parse(body).problem()
    assert (wanted in problem) if wanted else problem == "", problem
