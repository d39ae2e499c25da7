"""Helpers for testing WebSocket code with pytest: wsgaps's own parts, as a public API.

Loaded by the wsgaps pytest plugin, so its fixtures are there in any pytest run of an
environment where wsgaps is installed (async tests need pytest-asyncio, a wsgaps dependency):

- ``wsgaps_server``: a server under test, started from a manifest (a built-in target name,
  a ``target.toml`` path) or a command with a ``{port}`` placeholder, on a free port, ready
  once a WebSocket handshake succeeds, its output captured, stopped with its whole process
  group.  Name it with ``@pytest.mark.wsgaps_server(...)``, ``--gaps-server`` or the
  ``gaps_server`` ini option.  ``serve`` is the same as an async context manager.
- ``wsgaps_client``: opens clients on wsgaps's recording wire client (``WireClient``),
  answering Pings by default, closed at the end of the test.
- ``wsgaps_mock``: a scriptable mock WebSocket server for testing a client (``MockServer``:
  expect this message, answer that, ping, drop, close with a code, refuse the next N
  handshakes with a status), built on the recovery probe's upstream (``gaps.upstream``).
- The raw-frame client for protocol-level tests, re-exported from ``gaps.wire``:
  ``WireClient.send_frame`` sends any frame (unmasked, reserved bits, bad opcodes),
  ``send_raw`` any bytes, and every frame either way is recorded.

See docs/testing.md for complete example test files.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
import pytest_asyncio

from gaps.manifest import Command, EndpointSpec, Manifest
from gaps.targets import Instance, TargetFailed, TargetSkipped, resolve, run_build, start_instance
from gaps.upstream import Link, Upstream
from gaps.wire import (
    Close,
    CloseCode,
    ClosedError,
    Frame,
    HandshakeFailed,
    HandshakeRefused,
    Message,
    Opcode,
    ReceiveError,
    WireClient,
    WireError,
    encode_frame,
)

__all__ = [
    "Close",
    "CloseCode",
    "ClosedError",
    "Drop",
    "Expect",
    "ExpectClosed",
    "Frame",
    "HandshakeFailed",
    "HandshakeRefused",
    "Message",
    "MockScriptFailed",
    "MockServer",
    "Opcode",
    "Ping",
    "ReceiveError",
    "Refuse",
    "Send",
    "Server",
    "ServerUnavailable",
    "Shut",
    "Step",
    "WireClient",
    "WireError",
    "command_manifest",
    "encode_frame",
    "raw_connect",
    "serve",
    "server_manifest",
]

raw_connect = WireClient.connect
"""Open a raw-frame client: ``await raw_connect(url, auto_pong=False)`` (``WireClient.connect``)."""


# -- a server under test ----------------------------------------------------------------------

class ServerUnavailable(Exception):
    """The server under test could not be built or started; the message says why."""


def command_manifest(command: Sequence[str], *, endpoints: Mapping[str, str] | None = None,
                     name: str = "server-under-test", ready_timeout: float = 30.0,
                     grace: float = 5.0, env: Mapping[str, str] | None = None) -> Manifest:
    """A manifest for a server started by ``command``: its arguments may name ``{port}``
    (a free port on 127.0.0.1) and ``{python}`` (this interpreter).  ``endpoints`` maps
    endpoint names to paths; ``echo`` (default ``/``) is the one the readiness handshake
    dials, so it must accept a WebSocket handshake."""
    if not command:
        raise ValueError("the command is empty")
    paths = {"echo": "/", **(endpoints or {})}
    for endpoint, path in paths.items():
        if not path.startswith("/"):
            raise ValueError(f"endpoint {endpoint}: the path {path!r} must start with /")
    return Manifest(
        name=name, path=None, description=f"started by {' '.join(command)[:200]}",
        start=Command(tuple(command), env=dict(env or {})), grace=grace,
        ready_timeout=ready_timeout,
        endpoints={k: EndpointSpec(k, path=v) for k, v in paths.items()},
    )


def server_manifest(spec: str | Sequence[str] | Manifest, **options: Any) -> Manifest:
    """The manifest of a server under test: a ``Manifest`` as it is; a string as the wsgaps
    CLI reads ``--target`` (a built-in target name, a manifest path, a ws:// URL of a server
    already running); a sequence as a command (``command_manifest``, with ``options``)."""
    if isinstance(spec, Manifest):
        return spec
    if isinstance(spec, str):
        if options:
            raise TypeError(f"options {sorted(options)} apply to a command, not to {spec!r}")
        return resolve(spec)
    return command_manifest(spec, **options)


@dataclass
class Server:
    """A running server under test (``serve``, the ``wsgaps_server`` fixture)."""

    instance: Instance

    @property
    def manifest(self) -> Manifest:
        return self.instance.manifest

    @property
    def port(self) -> int | None:
        """The port it listens on (None for a server given by URL)."""
        return self.instance.ports.get("port")

    def url(self, endpoint: str = "echo", **fields: str) -> str:
        """The URL of ``endpoint``, with ``fields`` filled in (``url("room", room="a")``);
        KeyError naming the known endpoints when it has no such endpoint."""
        if endpoint not in self.manifest.endpoints:
            known = ", ".join(sorted(self.manifest.endpoints))
            raise KeyError(f"{self.manifest.name} has no {endpoint!r} endpoint ({known})")
        return self.instance.url(endpoint, **fields)

    @property
    def urls(self) -> dict[str, str]:
        """Every endpoint whose URL needs no field, by name."""
        found = {}
        for name in self.manifest.endpoints:
            with contextlib.suppress(KeyError):
                found[name] = self.instance.url(name)
        return found

    def logs(self) -> str:
        """What the server wrote to stdout and stderr so far (the last 64 KiB)."""
        return self.instance.logs()

    def exit_status(self) -> int | None:
        """Its exit status if it ended by itself, else None (running, or stopped by us)."""
        return self.instance.exit_status()


@contextlib.asynccontextmanager
async def serve(spec: str | Sequence[str] | Manifest, *, extra_args: Sequence[str] = (),
                time_scale: float = 1.0, **options: Any) -> AsyncIterator[Server]:
    """Build (cached) and start a server under test; stop it with its process group on exit.

    ``spec`` as ``server_manifest`` takes it; ``extra_args`` are added to its start command
    (e.g. ``("--defect", "echo-drops")`` for the reference); ``time_scale`` stretches its
    ready timeout.  ServerUnavailable (with its output) when it cannot be built or never
    gets ready: a handshake on its ``echo`` endpoint is what ready means.
    """
    manifest = server_manifest(spec, **options)
    try:
        await asyncio.to_thread(run_build, manifest, time_scale=time_scale)
        instance = await start_instance(manifest, time_scale, tuple(extra_args))
    except TargetSkipped as exc:
        raise ServerUnavailable(f"{manifest.name}: {exc}") from None
    except TargetFailed as exc:
        logs = f"\n--- its output ---\n{exc.logs[-4000:]}" if exc.logs else ""
        raise ServerUnavailable(f"{manifest.name}: {exc}{logs}") from None
    try:
        yield Server(instance)
    finally:
        await instance.astop()


# -- a scriptable mock server -----------------------------------------------------------------

DEFAULT_STEP_TIMEOUT = 5.0


@dataclass(frozen=True)
class Expect:
    """Wait for the client's next message and compare it: equal to ``message`` (str for a
    Text message, bytes for Binary), or matched by ``match`` (a regular expression that
    must match the whole text)."""

    message: str | bytes | None = None
    match: str | None = None
    timeout: float | None = None

    def __post_init__(self) -> None:
        if (self.message is None) == (self.match is None):
            raise ValueError("Expect takes a message or a match, exactly one")


@dataclass(frozen=True)
class Send:
    """Send ``message`` to the client (str: a Text message, bytes: a Binary message)."""

    message: str | bytes


@dataclass(frozen=True)
class Ping:
    """Send a Ping with ``payload``; with ``expect_pong`` the client must answer it with a
    Pong of the same payload within the timeout."""

    payload: bytes = b"wsgaps-mock"
    expect_pong: bool = True
    timeout: float | None = None


@dataclass(frozen=True)
class Drop:
    """End the TCP connection without a Close frame, as a server that dies does."""


@dataclass(frozen=True)
class Shut:
    """Close the connection with a Close frame: ``code`` and ``reason``; the client gets
    two seconds to answer before TCP ends."""

    code: int = 1000
    reason: str = ""


@dataclass(frozen=True)
class ExpectClosed:
    """Wait for the client to end the connection; with ``code``, its Close frame must carry
    that code."""

    code: int | None = None
    timeout: float | None = None


@dataclass(frozen=True)
class Refuse:
    """Refuse the next ``count`` handshakes: ``status`` is an HTTP status (400 to 599) or
    ``"reset"`` (a TCP reset); the conversation steps after it go to the next accepted
    connection."""

    count: int = 1
    status: int | str = 503


Step = Expect | Send | Ping | Drop | Shut | ExpectClosed | Refuse


class MockScriptFailed(AssertionError):
    """The client did not do what the mock server's script expected."""


