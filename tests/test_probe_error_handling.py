"""Each error-handling check tells both states apart on the reference server.

The passing state is the reference as shipped; the failing ones switch a deliberately
defective mode on (``--defect``) or the ``app-errors`` capability off.  Raw TCP servers
stand in for the answers the reference never gives: a hang, a dropped handshake, another
4xx, a TCP close or another Close code after a violation, and a connection that never
answers (stays open).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import struct
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gaps.manifest import EndpointSpec, Manifest, ManifestError, load_manifest
from gaps.model import Method, Verdict
from gaps.probe import ALONE, ProbeContext
from gaps.reference.defects import Unmasker
from gaps.targets import Instance
from gaps.wire.client import Attempt, Message
from gaps.wire.frames import FrameParser, Opcode, encode_frame
from gaps.wire.handshake import HandshakeResponse
from tests.conftest import reference_ctx, reference_manifest
from tests.rawserver import raw_server, read_request, switching
from wsgaps_probes import error_handling as eh

aio = pytest.mark.asyncio(loop_scope="session")  # sync tests below judge pure functions


# -- handshake and version-header -----------------------------------------------------------


@aio
async def test_handshake_on_and_500(full: ProbeContext) -> None:
    on = await eh.handshake(full)
    async with reference_ctx("--defect", "missing-key-500") as ctx:
        broken = await eh.handshake(ctx)
    assert on.verdict is Verdict.PASS, on
    statuses = {h["name"]: h["status"] for h in on.evidence["handshakes"]}
    assert statuses == {"no-key": 400, "version-99": 400, "post": 405, "plain-get": 426}
    assert all(h["body"] for h in on.evidence["handshakes"])  # the body is evidence too
    assert broken.verdict is Verdict.FAIL, broken
    assert broken.summary.startswith("no Sec-WebSocket-Key -> HTTP 500")


@aio
async def test_version_header_on_and_missing(full: ProbeContext) -> None:
    on = await eh.version_header(full)
    async with reference_ctx("--defect", "no-version-header") as ctx:
        bare = await eh.version_header(ctx)
    assert on.verdict is Verdict.PASS, on
    assert "HTTP 400 and Sec-WebSocket-Version: '13'" in on.summary
    assert bare.verdict is Verdict.FAIL, bare
    assert "without a Sec-WebSocket-Version header" in bare.summary


def _answer(status: int, *headers: tuple[str, str], body: bytes = b"") -> Attempt:
    return Attempt(HandshakeResponse(status, "", list(headers), body))


@pytest.mark.parametrize(("bad", "answer", "verdict"), [
    (0, _answer(400), Verdict.PASS),
    (0, _answer(426), Verdict.NON_STRICT),  # a refusal, but 4.2.1 names 400
    (0, _answer(101), Verdict.FAIL),
    (0, _answer(503), Verdict.FAIL),
    (1, _answer(426), Verdict.PASS),
    (1, _answer(200), Verdict.FAIL),
    (2, _answer(405), Verdict.PASS),
    (3, _answer(404), Verdict.PASS),
    (3, _answer(200), Verdict.PASS),
    (3, _answer(500), Verdict.FAIL),
    (3, Attempt(problem="no answer within 1.0 s", timed_out=True), Verdict.FAIL),
    (0, Attempt(problem="no HTTP answer: reset", dropped=True), Verdict.FAIL),
])
def test_judge_handshake(bad: int, answer: Attempt, verdict: Verdict) -> None:
    got, line = eh.judge_handshake(eh.BAD_HANDSHAKES[bad], answer)
    assert got is verdict, line


def _raw_ctx(url: str, time_scale: float = 1.0, **endpoints: EndpointSpec) -> ProbeContext:
    manifest = Manifest(name="raw", path=None, url=url,
                        endpoints={"echo": EndpointSpec("echo", url=url), **endpoints})
    return ProbeContext(manifest, Instance(manifest), seed=1, time_scale=time_scale)


@aio
async def test_handshake_hang_and_drop_fail() -> None:
    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(30)

    async def drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)

    async with raw_server(hang) as url:
        hung = await eh.handshake(_raw_ctx(url, time_scale=0.1))
    async with raw_server(drop) as url:
        dropped = await eh.handshake(_raw_ctx(url))
        header = await eh.version_header(_raw_ctx(url))
    assert hung.verdict is Verdict.FAIL, hung
    assert "(a hang)" in hung.summary and hung.duration < 5
    assert dropped.verdict is Verdict.FAIL, dropped
    assert "(no HTTP answer)" in dropped.summary
    assert header.verdict is Verdict.FAIL, header


@aio
async def test_another_4xx_for_a_missing_key_is_non_strict() -> None:
    refusal = (b"HTTP/1.1 426 Upgrade Required\r\nSec-WebSocket-Version: 13\r\n"
               b"Content-Length: 0\r\nConnection: close\r\n\r\n")

    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(refusal)
        await writer.drain()

    async with raw_server(refuse) as url:
        result = await eh.handshake(_raw_ctx(url))
        header = await eh.version_header(_raw_ctx(url))
    assert result.verdict is Verdict.NON_STRICT, result
    assert "names 400 Bad Request" in result.summary
    assert header.verdict is Verdict.PASS, header


@aio
@pytest.mark.parametrize(("value", "passes"), [
    ("13", True), ("13, 8", True), ("8, 13", True), ("8", False), ("13, 99", False),
    ("websocket", False), ("", False),
])
async def test_version_header_lists(value: str, passes: bool) -> None:
    refusal = (f"HTTP/1.1 400 Bad Request\r\nSec-WebSocket-Version: {value}\r\n"
               "Content-Length: 0\r\n\r\n").encode()

    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(refusal)
        await writer.drain()

    async with raw_server(refuse) as url:
        result = await eh.version_header(_raw_ctx(url))
    assert (result.verdict is Verdict.PASS) is passes, result


# -- app-errors -----------------------------------------------------------------------------


@aio
async def test_app_errors_on_off_and_null(full: ProbeContext) -> None:
    on = await eh.app_errors(full)
    async with reference_ctx("--without", "app-errors", time_scale=0.2) as ctx:
        silent = await eh.app_errors(ctx)
    async with reference_ctx("--defect", "null-errors") as ctx:
        null = await eh.app_errors(ctx)
    assert on.verdict is Verdict.PASS, on
    assert [c["input"] for c in on.evidence["cases"]] == [
        "invalid JSON", "a message without its message field"]
    assert all('"status": "received"' in c["reply_after"] for c in on.evidence["cases"])
    assert silent.verdict is Verdict.FAIL, silent
    assert "no answer within 2.0 s" in silent.summary
    assert null.verdict is Verdict.FAIL, null
    assert "answered with the text null" in null.summary


@aio
async def test_app_errors_skips_adapter_errors_and_declared_absent() -> None:
    base = reference_manifest()
    chat = base.endpoints["chat"]
    adapter = dataclasses.replace(base, endpoints={
        **base.endpoints,
        "chat": dataclasses.replace(chat, extra={"adapter_errors": "example: shared"})})
    absent = dataclasses.replace(base, absent={"app-errors": "example: no error model"})
    no_chat = dataclasses.replace(base, endpoints={
        k: v for k, v in base.endpoints.items() if k != "chat"})
    absent_no_chat = dataclasses.replace(no_chat, absent=absent.absent)
    async with reference_ctx(manifest=adapter) as ctx:
        skip = await eh.app_errors(ctx)
    async with reference_ctx(manifest=absent) as ctx:
        contradicted = await eh.app_errors(ctx)  # observed before declared
    async with reference_ctx(manifest=absent_no_chat) as ctx:
        declared = await eh.app_errors(ctx)
    async with reference_ctx(manifest=no_chat) as ctx:
        missing = await eh.app_errors(ctx)
    assert skip.verdict is Verdict.SKIP, skip
    assert "would measure wsgaps: example: shared" in skip.summary
    assert declared.verdict is Verdict.FAIL and declared.method is Method.DECLARED
    assert contradicted.verdict is Verdict.PASS and contradicted.contradiction
    assert missing.verdict is Verdict.SKIP and "no chat endpoint" in missing.summary


@aio
async def test_app_errors_uses_the_manifest_error_shape() -> None:
    base = reference_manifest()
    chat = base.endpoints["chat"]
    other = dataclasses.replace(base, endpoints={
        **base.endpoints,
        "chat": dataclasses.replace(chat, extra={"error_shape": ("error.detail",)})})
    own = dataclasses.replace(base, endpoints={
        **base.endpoints,
        "chat": dataclasses.replace(chat, extra={"error_shape": ("error.message",)})})
    async with reference_ctx(manifest=other) as ctx:
        wrong = await eh.app_errors(ctx)
    async with reference_ctx(manifest=own) as ctx:
        right = await eh.app_errors(ctx)
    assert wrong.verdict is Verdict.FAIL, wrong
    assert "answered without error.detail" in wrong.summary
    assert right.verdict is Verdict.PASS and right.evidence["shape_from"] == "manifest"


@pytest.mark.parametrize(("reply", "problem"), [
    (b'{"error": {"code": "bad", "message": "why"}}', ""),
    (b'{"error": {"code": 400, "message": "why"}}', ""),
    (b"null", "the text null"),
    (b"bad input", "not JSON"),
    (b'["error"]', "not an object"),
    (b'{"error": {"code": "bad", "message": ""}}', "without error.message"),
    (b'{"error": "bad"}', "without error.code, error.message"),
    (b'{"status": "received", "user": "x"}', "acknowledged the bad input"),
])
def test_judge_error_reply(reply: bytes, problem: str) -> None:
    got = eh.judge_error_reply(Message(Opcode.TEXT, reply), eh.CONTRACT_ERROR_SHAPE)
    assert (problem in got) if problem else got == "", got


MANIFEST = """
name = "demo"
[start]
command = ["{{python}}", "-m", "gaps.reference", "--port", "{{port}}"]
[endpoints.echo]
path = "/echo"
[endpoints.{endpoint}]
path = "/{endpoint}"
{settings}
"""


def test_manifest_chat_error_settings(tmp_path: Path) -> None:
    path = tmp_path / "target.toml"

    def load(endpoint: str, settings: str) -> Manifest:
        path.write_text(MANIFEST.format(endpoint=endpoint, settings=settings))
        return load_manifest(path)

    def error(endpoint: str, settings: str) -> str:
        with pytest.raises(ManifestError) as info:
            load(endpoint, settings)
        assert "\n" not in str(info.value)
        return str(info.value)

    chat = load("chat", 'error_shape = ["error.message", "error.status_code"]\n'
                        'adapter_errors = "app.py chat uses gaps.contract"')
    assert eh.ERROR_SHAPE.value(chat) == ("error.message", "error.status_code")
    assert eh.ADAPTER_ERRORS.value(chat) == "app.py chat uses gaps.contract"
    assert eh.ERROR_SHAPE.value(load("chat", "")) == ()
    assert "endpoints.chat.error_shape: 'error..x' is not a dotted" in error(
        "chat", 'error_shape = ["error..x"]')
    assert "endpoints.chat.error_shape: must be a list of strings" in error(
        "chat", 'error_shape = "error.message"')
    assert "endpoints.chat.adapter_errors: must say why" in error("chat", 'adapter_errors = " "')
    assert "endpoints.broadcast.adapter_errors: only the chat endpoint takes it " \
           "(error_handling)" in error("broadcast", 'adapter_errors = "x"')


# -- isolation ------------------------------------------------------------------------------


@aio
async def test_isolation_on_and_closing_others(full: ProbeContext) -> None:
    on = await eh.isolation(full)
    async with reference_ctx("--defect", "error-closes-others") as ctx:
        off = await eh.isolation(ctx)
        later = await eh.protocol_errors(ctx)  # the process stayed up
    assert on.verdict is Verdict.PASS, on
    assert len(on.evidence["offenders"]) == len(eh.PROTOCOL_VIOLATIONS + eh.UTF8_VIOLATIONS)
    assert off.verdict is Verdict.FAIL, off
    assert "bystander 0 got Close 1011" in off.summary
    assert later.verdict is Verdict.PASS, later
    assert eh.isolation.placement is ALONE


@aio
async def test_isolation_says_when_the_target_process_ended() -> None:
    async with reference_ctx("--defect", "error-exits") as ctx:
        off = await eh.isolation(ctx)
        logs = ctx.instance.logs()
    assert off.verdict is Verdict.FAIL, off
    assert "the target's process ended (status 2) during the check" in off.summary
    assert off.evidence["exit_status"] == 2
    assert "fatal error: wsgaps reference defect error-exits" in logs


@aio
async def test_isolation_sees_a_crash_that_comes_after_the_offenders_are_gone() -> None:
    """A crash in clean-up, 0.8 s after the offending connection was failed and closed:
    the wait after the offenders (GRACE) and the process's state at the end catch it."""
    async with reference_ctx("--defect", "error-exits-late") as ctx:
        off = await eh.isolation(ctx)
        logs = ctx.instance.logs()
    assert off.verdict is Verdict.FAIL, off
    assert off.summary.startswith("the target's process ended (status 2) during the check")
    assert "fatal error: wsgaps reference defect error-exits-late" in logs
    assert "harness_lag_s" in off.evidence


