"""docs/reference.md, generated (`make docs`): the fields of the ModelFleet API from the pydantic models that
also generate the CRD (their descriptions are what `kubectl explain` prints), the CEL rules from the
generated CRD, and the phases, model states, conditions and Events from the constants the operator writes
them with. The prose around the tables is in templates/reference.md.j2. tests/unit/test_reference_docs.py
fails when the committed page differs from what this writes.
"""

from __future__ import annotations

import json
import sys
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import annotated_types
import jinja2
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from modelfleet.api.crd import build_crd
from modelfleet.api.v1alpha1 import MODEL_STATES, PHASES, ModelFleetSpec, ModelFleetStatus

_TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("modelfleet", "templates"),
    undefined=jinja2.StrictUndefined,
    autoescape=False,
    keep_trailing_newline=True,
)
_PRIMITIVES = {str: "string", int: "int", float: "number", bool: "bool"}


def _type(annotation: Any) -> str:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        return " \\| ".join(str(a) for a in args)
    if origin is list:
        return f"list of {_type(args[0])}"
    if origin is dict:
        return "object"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type(a) for a in args if a is not type(None))
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "object"
    return _PRIMITIVES.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _bounds(field: FieldInfo) -> str:
    marks = {type(m).__name__: m for m in field.metadata}
    low = next((f"{m.ge}" for k, m in marks.items() if k == "Ge"), None) or next(
        (f">{m.gt}" for k, m in marks.items() if k == "Gt"), None
    )
    high = next((f"{m.le}" for k, m in marks.items() if k == "Le"), None)
    size = [m for m in field.metadata if isinstance(m, annotated_types.MinLen | annotated_types.MaxLen)]
    if size:
        least = next((m.min_length for m in size if isinstance(m, annotated_types.MinLen)), 0)
        most = next((m.max_length for m in size if isinstance(m, annotated_types.MaxLen)), None)
        return (
            f"{least}–{most} items"
            if most is not None and typing.get_origin(field.annotation) is list
            else ""
        )
    if low is not None and high is not None:
        return f"{low}–{high}"
    return f"≥ {low}" if low is not None and not low.startswith(">") else (f"> {low[1:]}" if low else "")


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    if value is None:
        return "unset"
    if isinstance(value, BaseModel):
        return "its fields' defaults"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"`{json.dumps(value)}`"


def _models_in(annotation: Any) -> Iterator[type[BaseModel]]:
    """The API models an annotation holds (`Model`, `list[Model]`, `Model | None`...)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
    for arg in typing.get_args(annotation):
        yield from _models_in(arg)


def field_rows(model: type[BaseModel], prefix: str = "", seen: dict[type, str] | None = None) -> list[str]:
    """One table row per field, depth first; a model met again is described once, where it first appears."""
    seen = {} if seen is None else seen
    rows = []
    for name, field in model.model_fields.items():
        path = f"{prefix}{field.alias or name}"
        kind = _type(field.annotation)
        bounds = _bounds(field)
        description = (field.description or "").replace("|", "\\|").replace("\n", " ")
        nested = list(_models_in(field.annotation))
        again = next((seen[m] for m in nested if m in seen), None)
        if again:
            description += f" Its fields are those of `{again}`."
        rows.append(
            f"| `{path}` | {kind}{f' ({bounds})' if bounds else ''} | {_default(field)} | {description} |"
        )
        for child in nested:
            if child not in seen:
                seen[child] = path
                joint = "[]." if typing.get_origin(field.annotation) is list else "."
                rows += field_rows(child, path + joint, seen)
    return rows


def cel_rows() -> list[str]:
    """Every `x-kubernetes-validations` rule of the generated CRD, where it applies and what it says."""
    root = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    rows: list[str] = []

    def walk(node: dict[str, Any], path: str) -> None:
        for rule in node.get("x-kubernetes-validations", []):
            where = path + rule.get("fieldPath", "") or "ModelFleet"
            rows.append(f"| `{where}` | {rule['message']} |")
        for key, child in (node.get("properties") or {}).items():
            walk(child, f"{path}.{key}" if path else key)
        if "items" in node:
            walk(node["items"], f"{path}[i]")

    walk(root, "")
    return rows


def table_rows(entries: dict[str, Any]) -> list[str]:
    """`| key | value... |` rows of a dict of strings or tuples of strings."""
    return [
        f"| `{key}` | {' | '.join(value) if isinstance(value, tuple) else value} |"
        for key, value in entries.items()
    ]


def render_reference() -> str:
    from modelfleet.reconcile import EVENTS
    from modelfleet.status import CONDITIONS

    return _TEMPLATES.get_template("reference.md.j2").render(
        spec_rows=field_rows(ModelFleetSpec, "spec."),
        status_rows=field_rows(ModelFleetStatus, "status."),
        cel_rows=cel_rows(),
        phase_rows=table_rows(PHASES),
        state_rows=table_rows(MODEL_STATES),
        condition_rows=table_rows(CONDITIONS),
        event_rows=[f"| `{reason}` | {kind} | {when} |" for reason, (kind, when) in EVENTS.items()],
    )


def main(argv: list[str] | None = None) -> int:
    """`python -m modelfleet.reference [-o FILE]`: print the page (or write it)."""
    args = sys.argv[1:] if argv is None else argv
    text = render_reference()
    if args[:1] == ["-o"] and len(args) == 2:
        Path(args[1]).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
