"""wsgaps adapter for aiohttp's server WebSocket (``aiohttp.web.WebSocketResponse``).

Endpoints: ``/echo`` (every message back, same type), ``/subprotocols`` (the same, with
``WebSocketResponse(protocols=...)``) and ``/chat`` (the seed's chat: acknowledgement and
structured errors).  Keepalive is aiohttp's own ``heartbeat=`` option (off by default); the
pong deadline is aiohttp's fixed ``heartbeat / 2``.  ``web.run_app`` handles SIGTERM itself.

Middleware (gap 8): ``/secure`` is the echo behind a token check made before ``prepare()``
(the handshake is still a plain request then, so raising ``web.HTTPUnauthorized`` answers
401 instead of the 101); ``/origin`` is the echo behind the same short same-origin check
before ``prepare()``, answering 403: aiohttp has no origin setting for WebSocketResponse.

Recovery (gap 11): with ``--upstream URL`` a background task (aiohttp's documented
``cleanup_ctx`` pattern) follows that URL with aiohttp's client, ``ClientSession.ws_connect``,
and reads it to the end.  aiohttp's client has no reconnection, so none is added: a failed
dial or a dropped connection ends the task (a loop written here would be the adapter's
recovery, not aiohttp's).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import ClientError, ClientSession, WSMsgType, web

from gaps.contract import chat_reply  # the contract's chat format, shared

SUBPROTOCOLS = ("wsgaps.v2", "wsgaps.v1")
TOKEN = "wsgaps-aiohttp-token"  # targets/aiohttp/target.toml endpoints.secure.auth

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


Guard = Callable[[web.Request], None]


def token_required(request: web.Request) -> None:
    """Before prepare(): no upgrade without the right bearer token (401)."""
    if request.headers.get("Authorization") != f"Bearer {TOKEN}":
        raise web.HTTPUnauthorized(text="a valid token is required")


def same_origin(request: web.Request) -> None:
    """Before prepare(): an Origin, when sent, must be http:// and the Host (403)."""
    origin = request.headers.get("Origin")
    if origin is not None and origin != f"http://{request.host}":
        raise web.HTTPForbidden(text="cross-origin WebSocket handshakes are refused")


def echo_handler(heartbeat: float, protocols: tuple[str, ...] = (),
                 guard: Guard | None = None) -> Handler:
    async def echo(request: web.Request) -> web.WebSocketResponse:
        if guard is not None:
            guard(request)
        ws = web.WebSocketResponse(heartbeat=heartbeat, protocols=protocols)
        await ws.prepare(request)
        async for msg in ws:
            if msg.type is WSMsgType.TEXT:
                await ws.send_str(msg.data)
            elif msg.type is WSMsgType.BINARY:
                await ws.send_bytes(msg.data)
        return ws

    return echo


def chat_handler(heartbeat: float) -> Handler:
    async def chat(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=heartbeat)
        await ws.prepare(request)
        async for msg in ws:
            if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                reply, _ = chat_reply(msg.data)
                await ws.send_json(reply)
        return ws

    return chat


async def follow_upstream(url: str) -> None:
    """One dial with aiohttp's client, then the connection read to its end."""
    try:
        async with ClientSession() as session, session.ws_connect(url) as ws:
            print("upstream: connected", flush=True)
            async for _msg in ws:
                pass  # an upstream feed; the probe watches the dialling, not the data
        print("upstream: connection ended", flush=True)
    except (ClientError, OSError) as exc:
        print(f"upstream: {type(exc).__name__}: {exc}", flush=True)


def upstream_context(url: str) -> Callable[[web.Application], AsyncIterator[None]]:
    async def context(_app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(follow_upstream(url))
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return context


def make_app(heartbeat: float, upstream: str = "") -> web.Application:
    app = web.Application()
    if upstream:
        app.cleanup_ctx.append(upstream_context(upstream))
    app.router.add_get("/echo", echo_handler(heartbeat))
    app.router.add_get("/subprotocols", echo_handler(heartbeat, SUBPROTOCOLS))
    app.router.add_get("/chat", chat_handler(heartbeat))
    app.router.add_get("/secure", echo_handler(heartbeat, guard=token_required))
    app.router.add_get("/origin", echo_handler(heartbeat, guard=same_origin))
    return app


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--heartbeat", type=float, default=1.0)
    parser.add_argument("--shutdown-timeout", type=float, default=1.0)
    parser.add_argument("--upstream", default="", help="URL the outbound client follows")
    args = parser.parse_args()
    web.run_app(make_app(args.heartbeat, args.upstream), host="127.0.0.1", port=args.port,
                shutdown_timeout=args.shutdown_timeout)
