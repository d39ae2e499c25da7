"""Assembles the reference server: routes contract paths to the capability modules."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from gaps.reference.broadcast import BROADCAST_PATH, Fanout, room_name
from gaps.reference.compression import compression_options
from gaps.reference.config import Config
from gaps.reference.defects import serve_options
from gaps.reference.echo import make_echo
from gaps.reference.errors import handshake_options
from gaps.reference.heartbeat import keepalive_options
from gaps.reference.limits import ConnectionCap, limit_options, rate_limited, size_checked_late
from gaps.reference.metrics import Metrics
from gaps.reference.middleware import (
    ORIGIN_PATH,
    SECURE_PATH,
    MessageHooks,
    auth_subprotocol,
    message_hooks,
    process_request,
    refused_late,
)
from gaps.reference.recovery import outbound
from gaps.reference.seed import make_chat, seed_echo
from gaps.reference.state import Registry
from gaps.reference.subprotocols import PATH as SUBPROTOCOLS_PATH
from gaps.reference.subprotocols import make_selector

Handler = Callable[[ServerConnection], Awaitable[None]]


def routes(config: Config, fanout: Fanout, hooks: MessageHooks | None = None) -> dict[str, Handler]:
    echo = rate_limited(config, size_checked_late(config, make_echo(config, hooks)))
    # /subprotocols, /secure and /origin are echoes too; only their handshakes differ (see
    # subprotocols.py and middleware.py).
    return {"/echo": echo, "/ws": seed_echo, "/chat": make_chat(config, fanout),
            SUBPROTOCOLS_PATH: echo, BROADCAST_PATH: fanout.broadcast_endpoint,
            SECURE_PATH: echo, ORIGIN_PATH: echo}


def route(table: dict[str, Handler], fanout: Fanout, path: str) -> Handler | None:
    """The handler for ``path``: an exact route, or ``/room/{room}``."""
    if path in table:
        return table[path]
    room = room_name(path)
    if room is None:
        return None

    async def in_room(connection: ServerConnection) -> None:
        await fanout.room_endpoint(connection, room)

    return in_room


def handshake_hooks(config: Config, registry: Registry | None = None,
                    metrics: Metrics | None = None,
                    cap: ConnectionCap | None = None) -> dict[str, Any]:
    """``serve()``'s handshake options: the error-handling ones (``errors.py``) and, before
    the upgrade, the metrics page and request count (``metrics.py``), the middleware's
    refusals (``middleware.py``) and last the connection cap (``limits.py``: only a
    handshake nothing else refused takes a place) in one ``process_request``; the
    subprotocol selection of ``/subprotocols`` and of ``/secure``'s token protocol."""
    options = handshake_options(config)
    errors_hook = options.get("process_request")
    middleware_hook = process_request(config)
    answered = options["process_response"]
    started: dict[int, float] = {}  # handshake start by connection id, for its duration

    def both(connection: ServerConnection, request: Request) -> Response | None:
        if metrics is not None:
            started[id(connection)] = time.monotonic()
            if page := metrics.request(connection, request):
                return page
        if registry is not None and (listing := registry.answer(request)):
            return listing
        if errors_hook is not None and (answer := errors_hook(connection, request)):
            return answer
        if answer := middleware_hook(connection, request):
            return answer
        return cap.admit(connection, request) if cap is not None else None

    def timed(connection: ServerConnection, request: Request, response: Response) -> None:
        answered(connection, request, response)
        if metrics is not None and (since := started.pop(id(connection), None)) is not None:
            metrics.handshake_timed(since)

    selector = make_selector(config)

    def select(connection: ServerConnection, offered: Sequence[Subprotocol]) -> Subprotocol | None:
        chosen = auth_subprotocol(config, connection, list(offered))
        return Subprotocol(chosen) if chosen else selector(connection, offered)

    return {**options, "process_request": both, "process_response": timed,
            "select_subprotocol": select}


async def run(config: Config) -> None:
    fanout = Fanout(config)
    hooks = message_hooks(config)
    table = routes(config, fanout, hooks)
    registry = Registry(config)
    metrics = Metrics(config)
    cap = ConnectionCap(config)

    async def dispatch(connection: ServerConnection) -> None:
        try:
            await serve_one(connection)
        finally:
            cap.release(connection)

    async def serve_one(connection: ServerConnection) -> None:
        path = connection.request.path.split("?", 1)[0]
        handler = route(table, fanout, path)
        if handler is None:
            await connection.close(1008, "no such endpoint")
            return
        if await refused_late(config, connection):
            return
        registry.add(connection)
        since = metrics.opened(connection)
        try:
            # Probes drop connections abruptly on purpose; that is not a server error to log.
            with contextlib.suppress(ConnectionClosed):
                await handler(connection)
        finally:
            registry.remove(connection)
            metrics.closed(connection, since)

    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    # Without the shutdown capability SIGTERM keeps its default action: the process dies and
    # the kernel ends every TCP connection without a Close frame.
    signals = (signal.SIGTERM, signal.SIGINT) if config.has("shutdown") else (signal.SIGINT,)
    if config.defective("shutdown-ignores-term"):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # DELIBERATELY DEFECTIVE (tests only)
        signals = (signal.SIGINT,)
    for sig in signals:
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    async with serve(
        dispatch, config.host, config.port, **limit_options(config),
        **keepalive_options(config), **serve_options(config),
        **handshake_hooks(config, registry, metrics, cap), **compression_options(config),
    ) as server:
        off = (f"switched off: {', '.join(sorted(config.without))}" if config.without
               else "every capability on")
        defects = f"; DEFECTS: {', '.join(sorted(config.defects))}" if config.defects else ""
        print(f"wsgaps reference listening on ws://{config.host}:{config.port} "
              f"(profile {config.profile}; {off}{defects})", flush=True)
        client = asyncio.create_task(outbound(config))
        await stop
        client.cancel()
        if config.defective("shutdown-drops"):  # DELIBERATELY DEFECTIVE (tests only)
            for connection in list(server.connections):
                connection.transport.abort()
        elif config.defective("shutdown-normal-closure"):  # DELIBERATELY DEFECTIVE
            await asyncio.gather(*(c.close(1000, "bye") for c in server.connections))
        if hooks.inbound or hooks.outbound:
            print(f"message hooks saw: {hooks.counts}", flush=True)
