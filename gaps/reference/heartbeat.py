"""Heartbeat: the keepalive of ``websockets`` (a Ping every interval, close on Pong timeout)."""

from __future__ import annotations

from typing import Any

from gaps.reference.config import Config


def keepalive_options(config: Config) -> dict[str, Any]:
    """``serve()`` keyword arguments: no Pings without heartbeat; no reaping without a timeout."""
    if not config.has("heartbeat"):
        return {"ping_interval": None, "ping_timeout": None}
    return {"ping_interval": config.ping_interval, "ping_timeout": config.ping_timeout}
