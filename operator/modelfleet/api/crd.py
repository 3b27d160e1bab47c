"""Generate the ModelFleet CustomResourceDefinition from the pydantic models.

pydantic writes JSON Schema (2020-12); Kubernetes wants a *structural* OpenAPI v3 schema: no `$ref`, no
`anyOf` with null, no `additionalProperties: false`, booleans for exclusive bounds, no titles. This module
does that translation, so the CRD never drifts from the models, and one adjustment for GitOps:

Defaults inside list items (`models[]`, `workers[]`) stay out of the CRD. The API server would write them
into the stored list, and client-side `kubectl apply` (or Argo CD's diff) compares lists whole: every
apply of the unchanged file would then say `configured` and Argo CD would show the fleet OutOfSync
forever. The operator applies those defaults itself (the pydantic models), their descriptions say
them, and CEL rules read an absent field as its default.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import BaseModel

from modelfleet.api import v1alpha1 as api

CRD_NAME = f"{api.PLURAL}.{api.GROUP}"
CRD_FILE = f"crds/{CRD_NAME}.yaml"

PRINTER_COLUMNS: list[dict[str, Any]] = [
    {
        "name": "Ready",
        "type": "string",
        "jsonPath": ".status.ready",
        "description": "Models ready / all models",
    },
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase", "description": "Fleet phase"},
    {"name": "Endpoint", "type": "string", "jsonPath": ".status.endpoint", "description": "OpenAI base URL"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    {
        "name": "RayService",
        "type": "string",
        "jsonPath": ".status.rayService",
        "priority": 1,
        "description": "Owned RayService",
    },
    {
        "name": "Workers",
        "type": "string",
        "jsonPath": ".status.readyWorkers",
        "priority": 1,
        "description": "Worker pods ready / wanted (0/0 when every group scaled to zero)",
    },
    {
        "name": "Message",
        "type": "string",
        "jsonPath": ".status.message",
        "priority": 1,
        "description": "What needs attention",
    },
]

_DROP_KEYS = {"title"}


def _inline(node: Any, defs: dict[str, Any]) -> Any:
    """Resolve `$ref`s and rewrite one JSON Schema node into its structural OpenAPI form."""
    if isinstance(node, list):
        return [_inline(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    ref = node.pop("$ref", None)
    if ref is not None:
        target = dict(defs[ref.rsplit("/", 1)[-1]])
        # A field's own description wins over the class docstring of the type it refers to.
        target.update(node)
        node = target
    any_of = node.pop("anyOf", None)
    if any_of is not None:
        non_null = [branch for branch in any_of if branch.get("type") != "null"]
        if len(non_null) != 1:
            raise ValueError(f"cannot express anyOf {any_of!r} in a structural schema")
        merged = dict(non_null[0])
        merged.update(node)
        node = merged
        if node.get("default", 0) is None:
            del node["default"]
        return _inline(node, defs)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP_KEYS or key == "$defs":
            continue
        if key == "additionalProperties" and isinstance(value, bool):
            # extra="forbid" -> false (pruning already drops unknown fields); dict[str, Any] -> true.
            continue
        if key in ("exclusiveMinimum", "exclusiveMaximum") and not isinstance(value, bool):
            bound = "minimum" if key == "exclusiveMinimum" else "maximum"
            out[bound] = value
            out[key] = True
            continue
        if key == "properties":
            out[key] = {name: _inline(prop, defs) for name, prop in value.items()}
            continue
        out[key] = _inline(value, defs)
    return out


def structural_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The structural OpenAPI v3 schema of one pydantic model, refs inlined."""
    schema = model.model_json_schema(by_alias=True, mode="validation")
    defs = schema.pop("$defs", {})
    result: dict[str, Any] = _inline(schema, defs)
    return result


# `self.models.all(m, ...)`: the macro binds `m` to the items of `self.models`.
_MACRO_BINDING = re.compile(r"\bself\.(\w+)\.(?:all|exists|exists_one|map|filter)\(\s*(\w+)\s*,")
# `m.gpus` as a value (not `has(m.gpus)`, not a method call `m.gpus.size()` nor `self.models.all(`).
_FIELD_READ = re.compile(r"(?<!has\()\b(\w+)\.(\w+)\b(?!\s*[(.])")


def _defaults_of(schema: dict[str, Any]) -> dict[str, Any]:
    return {name: prop["default"] for name, prop in schema.get("properties", {}).items() if "default" in prop}


def _cel_literal(value: Any) -> str:
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return json.dumps(value)  # bools, ints and floats (300.0 stays a double) read the same in CEL


def _read_defaults(rule: str, bindings: dict[str, dict[str, Any]]) -> str:
    """`rule` with every read of a defaulted field F of a bound variable V as `(has(V.F) ? V.F : default)`."""

    def replace(match: re.Match[str]) -> str:
        var, name = match.groups()
        defaults = bindings.get(var) or {}
        if name not in defaults:
            return match.group(0)
        return f"(has({var}.{name}) ? {var}.{name} : {_cel_literal(defaults[name])})"

    return _FIELD_READ.sub(replace, rule)


def lift_list_item_defaults(node: dict[str, Any], in_list: bool = False) -> None:
    """Remove `default`s below array items (in place): CEL rules read them instead, descriptions say them."""
    item_defaults = {
        name: _defaults_of(prop.get("items") or {}) for name, prop in node.get("properties", {}).items()
    }
    for rule in node.get("x-kubernetes-validations", []):
        bindings = {"self": _defaults_of(node) if in_list else {}}
        for prop, var in _MACRO_BINDING.findall(rule["rule"]):
            bindings[var] = item_defaults.get(prop, {})
        rule["rule"] = _read_defaults(rule["rule"], bindings)
    for prop in node.get("properties", {}).values():
        lift_list_item_defaults(prop, in_list)
        if in_list and "default" in prop:
            default = prop.pop("default")
            prop["description"] = f"{prop.get('description', '')} Default: {json.dumps(default)}.".strip()
    if isinstance(node.get("items"), dict):
        lift_list_item_defaults(node["items"], in_list=True)


def build_crd() -> dict[str, Any]:
    """The CustomResourceDefinition for ModelFleet, as a dict ready to dump to YAML."""
    spec = structural_schema(api.ModelFleetSpec)
    lift_list_item_defaults(spec)
    root = {
        "type": "object",
        "description": api.ModelFleet.__doc__,
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string", "description": "modelfleet.dev/v1alpha1"},
            "kind": {"type": "string", "description": "ModelFleet"},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": structural_schema(api.ModelFleetStatus),
        },
        "x-kubernetes-validations": [
            api.cel(
                f"self.metadata.name.size() <= {api.MAX_FLEET_NAME}",
                f"metadata.name must be at most {api.MAX_FLEET_NAME} characters "
                "(KubeRay's RayService name limit)",
            )
        ],
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": CRD_NAME,
            "labels": {"app.kubernetes.io/name": "modelfleet", "app.kubernetes.io/part-of": "modelfleet"},
        },
        "spec": {
            "group": api.GROUP,
            "names": {
                "kind": api.KIND,
                "listKind": f"{api.KIND}List",
                "plural": api.PLURAL,
                "singular": api.SINGULAR,
                "shortNames": list(api.SHORT_NAMES),
                "categories": ["modelfleet"],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": api.VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": root},
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                }
            ],
        },
    }
