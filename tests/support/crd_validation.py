"""Validate a custom resource against its CRD the way kube-apiserver does on write.

`validate(crd, version, obj, old)` prunes and defaults a copy of `obj`, checks the structural
schema (types, required, enum, bounds, pattern, lengths) with `jsonschema`, then the CEL rules
(`x-kubernetes-validations`, incl. transition rules with `oldSelf`) with cel-python, and returns
kube-shaped field errors. Unit tests use it to exercise our CRD's rules without an API server.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import jsonschema

from tests.support import cel_rules, crd_schema

# kube's StatusCause.reason for each error type.
CAUSE_REASONS = {
    "Invalid value": "FieldValueInvalid",
    "Required value": "FieldValueRequired",
    "Unsupported value": "FieldValueNotSupported",
    "Too long": "FieldValueTooLong",
    "Too many": "FieldValueTooMany",
    "Forbidden": "FieldValueForbidden",
    "Duplicate value": "FieldValueDuplicate",
}


@dataclass(frozen=True)
class FieldError:
    """One invalid field: `field` is kube's path (`spec.models[1].replicas`)."""

    field: str
    value: Any
    message: str
    error_type: str = "Invalid value"
    # Whether `value` is printed; kube omits it for "Required value", "Forbidden", "Too long".
    show_value: bool = field(default=True)

    @property
    def reason(self) -> str:
        return CAUSE_REASONS.get(self.error_type, "FieldValueInvalid")

    def body(self) -> str:
        """The text after the field path, as kube prints it: `Invalid value: 3: must be ...`."""
        if not self.show_value:
            return f"{self.error_type}: {self.message}" if self.message else self.error_type
        return f"{self.error_type}: {format_value(self.value)}: {self.message}"

    def __str__(self) -> str:
        return f"{self.field}: {self.body()}"


def format_value(value: Any) -> str:
    if isinstance(value, dict):
        return '"object"'
    if isinstance(value, list):
        return '"array"'
    return json.dumps(value)


def validate(
    crd: dict[str, Any], version: str, obj: dict[str, Any], old: dict[str, Any] | None = None
) -> list[FieldError]:
    """All field errors for writing `obj` (replacing `old` on update) as `version` of `crd`."""
    schema = crd_schema.version_schema(crd, version)
    pruned, _ = crd_schema.prune(schema, obj)
    crd_schema.apply_defaults(schema, pruned)
    errors = structural_errors(schema, pruned)
    failures = cel_rules.check_rules(schema, pruned, old, has_old=old is not None)
    errors += [_cel_error(f) for f in failures]
    return errors


def structural_errors(schema: crd_schema.Schema, obj: Any) -> list[FieldError]:
    validator = jsonschema.Draft4Validator(crd_schema.to_json_schema(schema))
    errors = sorted(validator.iter_errors(obj), key=lambda e: [str(p) for p in e.absolute_path])
    return [err for e in errors for err in _from_jsonschema(e)]


def field_path(parts: Iterable[Any]) -> str:
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif str(part).replace("-", "_").isidentifier():
            out += f".{part}" if out else str(part)
        else:
            out += f"[{part}]"
    return out


def _from_jsonschema(error: jsonschema.ValidationError) -> list[FieldError]:
    path = field_path(error.absolute_path)
    where = path or "<root>"
    kind, arg, value = error.validator, error.validator_value, error.instance
    if kind == "required":
        missing = [name for name in arg if isinstance(value, dict) and name not in value]
        return [
            FieldError(field_path([*error.absolute_path, name]), None, "", "Required value", show_value=False)
            for name in missing
        ]
    if kind == "type":
        got = _json_type(value)
        return [FieldError(path, got, f'{where} in body must be of type {_type_name(arg)}: "{got}"')]
    if kind == "enum":
        allowed = ", ".join(json.dumps(v) for v in arg)
        return [FieldError(path, value, f"supported values: {allowed}", "Unsupported value")]
    if kind == "maxLength":
        return [FieldError(path, value, f"may not be more than {arg} bytes", "Too long", show_value=False)]
    if kind == "maxItems":
        return [FieldError(path, len(value), f"must have at most {arg} items", "Too many")]
    messages = {
        "minimum": f"should be greater than or equal to {arg}",
        "maximum": f"should be less than or equal to {arg}",
        "pattern": f"should match '{arg}'",
        "minLength": f"should be at least {arg} chars long",
        "minItems": f"should have at least {arg} items",
        "minProperties": f"should have at least {arg} properties",
        "maxProperties": f"should have at most {arg} properties",
        "uniqueItems": "shouldn't contain duplicates",
    }
    if kind in messages:
        return [FieldError(path, value, f"{where} in body {messages[kind]}")]
    return [FieldError(path, value, error.message)]


def _type_name(arg: Any) -> str:
    return str(arg[0] if isinstance(arg, list) else arg)


def _json_type(value: Any) -> str:
    names = {
        bool: "boolean",
        int: "integer",
        float: "number",
        str: "string",
        list: "array",
        dict: "object",
        type(None): "null",
    }
    return names.get(type(value), type(value).__name__)


def _cel_error(failure: cel_rules.RuleFailure) -> FieldError:
    show = failure.error_type in ("Invalid value", "Duplicate value")
    return FieldError(failure.path, failure.schema_type, failure.message, failure.error_type, show_value=show)
