"""Gap status derivation, JSON round trip, schema validity and atomic writes."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from gaps.catalog import CHECKS, GAPS
from gaps.model import (
    SCHEMA_PATH,
    CheckResult,
    GapResult,
    Method,
    ResultsError,
    RunResult,
    Status,
    TargetInfo,
    Verdict,
    derive_status,
    load_results,
)

V = Verdict


def checks(*pairs: tuple[str, Verdict]) -> list[CheckResult]:
    return [CheckResult(check_id, verdict, "x") for check_id, verdict in pairs]


@pytest.mark.parametrize(("verdicts", "status"), [
    ((V.PASS, V.PASS), Status.PASS),
    ((V.NON_STRICT, V.PASS), Status.PASS),
    ((V.PASS, V.FAIL), Status.PARTIAL),
    ((V.FAIL, V.FAIL), Status.MISSING),
    ((V.SKIP, V.SKIP), Status.UNKNOWN),
    ((V.PASS, V.SKIP), Status.PASS),
    ((V.ERROR, V.FAIL), Status.MISSING),
    ((V.ERROR, V.ERROR), Status.UNKNOWN),
])
def test_status_from_capability_checks(verdicts: tuple[Verdict, Verdict], status: Status) -> None:
    result = checks(("heartbeat.server-pings", verdicts[0]),
                    ("heartbeat.reaps-silent-peer", verdicts[1]))
    assert derive_status(result)[0] is status
    assert (derive_status(result)[1] is not None) == (V.ERROR in verdicts)


def test_conformance_and_evidence_checks_do_not_decide_status() -> None:
    result = checks(("message-types.text", V.PASS), ("message-types.ping-pong", V.FAIL),
                    ("message-types.close-handshake", V.FAIL))
    assert derive_status(result) == (Status.PASS, None)
    result = checks(("broadcast.scale", V.PASS))
    assert derive_status(result)[0] is Status.UNKNOWN


def test_optional_check_counts_only_when_it_passes() -> None:
    base = [("recovery.retries-first-dial", V.PASS)]
    assert derive_status(checks(*base, ("recovery.resume", V.FAIL)))[0] is Status.PASS
    assert derive_status(checks(*base, ("recovery.resume", V.PASS)))[0] is Status.PASS


def sample_run() -> RunResult:
    run = RunResult(TargetInfo("demo", settings={"compression": "on (off by default)"}),
                    "0.1.0", seed=7, started=1.0)
    run.gaps["heartbeat"] = GapResult("heartbeat", checks=[
        CheckResult("heartbeat.server-pings", V.PASS, "first Ping after 1.00 s",
                    evidence={"ping_times": [1.0]}, wait=3.0),
        CheckResult("heartbeat.reaps-silent-peer", V.FAIL, "declared absent", Method.DECLARED,
                    source="doc"),
    ])
    return run


def test_round_trip_and_schema(tmp_path: Path) -> None:
    run = sample_run()
    path = tmp_path / "demo" / "results.json"
    run.write(path)
    data = json.loads(path.read_text())
    jsonschema.validate(data, json.loads(SCHEMA_PATH.read_text()))
    assert [g["slug"] for g in data["gaps"]] == [g.slug for g in GAPS]
    assert data["gaps"][0]["status"] == "partial"
    assert data["gaps"][1]["note"] == "not probed by this version"
    again = load_results(path)
    assert again.to_json() == run.to_json()
    assert not list(path.parent.glob(".results.json.*")), "temporary file left behind"


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(ResultsError, match="no such file"):
        load_results(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ResultsError, match="not a wsgaps results file"):
        load_results(bad)
    bad.write_text(json.dumps({**sample_run().to_json(), "schema_version": 99}))
    with pytest.raises(ResultsError, match="schema_version"):
        load_results(bad)


def test_every_check_id_is_well_formed() -> None:
    for check_id in CHECKS:
        slug, _, name = check_id.partition(".")
        assert slug in {g.slug for g in GAPS} and name
