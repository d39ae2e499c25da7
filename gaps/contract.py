"""Message formats of the contract endpoints (DESIGN.md, "Contract endpoints").

The ``chat`` endpoint's format is the harness's contract, not any stack's feature, so the
reference server and the Python adapters share this one definition instead of each writing
its own: in ``{"user","message","room"}``; out an acknowledgement
``{"status":"received","user",...}``; bad input answered with ``{"error":{"code","message"}}``.
"""

from __future__ import annotations

import json
from typing import Any

CHAT_FIELDS = ("user", "message", "room")


def chat_error(message: str | bytes) -> dict[str, Any] | None:
    """The structured error for bad chat input, or None when it is a valid chat message."""
    try:
        data = json.loads(message)
    except (ValueError, UnicodeDecodeError):
        return {"error": {"code": "invalid_json", "message": "message is not valid JSON"}}
    if not isinstance(data, dict):
        return {"error": {"code": "invalid_message", "message": "message must be a JSON object"}}
    missing = [name for name in CHAT_FIELDS if not isinstance(data.get(name), str)]
    if missing:
        return {"error": {"code": "missing_field",
                          "message": f"missing or non-string field(s): {', '.join(missing)}"}}
    return None


def chat_reply(message: str | bytes) -> tuple[dict[str, Any], bool]:
    """What the sender gets back, and whether the input was a valid chat message.

    A valid message is acknowledged with its fields; an invalid one gets the structured error.
    """
    error = chat_error(message)
    if error is not None:
        return error, False
    data = json.loads(message)
    return {"status": "received", **{name: data[name] for name in CHAT_FIELDS}}, True
