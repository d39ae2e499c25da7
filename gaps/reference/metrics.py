"""The ``metrics`` contract endpoint: a Prometheus exposition at ``GET /metrics``, on the
WebSocket port (served by ``process_request`` before any upgrade).

With the capability on (the default) it carries the WebSocket families the metrics probe
looks for, kept with ``prometheus_client``'s own registry and writer:

- ``wsgaps_websocket_connections`` (gauge): open WebSocket connections, every path;
- ``wsgaps_websocket_messages_received_total`` / ``..._sent_total`` (counters): data
  messages the handlers read and wrote through the connection (``recv``/``send``);
- ``wsgaps_websocket_errors_total`` (counter, label ``code``): connections the server
  failed with a protocol or data error (its Close frame carried 1002, 1007 or 1009);
- ``wsgaps_websocket_connection_duration_seconds`` (histogram): how long each connection
  was open, observed when it ends.

Two HTTP-only families are always there, also with ``--without metrics``, the way a web
framework's request metrics are: ``wsgaps_http_requests_total`` counts every HTTP request,
the upgrade requests included, and ``wsgaps_http_request_duration_seconds`` times the
handshake answers.  They must never pass a WebSocket check, which is what the reference
without the capability shows.

Deliberately defective modes (tests only, ``--defect``): ``gauge-never-decreases`` (the
gauge goes up on every connection and never down) and ``counts-twice`` (both message
counters count every message twice, as a stack that counts frames and messages both).
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder
from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response

from gaps.reference.config import Config

PATH = "/metrics"
ERROR_CODES = (1002, 1007, 1009)  # a Close the server sent for the peer's fault


class Metrics:
    """The reference's registry and the hooks that keep it."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.on = config.has("metrics")
        self.twice = config.defective("counts-twice")
        self.never_down = config.defective("gauge-never-decreases")
        self.registry = CollectorRegistry(auto_describe=True)
        self.http_requests = Counter(
            "wsgaps_http_requests", "HTTP requests received, WebSocket upgrade requests included",
            ["path"], registry=self.registry)
        self.http_duration = Histogram(
            "wsgaps_http_request_duration_seconds", "Time to answer an HTTP request (for an "
            "upgrade: until the handshake answer)", registry=self.registry)
        if not self.on:
            return
        self.connections = Gauge("wsgaps_websocket_connections",
                                 "Open WebSocket connections", registry=self.registry)
        self.received = Counter("wsgaps_websocket_messages_received",
                                "WebSocket data messages received", registry=self.registry)
        self.sent = Counter("wsgaps_websocket_messages_sent",
                            "WebSocket data messages sent", registry=self.registry)
        self.errors = Counter("wsgaps_websocket_errors",
                              "WebSocket connections failed for a protocol or data error",
                              ["code"], registry=self.registry)
        self.duration = Histogram("wsgaps_websocket_connection_duration_seconds",
                                  "How long WebSocket connections stayed open",
                                  registry=self.registry)

    def request(self, connection: ServerConnection, request: Request) -> Response | None:
        """``process_request``: count the request; answer ``GET /metrics`` with the page."""
        path = request.path.split("?", 1)[0]
        self.http_requests.labels(path=path[:64]).inc()
        if path != PATH:
            return None
        # The format the request asks for (OpenMetrics when a Prometheus server asks first
        # for it), as prometheus_client's own HTTP handler chooses it.
        encoder, content_type = choose_encoder(", ".join(request.headers.get_all("Accept")))
        response = connection.respond(200, encoder(self.registry).decode())
        del response.headers["Content-Type"]
        response.headers["Content-Type"] = content_type
        return response

    def handshake_timed(self, started: float) -> None:
        self.http_duration.observe(time.monotonic() - started)

    def opened(self, connection: ServerConnection) -> float:
        """Start counting ``connection``: the gauge goes up, its messages are counted."""
        if not self.on:
            return time.monotonic()
        self.connections.inc()
        step = 2 if self.twice else 1
        recv, send = connection.recv, connection.send

        async def counted_recv(*args: Any, **kwargs: Any) -> Any:
            message = await recv(*args, **kwargs)
            self.received.inc(step)  # DELIBERATELY DEFECTIVE with counts-twice: 2 (tests only)
            return message

        async def counted_send(message: Any, *args: Any, **kwargs: Any) -> None:
            await send(message, *args, **kwargs)
            if isinstance(message, (str, bytes, bytearray, memoryview)):
                self.sent.inc(step)

        # Instance attributes: ``async for message in connection`` calls ``self.recv()``.
        connection.recv = counted_recv  # type: ignore[method-assign]
        connection.send = counted_send  # type: ignore[method-assign]
        return time.monotonic()

    def closed(self, connection: ServerConnection, since: float) -> None:
        """``connection``'s handler is done: the gauge goes down, errors and time recorded."""
        if not self.on:
            return
        if not self.never_down:  # DELIBERATELY DEFECTIVE with gauge-never-decreases (tests)
            self.connections.dec()
        self.duration.observe(time.monotonic() - since)
        sent = connection.protocol.close_sent
        if sent is not None and sent.code in ERROR_CODES:
            self.errors.labels(code=str(sent.code)).inc()
