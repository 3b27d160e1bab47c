"""Admission of custom resources (prune, default, validate), prepared once per CRD version.

`crd_validation.validate` starts from scratch on every call: it turns the whole OpenAPI schema into
a JSON Schema (the KubeRay CRDs are megabytes of it), prunes a deep copy of the whole object,
validates all of it and evaluates every CEL rule with cel-python, which interprets a parse tree.
On the emulator's write path that was most of a write's cost. `Admission` builds the JSON-Schema
validators once, and remembers what pruning, defaulting, validation and the CEL rules make of each
top-level field (`spec`, `status`, ...) by its content: a status write checks the new status, not
the unchanged spec again, and a thousand fleets with the same spec are checked once.

All of these are pure functions of the field's value (and, for rules that mention `oldSelf`, of its
old value, then part of what is remembered), so the answers are exactly those of `crd_schema` and
`crd_validation` (test_admission compares them). A remembered pruned field is shared by every object
it was computed for: like all stored snapshots, it is never changed.
"""

from __future__ import annotations

import collections
import copy
import json
import re
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

import jsonschema

from tests.support import cel_rules, crd_schema, crd_validation

Obj = dict[str, Any]
T = TypeVar("T")
# A structural error's sort key (its path, as crd_validation sorts them) and what it reports.
Sorted = list[tuple[list[str], list[crd_validation.FieldError]]]

_MEMO_SIZE = 4096
_ROOT_KEEP = ("apiVersion", "kind", "metadata")  # kept at the root even when the schema omits them
_CHILDREN = ("properties", "additionalProperties", "items")
_OLD_SELF = re.compile(r"\boldSelf\b")
_SELF = re.compile(r"\b(?:self|oldSelf)\b")
_FIELD = re.compile(r"\s*\.\s*([A-Za-z_][A-Za-z0-9_]*)\b(?!\s*\()")  # `.name`, not `.size()`


def _rules(schema: Any) -> list[dict[str, Any]]:
    """Every CEL rule at or under a schema node."""
    if not isinstance(schema, dict):
        return []
    found = list(schema.get("x-kubernetes-validations") or [])
    for sub in (schema.get("properties") or {}).values():
        found += _rules(sub)
    return found + _rules(schema.get("additionalProperties")) + _rules(schema.get("items"))


def _mentions_old(rules: list[dict[str, Any]]) -> bool:
    """Whether a rule, or its message, reads `oldSelf` (only then does the old object matter)."""
    return any(_OLD_SELF.search(f"{r.get('rule', '')} {r.get('messageExpression', '')}") for r in rules)


def _paths_read(rules: list[dict[str, Any]]) -> list[tuple[str, ...]] | None:
    """The paths into the object that rules read, if they use `self` and `oldSelf` only through
    field selections (`self.metadata.name`; a method or index may follow: `.size()`, `[k]`).

    Then the values at those paths decide the outcome, and the rest of the object is neither
    converted to CEL values nor part of what is remembered. Any other use (`self.size()`, `self[k]`,
    `self` alone, a shadowing variable, the word in a string) gives None: the whole object."""
    paths: set[tuple[str, ...]] = set()
    for rule in rules:
        for text in (rule.get("rule", ""), rule.get("messageExpression", "")):
            for use in _SELF.finditer(text):
                path, at = [], use.end()
                while field := _FIELD.match(text, at):
                    path.append(field.group(1))
                    at = field.end()
                if not path:
                    return None
                paths.add(tuple(path))
    # A path inside another one read whole adds nothing.
    return sorted(p for p in paths if not any(p[: len(q)] == q for q in paths if len(q) < len(p)))


def _project(obj: Obj, paths: list[tuple[str, ...]]) -> Obj:
    """The object with only the values at `paths` (and the maps leading to them)."""
    out: Obj = {}
    for path in paths:
        src, dst = obj, out
        for depth, part in enumerate(path):
            if part not in src:
                break
            value = src[part]
            if depth == len(path) - 1 or not isinstance(value, dict):
                dst[part] = value  # a non-map on the way: whatever reading through it does, as is
                break
            src, dst = value, dst.setdefault(part, {})
    return out


