"""Helpers for the harness's own tests: reference instances and probe contexts on demand."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio

from gaps.manifest import Manifest
from gaps.probe import ProbeContext
from gaps.targets import resolve, start_instance

ROOT = Path(__file__).resolve().parent.parent


def reference_manifest() -> Manifest:
    return resolve("reference")


@contextlib.asynccontextmanager
async def reference_ctx(*args: str, manifest: Manifest | None = None,
                        time_scale: float = 1.0) -> AsyncIterator[ProbeContext]:
    """A fresh reference server started with extra ``args`` and a probe context on it.

    ``manifest`` replaces the built-in reference manifest (e.g. with other hints).
    """
    manifest = manifest or reference_manifest()
    instance = await start_instance(manifest, time_scale, tuple(args))
    try:
        yield ProbeContext(manifest, instance, time_scale=time_scale, seed=1)
    finally:
        await instance.astop()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def full() -> AsyncIterator[ProbeContext]:
    """One reference server with every capability on and no defect, shared by a module."""
    async with reference_ctx() as ctx:
        yield ctx
