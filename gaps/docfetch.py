"""Fetch a stack's own documentation from its package registry, for the documentation probe.

Run by a target's ``[docs] fetch`` command at build time (``gaps.targets.run_docs_fetch``),
never at probe time::

    python -m gaps.docfetch pypi websockets==17.4 --into DIR
    python -m gaps.docfetch go gofr.dev@v1.56.6 --into DIR        # cwd: the module's build
    python -m gaps.docfetch cargo axum@0.8.9 --into DIR           # cwd: the crate's build
    python -m gaps.docfetch maven org.eclipse.jetty:jetty-server:12.1.14 --into DIR

Each kind asks the ecosystem's own registry, through its own client where the build already
used one: ``pypi`` reads the release's JSON from pypi.org and downloads its source
distribution, checking the SHA-256 PyPI lists; ``go`` asks ``go mod download -json`` (the Go
module cache, filled by the build: offline after it); ``cargo`` asks ``cargo metadata
--offline`` for the crate Cargo unpacked during the build; ``maven`` has ``mvn
dependency:copy`` fetch the artifact's ``-sources.jar`` (offline first, from ``~/.m2``).

From each archive only documentation is kept, under ``DIR/<name>-<version>/``: text files
(``DOC_SUFFIXES``, ``README``-like names) and the sources whose comments are documentation
(``SOURCE_SUFFIXES``: Python docstrings, Go, Rust and Java doc comments), each at most
``MAX_FILE`` bytes, at most ``MAX_FILES`` files and ``MAX_TOTAL`` bytes in all.  The archive
is untrusted: members are extracted by name into the folder only (no absolute paths, no
``..``, no links, no devices).  Every network wait is bounded (``NET_TIMEOUT``), and the
build step bounds the whole command.  Exit status 0 on success, 1 with one line on stderr.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from urllib.parse import urljoin

DOC_SUFFIXES = {".md", ".markdown", ".rst", ".txt", ".adoc", ".asciidoc"}
SOURCE_SUFFIXES = {".py", ".go", ".rs", ".java"}
DOC_NAMES = {"readme", "changes", "changelog", "history", "contributing"}
MAX_FILE = 2 * 1024 * 1024
MAX_FILES = 20_000
MAX_TOTAL = 200 * 1024 * 1024
MAX_ARCHIVE = 100 * 1024 * 1024
NET_TIMEOUT = 60.0
PYPI = "https://pypi.org/pypi"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


class FetchError(Exception):
    """The docs could not be fetched; the message is the one line the build step shows."""


def wanted(name: str) -> bool:
    """Whether a member named ``name`` (a relative POSIX path) is documentation to keep."""
    path = PurePosixPath(name)
    suffix = path.suffix.lower()
    return (suffix in DOC_SUFFIXES or suffix in SOURCE_SUFFIXES
            or path.stem.lower() in DOC_NAMES)


def safe_name(name: str) -> PurePosixPath | None:
    """``name`` as a path inside the output folder, or None for one that would leave it."""
    path = PurePosixPath(name)
    if path.is_absolute() or not path.parts or ".." in path.parts or "\\" in name:
        return None
    return path


class Writer:
    """Writes the kept members under one folder, within the limits."""

    def __init__(self, into: Path) -> None:
        self.into = into
        self.files = 0
        self.total = 0

    def add(self, name: str, data: bytes) -> None:
        path = safe_name(name)
        if path is None or not wanted(name) or len(data) > MAX_FILE:
            return
        if self.files >= MAX_FILES or self.total + len(data) > MAX_TOTAL:
            raise FetchError(f"more documentation than the limits allow ({MAX_FILES} files, "
                             f"{MAX_TOTAL} bytes)")
        target = self.into.joinpath(*path.parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        self.files += 1
        self.total += len(data)


def _strip_top(name: str) -> str:
    """An archive member's name without its top folder (``websockets-17.4/docs/x.rst`` ->
    ``docs/x.rst``): the output folder is named for the release already.  A name that
    would leave the folder stays as it is, for ``Writer.add`` to refuse."""
    if safe_name(name) is None:
        return name
    parts = PurePosixPath(name).parts
    return str(PurePosixPath(*parts[1:])) if len(parts) > 1 else name


def tar_members(data: bytes) -> Iterator[tuple[str, bytes]]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as archive:
        for member in archive:
            if not member.isfile() or member.size > MAX_FILE or not wanted(member.name):
                continue
            handle = archive.extractfile(member)
            if handle is not None:
                yield _strip_top(member.name), handle.read(MAX_FILE + 1)


def zip_members(data: bytes, *, strip: bool) -> Iterator[tuple[str, bytes]]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for info in archive.infolist():
            if info.is_dir() or info.file_size > MAX_FILE or not wanted(info.filename):
                continue
            # Unix mode bits in the high 16 bits of external_attr: a symlink is not a file.
            if (info.external_attr >> 16) & 0o170000 == 0o120000:
                continue
            with archive.open(info) as handle:
                name = _strip_top(info.filename) if strip else info.filename
                yield name, handle.read(MAX_FILE + 1)


def folder_members(folder: Path) -> Iterator[tuple[str, bytes]]:
    """The files under ``folder`` (links not followed), as archive members."""
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "target")
        for name in sorted(files):
            path = Path(root) / name
            relative = path.relative_to(folder).as_posix()
            if path.is_symlink() or not path.is_file() or not wanted(relative):
                continue
            if path.stat().st_size <= MAX_FILE:
                yield relative, path.read_bytes()


def _get(url: str, limit: int) -> bytes:
    if not url.startswith("https://"):
        raise FetchError(f"refusing a non-https URL: {url[:200]}")
    request = urllib.request.Request(url, headers={"User-Agent": "wsgaps-docfetch"})
    try:
        with urllib.request.urlopen(request, timeout=NET_TIMEOUT) as answer:
            data = answer.read(limit + 1)
    except OSError as exc:
        raise FetchError(f"GET {url[:200]}: {exc}") from None
    if len(data) > limit:
        raise FetchError(f"GET {url[:200]}: more than {limit} bytes")
    return data


def _run(argv: list[str], cwd: Path | None = None) -> str:
    try:
        done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True,
                              timeout=NET_TIMEOUT * 5, check=False, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise FetchError(f"{argv[0]}: {exc}") from None
    if done.returncode != 0:
        # Maven prints its errors on stdout, with colour codes: the first [ERROR] line says
        # why; elsewhere the last line of stderr does.
        lines = [ANSI.sub("", line).strip() for line in
                 (done.stdout + "\n" + done.stderr).splitlines()]
        lines = [line for line in lines if line]
        why = next((line for line in lines if line.startswith("[ERROR]")),
                   lines[-1] if lines else "no output")
        raise FetchError(f"{' '.join(argv[:3])}: exit status {done.returncode}: {why[:400]}")
    return done.stdout


def fetch_pypi(spec: str) -> tuple[str, Iterator[tuple[str, bytes]]]:
    name, sep, version = spec.partition("==")
    if not sep or not name or not version:
        raise FetchError(f"pypi: {spec!r} is not NAME==VERSION")
    # The project's JSON (every release's files), not /{name}/{version}/json: PyPI mirrors
    # do not all serve the per-release page.
    page = f"{PYPI}/{name}/json"
    meta = json.loads(_get(page, 64 * 1024 * 1024))
    files = meta.get("releases", {}).get(version) or []
    sdists = [u for u in files if u.get("packagetype") == "sdist"]
    if not sdists:
        raise FetchError(f"pypi: {name} {version} has no source distribution")
    sdist = sdists[0]
    # A mirror may list the file relative to the page: resolved, and still https only.
    data = _get(urljoin(page, sdist["url"]), MAX_ARCHIVE)
    digest = sdist.get("digests", {}).get("sha256")
    if not digest or hashlib.sha256(data).hexdigest() != digest:
        raise FetchError(f"pypi: {sdist.get('filename')}: SHA-256 differs from PyPI's")
    members = (zip_members(data, strip=True) if sdist["filename"].endswith(".zip")
               else tar_members(data))
    return f"{name}-{version}", members


def fetch_go(spec: str) -> tuple[str, Iterator[tuple[str, bytes]]]:
    module, sep, version = spec.partition("@")
    if not sep or not module or not version:
        raise FetchError(f"go: {spec!r} is not MODULE@VERSION")
    info = json.loads(_run(["go", "mod", "download", "-json", spec]))
    folder = info.get("Dir")
    if not folder or not Path(folder).is_dir():
        raise FetchError(f"go: {spec}: no module folder ({info.get('Error', 'no Dir')})")
    return f"{module.replace('/', '_')}-{version}", folder_members(Path(folder))


def fetch_cargo(spec: str) -> tuple[str, Iterator[tuple[str, bytes]]]:
    name, sep, version = spec.partition("@")
    if not sep or not name or not version:
        raise FetchError(f"cargo: {spec!r} is not NAME@VERSION")
    meta = json.loads(_run(["cargo", "metadata", "--format-version", "1", "--locked",
                            "--offline"]))
    for package in meta.get("packages", []):
        if package.get("name") == name and package.get("version") == version:
            return f"{name}-{version}", folder_members(Path(package["manifest_path"]).parent)
    raise FetchError(f"cargo: {spec} is not in the build's dependency graph")


def fetch_maven(spec: str) -> tuple[str, Iterator[tuple[str, bytes]]]:
    parts = spec.split(":")
    if len(parts) != 3 or not all(parts):
        raise FetchError(f"maven: {spec!r} is not GROUP:ARTIFACT:VERSION")
    _group, artifact, version = parts
    with tempfile.TemporaryDirectory(prefix="wsgaps-docfetch-") as tmp:
        goal = ["-B", "-Dstyle.color=never", "dependency:copy", f"-Dartifact={spec}:jar:sources",
                f"-DoutputDirectory={tmp}"]
        try:
            _run(["mvn", "-o", *goal])  # offline first: ~/.m2 may hold it already
        except FetchError:
            _run(["mvn", *goal])
        jar = Path(tmp) / f"{artifact}-{version}-sources.jar"
        if not jar.is_file() or jar.stat().st_size > MAX_ARCHIVE:
            raise FetchError(f"maven: no sources jar for {spec}")
        data = jar.read_bytes()
    return f"{artifact}-{version}", zip_members(data, strip=False)


KINDS = {"pypi": fetch_pypi, "go": fetch_go, "cargo": fetch_cargo, "maven": fetch_maven}


def fetch(kind: str, specs: list[str], into: Path) -> int:
    """Fetch every spec of ``kind`` into ``into``; the number of files kept."""
    into.mkdir(parents=True, exist_ok=True)
    kept = 0
    for spec in specs:
        folder, members = KINDS[kind](spec)
        writer = Writer(into / folder)
        for name, data in members:
            writer.add(name, data)
        if writer.files == 0:
            raise FetchError(f"{kind}: {spec}: no documentation in the archive")
        kept += writer.files
    return kept


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gaps.docfetch", description=__doc__
                                     .split("\n")[0])
    parser.add_argument("kind", choices=sorted(KINDS))
    parser.add_argument("specs", nargs="+")
    parser.add_argument("--into", required=True, type=Path)
    args = parser.parse_args(argv)
    try:
        kept = fetch(args.kind, args.specs, args.into)
    except FetchError as exc:
        print(f"docfetch: {exc}", file=sys.stderr)
        return 1
    except (OSError, ValueError, tarfile.TarError, zipfile.BadZipFile) as exc:
        print(f"docfetch: {type(exc).__name__}: {exc}"[:500], file=sys.stderr)
        return 1
    print(f"docfetch: {kept} files of documentation in {args.into}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
