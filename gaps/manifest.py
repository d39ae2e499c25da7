"""Target manifests (``target.toml``): loading and validation with one-line errors.

A manifest describes a server under analysis: how to build, start and stop it, where its
contract endpoints are, the timers it is configured with (hints), what its adapter switched
on (settings), and the capabilities it declares absent or facts it declares.  Every error
names the file and the field, e.g. ``targets/x/target.toml: start.command: unknown
placeholder {prot}``.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import string
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from gaps.catalog import CAPABILITIES, CHECKS

ENDPOINTS = {
    "echo": "ws",
    "subprotocols": "ws",
    "chat": "ws",
    "broadcast": "ws",
    "room": "ws",
    "secure": "ws",
    "origin": "ws",
    "connections": "http",
    "metrics": "http",
    "upstream": "placeholder",
}
# The keys every endpoint may take.  A key one probe alone reads is declared by that probe,
# beside its checks (``gaps.probe.manifest_key``), and validated from there: the manifest
# reader is given the declared keys (``ProbeKey``).  ``includes_sender`` is read by the
# toolkit's audience for two probes (``metrics_map`` is the metrics probe's own).
ENDPOINT_KEYS = {"path", "url", "includes_sender", "note"}
# idle_timeout: seconds after which the stack closes a connection with no traffic at all,
# Pings answered or not (Jetty's 30 s default); not a heartbeat, recorded so that a check
# holding a connection quiet longer knows why it ended.  max_frame_size: bytes one frame may
# carry, where a stack's frame limit is below its message limit (axum: 16 MiB and 64 MiB).
HINTS = {
    "ping_interval", "ping_timeout", "max_message_size", "max_connections", "rate_limit",
    "backoff_initial", "backoff_max", "backoff_factor", "handshake_timeout", "close_timeout",
    "idle_timeout", "max_frame_size",
}
TOP_KEYS = {
    "name", "description", "version", "build", "start", "stop", "ready", "endpoints", "hints",
    "settings", "absent", "declared", "notes", "pinned", "docs",
}
BUILD_KEYS = {"command", "cwd", "env", "timeout", "inputs", "outputs", "exclude", "requires"}
START_KEYS = {"command", "cwd", "env", "requires", "cost", "imports"}
MODULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
STOP_KEYS = {"grace"}
READY_KEYS = {"timeout"}
DECLARED_KEYS = {"verdict", "source", "summary"}
DOCS_KEYS = {"source", "paths", "fetch", "timeout", "env"}
# Placeholders of docs.paths and docs.fetch: the target's build folder, the folder the docs
# fetch writes into (per-user cache), and the wsgaps package (the reference's own docs).
DOCS_PLACEHOLDERS = {"python", "target_dir", "docs_dir", "package_dir"}
DECLARED_VERDICTS = {"pass", "non-strict", "fail"}
FIXED_PLACEHOLDERS = {"python", "target_dir", "upstream"}
PORT_PLACEHOLDER = re.compile(r"^[a-z_]*port$")
NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")


class ManifestError(Exception):
    """A manifest that cannot be used; the message is one line naming file and field."""


@dataclass(frozen=True)
class EndpointSpec:
    name: str
    path: str | None = None
    url: str | None = None
    includes_sender: bool | None = None
    note: str | None = None
    # The values of keys probes declared (``ProbeKey``), by key name, as their readers
    # returned them; read them with ``ProbeKey.value``.
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ProbeKey:
    """A key of ``endpoints.<endpoint>`` that a probe reads, declared beside its checks
    (``gaps.probe.manifest_key``), so that the manifest reader knows it and validates it.

    ``read(reader, value, fieldname)`` checks the raw TOML value and returns what the probe
    gets (``reader.fail(fieldname, why)`` for one-line errors); ``about`` says what it is
    for.  ``owner`` is the declaring probe module, for errors.
    """

    endpoint: str
    name: str
    read: Callable[[FieldReader, Any, str], Any]
    about: str
    default: Any = None
    required: bool = False  # an endpoint without it is a manifest error ("missing: <about>")
    owner: str = ""

    def value(self, manifest: Manifest) -> Any:
        """The key's value in ``manifest``, or ``default`` where it is not set."""
        spec = manifest.endpoints.get(self.endpoint)
        return self.default if spec is None else spec.extra.get(self.name, self.default)


