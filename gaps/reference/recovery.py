"""Recovery: an outbound client that dials ``--upstream`` and redials by itself.

Built on websockets' client: ``connect()`` used as an async iterator reconnects on transient
errors (websockets ``asyncio/client.py`` ``connect.__aiter__``), with our own delays passed as
``reconnect_delays``: capped exponential backoff (``--backoff-initial``, ``--backoff-factor``,
``--backoff-max``) with jitter.  Each delay is scaled by a random factor from one of two bands,
0.83-0.85 or 0.97-0.99, either as likely: two capped delays then stay within 20% of each other
(the probe's level-off rule) and growth by x2 stays above x1.2, while two runs' delays at one
index differ by about 14% half the time, so a few attempts tell two runs apart (the probe's
jitter rule wants more than 10%).  A uniform factor over the same range would leave two runs
within 10% of each other at most indices.

After a drop websockets reconnects at once (the iterator resets its delays after a connection
that succeeded).  With ``resume``, the client keeps the ``seq`` of the last feed message it got
(``{"seq", "token", "data"}``, see ``gaps.upstream``) and names it on every reconnect in its
first message, ``{"resume": seq}`` (the manifest's ``endpoints.upstream.resume``).

Without ``recovery`` (``--without recovery``, ``--profile seed``) it dials once and gives up,
like a client without reconnection.  Defects (tests only): ``backoff-fixed`` (the initial
delay every time, no jitter), ``no-redial`` (retries the first dial, but not after a drop),
``tight-loop`` (no delay at all).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import random
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from gaps.reference.config import Config

Delays = Callable[[], Iterator[float]]
BANDS = ((0.83, 0.85), (0.97, 0.99))
OPEN_TIMEOUT = 10.0


def spread(rng: random.Random) -> float:
    low, high = rng.choice(BANDS)
    return rng.uniform(low, high)


def jittered_backoff(initial: float, factor: float, cap: float,
                     rng: random.Random | None = None) -> Delays:
    """websockets ``reconnect_delays``: min(cap, initial x factor^n), each times ``spread``."""
    source = rng or random.Random()

    def delays() -> Generator[float]:
        delay = initial
        while True:
            yield min(cap, delay) * spread(source)
            delay *= factor

    return delays


def delays_for(config: Config) -> Delays:
    # DELIBERATELY DEFECTIVE (tests only): a fixed interval, or none at all.
    if config.defective("tight-loop"):
        return lambda: itertools.repeat(0.0)
    if config.defective("backoff-fixed"):
        return lambda: itertools.repeat(config.backoff_initial)
    return jittered_backoff(config.backoff_initial, config.backoff_factor, config.backoff_max)


@dataclass
class Position:
    """Where the feed stood when the connection ended: the last seq received."""

    seq: int | None = None


async def follow(connection: ClientConnection, config: Config, position: Position) -> None:
    if config.has("resume") and position.seq is not None:
        await connection.send(json.dumps({"resume": position.seq}))
    async for message in connection:
        try:
            data = json.loads(message)
        except ValueError:
            continue
        if isinstance(data, dict) and isinstance(data.get("seq"), int):
            position.seq = data["seq"]


async def outbound(config: Config) -> None:
    """Dial ``config.upstream`` and keep following it (nothing without an upstream)."""
    if not config.upstream:
        return
    position = Position()
    if not config.has("recovery"):
        try:
            async with connect(config.upstream, open_timeout=OPEN_TIMEOUT) as connection:
                print("upstream: connected", flush=True)
                await follow(connection, config, position)
        except (OSError, TimeoutError, InvalidHandshake, ConnectionClosed) as exc:
            print(f"upstream: {type(exc).__name__}; recovery is off, not dialling again",
                  flush=True)
        return
    try:
        async for connection in connect(config.upstream, open_timeout=OPEN_TIMEOUT,
                                        reconnect_delays=delays_for(config)):
            print("upstream: connected", flush=True)
            with contextlib.suppress(ConnectionClosed):
                await follow(connection, config, position)
            print("upstream: connection ended", flush=True)
            if config.defective("no-redial"):
                return
    except InvalidHandshake as exc:  # an error websockets does not retry (a 4xx)
        print(f"upstream: {exc}; not retried", flush=True)
