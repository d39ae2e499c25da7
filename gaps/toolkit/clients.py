"""Many clients at once."""

from __future__ import annotations

import asyncio
from typing import Any

from gaps.probe import ProbeContext
from gaps.wire.client import WireClient
from gaps.wire.errors import HandshakeFailed


async def connect_many(ctx: ProbeContext, endpoint: str, count: int, *, at_once: int = 1,
                       fields: dict[str, str] | None = None,
                       into: list[WireClient] | None = None, **options: Any) -> list[WireClient]:
    """``count`` clients on ``endpoint`` (``ctx.connect``, so the runner judges and closes
    them), ``at_once`` handshakes at a time; with ``at_once`` 1 they connect in order.

    Every handshake is let end before anything is raised: then the first harness-side error
    (an ``OSError`` such as running out of descriptors: the harness's problem, never the
    target's) before the first ``HandshakeFailed`` (the target's).  ``into`` receives each
    client as it connects, so a caller still has (and closes) those that did when another
    failed.  ``options`` go to ``ctx.connect`` (``auto_pong`` is on unless said otherwise).
    """
    slots = asyncio.Semaphore(at_once)
    options.setdefault("auto_pong", True)

    async def one() -> WireClient:
        async with slots:
            client = await ctx.connect(endpoint, fields=fields, **options)
        if into is not None:
            into.append(client)
        return client

    results = await asyncio.gather(*(one() for _ in range(count)), return_exceptions=True)
    problems = [r for r in results if isinstance(r, BaseException)]
    harness = [p for p in problems if not isinstance(p, HandshakeFailed)]
    if harness or problems:
        raise (harness or problems)[0]
    return [r for r in results if isinstance(r, WireClient)]
