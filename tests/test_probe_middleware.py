"""The middleware probe (gap 8) against the reference, its switches and defects, and raw
servers: every check shown in both states."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path

import pytest

from gaps.manifest import (
    Declared,
    EndpointSpec,
    Manifest,
    ManifestError,
    load_manifest,
    switch_off,
)
from gaps.model import Method, Verdict
from gaps.probe import ProbeContext
from gaps.targets import Instance
from tests.conftest import reference_ctx, reference_manifest
from tests.rawserver import raw_server, read_request, switching
from wsgaps_probes import middleware

aio = pytest.mark.asyncio(loop_scope="session")

TOKEN = "wsgaps-reference-token"


def with_auth(via: str, token: str = TOKEN, name: str | None = None) -> Manifest:
    """The reference manifest with ``secure``'s token travelling by ``via``."""
    base = reference_manifest()
    names = {"header": "Authorization", "query": "token", "cookie": "token",
             "subprotocol": "wsgaps.auth"}
    value = f"Bearer {token}" if via == "header" else token
    auth = middleware.Auth(value, via, names[via] if name is None else name)
    secure = dataclasses.replace(base.endpoints["secure"], extra={"auth": auth})
    return dataclasses.replace(base, endpoints={**base.endpoints, "secure": secure})


# -- handshake-auth ------------------------------------------------------------------------

@aio
async def test_the_reference_refuses_before_the_upgrade_and_accepts_the_right_token() -> None:
    async with reference_ctx() as ctx:
        result = await middleware.handshake_auth(ctx)
    assert result.verdict is Verdict.PASS, result.summary
    answers = [h["answer"] for h in result.evidence["handshakes"]]
    assert answers == ["HTTP 401", "HTTP 401", "101"]
    evidence = json.dumps(result.evidence)
    assert TOKEN not in evidence and "<the right token>" in evidence  # never in a report


@aio
@pytest.mark.parametrize("args", [("--without", "handshake-auth"),
                                  ("--defect", "auth-any-token")])
async def test_an_accepted_wrong_token_fails(args: tuple[str, ...]) -> None:
    async with reference_ctx(*args) as ctx:
        result = await middleware.handshake_auth(ctx)
    assert result.verdict is Verdict.FAIL
    assert "a wrong token by header 'Authorization': 101: accepted" in result.summary


@aio
async def test_a_refusal_after_the_101_fails_and_says_so() -> None:
    async with reference_ctx("--defect", "refuses-after-upgrade") as ctx:
        auth = await middleware.handshake_auth(ctx)
        origin = await middleware.origin_check(ctx)
    for result in (auth, origin):
        assert result.verdict is Verdict.FAIL
        assert "Close 1008" in result.summary
        assert "the refusal came after the upgrade" in result.summary


@aio
@pytest.mark.parametrize("via", ["query", "cookie", "subprotocol"])
async def test_each_way_a_token_travels(via: str) -> None:
    """The probe sends the token the way the manifest says, and only that way: the reference
    started to take it by ``via`` accepts it, the reference expecting a header does not."""
    manifest = with_auth(via)
    async with reference_ctx("--auth-via", via, manifest=manifest) as ctx:
        right = await middleware.handshake_auth(ctx)
    async with reference_ctx(manifest=manifest) as ctx:  # the reference wants a header
        elsewhere = await middleware.handshake_auth(ctx)
    assert right.verdict is Verdict.PASS, right.summary
    assert right.evidence["via"] == via
    assert elsewhere.verdict is Verdict.FAIL
    assert f"the right token by {via}" in elsewhere.summary
    assert "not accepted" in elsewhere.summary


