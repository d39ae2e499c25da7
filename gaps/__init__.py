"""wsgaps: probe a WebSocket server for fourteen production capabilities and report the gaps."""

__version__ = "0.1.0"