@dataclass(frozen=True)
class Declared:
    check_id: str
    verdict: str
    source: str
    summary: str = ""


@dataclass(frozen=True)
class Command:
    argv: tuple[str, ...]
    cwd: str = "."
    env: dict[str, str] = field(default_factory=dict)
    requires: tuple[str, ...] = ()
    # Python modules the command imports from the harness's own environment ({python}):
    # where one is not installed the target is skipped, as for a missing runtime.
    imports: tuple[str, ...] = ()


@dataclass(frozen=True)
class Build(Command):
    timeout: float = 300.0
    inputs: tuple[str, ...] = ()  # files or folders (hashed by content, recursively)
    outputs: tuple[str, ...] = ()
    # Names at the top of the target's folder that are neither inputs nor outputs and are
    # never copied into a build folder: what the ecosystem keeps there (caches, a local
    # install), e.g. ["__pycache__", ".gradle"].  Outputs' first parts are left out anyway.
    exclude: tuple[str, ...] = ()


@dataclass(frozen=True)
class Docs:
    """``[docs]``: where the stack's documentation is, for the documentation probe (gap 14).

    ``paths`` are files or folders, relative to the target's folder or starting with a
    placeholder (``{target_dir}``, ``{docs_dir}``, ``{package_dir}``); ``fetch`` is a command
    the build step runs (cached, bounded by ``timeout``) that puts the stack's own docs
    into ``{docs_dir}``, never at probe time; ``source`` says what the docs are (the
    archive and version), for the report.
    """

    source: str
    paths: tuple[str, ...]
    fetch: tuple[str, ...] = ()
    timeout: float = 120.0
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class Manifest:
    """A validated manifest.  ``directory`` resolves relative paths in it."""

    name: str
    path: Path | None
    description: str = ""
    version: Command | None = None
    build: Build | None = None
    start: Command | None = None  # None for an external URL target
    grace: float = 5.0
    ready_timeout: float = 30.0
    # start.cost: the seconds one start takes until ready on an unloaded machine (a JVM's
    # seconds, a Python interpreter's fraction), for the bound on instances starting at once
    # (gaps.plan); None: measured on the run's first instance of the target.
    start_cost: float | None = None
    endpoints: dict[str, EndpointSpec] = field(default_factory=dict)
    hints: dict[str, float] = field(default_factory=dict)
    settings: dict[str, str] = field(default_factory=dict)
    absent: dict[str, str] = field(default_factory=dict)
    declared: dict[str, Declared] = field(default_factory=dict)
    notes: str = ""
    # The stack version the manifest's expectations and hints were written for, as it
    # appears in the version command's output (e.g. "aiohttp 3.14.5").
    pinned: str = ""
    url: str | None = None  # external targets: the echo URL
    docs: Docs | None = None  # [docs], for the documentation probe

    @property
    def directory(self) -> Path:
        return self.path.parent if self.path else Path.cwd()

    @property
    def managed(self) -> bool:
        return self.start is not None

    def placeholders(self) -> set[str]:
        """Port placeholder names used anywhere in the start command, env or endpoints."""
        found: set[str] = set()
        texts = [*self.start.argv, *self.start.env.values()] if self.start else []
        texts += [e.url for e in self.endpoints.values() if e.url]
        for text in texts:
            found |= {n for n in _names(text) if PORT_PLACEHOLDER.match(n)}
        return found


    def needs_opt_in(self) -> list[str]:
        """URLs that reach beyond 127.0.0.1 or use TLS: probing them needs an explicit opt-in.

        Port placeholders are ignored; only the scheme and the host count.
        """
        found = []
        urls = [e.url for e in self.endpoints.values() if e.url]
        for url in urls:
            parts = urlsplit(url.replace("{", "").replace("}", ""))
            host = (parts.hostname or "").lower()
            if parts.scheme in ("wss", "https") or not _loopback(host):
                found.append(url)
        return found

    def opt_in_refusal(self, spec: str, flag: str) -> str | None:
        """Why ``spec`` may not be probed without ``flag``, or None when it may."""
        beyond = self.needs_opt_in()
        if not beyond:
            return None
        return f"{spec}: {beyond[0]} is not on 127.0.0.1 or uses TLS; probing it needs {flag}"


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _names(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


class FieldReader:
    """Field access with errors that name the file and the dotted field."""

    def __init__(self, where: str) -> None:
        self.where = where

    def fail(self, fieldname: str, message: str) -> ManifestError:
        return ManifestError(f"{self.where}: {fieldname}: {message}")

    def table(self, data: Any, fieldname: str, allowed: set[str] | None = None) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise self.fail(fieldname, f"must be a table, not {type(data).__name__}")
        if allowed is not None:
            for key in data:
                if key not in allowed:
                    raise self.fail(f"{fieldname}.{key}" if fieldname else key,
                                    f"unknown key (known: {', '.join(sorted(allowed))})")
        return data

    def string(self, data: Any, fieldname: str) -> str:
        if not isinstance(data, str):
            raise self.fail(fieldname, f"must be a string, not {type(data).__name__}")
        return data

    def strings(self, data: Any, fieldname: str) -> tuple[str, ...]:
        if not isinstance(data, list) or not all(isinstance(x, str) for x in data):
            raise self.fail(fieldname, "must be a list of strings")
        return tuple(data)

    def require(self, table: dict[str, Any], keys: tuple[str, ...], fieldname: str) -> None:
        for key in keys:
            if key not in table:
                raise self.fail(f"{fieldname}.{key}", "missing")

    def choice(self, data: Any, fieldname: str, allowed: set[str] | frozenset[str]) -> str:
        value = self.string(data, fieldname)
        if value not in allowed:
            raise self.fail(fieldname, f"must be one of {', '.join(sorted(allowed))}")
        return value

    def number(self, data: Any, fieldname: str) -> float:
        if isinstance(data, bool) or not isinstance(data, int | float) or data < 0:
            raise self.fail(fieldname, "must be a non-negative number")
        return float(data)

    def placeholders(self, text: str, fieldname: str, extra: set[str] = frozenset()) -> None:
        try:
            names = _names(text)
        except ValueError as exc:
            raise self.fail(fieldname, f"bad placeholder syntax in {text!r} ({exc})") from None
        for name in names:
            if not (name in FIXED_PLACEHOLDERS or name in extra or PORT_PLACEHOLDER.match(name)):
                raise self.fail(fieldname, f"unknown placeholder {{{name}}} in {text!r}")


def _command(r: FieldReader, data: Any, fieldname: str, allowed: set[str]) -> dict[str, Any]:
    table = r.table(data, fieldname, allowed)
    if "command" not in table:
        raise r.fail(f"{fieldname}.command", "missing")
    argv = r.strings(table["command"], f"{fieldname}.command")
    if not argv:
        raise r.fail(f"{fieldname}.command", "is empty")
    for arg in argv:
        r.placeholders(arg, f"{fieldname}.command")
    env = r.table(table.get("env", {}), f"{fieldname}.env")
    for key, value in env.items():
        r.placeholders(r.string(value, f"{fieldname}.env.{key}"), f"{fieldname}.env.{key}")
    imports = r.strings(table.get("imports", []), f"{fieldname}.imports")
    for module in imports:
        if not MODULE.match(module):
            raise r.fail(f"{fieldname}.imports", f"{module!r} is not a Python module name")
    return {
        "argv": argv,
        "cwd": r.string(table.get("cwd", "."), f"{fieldname}.cwd"),
        "env": dict(env),
        "requires": r.strings(table.get("requires", []), f"{fieldname}.requires"),
        "imports": imports,
    }


def _probe_keys(r: FieldReader, name: str, table: dict[str, Any],
                keys: list[ProbeKey]) -> dict[str, Any]:
    """The values of the probe-declared keys in ``endpoints.<name>``, each read by its
    declaration; a key some probe declares for another endpoint says which one."""
    fieldname = f"endpoints.{name}"
    mine = {k.name: k for k in keys if k.endpoint == name}
    for key in mine.values():
        if key.required and key.name not in table:
            raise r.fail(f"{fieldname}.{key.name}", f"missing: {key.about}")
    values: dict[str, Any] = {}
    for key, raw in table.items():
        if key in ENDPOINT_KEYS:
            continue
        if key in mine:
            values[key] = mine[key].read(r, raw, f"{fieldname}.{key}")
            continue
        elsewhere = sorted({k.endpoint for k in keys if k.name == key})
        if elsewhere:
            which = (f"the {elsewhere[0]} endpoint takes" if len(elsewhere) == 1
                     else f"the {' and '.join(elsewhere)} endpoints take")
            owner = next(k.owner for k in keys if k.name == key)
            raise r.fail(f"{fieldname}.{key}", f"only {which} it ({owner})")
        known = sorted(ENDPOINT_KEYS | set(mine))
        raise r.fail(f"{fieldname}.{key}", f"unknown key (known: {', '.join(known)})")
    return values


def _endpoint(r: FieldReader, name: str, data: Any, keys: list[ProbeKey]) -> EndpointSpec:
    fieldname = f"endpoints.{name}"
    if name not in ENDPOINTS:
        raise r.fail(fieldname, f"unknown endpoint (known: {', '.join(ENDPOINTS)})")
    table = r.table(data, fieldname)
    extra = _probe_keys(r, name, table, keys)
    kind = ENDPOINTS[name]
    path = table.get("path")
    url = table.get("url")
    if kind == "placeholder":
        return EndpointSpec(name, note=table.get("note"), extra=extra)
    if (path is None) == (url is None):
        raise r.fail(fieldname, "needs exactly one of path or url")
    fields = {"room"} if name == "room" else set()
    if path is not None:
        path = r.string(path, f"{fieldname}.path")
        if kind != "ws":
            raise r.fail(f"{fieldname}.path", f"a {kind} endpoint takes a full url")
        if not path.startswith("/"):
            raise r.fail(f"{fieldname}.path", f"must start with '/': {path!r}")
        r.placeholders(path, f"{fieldname}.path", fields)
    if url is not None:
        url = r.string(url, f"{fieldname}.url")
        r.placeholders(url, f"{fieldname}.url", fields)
        scheme = urlsplit(url.replace("{", "").replace("}", "")).scheme
        wanted = ("ws", "wss") if kind == "ws" else ("http", "https")
        if scheme not in wanted:
            raise r.fail(f"{fieldname}.url", f"a {kind} endpoint needs a {'/'.join(wanted)} URL")
    if name == "room" and "{room}" not in (path or url or ""):
        raise r.fail(fieldname, "the room endpoint needs a {room} placeholder")
    includes = table.get("includes_sender")
    if includes is not None and not isinstance(includes, bool):
        raise r.fail(f"{fieldname}.includes_sender", "must be true or false")
    return EndpointSpec(
        name=name,
        path=path,
        url=url,
        includes_sender=includes,
        note=table.get("note"),
        extra=extra,
    )


def _relative_paths(r: FieldReader, data: Any, fieldname: str, *,
                    top: bool = False) -> tuple[str, ...]:
    """Paths inside the target's folder (``top``: names at its top level only)."""
    paths = r.strings(data, fieldname)
    for text in paths:
        parts = Path(text).parts
        if not text or Path(text).is_absolute() or ".." in parts:
            raise r.fail(fieldname, f"{text!r} must be a relative path inside the target's "
                         "folder")
        if top and len(parts) != 1:
            raise r.fail(fieldname, f"{text!r} must be a name at the top of the target's folder")
    return paths


def _docs_placeholders(r: FieldReader, text: str, fieldname: str) -> None:
    """Only the docs placeholders: a port means nothing where no instance runs."""
    try:
        names = _names(text)
    except ValueError as exc:
        raise r.fail(fieldname, f"bad placeholder syntax in {text!r} ({exc})") from None
    for name in names - DOCS_PLACEHOLDERS:
        raise r.fail(fieldname, f"unknown placeholder {{{name}}} in {text!r} (known: "
                     f"{', '.join('{' + n + '}' for n in sorted(DOCS_PLACEHOLDERS))})")


def _docs(r: FieldReader, data: Any, fieldname: str = "docs") -> Docs:
    table = r.table(data, fieldname, DOCS_KEYS)
    r.require(table, ("source", "paths"), fieldname)
    paths = r.strings(table["paths"], f"{fieldname}.paths")
    if not paths:
        raise r.fail(f"{fieldname}.paths", "is empty")
    for text in paths:
        _docs_placeholders(r, text, f"{fieldname}.paths")
        placed = text.startswith("{") and text.split("}", 1)[0][1:] in DOCS_PLACEHOLDERS
        if not placed and (Path(text).is_absolute() or ".." in Path(text).parts):
            raise r.fail(f"{fieldname}.paths", f"{text!r} must be relative to the target's "
                         "folder or start with {target_dir}, {docs_dir} or {package_dir}")
        if ".." in Path(text).parts:
            raise r.fail(f"{fieldname}.paths", f"{text!r} must not leave its folder ('..')")
    fetch = r.strings(table.get("fetch", []), f"{fieldname}.fetch")
    for arg in fetch:
        _docs_placeholders(r, arg, f"{fieldname}.fetch")
    env = r.table(table.get("env", {}), f"{fieldname}.env")
    for key, value in env.items():
        _docs_placeholders(r, r.string(value, f"{fieldname}.env.{key}"),
                           f"{fieldname}.env.{key}")
    return Docs(
        source=r.string(table["source"], f"{fieldname}.source"),
        paths=paths,
        fetch=fetch,
        timeout=r.number(table.get("timeout", 120), f"{fieldname}.timeout"),
        env=dict(env),
    )


def probe_keys() -> list[ProbeKey]:
    """The keys the built-in probes declare (``gaps.probe.load_keys``)."""
    from gaps.probe import load_keys  # the probes import this module: not at import time

    return load_keys()


def parse_manifest(data: dict[str, Any], path: Path | None, where: str | None = None, *,
                   keys: Iterable[ProbeKey] | None = None) -> Manifest:
    """Validate ``data``; ``keys`` are the probe-declared keys it may use (the built-in
    probes' by default: ``probe_keys``)."""
    known = list(probe_keys() if keys is None else keys)
    r = FieldReader(where or (str(path) if path else "<manifest>"))
    r.table(data, "", TOP_KEYS)
    if "name" not in data:
        raise r.fail("name", "missing")
    name = r.string(data["name"], "name")
    if not NAME.match(name):
        raise r.fail("name", f"{name!r} must be lower-case letters, digits, '-', '_' or '.'")
    manifest = Manifest(name=name, path=path,
                        description=r.string(data.get("description", ""), "description"))
    if "version" in data:
        manifest.version = Command(**_command(r, {"command": data["version"]}, "version",
                                              {"command"}))
    if "build" in data:
        table = r.table(data["build"], "build", BUILD_KEYS)
        fields = _command(r, table, "build", BUILD_KEYS)
        manifest.build = Build(
            **fields,
            timeout=r.number(table.get("timeout", 300), "build.timeout"),
            inputs=_relative_paths(r, table.get("inputs", []), "build.inputs"),
            outputs=_relative_paths(r, table.get("outputs", []), "build.outputs"),
            exclude=_relative_paths(r, table.get("exclude", []), "build.exclude", top=True),
        )
    if "start" not in data:
        raise r.fail("start", "missing (external targets are given as a ws:// URL instead)")
    start = _command(r, data["start"], "start", START_KEYS)
    manifest.start = Command(**start)
    if "cost" in data["start"]:
        manifest.start_cost = r.number(data["start"]["cost"], "start.cost")
    if "stop" in data:
        stop = r.table(data["stop"], "stop", STOP_KEYS)
        manifest.grace = r.number(stop.get("grace", 5.0), "stop.grace")
    if "ready" in data:
        ready = r.table(data["ready"], "ready", READY_KEYS)
        manifest.ready_timeout = r.number(ready.get("timeout", 30.0), "ready.timeout")
    endpoints = r.table(data.get("endpoints", {}), "endpoints")
    manifest.endpoints = {n: _endpoint(r, n, v, known) for n, v in endpoints.items()}
    if "echo" not in manifest.endpoints:
        raise r.fail("endpoints.echo", "missing (every target needs an echo endpoint)")
    hints = r.table(data.get("hints", {}), "hints", HINTS)
    manifest.hints = {k: r.number(v, f"hints.{k}") for k, v in hints.items()}
    settings = r.table(data.get("settings", {}), "settings")
    manifest.settings = {k: r.string(v, f"settings.{k}") for k, v in settings.items()}
    absent = r.table(data.get("absent", {}), "absent")
    for name in absent:
        if name not in CAPABILITIES:
            raise r.fail(f"absent.{name}", "unknown capability (known: "
                         f"{', '.join(sorted(CAPABILITIES))})")
    manifest.absent = {k: r.string(v, f"absent.{k}") for k, v in absent.items()}
    declared = r.table(data.get("declared", {}), "declared")
    for check_id, value in declared.items():
        fieldname = f"declared.{check_id}"
        if check_id not in CHECKS:
            raise r.fail(fieldname, "unknown check ID")
        table = r.table(value, fieldname, DECLARED_KEYS)
        r.require(table, ("verdict", "source"), fieldname)
        verdict = r.choice(table["verdict"], f"{fieldname}.verdict", DECLARED_VERDICTS)
        manifest.declared[check_id] = Declared(
            check_id, verdict, r.string(table["source"], f"{fieldname}.source"),
            r.string(table.get("summary", ""), f"{fieldname}.summary"),
        )
    if "docs" in data:
        manifest.docs = _docs(r, data["docs"])
    manifest.notes = r.string(data.get("notes", ""), "notes")
    manifest.pinned = r.string(data.get("pinned", ""), "pinned")
    return manifest


def switch_off(manifest: Manifest, names: set[str], why: str) -> Manifest:
    """``manifest`` for an instance started with capabilities ``names`` switched off (the
    reference's ``--without``): a declared fact about a check named after one of them (a
    check the wire cannot show, such as ``middleware.message-hooks``) no longer holds, so it
    is replaced by the capability's absence, said with ``why``."""
    gone = {check_id for check_id in manifest.declared
            if check_id.split(".", 1)[1] in names}
    if not gone:
        return manifest
    absent = {**manifest.absent,
              **{check_id.split(".", 1)[1]: why for check_id in gone}}
    declared = {k: v for k, v in manifest.declared.items() if k not in gone}
    return dataclasses.replace(manifest, absent=absent, declared=declared)


def load_manifest(path: Path, *, keys: Iterable[ProbeKey] | None = None) -> Manifest:
    """Load and validate ``path``; ManifestError with a one-line message on any problem.
    ``keys``: the probe-declared keys it may use (``parse_manifest``)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ManifestError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{path}: not valid TOML ({exc})") from None
    return parse_manifest(data, path.resolve(), keys=keys)


def url_manifest(url: str) -> Manifest:
    """An external target given as a ws:// or wss:// URL: echo only, shared between gaps."""
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ManifestError(f"{url}: not a ws:// or wss:// URL")
    try:
        port = parts.port
    except ValueError:
        port = -1
    if port == -1 or port == 0:
        raise ManifestError(f"{url}: the port must be a number from 1 to 65535")
    name = re.sub(r"[^a-z0-9_.-]+", "-", f"{parts.hostname}-{port or ''}".lower()).strip("-")
    return Manifest(
        name=name, path=None, description=f"external server at {url}", url=url,
        endpoints={"echo": EndpointSpec("echo", url=url)},
    )