@dataclass
class MockServer:
    """A WebSocket server that plays a script against the client under test.

    The steps run in order.  Conversation steps (``Expect``, ``Send``, ``Ping``, ``Drop``,
    ``Shut``, ``ExpectClosed``) run on the current connection; the first one, and the first
    after a ``Drop``, a ``Shut`` or the client's own close, waits for the next connection
    to be accepted.  ``Refuse`` takes effect on the next handshakes.  Use ``async with``;
    ``await mock.done()`` raises ``MockScriptFailed`` saying which step failed and what came
    instead.  Every dial is recorded (``attempts``), with every message (``received``).
    """

    steps: Sequence[Step]
    timeout: float = DEFAULT_STEP_TIMEOUT
    upstream: Upstream = field(default_factory=lambda: Upstream(accept_from=1))
    failure: str | None = None
    steps_done: int = 0
    _runner: asyncio.Task[None] | None = field(default=None, repr=False)
    _leading: int = field(default=0, repr=False)  # opening Refuse steps, applied on entry

    @property
    def url(self) -> str:
        """Where the client under test dials (any path is accepted)."""
        return self.upstream.url

    @property
    def attempts(self) -> list[str]:
        """What became of each dial, in order: "accepted", a status ("503"), "reset"..."""
        return [a.outcome for a in self.upstream.attempts]

    @property
    def links(self) -> list[Link]:
        """The accepted connections, in order (``path``, ``header(name)``, ``messages``)."""
        return self.upstream.links

    @property
    def received(self) -> list[str | bytes]:
        """Every message the client sent, over all connections."""
        return [m for link in self.upstream.links for m in link.messages]

    async def __aenter__(self) -> MockServer:
        await self.upstream.__aenter__()
        # Refusals that open the script apply before the first dial can arrive: the script's
        # task may not have run yet when the client under test dials at once, and the
        # acceptor thread decides each dial's fate as soon as it is accepted.
        while (self._leading < len(self.steps)
               and isinstance(step := self.steps[self._leading], Refuse)):
            self.upstream.refuse_next(step.count, step.status)
            self._leading += 1
        self.steps_done = self._leading
        self._runner = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
        await self.upstream.aclose()

    async def done(self, timeout: float = 30.0) -> None:
        """Wait for the script to end; MockScriptFailed if a step failed or the script was
        not over within ``timeout`` seconds."""
        assert self._runner is not None, "use the mock server as `async with MockServer(...)`"
        try:
            await asyncio.wait_for(asyncio.shield(self._runner), timeout)
        except TimeoutError:
            step = self.steps[self.steps_done] if self.steps_done < len(self.steps) else None
            raise MockScriptFailed(f"the script was not over within {timeout:g} s (waiting at "
                                   f"step {self.steps_done + 1}: {step})") from None
        if self.failure is not None:
            raise MockScriptFailed(self.failure)

    async def _run(self) -> None:
        link: Link | None = None
        used = 0  # connections the script has taken (each is taken once, in order)
        for n, step in enumerate(self.steps, 1):
            if n <= self._leading:
                continue  # applied on entry
            if isinstance(step, Refuse):
                self.upstream.refuse_next(step.count, step.status)
            else:
                if link is None or (link.ended.is_set() and not isinstance(step, ExpectClosed)):
                    deadline = asyncio.get_running_loop().time() + self.timeout
                    link = await self.upstream.wait_link(used + 1, deadline)
                    if link is None:
                        self.failure = (f"step {n} ({step}): no connection was accepted within "
                                        f"{self.timeout:g} s (dials: {self.attempts})")
                        return
                    used += 1
                problem = await self._play(step, link)
                if problem:
                    self.failure = f"step {n} ({step}): {problem}"
                    return
                if isinstance(step, Drop | Shut | ExpectClosed):
                    link = None
            self.steps_done = n

    async def _play(self, step: Step, link: Link) -> str:
        """Play one conversation step on ``link``: "" when it went as scripted, else what
        happened instead."""
        wait = self.timeout
        if isinstance(step, Expect):
            got = await link.next_message(step.timeout or wait)
            if got is None:
                return (f"the client closed the connection instead: {_ending(link)}"
                        if link.closing else f"no message within {step.timeout or wait:g} s")
            if step.message is not None and got != step.message:
                return f"expected {step.message!r}, got {_quote(got)}"
            if step.match is not None and not (isinstance(got, str)
                                               and re.fullmatch(step.match, got)):
                return f"expected a text matching {step.match!r}, got {_quote(got)}"
            return ""
        if isinstance(step, Send):
            sent = await (link.send_text(step.message) if isinstance(step.message, str)
                          else link.send_binary(step.message))
            return "" if sent else f"the connection had ended: {link.how_ended}"
        if isinstance(step, Ping):
            answered = await link.ping(step.payload, step.timeout or wait)
            if step.expect_pong and not answered:
                return (f"the connection had ended: {link.how_ended}" if link.ended.is_set()
                        else f"no Pong within {step.timeout or wait:g} s")
            return ""
        if isinstance(step, Drop):
            link.drop()
            return ""
        if isinstance(step, Shut):
            await link.close(step.code, step.reason)
            return ""
        assert isinstance(step, ExpectClosed)
        if not await link.wait_closing(step.timeout or wait):
            return f"the client did not close the connection within {step.timeout or wait:g} s"
        code = link.protocol.close_rcvd.code if link.protocol.close_rcvd else None
        if step.code is not None and code != step.code:
            return f"expected a Close {step.code}, the connection ended so: {_ending(link)}"
        return ""


