"""Result model: check results, gap results and run results, and their JSON form.

Gap status is derived from the capability checks, never set by hand (DESIGN.md, "Vocabulary
and status rules").  Results are written atomically so an interrupted run always leaves a
parseable file.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from gaps.catalog import BY_SLUG, CHECKS, GAPS, Kind

SCHEMA_VERSION = 1
SCHEMA_PATH = Path(__file__).parent / "schema" / "results.schema.json"


class Verdict(StrEnum):
    PASS = "pass"
    NON_STRICT = "non-strict"  # conformant, misses a SHOULD or the canonical behaviour
    FAIL = "fail"
    SKIP = "skip"
    ERROR = "error"

    @property
    def passed(self) -> bool:
        return self in (Verdict.PASS, Verdict.NON_STRICT)


class ErrorReason(StrEnum):
    """Why a verdict is ``error`` (the harness could not judge), as a value: code branches on
    it, never on a summary's words, so rewording a summary never changes a verdict."""

    HARNESS_SIDE = "harness side"  # the harness ran out of something: descriptors, memory
    HARNESS_TOO_SLOW = "harness too slow"  # its event loop stalled while the target judged it
    TARGET_NOT_READY = "target not ready"  # an instance never got ready
    OVER_BUDGET = "over budget"  # the try did not finish within its budget
    PROBE = "probe"  # the probe's own code raised (a bug in wsgaps)
    CANNOT_JUDGE = "cannot judge"  # what the check needs before judging did not hold
    INCONCLUSIVE = "inconclusive"  # no k of n tries agreed


class Method(StrEnum):
    OBSERVED = "observed"
    DECLARED = "declared"


class Status(StrEnum):
    PASS = "pass"
    PARTIAL = "partial"
    MISSING = "missing"
    UNKNOWN = "unknown"


@dataclass
class CheckResult:
    """One check's verdict with the evidence behind it."""

    id: str
    verdict: Verdict
    summary: str
    method: Method = Method.OBSERVED
    evidence: dict[str, Any] = field(default_factory=dict)
    source: str | None = None  # for declared facts: file and symbol, or doc URL
    wait: float | None = None  # seconds the check was allowed to wait, after scaling
    duration: float = 0.0
    # Of ``duration``, seconds the check waited for a harness resource (an instance slot),
    # not for the target; a retried check has this per try in ``tries``.
    queued: float = 0.0
    tries: list[dict[str, Any]] = field(default_factory=list)
    # What the manifest declares about an observed check, shown beside the observed verdict:
    # {"verdict": "fail"|"pass"|..., "source": ..., "summary": ...}.  None when nothing is.
    declaration: dict[str, Any] | None = None
    reason: ErrorReason | None = None  # why the verdict is error (None for any other verdict)

    @property
    def kind(self) -> Kind:
        return CHECKS[self.id].kind

    @property
    def contradiction(self) -> str | None:
        """A manifest error: the wire showed the opposite of what the manifest declares."""
        if self.declaration is None or self.method is Method.DECLARED or self.verdict not in (
                Verdict.PASS, Verdict.NON_STRICT, Verdict.FAIL):
            return None
        declared = Verdict(self.declaration["verdict"])
        if declared.passed == self.verdict.passed:
            return None
        return (f"the manifest declares {self.declaration.get('summary') or declared}, but "
                f"the wire shows {self.verdict}")

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["kind"] = str(self.kind)
        data["verdict"] = str(self.verdict)
        data["method"] = str(self.method)
        data["reason"] = None if self.reason is None else str(self.reason)
        data["contradiction"] = self.contradiction
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CheckResult:
        data = dict(data)
        data.pop("kind", None)
        data.pop("contradiction", None)
        data["verdict"] = Verdict(data["verdict"])
        data["method"] = Method(data["method"])
        reason = data.get("reason")
        data["reason"] = None if reason is None else ErrorReason(reason)
        return cls(**data)


NOT_PROBED = "not probed by this version"  # no probe for the gap yet (distinct from unknown)
NOT_SELECTED = "not selected"  # --gap/--check/-k left every check of the gap out of the run
# An unknown gap whose checks ran but none applied (all skipped): the target offers nothing
# the probe can reach.  Said by the reports beside the two notes above.
NOTHING_APPLICABLE = "nothing applicable was probed"


