"""Assembles the reference server: routes contract paths to the capability modules."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from gaps.reference.config import Config
from gaps.reference.defects import serve_options
from gaps.reference.echo import make_echo
from gaps.reference.heartbeat import keepalive_options
from gaps.reference.recovery import outbound
from gaps.reference.seed import make_chat, seed_echo
from gaps.reference.subprotocols import PATH as SUBPROTOCOLS_PATH
from gaps.reference.subprotocols import make_selector

Handler = Callable[[ServerConnection], Awaitable[None]]


def routes(config: Config) -> dict[str, Handler]:
    echo = make_echo(config)
    # /subprotocols is an echo too; only its handshake differs (see subprotocols.py).
    return {"/echo": echo, "/ws": seed_echo, "/chat": make_chat(config),
            SUBPROTOCOLS_PATH: echo}


async def run(config: Config) -> None:
    table = routes(config)

    async def dispatch(connection: ServerConnection) -> None:
        path = connection.request.path.split("?", 1)[0]
        handler = table.get(path)
        if handler is None:
            await connection.close(1008, "no such endpoint")
            return
        # Probes drop connections abruptly on purpose; that is not a server error to log.
        with contextlib.suppress(ConnectionClosed):
            await handler(connection)

    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set_result, None)
    async with serve(
        dispatch, config.host, config.port, max_size=config.max_message_size,
        select_subprotocol=make_selector(config),
        **keepalive_options(config), **serve_options(config),
    ):
        print(f"wsgaps reference listening on ws://{config.host}:{config.port} "
              f"(profile {config.profile}, without {sorted(config.without) or 'nothing'}"
              + (f", DEFECTS {sorted(config.defects)}" if config.defects else "") + ")",
              flush=True)
        client = asyncio.create_task(outbound(config))
        await stop
        client.cancel()
