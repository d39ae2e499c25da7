"""The reference server's switches: capabilities, defects and the subprotocol rule."""

from __future__ import annotations

import pytest
from websockets.exceptions import NegotiationError

from gaps.reference.__main__ import parse_args
from gaps.reference.config import DEFECTS, SUBPROTOCOLS, Config
from gaps.reference.defects import other_payload, serve_options
from gaps.reference.subprotocols import select
from gaps.wire.client import WireClient


def test_default_has_every_capability_and_no_defect() -> None:
    config = parse_args(["--port", "1"])
    assert config.has("subprotocols") and config.has("heartbeat")
    assert config.defects == set()
    assert serve_options(config) == {}  # the stock ServerConnection, untouched


def test_seed_profile_keeps_every_capability_off() -> None:
    config = parse_args(["--port", "1", "--profile", "seed"])
    assert not config.has("subprotocols") and not config.has("heartbeat")


def test_defects_are_named_and_validated(capsys: pytest.CaptureFixture[str]) -> None:
    config = parse_args(["--port", "1", "--defect", "pong-payload,close-linger",
                         "--defect", "drop-empty"])
    assert config.defects == {"pong-payload", "close-linger", "drop-empty"}
    options = serve_options(config)
    assert options["create_connection"].defects == {"pong-payload", "close-linger"}
    assert options["close_timeout"] > 10  # lingers past the probe's close wait
    with pytest.raises(SystemExit):
        parse_args(["--port", "1", "--defect", "no-such-defect"])
    assert "unknown defect no-such-defect" in capsys.readouterr().err
    with pytest.raises(KeyError):
        Config(port=1).defective("no-such-defect")
    assert all(isinstance(text, str) and text for text in DEFECTS.values())


def test_subprotocol_rule_is_websockets_default() -> None:
    assert select(["bogus", "wsgaps.v1", "wsgaps.v2"]) == SUBPROTOCOLS[0]
    assert select(["wsgaps.v1"]) == "wsgaps.v1"
    with pytest.raises(NegotiationError, match="missing subprotocol"):
        select([])
    with pytest.raises(NegotiationError, match="invalid subprotocol"):
        select(["bogus"])


@pytest.mark.parametrize("payload", [b"", b"a", bytes(range(125))])
def test_other_payload_always_differs(payload: bytes) -> None:
    altered = other_payload(payload)
    assert altered != payload and len(altered) <= 125


@pytest.mark.asyncio(loop_scope="session")
@pytest.mark.parametrize("profile", ["full", "seed"])
async def test_seed_endpoints_speak_the_seed_formats(profile: str) -> None:
    """/ws answers "Echo: <msg> (sent at <time>)"; /chat acknowledges; bad chat input gets
    the structured error only where app-errors is on (the seed app ignored it)."""
    import json
    import re

    from tests.conftest import reference_ctx

    async with reference_ctx("--profile", profile) as ctx:
        url = ctx.url("echo")
        ws = await WireClient.connect(url.replace("/echo", "/ws"), timeout=5)
        await ws.send_text("Hello WebSocket")
        echoed = (await ws.recv_message(5)).data.decode()
        chat = await WireClient.connect(url.replace("/echo", "/chat"), timeout=5)
        await chat.send_text('{"user":"Alice","message":"Hello!","room":"general"}')
        ack = json.loads((await chat.recv_message(5)).data)
        await chat.send_text("not json")
        await chat.send_text('{"user":"Bob","message":"after","room":"general"}')
        after_bad = json.loads((await chat.recv_message(5)).data)
        await ws.aclose()
        await chat.aclose()
    assert re.fullmatch(r"Echo: Hello WebSocket \(sent at \d{4}-\d\d-\d\dT[\d:]+Z\)", echoed)
    assert ack["status"] == "received" and ack["user"] == "Alice"
    if profile == "full":
        assert after_bad["error"]["code"] == "invalid_json"
    else:
        assert after_bad["user"] == "Bob"  # the bad message got no answer at all
