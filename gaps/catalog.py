"""The gap catalog: the single source of gap titles, priorities, texts and check IDs.

Probes, the result model, expectations and templates all read from here.  Check IDs are
API (``<gap-slug>.<check-name>``): renaming one is a breaking change.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Priority(StrEnum):
    HIGH = "High"
    MEDIUM = "Medium"
    LOW = "Low"


class Kind(StrEnum):
    """What a check's verdict means for its gap."""

    CAPABILITY = "capability"  # decides the gap status
    CONFORMANCE = "conformance"  # RFC 6455 / 7692 finding shown beside the gap
    EVIDENCE = "evidence"  # figures only, no verdict weight


@dataclass(frozen=True)
class CheckSpec:
    id: str
    kind: Kind
    summary: str
    optional: bool = False


@dataclass(frozen=True)
class Gap:
    id: int
    slug: str
    title: str
    priority: Priority
    description: str
    recommended: tuple[str, ...]
    checks: tuple[CheckSpec, ...]


def _c(check_id: str, kind: Kind, summary: str, *, optional: bool = False) -> CheckSpec:
    return CheckSpec(check_id, kind, summary, optional)


C, F, E = Kind.CAPABILITY, Kind.CONFORMANCE, Kind.EVIDENCE

GAPS: tuple[Gap, ...] = (
    Gap(
        1, "heartbeat", "Ping/Pong Heartbeat", Priority.HIGH,
        "The server should detect dead peers on its own by sending Pings and closing "
        "connections whose Pongs stop coming.",
        (
            "Send Pings on a configurable interval",
            "Close a connection whose Pong does not arrive within a configurable timeout",
            "Release the resources of reaped connections",
        ),
        (
            _c("heartbeat.server-pings", C, "an idle connection receives a server Ping"),
            _c("heartbeat.reaps-silent-peer", C,
               "a peer that never answers Pings is closed; one that answers stays open"),
        ),
    ),
    Gap(
        2, "broadcast", "Broadcast and Rooms", Priority.HIGH,
        "Applications need to send one message to many connections, to all of them or to "
        "a named group, without writing the fan-out loop themselves.",
        (
            "A broadcast call that reaches every open connection",
            "Rooms or channels for selective fan-out",
            "Delivery that does not stall on one slow member",
        ),
        (
            _c("broadcast.fan-out", C, "one message reaches every client on the path"),
            _c("broadcast.rooms", C, "room members receive; non-members do not"),
            _c("broadcast.scale", E, "delivery latency at 500 clients"),
        ),
    ),
    Gap(
        3, "message-types", "Message Types", Priority.MEDIUM,
        "Text, binary, empty, large and fragmented messages should all travel intact, and "
        "control frames should follow RFC 6455.",
        (
            "Expose text and binary messages with their types",
            "Reassemble fragmented messages",
            "Answer Pings and Close frames as RFC 6455 requires",
        ),
        (
            _c("message-types.text", C, "multi-byte UTF-8 text echoes back as text"),
            _c("message-types.binary", C, "binary (invalid UTF-8 too) echoes back as binary"),
            _c("message-types.empty", C, "an empty message echoes back"),
            _c("message-types.large", C, "a 1 MiB (or the declared maximum) message echoes back"),
            _c("message-types.fragmented", C, "a 3-fragment message is reassembled"),
            _c("message-types.ping-pong", F, "a Ping gets a Pong with the same payload"),
            _c("message-types.close-handshake", F,
               "a client Close is answered with a Close frame and TCP ends"),
        ),
    ),
    Gap(
        4, "connection-state", "Connection State Management", Priority.MEDIUM,
        "The server should know each connection's state and metadata and shut down "
        "gracefully, telling every client why it goes away.",
        (
            "Track state, connect time, last activity and counters per connection",
            "Close every connection with 1001 or 1012 on shutdown, within a grace period",
            "Offer a way to list and close connections",
        ),
        (
            _c("connection-state.graceful-shutdown", C,
               "SIGTERM sends every client Close 1001/1012 before TCP ends"),
            _c("connection-state.introspection", C,
               "the connections endpoint lists the probe's connections with true metadata"),
            _c("connection-state.close-reason", F,
               "every server Close has a valid code and a UTF-8 reason of at most 123 bytes"),
        ),
    ),
    Gap(
        5, "error-handling", "Error Handling", Priority.MEDIUM,
        "Bad handshakes, protocol violations and bad application input should be answered "
        "precisely, without hurting other clients.",
        (
            "Answer bad handshakes with 4xx, never 5xx or silence",
            "Close protocol violations with the RFC 6455 codes",
            "Structured application errors; one client's error never affects another",
        ),
        (
            _c("error-handling.handshake", C, "bad handshakes get 4xx, never 5xx or a hang"),
            _c("error-handling.version-header", F,
               "an unsupported version is answered with Sec-WebSocket-Version"),
            _c("error-handling.app-errors", C, "bad chat input gets a structured error"),
            _c("error-handling.isolation", C, "other clients work after one's protocol error"),
            _c("error-handling.protocol-errors", F, "protocol violations get Close 1002"),
            _c("error-handling.invalid-utf8", F, "invalid UTF-8 text gets Close 1007"),
        ),
    ),
    Gap(
        6, "concurrency", "Concurrency", Priority.LOW,
        "Many clients and many messages at once must not corrupt, reorder or lose data, "
        "and the rules for concurrent use should be documented.",
        (
            "Serialise writes per connection",
            "Document which calls are safe to make concurrently",
            "Show concurrent usage in examples",
        ),
        (
            _c("concurrency.parallel-echo", C, "50 clients x 200 messages echo intact, in order"),
            _c("concurrency.fan-in", C, "10 senders to one receiver, per-sender order kept"),
            _c("concurrency.churn", C,
               "short connections opened, used once and closed at once; the process stays up"),
            _c("concurrency.documented", C, "the stack documents its concurrency rules"),
        ),
    ),
    Gap(
        7, "compression", "Compression (permessage-deflate)", Priority.LOW,
        "Large, repetitive payloads should be compressible on the wire with RFC 7692 "
        "permessage-deflate, negotiated correctly.",
        (
            "Offer permessage-deflate as an upgrader option",
            "Honour the negotiation parameters of RFC 7692",
            "Document the memory and CPU trade-offs",
        ),
        (
            _c("compression.negotiates", C, "permessage-deflate is accepted validly"),
            _c("compression.round-trip", C, "compressed data round-trips and shrinks on the wire"),
            _c("compression.parameters", F, "negotiation parameters follow RFC 7692 7.1"),
            _c("compression.malformed-offer", F, "malformed offers are declined"),
        ),
    ),
    Gap(
        8, "middleware", "Middleware and Hooks", Priority.MEDIUM,
        "Authentication, origin checks and message hooks should plug into the WebSocket "
        "life cycle instead of being rewritten in every handler.",
        (
            "A handshake hook for authentication and origin policy",
            "Per-message hooks for validation and transformation",
            "Composable middleware for rate limiting and logging",
        ),
        (
            _c("middleware.handshake-auth", C,
               "no token and a wrong token are refused with 401/403 before the upgrade; the "
               "right one is accepted"),
            _c("middleware.origin-check", C,
               "a foreign Origin is refused where same-origin is set; the own one is accepted"),
            _c("middleware.origin-default", E,
               "whether an endpoint with nothing configured accepts a foreign Origin"),
            _c("middleware.message-hooks", C, "the stack offers per-message hooks"),
        ),
    ),
    Gap(
        9, "subprotocols", "Subprotocol Negotiation", Priority.LOW,
        "Clients and servers should agree on an application protocol through "
        "Sec-WebSocket-Protocol, and the server must never pick one nobody offered.",
        (
            "Let applications list their supported subprotocols",
            "Select only among the offered ones",
            "Expose the selected subprotocol to handlers",
        ),
        (
            _c("subprotocols.selects-offered", C, "a supported offered protocol is selected"),
            _c("subprotocols.never-unoffered", F, "no handshake gets an unoffered protocol"),
            _c("subprotocols.refuses-bogus", F, "a bogus-only offer is not accepted blindly"),
            _c("subprotocols.no-offer", F, "no offer gets no protocol header"),
        ),
    ),
    Gap(
        10, "limits", "Connection Limits and Rate Limiting", Priority.MEDIUM,
        "A server should protect itself: cap connections, limit message rates and sizes, "
        "and drop handshakes that stall.",
        (
            "A configurable connection cap answered with 503 or Close 1013",
            "Per-connection message rate limits",
            "A maximum message size answered with Close 1009",
        ),
        (
            _c("limits.connection-cap", C, "connections past the cap are refused"),
            _c("limits.message-rate", C, "a burst past the rate limit is refused"),
            _c("limits.max-message-size", C, "an oversized message gets Close 1009"),
            _c("limits.handshake-timeout", E, "time until a stalled handshake is dropped"),
        ),
    ),
    Gap(
        11, "recovery", "Connection Recovery", Priority.HIGH,
        "Outbound WebSocket clients should reconnect on their own, backing off "
        "exponentially with jitter, and optionally resume what was missed.",
        (
            "Retry failed dials and dropped connections automatically",
            "Exponential backoff with a cap and jitter",
            "Hooks to resume a session after reconnecting",
        ),
        (
            _c("recovery.retries-first-dial", C, "the target keeps dialling a refusing upstream"),
            _c("recovery.redials-after-drop", C, "the target reconnects after a drop"),
            _c("recovery.backoff", C, "retry intervals grow and level off at a cap"),
            _c("recovery.jitter", E, "two runs' retry intervals differ"),
            _c("recovery.resume", C, "missed messages are replayed", optional=True),
        ),
    ),
    Gap(
        12, "testing-utilities", "Testing Utilities", Priority.MEDIUM,
        "Developers need test servers, mock peers and helpers to test WebSocket handlers "
        "without hand-rolled scaffolding.",
        (
            "A test server helper and client fixtures",
            "A scriptable mock server",
            "A raw-frame client for protocol-level tests",
        ),
        (
            _c("testing-utilities.fixtures", C, "fixtures for a server under test and clients"),
            _c("testing-utilities.mock-server", C, "a scriptable mock server"),
            _c("testing-utilities.raw-client", C, "a raw-frame client"),
        ),
    ),
    Gap(
        13, "metrics", "Metrics and Monitoring", Priority.MEDIUM,
        "Operators need connection gauges, message counters, error counts and latency "
        "histograms in their monitoring system.",
        (
            "An active-connections gauge",
            "Message sent and received counters",
            "Error counters and a latency histogram",
        ),
        (
            _c("metrics.connections-gauge", C, "a connections gauge moves by exactly K"),
            _c("metrics.message-counters", C, "message counters move by at least M"),
            _c("metrics.errors-and-latency", C, "an error counter and a latency histogram exist"),
        ),
    ),
    Gap(
        14, "documentation", "Documentation and Examples", Priority.MEDIUM,
        "Each capability should be documented with examples; found by a text heuristic, "
        "labelled as such.",
        (
            "Advanced examples: chat, broadcast, rooms",
            "Best practices for heartbeats, limits and shutdown",
            "A troubleshooting guide",
        ),
        (
            _c("documentation.coverage", C, "the docs cover at least 11 of 13 topics"),
        ),
    ),
)

