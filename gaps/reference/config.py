"""Reference server configuration: which capabilities are on, and their timers and sizes.

``defects`` name deliberately defective modes (``gaps.reference.defects``) that the harness's
own tests switch on to show that a check can fail; a normal run has none.
"""

from __future__ import annotations

from dataclasses import dataclass, field

CAPABILITIES = ("heartbeat", "broadcast", "rooms", "app-errors", "subprotocols", "recovery",
                "resume", "handshake-auth", "origin-check", "message-hooks", "shutdown",
                "introspection", "metrics", "compression", "limits", "max-message-size",
                "handshake-timeout", "rate-limit", "connection-cap")
# ``--without limits`` switches off every one of these (gap 10, gaps/reference/limits.py).
LIMITS = ("max-message-size", "handshake-timeout", "rate-limit", "connection-cap")
PROFILES = ("full", "seed")

# Offered on /subprotocols, most preferred first (the target manifest lists the same names).
SUBPROTOCOLS = ("wsgaps.v2", "wsgaps.v1")

# Deliberately defective modes, for tests only; each one makes at least one check fail.
DEFECTS = {
    # message types: the echo endpoints stop being a faithful echo
    "text-unsupported": "text messages are answered with Close 1003, like a binary-only stack",
    "binary-unsupported": "binary messages are answered with Close 1003, like a text-only stack",
    "binary-as-text": "binary messages are echoed in Text frames",
    "drop-empty": "empty messages are not echoed",
    "no-fragments": "a fragmented message is answered with Close 1003",
    # control frames and the closing handshake
    "pong-payload": "Pings are answered with a Pong carrying another payload",
    "no-close-reply": "no Close frame is ever sent; a client Close gets a bare TCP close",
    "close-code-1005": "every Close frame sent carries code 1005 on the wire",
    "close-linger": "after the closing handshake the TCP connection is left open",
    "close-common-codes-only": "a client Close with a code other than 1000 or 1001 gets no "
                               "Close frame back",
    # subprotocol negotiation on /subprotocols
    "unoffered-subprotocol": "any offer gets the preferred protocol, offered or not",
    "echo-any-subprotocol": "the first offered protocol is accepted, supported or not",
    "subprotocol-without-offer": "a handshake without an offer still gets a protocol",
    # error handling: bad handshakes, bad chat input, protocol violations
    "missing-key-500": "an upgrade request without Sec-WebSocket-Key is answered with HTTP 500",
    "no-version-header": "an unsupported Sec-WebSocket-Version is refused without the "
                         "Sec-WebSocket-Version header",
    "null-errors": "bad chat input is answered with the text null",
    "error-closes-others": "a protocol error (1002) or invalid UTF-8 (1007) on one connection "
                           "closes the other established clients of its path with 1011; the "
                           "process stays up",
    "error-exits": "a protocol error (1002) or invalid UTF-8 (1007) on one connection ends the "
                   "process with a crash report on stderr and status 2",
    "error-exits-late": "the same, but LATE_EXIT (0.8 s) after the connection was failed "
                        "and closed, as a crash during clean-up",
    "accept-unmasked": "unmasked client frames are accepted",
    "accept-invalid-utf8": "a Text message whose first frame is not UTF-8 is passed on "
                           "unchecked (it reaches the handler, and comes back, as Binary)",
    # fan-out on /broadcast, /room/{room} and the chat's rooms (gaps.reference.broadcast)
    "broadcast-skips-one": "a broadcast skips the connection that joined first (an "
                           "off-by-one over the audience)",
    "room-leaks": "a room message also goes to the members of every other room",
    # concurrency: order and integrity under load (gaps.reference.echo, .broadcast)
    "echo-reorders": "on the echo endpoints, a message followed by another within 50 ms is "
                     "echoed after it (the two swap places): an echo that reorders under load",
    "fan-in-drops": "the fan-out of /broadcast and /room/{room} passes each message through "
                    "one slot shared by every connection, with a 2 ms yield between filling and "
                    "sending it: when two senders' messages meet, the earlier is lost and the "
                    "later goes out twice",
    "fan-in-reorders": "the fan-out of /broadcast and /room/{room} sends each message from a "
                       "task of its own, every other message of a connection 20 ms later: a "
                       "sender's consecutive messages overtake each other",
    "churn-crashes": "the echo endpoints count their connections, and the CHURN_CRASH_AFTER-th "
                     "(300th) ends the process CHURN_CRASH_DELAY (1 s) later with a crash "
                     "report on stderr and status 2, like GoFr 1.56.6's race on connection "
                     "set-up (a load of 50 clients never gets there)",
    # middleware: the handshake hook of /secure and /origin (gaps.reference.middleware)
    "auth-any-token": "/secure accepts any non-empty token, the wrong one included",
    "any-origin": "/origin accepts every http:// Origin (its check compares the scheme only)",
    "refuses-after-upgrade": "/secure and /origin refuse in the connection handler, with Close "
                             "1008 after the 101, instead of a 401 or 403 before the upgrade",
    # connection state: shutdown and the /connections listing (gaps.reference.state)
    "shutdown-drops": "on SIGTERM every connection's TCP connection is aborted without a "
                      "Close frame before the process exits",
    "shutdown-normal-closure": "on SIGTERM every connection is closed with 1000 instead of 1001",
    "shutdown-ignores-term": "SIGTERM is ignored: the process runs on until the harness's "
                             "SIGKILL after the grace period",
    "connections-keep-closed": "/connections keeps listing connections after they closed "
                               "(state CLOSED)",
    "connections-count-off": "/connections reports one message more each way than were "
                             "received and sent",
    # the metrics endpoint (gaps.reference.metrics)
    "gauge-never-decreases": "the WebSocket connections gauge goes up on every connection and "
                             "never down",
    "counts-twice": "the received and sent message counters count every message twice",
    # permessage-deflate (gaps.reference.compression)
    "window-ignored": "an offered server_max_window_bits is granted, but the server compresses "
                      "with a 32 KiB window anyway",
    "context-kept": "server_no_context_takeover is granted, but the server keeps its "
                    "compression context from message to message",
    "rsv1-uncompressed": "messages under 1 KiB go out uncompressed with RSV1 set anyway",
    "malformed-accepted": "offers a server must decline (unknown or repeated parameter, a "
                          "window out of 8..15, a value on *_no_context_takeover) are accepted",
    # the outbound client (recovery.py)
    "backoff-fixed": "failed dials are retried at a fixed interval, without growth or jitter",
    "no-redial": "failed first dials are retried, but a dropped connection is not redialled",
    "tight-loop": "failed dials are retried at once, without any delay",
    # limits (gaps.reference.limits)
    "size-reads-all": "the message size limit is judged only once a message is complete: "
                      "every byte is read first, and a fragmented message is buffered "
                      "without bound until its last frame",
    "rate-drops-silently": "messages past the rate limit are dropped without a word: no echo, "
                           "no Close",
    "cap-drops-existing": "past the connection cap a new handshake is accepted and the oldest "
                          "connection is closed (Close 1013) to make room, instead of the new "
                          "one being refused",
}


