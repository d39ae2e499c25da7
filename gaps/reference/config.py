"""Reference server configuration: which capabilities are on, and their timers and sizes."""

from __future__ import annotations

from dataclasses import dataclass, field

CAPABILITIES = ("heartbeat", "app-errors")
PROFILES = ("full", "seed")


@dataclass
class Config:
    port: int
    host: str = "127.0.0.1"
    profile: str = "full"
    without: set[str] = field(default_factory=set)
    ping_interval: float = 1.0
    ping_timeout: float | None = 1.0  # None: Pings are sent but silent peers are never reaped
    max_message_size: int = 8 * 1024 * 1024

    def has(self, capability: str) -> bool:
        if capability not in CAPABILITIES:
            raise KeyError(f"unknown capability {capability!r}")
        return self.profile != "seed" and capability not in self.without