BY_SLUG: dict[str, Gap] = {gap.slug: gap for gap in GAPS}
BY_ID: dict[int, Gap] = {gap.id: gap for gap in GAPS}
CHECKS: dict[str, CheckSpec] = {check.id: check for gap in GAPS for check in gap.checks}

# Other names a hand-written gap analysis gives each gap (``wsgaps audit`` maps headings by
# them).  Matched whole after normalising case, emphasis and punctuation, never by
# similarity: a heading that is none of these, nor the gap's title or slug, is reported as
# unmapped rather than guessed.  A name must not fit two gaps (tests/test_audit.py).
SYNONYMS: dict[str, tuple[str, ...]] = {
    "heartbeat": ("Ping/Pong Heartbeat Mechanism", "Ping/Pong", "Ping Pong", "Heartbeat",
                  "Heartbeats", "Keepalive", "Keep-Alive", "Ping/Pong Heartbeats"),
    "broadcast": ("Broadcast Functionality", "Broadcast", "Broadcasting", "Rooms",
                  "Broadcast and Rooms Support", "Rooms and Channels"),
    "message-types": ("Message Type Support", "Message Types Support", "Message Type",
                      "Binary Messages", "Text and Binary Messages"),
    "connection-state": ("Connection State", "Connection Lifecycle",
                         "Connection Lifecycle Management", "Connection Management",
                         "Graceful Shutdown"),
    "error-handling": ("Error Handling and Logging", "Errors", "Error Handling and Reporting"),
    "concurrency": ("Concurrency Controls", "Concurrency Control", "Concurrency Safety",
                    "Thread Safety", "Concurrent Writes"),
    "compression": ("Compression Support", "Compression", "permessage-deflate",
                    "Per-Message Compression", "Per-Message Deflate", "Message Compression"),
    "middleware": ("Middleware Support", "Middleware", "Middlewares", "Hooks",
                   "WebSocket Middleware", "Interceptors"),
    "subprotocols": ("Subprotocol Support", "Subprotocols", "Subprotocol",
                     "Sub-protocol Support", "Sub-protocols"),
    "limits": ("Connection Limits", "Rate Limiting", "Limits", "Connection Limits and Rate Limits",
               "Rate Limits", "Message Size Limits"),
    "recovery": ("Reconnection", "Automatic Reconnection", "Reconnect", "Connection Recovery "
                 "and Reconnection", "Reconnection and Backoff"),
    "testing-utilities": ("Testing", "Test Utilities", "Testing Helpers", "Testing Support",
                          "Test Helpers"),
    "metrics": ("Metrics", "Monitoring", "Observability", "Metrics and Observability"),
    "documentation": ("Documentation", "Examples", "Docs", "Documentation and Example",
                      "Docs and Examples"),
}
assert set(SYNONYMS) <= set(BY_SLUG)


