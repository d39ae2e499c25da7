"""Bounded quotes of what a target sent (untrusted) for summaries."""

from __future__ import annotations

from gaps.evidence import HEX_PREFIX, show_bytes

SHOWN = 80  # bytes of a target's payload quoted in a summary


def show(data: bytes, limit: int = SHOWN) -> str:
    """A bounded quote of bytes the target sent (untrusted): UTF-8 text as a quoted string,
    anything else as ``hex:`` and its hex digits (``gaps.evidence.show_bytes``)."""
    cut = len(data) > limit
    shown = show_bytes(data[:limit], cut=cut)
    text = shown if shown.startswith(HEX_PREFIX) else repr(shown)
    return text + ("..." if cut else "")


def quote(text: str | None, limit: int = 100) -> str:
    """A bounded quote of a header value or other text the target sent."""
    return "" if text is None else text[:limit]