def _ending(link: Link) -> str:
    """How the client ended ``link`` (its Close code, or TCP without one)."""
    if link.protocol.close_rcvd is not None:
        return f"Close {link.protocol.close_rcvd.code}"
    return link.how_ended or "TCP close"


def _quote(message: str | bytes, limit: int = 120) -> str:
    shown = repr(message[:limit])
    return shown + (f" ({len(message)} long)" if len(message) > limit else "")


# -- the pytest plugin part --------------------------------------------------------------------

def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("wsgaps-testing", "wsgaps testing helpers (gaps.testing)")
    group.addoption("--gaps-server", default=None, metavar="SPEC",
                    help="the server under test of the wsgaps_server fixture: a built-in "
                         "target name, a manifest path or a ws:// URL")
    parser.addini("gaps_server", "the server under test of the wsgaps_server fixture, where "
                  "no marker names one (as --gaps-server)", default="")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "wsgaps_server(spec, **options): the server under test of the "
                   "wsgaps_server fixture (a target name, a manifest path, a ws:// URL, or a "
                   "command as a list with {port}); options as gaps.testing.serve takes them")


@pytest_asyncio.fixture
async def wsgaps_server(request: pytest.FixtureRequest) -> AsyncIterator[Server]:
    """The server under test, running for the test and stopped after it.

    Named by the ``wsgaps_server`` marker (closest first), else ``--gaps-server``, else the
    ``gaps_server`` ini option.  A server that cannot be built or started fails the test
    with the reason and its output.
    """
    marker = request.node.get_closest_marker("wsgaps_server")
    options: dict[str, Any] = {}
    if marker is not None:
        if len(marker.args) != 1:
            raise pytest.UsageError("@pytest.mark.wsgaps_server takes one spec: a target name, "
                                    "a manifest path, a ws:// URL or a command list")
        spec = marker.args[0]
        options = dict(marker.kwargs)
    else:
        spec = request.config.getoption("gaps_server") or request.config.getini("gaps_server")
    if not spec:
        raise pytest.UsageError("wsgaps_server: no server under test named; use "
                                "@pytest.mark.wsgaps_server(...), --gaps-server or the "
                                "gaps_server ini option")
    try:
        async with serve(spec, **options) as server:
            yield server
    except ServerUnavailable as exc:
        pytest.fail(f"server under test unavailable: {exc}", pytrace=False)