@aio
async def test_the_token_travels_in_the_request_as_declared() -> None:
    """What each ``via`` puts on the wire, read by a raw server."""
    seen: list[dict[str, str]] = []
    paths: list[str] = []

    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        paths.append(head.split(b" ", 2)[1].decode())
        lines = head.decode("latin-1").split("\r\n")
        seen.append({k.strip().lower(): v.strip() for k, _, v in
                     (line.partition(":") for line in lines[1:]) if k})
        writer.write(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()

    async with raw_server(refuse) as url:
        for via, name in (("header", "X-Token"), ("query", "key"), ("cookie", "sid"),
                          ("subprotocol", "auth.v1")):
            seen.clear()
            paths.clear()
            auth = middleware.Auth("s3cret", via, name)
            ctx = _raw_ctx(url, secure=EndpointSpec("secure", url=url, extra={"auth": auth}))
            result = await middleware.handshake_auth(ctx)
            assert result.verdict is Verdict.FAIL  # the right token was refused too
            right = [(p, h) for p, h in zip(paths, seen, strict=True)
                     if "s3cret" in p or "s3cret" in str(h)]
            assert len(right) == 1, (via, paths, seen)
            path, headers = right[0]
            if via == "header":
                assert headers["x-token"] == "s3cret"
            elif via == "query":
                assert path.endswith("?key=s3cret")
            elif via == "cookie":
                assert headers["cookie"] == "sid=s3cret"
            else:
                assert headers["sec-websocket-protocol"] == "auth.v1, s3cret"
            # the token went no other way: the no-token handshake carries none of them
            bare = [h for p, h in zip(paths, seen, strict=True) if "wsgaps-wrong" not in p
                    and "wsgaps-wrong" not in str(h) and "s3cret" not in p + str(h)]
            assert len(bare) == 1 and "cookie" not in bare[0] and "x-token" not in bare[0]


def _raw_ctx(url: str, **endpoints: EndpointSpec) -> ProbeContext:
    manifest = Manifest(name="raw", path=None, url=url,
                        endpoints={"echo": EndpointSpec("echo", url=url), **endpoints})
    return ProbeContext(manifest, Instance(manifest), seed=1)


@aio
async def test_another_4xx_or_a_dropped_handshake_is_non_strict_a_5xx_fails() -> None:
    async def answer_with(head: bytes | None):
        async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            headers = await read_request(reader)
            if "s3cret" in headers.get("authorization", ""):
                writer.write(switching(headers))
                await writer.drain()
                while data := await reader.read(4096):  # echo one masked text frame back
                    length = data[1] & 0x7F
                    mask, payload = data[2:6], data[6:6 + length]
                    writer.write(bytes([0x81, length]) +
                                 bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
                    await writer.drain()
                return
            if head is not None:
                writer.write(head)
                await writer.drain()

        return script

    verdicts = {}
    for label, head in (("404", b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"),
                        ("drop", None),
                        ("500", b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n")):
        async with raw_server(await answer_with(head)) as url:
            auth = middleware.Auth("Bearer s3cret")
            ctx = _raw_ctx(url, secure=EndpointSpec("secure", url=url, extra={"auth": auth}))
            verdicts[label] = await middleware.handshake_auth(ctx)
    assert verdicts["404"].verdict is Verdict.NON_STRICT, verdicts["404"].summary
    assert verdicts["drop"].verdict is Verdict.NON_STRICT, verdicts["drop"].summary
    assert "refused without an HTTP status" in verdicts["drop"].summary
    assert verdicts["500"].verdict is Verdict.FAIL
    assert "HTTP 500: neither a refusal with a 4xx" in verdicts["500"].summary


@aio
async def test_without_secure_the_absence_decides_or_it_is_skipped() -> None:
    base = reference_manifest()
    endpoints = {k: v for k, v in base.endpoints.items() if k not in ("secure", "origin")}
    silent = dataclasses.replace(base, endpoints=endpoints)
    absent = dataclasses.replace(silent, absent={"handshake-auth": "no hook (docs/x)",
                                                 "origin-check": "no setting (docs/y)"})
    for manifest in (silent, absent):
        ctx = ProbeContext(manifest, Instance(manifest))
        auth = await middleware.handshake_auth(ctx)
        origin = await middleware.origin_check(ctx)
        if manifest is silent:
            assert auth.verdict is origin.verdict is Verdict.SKIP
            assert auth.summary == "target has no secure endpoint"
        else:
            assert auth.verdict is origin.verdict is Verdict.FAIL
            assert auth.method is origin.method is Method.DECLARED
            assert auth.source == "no hook (docs/x)"


# -- origin-check and origin-default -------------------------------------------------------

@aio
async def test_origin_check_and_default_on_the_reference() -> None:
    async with reference_ctx() as ctx:
        check = await middleware.origin_check(ctx)
        default = await middleware.origin_default(ctx)
    assert check.verdict is Verdict.PASS, check.summary
    port = ctx.instance.ports["port"]
    assert check.evidence["own_origin"] == f"http://127.0.0.1:{port}"
    assert [h["answer"] for h in check.evidence["handshakes"]] == ["HTTP 403", "101", "101"]
    assert check.summary.endswith("no Origin at all: 101")
    assert default.verdict is Verdict.PASS and default.evidence["accepted"] is True
    assert "cross-site WebSocket hijacking is possible by default" in default.summary


@aio
@pytest.mark.parametrize("args", [("--without", "origin-check"), ("--defect", "any-origin")])
async def test_a_foreign_origin_accepted_fails(args: tuple[str, ...]) -> None:
    async with reference_ctx(*args) as ctx:
        result = await middleware.origin_check(ctx)
    assert result.verdict is Verdict.FAIL
    assert result.summary.startswith("Origin http://evil.example: 101: accepted")


@aio
async def test_origin_check_needs_the_own_origin_accepted() -> None:
    """A same_origin that is not the endpoint's own: the probe's "own" Origin is then
    refused like a foreign one, and the check fails."""
    base = reference_manifest()
    origin = dataclasses.replace(base.endpoints["origin"],
                                 extra={"same_origin": "http://127.0.0.1:1"})
    manifest = dataclasses.replace(base, endpoints={**base.endpoints, "origin": origin})
    async with reference_ctx(manifest=manifest) as ctx:
        result = await middleware.origin_check(ctx)
    assert result.verdict is Verdict.FAIL
    assert "Origin http://127.0.0.1:1 (its own): HTTP 403: not accepted" in result.summary


@aio
async def test_origin_default_figure_when_echo_refuses_and_when_nothing_answers() -> None:
    base = reference_manifest()
    echo = dataclasses.replace(base.endpoints["echo"], path="/origin")  # a guarded echo
    manifest = dataclasses.replace(base, endpoints={**base.endpoints, "echo": echo})
    async with reference_ctx(manifest=manifest) as ctx:
        refused = await middleware.origin_default(ctx)
    assert refused.verdict is Verdict.PASS and refused.evidence["accepted"] is False
    assert refused.evidence["status"] == 403
    assert "refused on echo with HTTP 403" in refused.summary

    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(30)

    async with raw_server(hang) as url:
        ctx = _raw_ctx(url)
        ctx.time_scale = 0.1
        nothing = await middleware.origin_default(ctx)
    assert nothing.verdict is Verdict.SKIP
    assert "no figure" in nothing.summary and "no answer within 1.0 s" in nothing.summary


# -- message-hooks -------------------------------------------------------------------------

@aio
async def test_message_hooks_are_decided_by_the_manifest() -> None:
    check_id = "middleware.message-hooks"
    base = reference_manifest()

    def ctx_with(declared: Declared | None, absent: str | None = None) -> ProbeContext:
        facts = {k: v for k, v in base.declared.items() if k != check_id}
        if declared is not None:
            facts[check_id] = declared
        manifest = dataclasses.replace(
            base, declared=facts, absent={"message-hooks": absent} if absent else {})
        return ProbeContext(manifest, Instance(manifest))

    reference = await middleware.message_hooks(ProbeContext(base, Instance(base)))
    failing = await middleware.message_hooks(ctx_with(None, absent="on_message only (x.py)"))
    silent = await middleware.message_hooks(ctx_with(None))
    assert (reference.verdict, reference.method) == (Verdict.PASS, Method.DECLARED)
    assert "gaps/reference/middleware.py MessageHooks" in (reference.source or "")
    assert (failing.verdict, failing.method) == (Verdict.FAIL, Method.DECLARED)
    assert failing.source == "on_message only (x.py)"
    assert silent.verdict is Verdict.SKIP and "the manifest declares nothing" in silent.summary


def test_switching_message_hooks_off_replaces_the_declaration() -> None:
    base = reference_manifest()
    off = switch_off(base, {"message-hooks", "heartbeat"}, "switched off with --without x")
    assert "middleware.message-hooks" not in off.declared
    assert off.absent == {"message-hooks": "switched off with --without x"}
    assert switch_off(base, {"heartbeat"}, "x") is base  # no declared fact about it


def test_the_reference_hooks_see_every_message() -> None:
    from gaps.reference.config import Config
    from gaps.reference.middleware import message_hooks

    hooks = message_hooks(Config(port=0))
    assert hooks.sending(hooks.received("abc")) == "abc"
    assert hooks.counts == {"in": 1, "out": 1, "bytes_in": 3, "bytes_out": 3}
    off = message_hooks(Config(port=0, without={"message-hooks"}))
    assert not off.inbound and not off.outbound


# -- manifest ------------------------------------------------------------------------------

def _manifest(tmp_path: Path, endpoints: str) -> Manifest:
    path = tmp_path / "target.toml"
    path.write_text(f'name = "x"\n[start]\ncommand = ["x"]\n[endpoints.echo]\npath = "/e"\n'
                    f"{endpoints}")
    return load_manifest(path)


@pytest.mark.parametrize("endpoints, error", [
    ('[endpoints.secure]\npath = "/s"\n', "endpoints.secure.auth: missing"),
    ('[endpoints.secure]\npath = "/s"\nauth = { token = "t", via = "post" }\n',
     "endpoints.secure.auth.via: must be one of cookie, header, query, subprotocol"),
    ('[endpoints.secure]\npath = "/s"\nauth = { token = "a b", via = "cookie" }\n',
     "endpoints.secure.auth.token: a token sent by cookie cannot hold spaces"),
    ('[endpoints.secure]\npath = "/s"\nauth = { token = "t", name = "Bad Name" }\n',
     "endpoints.secure.auth.name: 'Bad Name' is not an HTTP header name"),
    ('[endpoints.secure]\npath = "/s"\nauth = { token = "" }\n',
     "endpoints.secure.auth.token: must be a non-empty value"),
    ('[endpoints.echo2]\npath = "/s"\n', "endpoints.echo2: unknown endpoint"),
    ('[endpoints.chat]\npath = "/c"\nsame_origin = "http://a"\n',
     "endpoints.chat.same_origin: only the origin endpoint takes it (middleware)"),
    ('[endpoints.origin]\npath = "/o"\nsame_origin = "http://a/path"\n',
     "endpoints.origin.same_origin: 'http://a/path' is not an origin"),
])
def test_the_manifest_reader_validates_middleware_fields(tmp_path: Path, endpoints: str,
                                                         error: str) -> None:
    with pytest.raises(ManifestError, match=error.replace("(", r"\(").replace(")", r"\)")):
        _manifest(tmp_path, endpoints)


def test_token_name_defaults_follow_the_way_it_travels(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path, '[endpoints.secure]\npath = "/s"\n'
                                   'auth = { token = "t", via = "query" }\n'
                                   '[endpoints.origin]\npath = "/o"\n'
                                   'same_origin = "http://127.0.0.1:{port}"\n')
    assert middleware.SECURE_AUTH.value(manifest) == middleware.Auth("t", "query", "token")
    assert middleware.SAME_ORIGIN.value(manifest) == "http://127.0.0.1:{port}"


def test_gaps_without_switches_the_reference_and_its_declaration_off(tmp_path: Path) -> None:
    """End to end: ``--gaps-without handshake-auth,message-hooks`` starts the reference
    without them, and the declared message hooks become a declared absence."""
    import subprocess
    import sys

    from gaps.model import load_results

    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-m", "gaps", "-q", "-p", "no:cacheprovider",
         "--gaps-target", "reference", "--gaps-without", "handshake-auth,message-hooks",
         "-k", "middleware", "--gaps-out", str(tmp_path), "-o", "gaps_reports=false",
         str(root / "probes")],
        cwd=root, capture_output=True, text=True, timeout=300, check=False)
    run = load_results(tmp_path / "reference" / "results.json")
    checks = {c.id: c for gap in run.gaps.values() for c in gap.checks}
    assert checks["middleware.handshake-auth"].verdict is Verdict.FAIL, done.stdout[-2000:]
    hooks = checks["middleware.message-hooks"]
    assert (hooks.verdict, hooks.method) == (Verdict.FAIL, Method.DECLARED)
    assert hooks.source == "switched off with --without handshake-auth,message-hooks"
    assert checks["middleware.origin-check"].verdict is Verdict.PASS
