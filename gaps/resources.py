"""Finding the folders wsgaps ships beside its ``gaps`` package: ``templates/``, ``targets/``
and ``docs/examples`` (the example tests the testing-utilities probe runs).

All are top-level folders of the project (DESIGN.md's layout).  In a checkout or an
editable install they sit beside the ``gaps`` package; a wheel installs them as data files
under ``<prefix>/share/wsgaps/<folder>``, which the distribution's file list locates for any
install scheme (venv, ``--user``, system).  The checkout's copy wins, so edits show at once.
"""

from __future__ import annotations

import os
import sys
from importlib import metadata
from pathlib import Path

DISTRIBUTION = "wsgaps"
DATA_ROOT = "share/wsgaps"


def _checkout_dir(folder: str, marker: str) -> Path | None:
    root = Path(__file__).resolve().parents[1]
    # pyproject.toml beside the package tells a source tree from site-packages, where an
    # unrelated distribution could have installed a top-level folder of the same name.
    if (root / "pyproject.toml").is_file() and (root / folder / marker).is_file():
        return root / folder
    return None


def _installed_dir(folder: str, marker: str) -> Path | None:
    try:
        files = metadata.distribution(DISTRIBUTION).files or []
    except metadata.PackageNotFoundError:
        return None
    suffix = f"{DATA_ROOT}/{folder}/{marker}"
    for file in files:
        if file.as_posix().endswith(suffix):
            path = Path(str(file.locate())).resolve()
            if path.is_file():
                return path.parents[len(Path(marker).parts) - 1]
    return None


def shipped_dir(folder: str, marker: str) -> Path | None:
    """The shipped ``folder`` (one holding ``marker``, a relative path), or None."""
    return _checkout_dir(folder, marker) or _installed_dir(folder, marker)


def cache_root() -> Path:
    """The per-user cache folder of wsgaps (``WSGAPS_CACHE_DIR`` overrides it): where
    built-in targets are built, never inside an installed package."""
    if override := os.environ.get("WSGAPS_CACHE_DIR"):
        return Path(override)
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "wsgaps"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "wsgaps"
