"""Checking a results file against the JSON Schema wsgaps ships (gaps/schema/).

The schema uses a small part of JSON Schema (draft 2020-12), and this module implements
that part only: ``type``, ``const``, ``enum``, ``required``, ``properties``,
``additionalProperties``, ``items``, ``minItems``/``maxItems``, ``minimum``/``maximum``,
``exclusiveMinimum``/``exclusiveMaximum``, ``pattern`` and local ``$ref``.  A schema with any
other keyword is refused (``SchemaUnsupported``), so a keyword can never be ignored in
silence; the tests hold this validator to the ``jsonschema`` package's verdicts.  The
``jsonschema`` package itself is only a test dependency: a user's install of wsgaps does
not need it (docs/design-notes.md).

Each problem is one line: the JSON path of the value and what was expected there, e.g.
``$.time_scale: expected a number > 0, got the string "fast"``.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

SCHEMA_PATH = Path(__file__).parent / "schema" / "results.schema.json"
# Keywords that carry no constraint.
ANNOTATIONS = {"$schema", "$id", "title", "description", "$defs", "$comment"}
SUPPORTED = ANNOTATIONS | {
    "type", "const", "enum", "required", "properties", "additionalProperties", "items",
    "minItems", "maxItems", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
    "pattern", "$ref",
}
TYPE_WORDS = {"object": "an object", "array": "an array", "string": "a string",
              "integer": "an integer", "number": "a number", "boolean": "true or false",
              "null": "null"}
VALUE_LIMIT = 60  # characters of an offending value quoted in a problem


class SchemaUnsupported(Exception):
    """The schema uses a keyword this validator does not implement."""


@functools.cache
def results_schema() -> dict[str, Any]:
    """The shipped results schema, checked to use only what this module implements."""
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    unsupported(schema)
    return schema


def unsupported(schema: Any, where: str = "#") -> None:
    """Raise ``SchemaUnsupported`` naming the first keyword outside ``SUPPORTED``."""
    if not isinstance(schema, Mapping):
        return
    for key, value in schema.items():
        if key not in SUPPORTED:
            raise SchemaUnsupported(f"{where}: keyword {key!r} is not supported")
        if key in ("properties", "$defs"):
            for name, sub in value.items():
                unsupported(sub, f"{where}/{key}/{name}")
        elif key in ("items", "additionalProperties"):
            unsupported(value, f"{where}/{key}")


def problems(data: Any, schema: Mapping[str, Any] | None = None) -> list[str]:
    """Every place where ``data`` breaks ``schema`` (the results schema by default), one
    line each, in document order; empty when it is valid."""
    root = results_schema() if schema is None else schema
    return list(_check(data, root, root, "$"))


def _check(value: Any, schema: Any, root: Mapping[str, Any], path: str) -> Iterator[str]:
    if schema is True or schema == {}:
        return
    if schema is False:
        yield f"{path}: not allowed here"
        return
    if "$ref" in schema:
        yield from _check(value, _resolve(root, schema["$ref"]), root, path)
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_is(value, t) for t in types):
            expected = " or ".join(TYPE_WORDS[t] for t in types)
            yield f"{path}: expected {expected}, got {_shown(value)}"
            return  # the other keywords would only repeat it
    if "const" in schema and not _equal(value, schema["const"]):
        yield f"{path}: expected {_json(schema['const'])}, got {_shown(value)}"
    if "enum" in schema and not any(_equal(value, v) for v in schema["enum"]):
        choices = ", ".join(_json(v) for v in schema["enum"])
        yield f"{path}: expected one of {choices}, got {_shown(value)}"
    if _is(value, "number"):
        yield from _bounds(value, schema, path)
    if isinstance(value, str) and "pattern" in schema \
            and not re.search(schema["pattern"], value):
        yield f"{path}: expected a string matching {schema['pattern']}, got {_shown(value)}"
    if isinstance(value, list):
        if "minItems" in schema and len(value) < schema["minItems"]:
            yield f"{path}: expected at least {schema['minItems']} items, got {len(value)}"
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            yield f"{path}: expected at most {schema['maxItems']} items, got {len(value)}"
        if "items" in schema:
            for index, item in enumerate(value):
                yield from _check(item, schema["items"], root, f"{path}[{index}]")
    if isinstance(value, dict):
        yield from _object(value, schema, root, path)


def _object(value: dict[str, Any], schema: Mapping[str, Any], root: Mapping[str, Any],
            path: str) -> Iterator[str]:
    for name in schema.get("required", ()):
        if name not in value:
            yield f"{_member(path, name)}: missing (required)"
    known = schema.get("properties", {})
    extra = schema.get("additionalProperties", True)
    for name, item in value.items():
        where = _member(path, name)
        if name in known:
            yield from _check(item, known[name], root, where)
        elif extra is False:
            yield f"{where}: unexpected field (not in the schema)"
        else:
            yield from _check(item, extra, root, where)


def _bounds(value: float, schema: Mapping[str, Any], path: str) -> Iterator[str]:
    for key, sign, ok in (("minimum", ">=", value >= schema.get("minimum", -math.inf)),
                          ("maximum", "<=", value <= schema.get("maximum", math.inf)),
                          ("exclusiveMinimum", ">",
                           value > schema.get("exclusiveMinimum", -math.inf)),
                          ("exclusiveMaximum", "<",
                           value < schema.get("exclusiveMaximum", math.inf))):
        if key in schema and not ok:
            yield f"{path}: expected a number {sign} {_json(schema[key])}, got {_json(value)}"


def _resolve(root: Mapping[str, Any], ref: str) -> Any:
    if not ref.startswith("#"):
        raise SchemaUnsupported(f"$ref {ref!r}: only references inside the schema")
    node: Any = root
    for part in filter(None, ref[1:].split("/")):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def _is(value: Any, kind: str) -> bool:
    if kind == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer())
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, {"object": dict, "array": list, "string": str,
                              "boolean": bool, "null": type(None)}[kind])


def _equal(value: Any, expected: Any) -> bool:
    """JSON equality: 1 equals 1.0, but true is not 1."""
    if isinstance(value, bool) or isinstance(expected, bool):
        return value is expected
    return value == expected


def _member(path: str, name: str) -> str:
    return f"{path}.{name}" if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) \
        else f"{path}[{json.dumps(name)}]"


def _json(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=True)
    return text if len(text) <= VALUE_LIMIT else text[:VALUE_LIMIT - 1] + "…"


def _shown(value: Any) -> str:
    """A value as a problem line quotes it: its kind, and itself when it is short."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f"the string {_json(value)}"
    if isinstance(value, int | float):
        return f"the number {_json(value)}"
    if isinstance(value, list):
        return f"an array of {len(value)} items"
    return "an object"
