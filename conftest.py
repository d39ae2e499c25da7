"""Loads the wsgaps pytest plugin; nothing else lives here."""

pytest_plugins = ["gaps.plugin"]
