"""How evidence records bytes a target sent: as text where they are text, else as hex.

Reports show evidence as JSON.  Bytes that are valid UTF-8 are kept as the text they are, so
a reader sees ``ping é`` rather than ``\\xc3\\xa9`` or hex digits; bytes that are not valid
UTF-8 are kept as ``hex:`` followed by their hex digits, never decoded with replacement
characters, which would hide what was on the wire.
"""

from __future__ import annotations

import codecs

HEX_PREFIX = "hex:"


def show_bytes(data: bytes, *, cut: bool = False) -> str:
    """``data`` as evidence text: itself when valid UTF-8, else ``hex:`` and its hex digits.

    ``cut`` says that ``data`` is the head of a longer payload: a multi-byte character broken
    off at its end is then left out instead of making the whole head hex.
    """
    try:
        return codecs.getincrementaldecoder("utf-8")().decode(bytes(data), final=not cut)
    except UnicodeDecodeError:
        return HEX_PREFIX + bytes(data).hex()