ClientFactory = Callable[..., Awaitable[WireClient]]


@pytest_asyncio.fixture
async def wsgaps_client() -> AsyncIterator[ClientFactory]:
    """Opens clients: ``client = await wsgaps_client(url, **options)``, options as
    ``WireClient.connect`` takes them (``subprotocols``, ``headers``, ``timeout``...).
    They answer Pings unless ``auto_pong=False``; all are aborted after the test."""
    opened: list[WireClient] = []

    async def connect(url: str, **options: Any) -> WireClient:
        options.setdefault("auto_pong", True)
        client = await WireClient.connect(url, **options)
        opened.append(client)
        return client

    yield connect
    for client in opened:
        await client.aclose()


MockFactory = Callable[..., Awaitable[MockServer]]


@pytest_asyncio.fixture
async def wsgaps_mock() -> AsyncIterator[MockFactory]:
    """Starts mock servers: ``mock = await wsgaps_mock(Expect("hi"), Send("hello"))``,
    ``timeout=`` for each step's wait; all are closed after the test."""
    started: list[MockServer] = []

    async def start(*steps: Step, timeout: float = DEFAULT_STEP_TIMEOUT) -> MockServer:
        mock = MockServer(list(steps), timeout)
        await mock.__aenter__()
        started.append(mock)
        return mock

    yield start
    for mock in started:
        await mock.__aexit__(None, None, None)