def derive_status(checks: list[CheckResult]) -> tuple[Status, str | None]:
    """Gap status from the capability checks, and the error flag's reason if any check erred.

    Errored checks do not count; skipped ones are not applicable.  Non-strict counts as pass.
    """
    errors = [c for c in checks if c.verdict is Verdict.ERROR]
    error = "; ".join(f"{c.id}: {c.summary}" for c in errors) or None
    applicable = [
        c for c in checks
        if c.kind is Kind.CAPABILITY and c.verdict not in (Verdict.ERROR, Verdict.SKIP)
        and not (is_optional(c.id) and not c.verdict.passed)
    ]
    if not applicable:
        return Status.UNKNOWN, error
    passed = sum(1 for c in applicable if c.verdict.passed)
    if passed == len(applicable):
        return Status.PASS, error
    return (Status.PARTIAL if passed else Status.MISSING), error


def is_optional(check_id: str) -> bool:
    """A check whose failure does not lower its gap's status (DESIGN.md): it counts only
    when it passes."""
    spec = CHECKS.get(check_id)
    return spec is not None and spec.optional


def passed_count(checks: list[CheckResult]) -> str:
    """Capability checks passed of those counted, as the terminal and the reports show it:
    ``3/3``, and ``3/3 (+1 optional)`` when an optional check did not pass (it does not
    lower the status, so it is not in the count); ``-`` when no check counted."""
    judged = [c for c in checks if c.kind is Kind.CAPABILITY
              and c.verdict not in (Verdict.SKIP, Verdict.ERROR)]
    optional = [c for c in judged if is_optional(c.id) and not c.verdict.passed]
    counted = [c for c in judged if c not in optional]
    if not judged:
        return "-"
    text = f"{sum(1 for c in counted if c.verdict.passed)}/{len(counted)}"
    return f"{text} (+{len(optional)} optional)" if optional else text