# -- protocol-errors and invalid-utf8 -------------------------------------------------------


@aio
async def test_protocol_errors_on_and_unmasked_accepted(full: ProbeContext) -> None:
    on = await eh.protocol_errors(full)
    async with reference_ctx("--defect", "accept-unmasked") as ctx:
        off = await eh.protocol_errors(ctx)
    assert on.verdict is Verdict.PASS, on
    subs = on.evidence["violations"]
    assert [s["name"] for s in subs] == [v.name for v in eh.PROTOCOL_VIOLATIONS]
    assert all(s["close_code"] == 1002 and s["verdict"] == "pass" for s in subs), subs
    assert off.verdict is Verdict.FAIL, off
    assert off.summary.startswith("an unmasked Text frame (RFC 6455 5.1) -> carried on: "
                                  "echoed the violation")
    assert [s["verdict"] for s in off.evidence["violations"]] == [
        "fail", "pass", "pass", "pass", "pass"]


def test_unmasker_masks_unmasked_frames_at_any_split() -> None:
    frames = [(Opcode.TEXT, b"short", False), (Opcode.BINARY, bytes(300), True),
              (Opcode.PING, b"", False), (Opcode.TEXT, b"x" * 70000, False)]
    stream = b"".join(encode_frame(op, data, mask=masked) for op, data, masked in frames)
    unmasker = Unmasker()
    rewritten = b"".join(unmasker.feed(stream[i:i + 1]) for i in range(len(stream)))
    parsed = FrameParser(1 << 20).feed(rewritten)
    assert [(f.opcode, f.payload, f.masked) for f in parsed] == [
        (op, data, True) for op, data, _ in frames]