# The capability vocabulary: the names a manifest may declare ``absent`` and a check may
# depend on (``@check(absent=...)``), each with the gap it belongs to.  One list for all
# fourteen gaps, so that a typo in a manifest is a one-line error, not a silent no-op.
CAPABILITIES: dict[str, tuple[str, str]] = {
    "heartbeat": ("heartbeat", "server Pings and reaping of silent peers"),
    "broadcast": ("broadcast", "one message to every connection, by the stack"),
    "rooms": ("broadcast", "fan-out to a named group of connections"),
    "binary": ("message-types", "binary messages"),
    "fragmentation": ("message-types", "fragmented messages"),
    "graceful-shutdown": ("connection-state", "Close to every client on shutdown"),
    "introspection": ("connection-state", "a list of connections with state and metadata"),
    "app-errors": ("error-handling", "a handler error model answering bad input"),
    "compression": ("compression", "permessage-deflate (RFC 7692)"),
    "handshake-auth": ("middleware", "authentication in the opening handshake"),
    "origin-check": ("middleware", "refusal of foreign Origins"),
    "message-hooks": ("middleware", "hooks before and after each message"),
    "subprotocols": ("subprotocols", "subprotocol negotiation"),
    "connection-cap": ("limits", "a cap on concurrent connections"),
    "rate-limit": ("limits", "a per-connection message rate limit"),
    "max-message-size": ("limits", "a maximum message size"),
    "recovery": ("recovery", "an outbound client that reconnects by itself"),
    "resume": ("recovery", "replay of missed messages after a reconnect"),
    "test-fixtures": ("testing-utilities", "helpers that run a server under test and "
                      "give a test WebSocket clients for it"),
    "mock-server": ("testing-utilities", "a WebSocket server a test scripts, for testing a "
                    "client"),
    "raw-client": ("testing-utilities", "a client that sends any frame, for protocol-level "
                   "tests"),
    "testing-utilities": ("testing-utilities", "test fixtures, mock server, raw client"),
    "metrics": ("metrics", "WebSocket metrics in Prometheus form"),
    "documentation": ("documentation", "documentation of the capabilities"),
}
assert all(slug in BY_SLUG for slug, _ in CAPABILITIES.values())