class _Memo:
    """A bounded map from a field's content to the verdict on it, least recently used out first."""

    def __init__(self, forget: Callable[[Any], object] = lambda _: None) -> None:
        self._items: collections.OrderedDict[Hashable, Any] = collections.OrderedDict()
        self._forget = forget  # called with each value that falls out

    def get(self, key: Hashable | None, compute: Callable[..., T], *args: Any) -> T:
        """The remembered verdict for `key`, or `compute(*args)`'s (not remembered if `key` is None)."""
        if key is None:
            return compute(*args)
        if key in self._items:
            self._items.move_to_end(key)
            found: T = self._items[key]
            return found
        value = self._items[key] = compute(*args)
        if len(self._items) > _MEMO_SIZE:
            self._forget(self._items.popitem(last=False)[1])
        return value


class Admission:
    """What the CRD handler does to one version's objects on write, with the schema work done once."""

    def __init__(self, crd: Obj, version: str) -> None:
        self.schema = crd_schema.version_schema(crd, version)
        json_schema = crd_schema.to_json_schema(self.schema)
        # The root's own keywords, then each top-level property on its own (as `properties` does).
        self._root_validator = jsonschema.Draft4Validator(
            {k: v for k, v in json_schema.items() if k != "properties"}
        )
        self._field_validators = {
            key: self._root_validator.evolve(schema=sub)
            for key, sub in (json_schema.get("properties") or {}).items()
        }
        # The root node without its children: its own rules (the children are walked per field).
        self._root_rules = (
            {k: v for k, v in self.schema.items() if k not in _CHILDREN}
            if self.schema.get("x-kubernetes-validations")
            else None
        )
        self._root_reads = _paths_read(_rules(self._root_rules))
        self._ruled: dict[int, tuple[bool, bool]] = {}  # id(schema node) -> (has rules, reads oldSelf)
        self._structural = _Memo()
        self._cel = _Memo()
        # The root keeps only its own fields (true of every structural schema: no additionalProperties
        # beside properties), so it can be pruned field by field.
        extra = self.schema.get("additionalProperties")
        preserve = self.schema.get("x-kubernetes-preserve-unknown-fields")
        self._per_field = not isinstance(extra, dict) and extra is not True and not preserve
        self._pruned = _Memo(forget=lambda pair: self._contents.pop(id(pair[0]), None))
        self._contents: dict[int, str] = {}  # id() of a remembered pruned field -> its content

    def admit(self, obj: Obj, old: Obj | None) -> tuple[Obj, list[crd_validation.FieldError]]:
        """The pruned and defaulted object (a new one: `obj` is not changed) and its field errors."""
        pruned = self.prune(obj)
        return pruned, self.problems(pruned, old)

    def prune(self, obj: Obj) -> Obj:
        """`crd_schema.prune` then `crd_schema.apply_defaults`, as the root's steps of those walks."""
        if not self._per_field:
            pruned, _ = crd_schema.prune(self.schema, obj)
            result: Obj = crd_schema.apply_defaults(self.schema, pruned)
            return result
        props: dict[str, Any] = self.schema.get("properties") or {}
        out: Obj = {}
        for key, value in obj.items():
            if key not in props:
                if key in _ROOT_KEEP:
                    out[key] = copy.deepcopy(value)
            elif key == "metadata":  # ObjectMeta: the apiserver's, not pruned (but defaulted)
                out[key] = crd_schema.apply_defaults(props[key], copy.deepcopy(value))
            else:
                content = _content(value)
                remember = content and (key, content)
                pruned, pruned_content = self._pruned.get(remember, self._prune_field, key, value)
                if remember and pruned_content is not None:  # known while remembered (id() stays valid)
                    self._contents[id(pruned)] = pruned_content
                out[key] = pruned
        for key, sub in props.items():
            if key not in out and "default" in sub:
                out[key] = crd_schema.apply_defaults(sub, copy.deepcopy(sub["default"]))
        return out

    def _prune_field(self, key: str, value: Any) -> tuple[Any, str | None]:
        sub = self.schema["properties"][key]
        pruned, _ = crd_schema.prune(sub, value, root=False)
        pruned = crd_schema.apply_defaults(sub, pruned)
        return pruned, _content(pruned)

    def _content(self, value: Any) -> str | None:
        """`_content(value)`, known already for fields `prune` remembered."""
        known = self._contents.get(id(value))
        return _content(value) if known is None else known

    def problems(self, obj: Obj, old: Obj | None) -> list[crd_validation.FieldError]:
        """`crd_validation.validate` for an already pruned and defaulted object."""
        found = _sortable(self._root_validator.iter_errors(obj), ())
        for key, value in obj.items():
            if key == "metadata" and key in self._field_validators:  # new on every write: not remembered
                found += self._check_field(key, value)
            elif key in self._field_validators:
                content = self._content(value)
                found += self._structural.get(content and (key, content), self._check_field, key, value)
        found.sort(key=lambda pair: pair[0])  # stable: errors at one path keep the validator's order
        problems = [err for _, errs in found for err in errs]
        return problems + [crd_validation._cel_error(f) for f in self._cel_failures(obj, old)]

    def _check_field(self, key: str, value: Any) -> Sorted:
        return _sortable(self._field_validators[key].iter_errors(value), (key,))

    def _cel_failures(self, obj: Obj, old: Obj | None) -> list[cel_rules.RuleFailure]:
        """`cel_rules.check_rules` on the root, walked one level down as it walks (same paths, order)."""
        has_old = old is not None
        failures: list[cel_rules.RuleFailure] = []
        if self._root_rules is not None:
            reads = self._root_reads
            if reads is None:  # the rules may look at anything: the whole object, every time
                failures += _check_rules(self._root_rules, obj, old, has_old, "")
            else:
                seen_old = None if old is None else _project(old, reads)
                failures += self._check_rules(self._root_rules, _project(obj, reads), seen_old, has_old, "")
        props: dict[str, Any] = self.schema.get("properties", {})
        extra = self.schema.get("additionalProperties")
        old_map = old if has_old and isinstance(old, dict) else {}
        for key, item in obj.items():
            sub = props.get(key) or (extra if isinstance(extra, dict) else None)
            if sub is None:
                continue
            path = key if key in props else f"[{key}]"
            failures += self._check_rules(sub, item, old_map.get(key), key in old_map, path)
        return failures

    def _check_rules(
        self, schema: Obj, value: Any, old: Any, has_old: bool, path: str
    ) -> list[cel_rules.RuleFailure]:
        if id(schema) not in self._ruled:  # the schema's nodes live as long as self.schema does
            rules = _rules(schema)
            self._ruled[id(schema)] = (bool(rules), _mentions_old(rules))
        has_rules, reads_old = self._ruled[id(schema)]
        if not has_rules:
            return []
        if not reads_old:  # rules without oldSelf answer the same on create and update
            old, has_old = None, False
        content, old_content = self._content(value), self._content(old)
        key = content and old_content and (path, content, has_old, old_content)
        return self._cel.get(key or None, _check_rules, schema, value, old, has_old, path)


def _check_rules(schema: Obj, value: Any, old: Any, has_old: bool, path: str) -> list[cel_rules.RuleFailure]:
    return cel_rules.check_rules(schema, value, old, has_old=has_old, path=path)


def _content(value: Any) -> str | None:
    """A value's content as a memo key (None for what JSON cannot express, such as YAML's dates)."""
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return None


def _sortable(errors: Any, prefix: tuple[str, ...]) -> Sorted:
    """jsonschema errors of a field validated on its own, as if `prefix` led to it from the root."""
    found: Sorted = []
    for error in errors:
        error.path.extendleft(reversed(prefix))  # what jsonschema's descend() does for each level
        found.append(([str(p) for p in error.absolute_path], crd_validation._from_jsonschema(error)))
    return found