@aio
async def test_invalid_utf8_on_and_accepted(full: ProbeContext) -> None:
    on = await eh.invalid_utf8(full)
    async with reference_ctx("--defect", "accept-invalid-utf8") as ctx:
        off = await eh.invalid_utf8(ctx)
    assert on.verdict is Verdict.PASS, on
    assert [s["close_code"] for s in on.evidence["violations"]] == [1007, 1007]
    assert off.verdict is Verdict.FAIL, off
    assert "carried on: echoed the violation" in off.summary


@contextlib.asynccontextmanager
async def after_101(answer: bytes | None, *, linger: float = 30.0) -> AsyncIterator[str]:
    """A server that accepts the handshake, then at the first frame writes ``answer`` (None:
    nothing) and closes TCP, or (``linger``) keeps reading without a word."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        headers = await read_request(reader)
        writer.write(switching(headers))
        await writer.drain()
        await reader.read(2)
        if answer is None and linger:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(linger):
                    while await reader.read(4096):
                        pass
            return
        if answer:
            writer.write(answer)
            await writer.drain()

    async with raw_server(script) as url:
        yield url


@aio
async def test_tcp_close_or_another_code_is_non_strict() -> None:
    close_1011 = bytes([0x88, 2]) + struct.pack("!H", 1011)
    async with after_101(b"", linger=0) as url:
        tcp = [await eh.protocol_errors(_raw_ctx(url)), await eh.invalid_utf8(_raw_ctx(url))]
    async with after_101(close_1011) as url:
        other = [await eh.protocol_errors(_raw_ctx(url)), await eh.invalid_utf8(_raw_ctx(url))]
    assert [r.verdict for r in tcp] == [Verdict.NON_STRICT] * 2, tcp
    assert "TCP closed" in tcp[0].summary and "without a Close frame" in tcp[0].summary
    assert [r.verdict for r in other] == [Verdict.NON_STRICT] * 2, other
    assert "Close 1011" in other[0].summary and "not 1002 (PROTOCOL_ERROR)" in other[0].summary
    assert "not 1007 (INVALID_DATA)" in other[1].summary


@aio
async def test_staying_open_fails_after_the_follow_up() -> None:
    async with after_101(None) as url:
        result = await eh.protocol_errors(_raw_ctx(url, time_scale=0.1))
    assert result.verdict is Verdict.FAIL, result
    assert "stayed open" in result.summary
    assert "decided after a valid message was sent" in result.summary
    assert result.duration < 5


@aio
async def test_a_lenient_server_carries_on() -> None:
    """A server that echoes every complete Text frame (masked or not) and ignores the rest:
    it echoes the unmasked frame, and answers the follow-up after ignoring the others."""

    async def lenient(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        headers = await read_request(reader)
        writer.write(switching(headers))
        parser = FrameParser(1 << 20)
        while chunk := await reader.read(4096):
            for frame in parser.feed(chunk):
                if frame.opcode == Opcode.TEXT and frame.fin and not frame.rsv2:
                    writer.write(encode_frame(Opcode.TEXT, frame.payload, mask=False))
            await writer.drain()

    async with raw_server(lenient) as url:
        result = await eh.protocol_errors(_raw_ctx(url, time_scale=0.1))
    lines = {s["name"]: s["summary"] for s in result.evidence["violations"]}
    assert result.verdict is Verdict.FAIL, result
    assert "carried on: echoed the violation" in lines["unmasked"]
    assert "carried on: still open, it answered a valid message sent after the wait" in (
        lines["stray-continuation"])
    assert all(s["verdict"] == "fail" for s in result.evidence["violations"])
