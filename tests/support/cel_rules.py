"""Evaluation of a CRD's `x-kubernetes-validations` CEL rules with cel-python.

Mirrors kube-apiserver: each rule runs at its schema node with `self` bound to the value there
(per item for arrays, per value for maps); rules that mention `oldSelf` are transition rules
and run only on updates where the old value at the same place exists.
"""

from __future__ import annotations

import functools
import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import celpy
from celpy import celtypes

Schema = dict[str, Any]

# kube reports CEL failures with the schema type as the "value" (`Invalid value: "object": ...`).
_REASON_TYPES = {
    "FieldValueInvalid": "Invalid value",
    "FieldValueForbidden": "Forbidden",
    "FieldValueRequired": "Required value",
    "FieldValueDuplicate": "Duplicate value",
}


@dataclass(frozen=True)
class RuleFailure:
    path: str
    schema_type: str
    error_type: str
    message: str


def _lower_ascii(s: celtypes.StringType) -> celtypes.StringType:
    return celtypes.StringType(s.lower())


def _upper_ascii(s: celtypes.StringType) -> celtypes.StringType:
    return celtypes.StringType(s.upper())


def _trim(s: celtypes.StringType) -> celtypes.StringType:
    return celtypes.StringType(s.strip())


def _join(items: celtypes.ListType, sep: str = "") -> celtypes.StringType:
    return celtypes.StringType(str(sep).join(str(i) for i in items))


def _split(s: celtypes.StringType, sep: celtypes.StringType) -> celtypes.ListType:
    return celtypes.ListType([celtypes.StringType(p) for p in str(s).split(str(sep))])


def _is_sorted(items: celtypes.ListType) -> celtypes.BoolType:
    return celtypes.BoolType(all(a <= b for a, b in itertools.pairwise(items)))


# A few of the Kubernetes CEL library extensions that cel-python lacks; extend on demand.
_KUBE_FUNCTIONS: dict[str, Any] = {
    "lowerAscii": _lower_ascii,
    "upperAscii": _upper_ascii,
    "trim": _trim,
    "join": _join,
    "split": _split,
    "isSorted": _is_sorted,
}


@functools.lru_cache(maxsize=512)
def _program(expr: str) -> Any:
    env = celpy.Environment()
    return env.program(env.compile(expr), functions=_KUBE_FUNCTIONS)


def _evaluate(expr: str, self_value: Any, old_value: Any, has_old: bool) -> Any:
    activation: dict[str, Any] = {"self": celpy.json_to_cel(self_value)}
    if has_old:
        activation["oldSelf"] = celpy.json_to_cel(old_value)
    return _program(expr).evaluate(activation)


def _is_transition(rule: str) -> bool:
    return re.search(r"\boldSelf\b", rule) is not None


def _schema_type(schema: Schema) -> str:
    return str(schema.get("type", "object"))


def check_rules(schema: Schema, value: Any, old: Any, *, has_old: bool, path: str = "") -> list[RuleFailure]:
    """All CEL rule failures under `schema` for `value` (and `old`, when updating)."""
    return list(_walk(schema, value, old, has_old, path))


def _walk(schema: Schema, value: Any, old: Any, has_old: bool, path: str) -> Iterator[RuleFailure]:
    yield from _check_node(schema, value, old, has_old, path)
    if isinstance(value, dict):
        props: dict[str, Schema] = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        old_map = old if has_old and isinstance(old, dict) else {}
        for key, item in value.items():
            sub = props.get(key) or (extra if isinstance(extra, dict) else None)
            if sub is None:
                continue
            child = f"{path}.{key}" if key in props else f"{path}[{key}]"
            yield from _walk(sub, item, old_map.get(key), key in old_map, child.lstrip("."))
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        olds = _correlate(schema, value, old if has_old and isinstance(old, list) else None)
        for index, item in enumerate(value):
            found, old_item = olds[index]
            yield from _walk(schema["items"], item, old_item, found, f"{path}[{index}]")


def _correlate(schema: Schema, value: list[Any], old: list[Any] | None) -> list[tuple[bool, Any]]:
    """Pair new items with old ones: only map-lists have a stable identity (their keys)."""
    keys = schema.get("x-kubernetes-list-map-keys")
    if old is None or schema.get("x-kubernetes-list-type") != "map" or not keys:
        return [(False, None)] * len(value)
    by_key = {tuple(o.get(k) for k in keys): o for o in old if isinstance(o, dict)}
    pairs: list[tuple[bool, Any]] = []
    for item in value:
        ident = tuple(item.get(k) for k in keys) if isinstance(item, dict) else None
        pairs.append((ident in by_key, by_key.get(ident)) if ident is not None else (False, None))
    return pairs


def _check_node(schema: Schema, value: Any, old: Any, has_old: bool, path: str) -> Iterator[RuleFailure]:
    for rule in schema.get("x-kubernetes-validations", []):
        expr: str = rule["rule"]
        if _is_transition(expr) and not has_old:
            continue
        where = path + rule.get("fieldPath", "") if rule.get("fieldPath") else path
        error_type = _REASON_TYPES.get(rule.get("reason", "FieldValueInvalid"), "Invalid value")
        try:
            result = _evaluate(expr, value, old, has_old)
        except Exception as exc:  # any CEL failure is a validation error, as in kube
            yield RuleFailure(
                where.lstrip("."), _schema_type(schema), "Invalid value", f"{exc} evaluating rule: {expr}"
            )
            continue
        if isinstance(result, celtypes.BoolType) and bool(result):
            continue
        if not isinstance(result, celtypes.BoolType):
            message = f"rule did not evaluate to a bool ({result!r}): {expr}"
        else:
            message = _message(rule, value, old, has_old)
        yield RuleFailure(where.lstrip("."), _schema_type(schema), error_type, message)


def _message(rule: dict[str, Any], value: Any, old: Any, has_old: bool) -> str:
    if "messageExpression" in rule:
        try:
            text = _evaluate(rule["messageExpression"], value, old, has_old)
            if isinstance(text, str) and text.strip():
                return str(text)
        except Exception:  # kube falls back to the static message likewise
            pass
    return str(rule.get("message") or f"failed rule: {rule['rule']}")
