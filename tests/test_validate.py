"""Results files are checked against the shipped JSON Schema before anything is rendered:
one line per problem, with the JSON path and what was expected (gaps.validate)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from gaps.report.__main__ import main
from gaps.validate import SchemaUnsupported, problems, results_schema, unsupported
from tests.test_report import hostile_run, write_results


def sample() -> dict[str, Any]:
    data = hostile_run().to_json()
    data["interrupted"] = "SIGINT"
    data["gaps"][0]["interrupted"] = True
    return json.loads(json.dumps(data))


def test_the_shipped_schema_uses_only_what_the_validator_knows() -> None:
    results_schema()  # raises SchemaUnsupported otherwise
    with pytest.raises(SchemaUnsupported, match="'uniqueItems'"):
        unsupported({"properties": {"x": {"uniqueItems": True}}})


def test_a_whole_results_file_is_valid() -> None:
    assert problems(sample()) == []


def test_the_issue_examples_are_one_line_each() -> None:
    data = sample()
    data.update(seed="x", time_scale="fast", started="yesterday")
    data["gaps"][1]["status"] = "great"
    del data["target"]["name"]
    data["target"]["colour"] = "red"
    assert problems(data) == [
        '$.target.name: missing (required)',
        '$.target.colour: unexpected field (not in the schema)',
        '$.time_scale: expected a number, got the string "fast"',
        '$.seed: expected an integer, got the string "x"',
        '$.started: expected a number, got the string "yesterday"',
        '$.gaps[1].status: expected one of "pass", "partial", "missing", "unknown", '
        'got the string "great"',
    ]


def wrong_values(value: Any) -> list[Any]:
    """Values of other JSON types than ``value``, and edge values of its own."""
    others = [None, True, 0, -1, 0.5, "", "text", [], {}]
    return [v for v in others if type(v) is not type(value) or v != value]


def mutations(data: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """The paths of every value in ``data``."""
    found = [path]
    if isinstance(data, dict):
        for key, value in data.items():
            found += mutations(value, (*path, key))
    elif isinstance(data, list):
        for index, value in enumerate(data[:3]):
            found += mutations(value, (*path, index))
    return found


def replaced(data: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    copied = copy.deepcopy(data)
    node = copied
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return copied


def test_the_validator_agrees_with_jsonschema() -> None:
    # Every value of a whole results file replaced by values of every other JSON type;
    # every member removed; an unknown member added to every object.
    schema = results_schema()
    base = sample()
    checked = 0
    for path in mutations(base):
        documents = [replaced(base, path, v) for v in wrong_values(_get(base, path))]
        parent = _get(base, path[:-1]) if path else None
        if isinstance(parent, dict):
            removed = copy.deepcopy(base)
            del _get(removed, path[:-1])[path[-1]]
            documents.append(removed)
        if isinstance(_get(base, path), dict):
            documents.append(replaced(base, path, {**_get(base, path), "zz-extra": 1}))
        for document in documents:
            expected = not list(jsonschema.Draft202012Validator(schema).iter_errors(document))
            assert (problems(document) == []) == expected, (path, problems(document))
            checked += 1
    assert checked > 1000


def _get(data: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        data = data[part]
    return data


def test_report_command_says_every_problem_and_writes_nothing(tmp_path: Path, capsys) -> None:
    good = write_results(tmp_path / "good", hostile_run("good"))
    bad = write_results(tmp_path / "bad", hostile_run("bad"))
    data = json.loads(bad.read_text())
    data.update(seed="x", time_scale="fast", started="yesterday")
    bad.write_text(json.dumps(data))
    assert main([str(good), str(bad), "--out", str(tmp_path / "out")]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [
        f'gaps.report: {bad}: $.time_scale: expected a number, got the string "fast"',
        f'gaps.report: {bad}: $.seed: expected an integer, got the string "x"',
        f'gaps.report: {bad}: $.started: expected a number, got the string "yesterday"',
    ]
    assert not (tmp_path / "out").exists()


def test_a_flood_of_problems_is_cut_short(tmp_path: Path, capsys) -> None:
    bad = write_results(tmp_path, hostile_run("bad"))
    data = json.loads(bad.read_text())
    for gap in data["gaps"]:
        gap["status"] = "great"
        gap["priority"] = "urgent"
    bad.write_text(json.dumps(data))
    assert main([str(bad), "--out", str(tmp_path / "out")]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 21
    assert lines[-1] == f"gaps.report: {bad}: 8 more problems not shown"