@dataclass
class Config:
    port: int
    host: str = "127.0.0.1"
    profile: str = "full"
    without: set[str] = field(default_factory=set)
    defects: set[str] = field(default_factory=set)
    ping_interval: float = 2.0
    ping_timeout: float | None = 2.0  # None: Pings are sent but silent peers are never reaped
    max_message_size: int = 8 * 1024 * 1024
    upstream: str = ""  # the URL the outbound client dials; empty: no outbound client
    backoff_initial: float = 0.5
    backoff_factor: float = 2.0
    backoff_max: float = 2.0
    auth_via: str = "header"  # how /secure's token travels (gaps.reference.middleware.AUTH)
    handshake_timeout: float = 2.0  # seconds to complete the opening handshake
    rate_limit: float = 500.0  # messages per second per connection on the echo endpoints
    max_connections: int = 600  # WebSocket connections at once, on all paths together

    def has(self, capability: str) -> bool:
        if capability not in CAPABILITIES:
            raise KeyError(f"unknown capability {capability!r}")
        if capability in LIMITS and "limits" in self.without:
            return False
        return self.profile != "seed" and capability not in self.without

    def defective(self, defect: str) -> bool:
        if defect not in DEFECTS:
            raise KeyError(f"unknown defect {defect!r}")
        return defect in self.defects
