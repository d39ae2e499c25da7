"""permessage-deflate on the reference server (gap 7), and its DELIBERATELY DEFECTIVE modes.

On (the default): websockets' own ``ServerPerMessageDeflateFactory`` with the settings
``serve(compression="deflate")`` uses (websockets 17.4 ``extensions/permessage_deflate.py``
``enable_server_permessage_deflate``: server and client windows of 12 bits, memLevel 5),
which negotiates RFC 7692 correctly: unknown or repeated parameters and bad values raise
``NegotiationError``, and the server then declines the extension (``server.py``
``ServerProtocol.process_extensions``).  ``--without compression`` passes
``compression=None``: no extension is ever accepted.

The defects (tests only) change what the factory answers or what the extension writes:

- ``window-ignored``: the answer grants the agreed ``server_max_window_bits`` but the server
  compresses with a 32 KiB window (breaks RFC 7692 7.1.2.1).
- ``context-kept``: the answer grants ``server_no_context_takeover`` but the server keeps
  its compression context from message to message (breaks 7.1.1.1).
- ``rsv1-uncompressed``: a message under ``SMALL`` bytes goes out uncompressed with RSV1
  set anyway (breaks 6.1: RSV1 marks a compressed message).
- ``malformed-accepted``: an offer a server must decline (an unknown or repeated parameter,
  a value out of 8..15, a value on a ``*_no_context_takeover``) is accepted with what
  remains of it once cleaned (breaks 7.1).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from websockets.extensions.base import Extension
from websockets.extensions.permessage_deflate import (
    PerMessageDeflate,
    ServerPerMessageDeflateFactory,
)
from websockets.frames import CTRL_OPCODES, Frame, Opcode
from websockets.typing import ExtensionParameter

from gaps.reference.config import Config

DEFECTS = ("window-ignored", "context-kept", "rsv1-uncompressed", "malformed-accepted")
SMALL = 1024  # rsv1-uncompressed: messages below this many bytes go out plain, with RSV1
KNOWN = ("server_no_context_takeover", "client_no_context_takeover",
         "server_max_window_bits", "client_max_window_bits")


def _cleaned(params: Sequence[ExtensionParameter]) -> list[ExtensionParameter]:
    """malformed-accepted: the parameters of an offer with whatever makes it one a server
    must decline removed (unknown names, repeats, bad values), so websockets accepts it."""
    kept: dict[str, str | None] = {}
    for name, value in params:
        if name not in KNOWN or name in kept:
            continue
        if name.endswith("no_context_takeover"):
            kept[name] = None
        elif value in {str(n) for n in range(8, 16)} or (
                value is None and name == "client_max_window_bits"):
            kept[name] = value
    return list(kept.items())


class DefectivePerMessageDeflate(PerMessageDeflate):
    """DELIBERATELY DEFECTIVE (tests only): writes frames as the active defects say."""

    defects: frozenset[str] = frozenset()

    def encode(self, frame: Frame) -> Frame:
        if ("rsv1-uncompressed" in self.defects and frame.opcode not in CTRL_OPCODES
                and frame.opcode is not Opcode.CONT and frame.fin and len(frame.data) < SMALL):
            return Frame(frame.opcode, frame.data, frame.fin, True, frame.rsv2, frame.rsv3)
        return super().encode(frame)


class ReferenceDeflateFactory(ServerPerMessageDeflateFactory):
    """websockets' factory with the reference's settings, and the defects switched on."""

    def __init__(self, defects: frozenset[str]) -> None:
        super().__init__(server_max_window_bits=12, client_max_window_bits=12,
                         compress_settings={"memLevel": 5})
        self.defects = defects

    def process_request_params(
        self, params: Sequence[ExtensionParameter], accepted_extensions: Sequence[Extension],
    ) -> tuple[list[ExtensionParameter], PerMessageDeflate]:
        if "malformed-accepted" in self.defects:
            params = _cleaned(params)
        answer, extension = super().process_request_params(params, accepted_extensions)
        if not self.defects:
            return answer, extension
        defective = DefectivePerMessageDeflate(
            extension.remote_no_context_takeover,
            extension.local_no_context_takeover and "context-kept" not in self.defects,
            extension.remote_max_window_bits,
            15 if "window-ignored" in self.defects else extension.local_max_window_bits,
            self.compress_settings,
        )
        defective.defects = self.defects
        return answer, defective


def compression_options(config: Config) -> dict[str, Any]:
    """``serve()`` keyword arguments: websockets' deflate, a defective one, or none."""
    if not config.has("compression"):
        return {"compression": None}
    active = frozenset(d for d in DEFECTS if config.defective(d))
    if not active:
        return {"compression": "deflate"}
    return {"compression": None, "extensions": [ReferenceDeflateFactory(active)]}

