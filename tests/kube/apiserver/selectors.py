"""Label selectors (equality- and set-based) and field selectors, as in `?labelSelector=`."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from tests.kube.apiserver.errors import bad_request

Predicate = Callable[[dict[str, Any]], bool]

# `key in (a,b)`, `key notin (a)`, `key!=v`, `key==v`, `key=v`, `!key`, `key`
_SET_RE = re.compile(r"^\s*(?P<key>[^\s!=()]+)\s+(?P<op>in|notin)\s+\((?P<values>[^)]*)\)\s*$")
_EQ_RE = re.compile(r"^\s*(?P<key>[^\s!=()]+)\s*(?P<op>!=|==|=)\s*(?P<value>[^\s,()]*)\s*$")
_EXISTS_RE = re.compile(r"^\s*(?P<neg>!?)\s*(?P<key>[^\s!=(),]+)\s*$")


def _split_terms(selector: str) -> list[str]:
    """Split on commas that are not inside `( ... )`."""
    terms, depth, current = [], 0, ""
    for char in selector:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            terms.append(current)
            current = ""
        else:
            current += char
    terms.append(current)
    return [t for t in terms if t.strip()]


def _label_term(term: str) -> Predicate:
    if m := _SET_RE.match(term):
        key, values = m["key"], {v.strip() for v in m["values"].split(",") if v.strip()}
        if m["op"] == "in":
            return lambda labels: labels.get(key) in values
        return lambda labels: labels.get(key) not in values
    if m := _EQ_RE.match(term):
        key, value = m["key"], m["value"]
        if m["op"] == "!=":
            return lambda labels: labels.get(key) != value
        return lambda labels: labels.get(key) == value
    if m := _EXISTS_RE.match(term):
        key, negated = m["key"], bool(m["neg"])
        return lambda labels: (key in labels) != negated
    raise bad_request(f"unable to parse requirement: {term!r}")


def label_selector(selector: str | None) -> Predicate:
    """A predicate over whole objects, true when their labels match `selector`."""
    terms = [_label_term(t) for t in _split_terms(selector or "")]
    return lambda obj: all(t(obj.get("metadata", {}).get("labels") or {}) for t in terms)


def _lookup(obj: dict[str, Any], path: str) -> str | None:
    value: Any = obj
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return None if value is None else str(value)


def field_selector(selector: str | None) -> Predicate:
    """Equality field selectors on any dotted path (kube allows only a few per kind)."""
    checks: list[Predicate] = []
    for term in _split_terms(selector or ""):
        m = _EQ_RE.match(term)
        if not m:
            raise bad_request(f"invalid field selector: {term!r}")
        path, value, negated = m["key"], m["value"], m["op"] == "!="
        checks.append(lambda obj, p=path, v=value, n=negated: (_lookup(obj, p) == v) != n)  # type: ignore[misc]
    return lambda obj: all(check(obj) for check in checks)
