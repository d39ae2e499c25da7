"""``python -m gaps.reference --port N [--without LIST] [--profile seed] [--defect LIST]``.

``--defect`` switches on deliberately defective modes, for the harness's own tests only.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable, Iterable

from gaps.reference.config import CAPABILITIES, DEFECTS, PROFILES, Config
from gaps.reference.middleware import AUTH
from gaps.reference.server import run


def name_list(kind: str, known: Iterable[str]) -> Callable[[str], set[str]]:
    """An argparse type: a comma list of ``kind`` names, each one of ``known``."""
    allowed = list(known)

    def parse(text: str) -> set[str]:
        names = {name.strip() for name in text.split(",") if name.strip()}
        unknown = names - set(allowed)
        if unknown:
            raise argparse.ArgumentTypeError(
                f"unknown {kind} {', '.join(sorted(unknown))} (known: {', '.join(allowed)})")
        return names

    return parse


def parse_args(argv: list[str] | None = None) -> Config:
    parser = argparse.ArgumentParser(prog="python -m gaps.reference", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--profile", choices=PROFILES, default="full",
                        help="seed: the seed document's POC app, every capability off")
    parser.add_argument("--without", type=name_list("capability", CAPABILITIES),
                        action="append", default=[], metavar="LIST",
                        help=f"capabilities to switch off: {', '.join(CAPABILITIES)}")
    parser.add_argument("--defect", type=name_list("defect", DEFECTS),
                        action="append", default=[], metavar="LIST",
                        help="TESTS ONLY: deliberately defective modes: "
                             + "; ".join(f"{k}: {v}" for k, v in DEFECTS.items()))
    parser.add_argument("--ping-interval", type=float, default=2.0, metavar="S")
    parser.add_argument("--ping-timeout", type=float, default=2.0, metavar="S",
                        help="0: send Pings but never close a silent peer")
    parser.add_argument("--max-message-size", type=int, default=8 * 1024 * 1024, metavar="BYTES")
    parser.add_argument("--handshake-timeout", type=float, default=2.0, metavar="S",
                        help="seconds to complete the opening handshake (websockets open_timeout)")
    parser.add_argument("--rate-limit", type=float, default=500.0, metavar="N",
                        help="messages per second per connection on the echo endpoints "
                             "(a token bucket holding as many)")
    parser.add_argument("--max-connections", type=int, default=600, metavar="N",
                        help="WebSocket connections at once, all paths together; a handshake "
                             "past them gets HTTP 503")
    parser.add_argument("--upstream", default="", metavar="URL",
                        help="a WebSocket URL the outbound client dials (recovery); "
                             "empty: no outbound client")
    parser.add_argument("--backoff-initial", type=float, default=0.5, metavar="S")
    parser.add_argument("--backoff-factor", type=float, default=2.0)
    parser.add_argument("--backoff-max", type=float, default=2.0, metavar="S")
    parser.add_argument("--auth-via", choices=AUTH, default="header",
                        help="how /secure's token travels (header: Authorization: Bearer; "
                             "query and cookie: token; subprotocol: wsgaps.auth and the token)")
    args = parser.parse_args(argv)
    return Config(
        port=args.port, host=args.host, profile=args.profile,
        without=set().union(*args.without), defects=set().union(*args.defect),
        ping_interval=args.ping_interval,
        ping_timeout=args.ping_timeout or None, max_message_size=args.max_message_size,
        upstream=args.upstream, backoff_initial=args.backoff_initial,
        backoff_factor=args.backoff_factor, backoff_max=args.backoff_max,
        auth_via=args.auth_via, handshake_timeout=args.handshake_timeout,
        rate_limit=args.rate_limit, max_connections=args.max_connections,
    )


def main(argv: list[str] | None = None) -> None:
    asyncio.run(run(parse_args(argv)))


if __name__ == "__main__":
    main()
