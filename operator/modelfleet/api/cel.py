"""Evaluate a CRD schema's CEL rules (`x-kubernetes-validations`) offline, as the API server would.

`modelfleet validate` runs the very rules of the generated CRD with cel-python, so a fleet that passes
here passes `kubectl apply` (modulo CEL dialect differences, see docs/reference.md).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import celpy
from celpy.adapter import json_to_cel
from celpy.evaluation import CELEvalError

from modelfleet.api.problems import Problem, join_path, lookup

_ENV = celpy.Environment()


@lru_cache(maxsize=256)
def _program(rule: str) -> Any:
    return _ENV.program(_ENV.compile(rule))


def rule_holds(rule: str, value: Any, *, converted: Any = None) -> bool:
    """True when the rule evaluates to true with `self` bound to value; errors count as failures.

    `converted` is `value` already turned into CEL values, when the caller checks several rules on it.
    """
    try:
        result = _program(rule).evaluate({"self": json_to_cel(value) if converted is None else converted})
    except CELEvalError:
        return False
    return isinstance(result, celpy.celtypes.BoolType) and bool(result)


def _names(value: Any) -> Any:
    """A list of named objects is shown by its names: the rest of each object only hides the point."""
    if isinstance(value, list) and value and all(isinstance(item, dict) and "name" in item for item in value):
        return [item["name"] for item in value]
    return value


def evaluate(schema: dict[str, Any], value: Any, path: str = "") -> list[Problem]:
    """Every broken rule under this schema node, with the field path the rule points at."""
    problems: list[Problem] = []
    rules = schema.get("x-kubernetes-validations", [])
    converted = json_to_cel(value) if rules else None
    for entry in rules:
        if not rule_holds(entry["rule"], value, converted=converted):
            field_path = entry.get("fieldPath", "")
            problems.append(Problem(path + field_path, _names(lookup(value, field_path)), entry["message"]))
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        for key, child in value.items():
            if key in properties:
                problems.extend(evaluate(properties[key], child, join_path(path, key)))
    elif isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            problems.extend(evaluate(schema["items"], item, join_path(path, index)))
    return problems
