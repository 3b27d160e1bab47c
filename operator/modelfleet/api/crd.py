"""Generate the ModelFleet CustomResourceDefinition from the pydantic models.

pydantic writes JSON Schema (2020-12); Kubernetes wants a *structural* OpenAPI v3 schema: no `$ref`, no
`anyOf` with null, no `additionalProperties: false`, booleans for exclusive bounds, no titles. This module
does exactly that translation and nothing else, so the CRD never drifts from the models.
"""

from __future__ import annotations

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


def build_crd() -> dict[str, Any]:
    """The CustomResourceDefinition for ModelFleet, as a dict ready to dump to YAML."""
    root = {
        "type": "object",
        "description": api.ModelFleet.__doc__,
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string", "description": "modelfleet.dev/v1alpha1"},
            "kind": {"type": "string", "description": "ModelFleet"},
            "metadata": {"type": "object"},
            "spec": structural_schema(api.ModelFleetSpec),
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
