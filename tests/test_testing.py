"""gaps.testing: the server under test, the mock server's steps and the plugin wiring.

The complete example suites (docs/examples) run in CI as their own pytest run; these tests
cover what they do not: a server from a command whose children are stopped with it, a
server that never gets ready, every mock step failing as it should, refusals by reset.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gaps import testing
from gaps.testing import (
    Drop,
    Expect,
    ExpectClosed,
    MockScriptFailed,
    MockServer,
    Ping,
    Refuse,
    Send,
    ServerUnavailable,
    Shut,
    WireClient,
    command_manifest,
    serve,
)
from gaps.upstream import Upstream

aio = pytest.mark.asyncio(loop_scope="session")

ROOT = Path(__file__).resolve().parent.parent

# A server that starts a child (a sleeping grandchild process) and serves an echo on /ws.
SERVER = textwrap.dedent("""
    import asyncio, subprocess, sys
    from websockets.asyncio.server import serve
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    print("child", child.pid, flush=True)
    async def echo(ws):
        async for message in ws:
            await ws.send(message)
    async def main():
        async with serve(echo, "127.0.0.1", int(sys.argv[1])):
            print("serving", flush=True)
            await asyncio.Future()
    asyncio.run(main())
""")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purpose: /proc says Z.
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split(") ", 1)[1][0] != "Z"


@aio
async def test_a_server_from_a_command_is_ready_logged_and_stopped_with_its_children(
        tmp_path: Path) -> None:
    script = tmp_path / "server.py"
    script.write_text(SERVER)
    async with serve(["{python}", str(script), "{port}"], endpoints={"echo": "/ws"},
                     grace=1) as server:
        assert server.url() == f"ws://127.0.0.1:{server.port}/ws"
        assert server.urls == {"echo": server.url()}
        async with await WireClient.connect(server.url(), auto_pong=True) as client:
            await client.send_text("hello 1")
            assert (await client.recv_message(timeout=5)).data == b"hello 1"
        for _ in range(50):
            if "serving" in server.logs():
                break
            await asyncio.sleep(0.1)
        assert "serving" in server.logs()
        child = int(server.logs().split("child ", 1)[1].split()[0])
        assert alive(child)
        with pytest.raises(KeyError, match="no 'chat' endpoint"):
            server.url("chat")
    for _ in range(50):
        if not alive(child):
            break
        await asyncio.sleep(0.1)
    assert not alive(child), "the server's child outlived the server"


@aio
async def test_a_server_that_never_gets_ready_is_unavailable_with_its_output() -> None:
    with pytest.raises(ServerUnavailable, match=r"exited with status 3[\s\S]*no server here"):
        async with serve(["{python}", "-c", "import sys; print('no server here'); sys.exit(3)"],
                         ready_timeout=10):
            pass


def test_a_command_manifest_is_checked() -> None:
    with pytest.raises(ValueError, match="empty"):
        command_manifest([])
    with pytest.raises(ValueError, match="must start with /"):
        command_manifest(["x"], endpoints={"echo": "ws"})
    with pytest.raises(TypeError, match="apply to a command"):
        testing.server_manifest("reference", grace=1)


@pytest.mark.parametrize("status", ["200", 399, 600, "fail"])
def test_a_refusal_is_a_4xx_or_5xx_status_or_a_reset(status: object) -> None:
    with pytest.raises(ValueError, match="from 400 to 599 or 'reset'"):
        Upstream().refuse_next(1, status)  # type: ignore[arg-type]


@aio
async def test_refusals_by_reset_then_a_conversation() -> None:
    async with MockServer([Refuse(2, "reset"), Expect(match=r"hi \d+"), Send(b"\x01bin"),
                           Shut(4000, "over")]) as mock:
        for _ in range(2):
            with pytest.raises(testing.WireError):
                await WireClient.connect(mock.url, timeout=2)
        async with await WireClient.connect(mock.url, auto_pong=True) as client:
            await client.send_text("hi 7")
            message = await client.recv_message(timeout=5)
            assert (message.opcode, message.data) == (testing.Opcode.BINARY, b"\x01bin")
            await client.recv(timeout=5)  # the Close frame
            assert client.close_code == 4000
            await client.close(4000)
        await mock.done(5)
    assert mock.attempts == ["reset", "reset", "accepted"]
    assert mock.received == ["hi 7"]


@pytest.mark.parametrize(("steps", "act", "says"), [
    ([Expect("a")], "send b", "expected 'a', got 'b'"),
    ([Expect(match="a+")], "send b", "expected a text matching 'a+', got 'b'"),
    ([Expect("a", timeout=0.3)], "nothing", "no message within 0.3 s"),
    ([Expect("a")], "close", "the client closed the connection instead"),
    ([Ping(b"p", timeout=0.3)], "nothing", "no Pong within 0.3 s"),
    ([ExpectClosed(timeout=0.3)], "nothing", "did not close the connection within 0.3 s"),
    ([ExpectClosed(code=1000)], "close 4001", "expected a Close 1000"),
    ([Drop(), Expect("a")], "nothing", "step 2 (Expect(message='a', match=None, timeout=None))"
                                       ": no connection was accepted within 0.5 s"),
])
@aio
async def test_each_step_fails_saying_what_came_instead(steps: list[testing.Step], act: str,
                                                        says: str) -> None:
    async with MockServer(steps, timeout=0.5) as mock:
        client = await WireClient.connect(mock.url, auto_pong=False)
        if act.startswith("send"):
            await client.send_text(act.split()[1])
        elif act.startswith("close"):
            await client.close(int(act.split()[1]) if " " in act else 1000)
        with pytest.raises(MockScriptFailed, match=re.escape(says)):
            await mock.done(5)
        await client.aclose()


@aio
async def test_a_script_not_over_in_time_says_where_it_waits() -> None:
    async with MockServer([Expect("a", timeout=10)]) as mock:
        with pytest.raises(MockScriptFailed, match=r"not over within 0.2 s .*step 1"):
            await mock.done(0.2)


def test_the_plugin_loads_the_fixtures_and_options() -> None:
    answer = subprocess.run(
        [sys.executable, "-m", "pytest", "--fixtures", "-p", "no:cacheprovider",
         str(ROOT / "docs" / "examples" / "test_client_example.py")],
        capture_output=True, text=True, timeout=120, cwd=ROOT)
    for name in ("wsgaps_server", "wsgaps_client", "wsgaps_mock"):
        assert name in answer.stdout
    helped = subprocess.run([sys.executable, "-m", "pytest", "--help"], capture_output=True,
                            text=True, timeout=120, cwd=ROOT)
    assert "--gaps-server=SPEC" in helped.stdout


def test_a_test_naming_no_server_is_told_how() -> None:
    answer = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         str(ROOT / "docs" / "examples" / "test_server_example.py"), "-k", "is_running"],
        capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert answer.returncode != 0
    assert "no server under test named" in answer.stdout + answer.stderr


@pytest.mark.parametrize("name", ["test_server_example.py", "test_client_example.py"])
def test_the_docs_page_shows_each_example_file_as_it_is(name: str) -> None:
    page = (ROOT / "docs" / "testing.md").read_text()
    example = (ROOT / "docs" / "examples" / name).read_text()
    assert f"```python\n{example}```" in page, f"docs/testing.md's copy of {name} is stale"
