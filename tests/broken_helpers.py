"""A pytest plugin that breaks one helper of ``gaps.testing``, for the testing-utilities
probe's tests (tests/test_probe_testing_utilities.py).

The probe runs the docs' example tests in a pytest subprocess; the tests load this module
there (``-p tests.broken_helpers``, through the probe's ``EXTRA_PLUGINS``) with
``WSGAPS_BROKEN_HELPER`` naming the helper to break, and the probe's check of that helper
must then read ``fail``.  Each break is one a real regression could make:

- ``fixtures``: the clients of the ``wsgaps_client`` fixture send every text reversed (the
  raw-frame client, ``raw_connect``, stays intact);
- ``mock-server``: the mock server's ``Send`` steps send nothing;
- ``raw-client``: ``WireClient.send_frame`` ignores ``fin=False`` (every frame final), so
  a fragmented message can no longer be sent;
- ``hang``: every example test sleeps far longer than the probe waits.
"""

from __future__ import annotations

import os
import time

import pytest

from gaps import testing
from gaps.wire.client import WireClient

BROKEN = os.environ.get("WSGAPS_BROKEN_HELPER", "")


class ReversingClient(WireClient):
    async def send_text(self, text: str | bytes) -> None:
        await super().send_text(text[::-1])


def _break() -> None:
    if BROKEN == "fixtures":
        # The fixture looks WireClient up in gaps.testing when it opens a client; raw_connect
        # was bound to the real class at import and keeps it.
        testing.WireClient = ReversingClient  # type: ignore[misc]
    elif BROKEN == "mock-server":
        real_play = testing.MockServer._play

        async def play(self: testing.MockServer, step: testing.Step, link: object) -> str:
            if isinstance(step, testing.Send):
                return ""  # "sent", but nothing went out
            return await real_play(self, step, link)  # type: ignore[arg-type]

        testing.MockServer._play = play  # type: ignore[method-assign]
    elif BROKEN == "raw-client":
        real_send_frame = WireClient.send_frame

        async def send_frame(self: WireClient, opcode: int, payload: bytes = b"", *,
                             fin: bool = True, **flags: object) -> None:
            await real_send_frame(self, opcode, payload, fin=True, **flags)  # type: ignore[arg-type]

        WireClient.send_frame = send_frame  # type: ignore[method-assign]
    elif BROKEN:
        assert BROKEN == "hang", f"WSGAPS_BROKEN_HELPER={BROKEN!r}: no such break"


_break()


@pytest.hookimpl(wrapper=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function):  # type: ignore[no-untyped-def]
    if BROKEN == "hang":
        time.sleep(3600)
    return (yield)