@dataclass
class GapResult:
    """A gap's checks on one target instance; status and error flag are derived."""

    slug: str
    checks: list[CheckResult] = field(default_factory=list)
    # Why nothing was probed: "not probed by this version" (no probe for the gap yet), "not
    # selected", "target skipped: ...".
    note: str | None = None
    logs: str | None = None  # bounded tail of the instance's stdout/stderr
    started: float | None = None
    finished: float | None = None
    # The run was interrupted before this gap finished: its status is derived from the
    # checks that finished before that (perhaps none), so it is no verdict on the gap.
    interrupted: bool = False
    # Checks of this gap the run did not select (``--gap``, ``--check``, pytest's ``-k``):
    # not counted in the status (DESIGN.md), not "gone" for a baseline.  Every check of a
    # gap reads unknown with the note "not selected".
    unselected: list[str] = field(default_factory=list)

    @property
    def gap(self):  # -> catalog.Gap
        return BY_SLUG[self.slug]

    @property
    def status(self) -> Status:
        return derive_status(self.checks)[0]

    @property
    def error(self) -> str | None:
        return derive_status(self.checks)[1]

    def to_json(self) -> dict[str, Any]:
        gap = self.gap
        return {
            "id": gap.id,
            "slug": self.slug,
            "title": gap.title,
            "priority": str(gap.priority),
            "status": str(self.status),
            "error": self.error,
            "note": self.note,
            "started": self.started,
            "finished": self.finished,
            "interrupted": self.interrupted,
            "unselected": self.unselected,
            "logs": self.logs,
            "checks": [c.to_json() for c in self.checks],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> GapResult:
        return cls(
            slug=data["slug"],
            checks=[CheckResult.from_json(c) for c in data["checks"]],
            note=data.get("note"),
            logs=data.get("logs"),
            started=data.get("started"),
            finished=data.get("finished"),
            interrupted=bool(data.get("interrupted", False)),
            unselected=list(data.get("unselected") or []),
        )


@dataclass
class TargetInfo:
    name: str
    description: str = ""
    version: str | None = None
    kind: str = "managed"  # "managed" (started by the harness) or "url" (external)
    url: str | None = None
    settings: dict[str, str] = field(default_factory=dict)
    hints: dict[str, float] = field(default_factory=dict)
    skipped: str | None = None  # why the whole target was skipped (build failed, no runtime)
    build: str | None = None  # "built", "cached", "none", "failed" or "not-run" for this run
    pinned: str | None = None  # the stack version expectations and hints were written for
    # Why the version reads "unknown": the version command's exit status and last line.
    version_error: str | None = None

    @property
    def version_note(self) -> str | None:
        """Says so when the recorded version is not the one the manifest was written for
        (a user's install does not apply the project's pins)."""
        if (not self.pinned or not self.version or self.version_error
                or self.pinned in self.version):
            return None
        return (f"this run has another version than {self.pinned}, which the target's "
                "expectations and hints were written for")


@dataclass
class RunResult:
    target: TargetInfo
    harness_version: str
    time_scale: float = 1.0
    seed: int = 0
    started: float = 0.0
    finished: float | None = None
    waits: dict[str, float] = field(default_factory=dict)
    gaps: dict[str, GapResult] = field(default_factory=dict)
    # The signal that interrupted the run ("SIGINT", "SIGTERM"); None for a whole run.
    interrupted: str | None = None

    def __post_init__(self) -> None:
        for gap in GAPS:
            self.gaps.setdefault(gap.slug, GapResult(gap.slug, note=NOT_PROBED))

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "harness_version": self.harness_version,
            "target": {**asdict(self.target), "version_note": self.target.version_note},
            "time_scale": self.time_scale,
            "seed": self.seed,
            "started": self.started,
            "finished": self.finished,
            "interrupted": self.interrupted,
            "waits": dict(sorted(self.waits.items())),
            "gaps": [self.gaps[gap.slug].to_json() for gap in GAPS],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunResult:
        if data.get("schema_version") != SCHEMA_VERSION:
            raise ValueError(
                f"schema_version {data.get('schema_version')!r} is not {SCHEMA_VERSION}"
            )
        return cls(
            target=TargetInfo(**{k: v for k, v in data["target"].items()
                                 if k != "version_note"}),
            harness_version=data["harness_version"],
            time_scale=data["time_scale"],
            seed=data["seed"],
            started=data["started"],
            finished=data.get("finished"),
            interrupted=data.get("interrupted"),
            waits=data.get("waits", {}),
            gaps={g["slug"]: GapResult.from_json(g) for g in data["gaps"]},
        )

    def write(self, path: Path) -> None:
        """Write atomically: a reader sees the old file or the new one, never a torn one."""
        write_json_atomic(path, self.to_json())


def _read_umask() -> int:
    """The process's umask, read without changing it where Linux shows it (a change, even
    for an instant, would reach files other threads create meanwhile)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# Read once, at import, before the harness starts threads of its own.
UMASK = _read_umask()


def new_file_mode() -> int:
    """The mode ``open()`` would give a new file: 0666 less the umask.  ``mkstemp`` makes
    its files 0600, which a CI artifact upload or a colleague could not read."""
    return 0o666 & ~UMASK


def write_json_atomic(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, new_file_mode())
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(data, out, indent=2, ensure_ascii=False)
            out.write("\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class ResultsError(Exception):
    """A results file that is missing, unreadable or not of this schema.

    ``problems`` are the file's breaches of the shipped JSON Schema, one line each (JSON
    path and what was expected there), when that is what is wrong with it.
    """

    def __init__(self, message: str, problems: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.problems = problems


def load_results(path: Path) -> RunResult:
    """A results file, checked against the shipped JSON Schema first: a file that breaks
    it is refused with every problem (ResultsError.problems), never half read."""
    from gaps.validate import problems

    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ResultsError(f"{path}: no such file") from None
    except (OSError, ValueError) as exc:
        raise ResultsError(f"{path}: not a wsgaps results file ({exc})") from None
    if isinstance(data, dict) and data.get("schema_version") != SCHEMA_VERSION:
        raise ResultsError(f"{path}: not a wsgaps results file (schema_version "
                           f"{data.get('schema_version')!r} is not {SCHEMA_VERSION})")
    found = tuple(problems(data))
    if found:
        raise ResultsError(f"{path}: {found[0]}"
                           + (f" (and {len(found) - 1} more problems)" if found[1:] else ""),
                           tuple(f"{path}: {line}" for line in found))
    try:
        return RunResult.from_json(data)
    except (ValueError, KeyError, TypeError) as exc:
        raise ResultsError(f"{path}: not a wsgaps results file ({exc})") from None
