"""Data files of the wheel: ``templates/``, every built-in target and the docs' example
tests (``docs/examples``, which the testing-utilities probe runs), each folder as it is.

A target is one folder: whatever its ``targets/<name>/`` holds in git (sources, lock files,
dot files, sub-folders such as ``src/``) ships under ``share/wsgaps/targets/<name>/``, with
no line per target or per file type in ``pyproject.toml``.  In a git checkout the files are
the ones git tracks (build outputs and caches left in the folder are not shipped); from an
unpacked sdist, which holds only those files already, every file.  Everything else about
the package is in ``pyproject.toml``.
"""

from __future__ import annotations

import os
import subprocess
from collections import defaultdict
from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).resolve().parent
SHIPPED = ("templates", "targets", "docs/examples")
DATA_ROOT = "share/wsgaps"


def _tracked() -> list[str] | None:
    """The files git tracks under the shipped folders, or None outside a git checkout."""
    if not (ROOT / ".git").exists():
        return None
    try:
        done = subprocess.run(["git", "ls-files", "-z", "--", *SHIPPED], cwd=ROOT,
                              capture_output=True, check=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    return [name for name in done.stdout.decode().split("\0") if name]


def _walked() -> list[str]:
    found = []
    for folder in SHIPPED:
        for base, _dirs, files in os.walk(ROOT / folder):
            found += [(Path(base) / f).relative_to(ROOT).as_posix() for f in files]
    return found


def data_files() -> list[tuple[str, list[str]]]:
    by_dir: dict[str, list[str]] = defaultdict(list)
    names = _tracked()
    for name in sorted(_walked() if names is None else names):
        if (ROOT / name).is_file():  # tracked but deleted in the work tree: not shipped
            by_dir[f"{DATA_ROOT}/{Path(name).parent.as_posix()}"].append(name)
    return sorted(by_dir.items())


setup(data_files=data_files())
