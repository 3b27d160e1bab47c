"""Structural-schema mechanics of a CRD version: pruning, defaulting, JSON-Schema conversion.

kube-apiserver runs these on every write of a custom resource, in this order: prune unknown
fields, apply `default`s, validate. Validation itself is in `crd_validation`.
"""

from __future__ import annotations

import copy
from typing import Any

Schema = dict[str, Any]

# ObjectMeta is never pruned by a CRD schema: the apiserver owns it.
_ROOT_KEEP = ("apiVersion", "kind", "metadata")


def version_schema(crd: dict[str, Any], version: str) -> Schema:
    """The `openAPIV3Schema` of one served version of a CRD."""
    for entry in crd["spec"]["versions"]:
        if entry["name"] == version:
            schema: Schema = entry.get("schema", {}).get("openAPIV3Schema", {})
            return schema
    raise KeyError(f"CRD {crd['metadata']['name']} has no version {version!r}")


def prune(schema: Schema, value: Any, *, root: bool = True) -> tuple[Any, list[str]]:
    """Drop fields the schema does not know; return the pruned value and the dropped paths."""
    dropped: list[str] = []
    return _prune(schema, copy.deepcopy(value), "", dropped, root=root), dropped


def _prune(schema: Schema, value: Any, path: str, dropped: list[str], *, root: bool = False) -> Any:
    if isinstance(value, dict):
        props: dict[str, Schema] = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        preserve = schema.get("x-kubernetes-preserve-unknown-fields", False)
        embedded = root or schema.get("x-kubernetes-embedded-resource", False)
        for key in list(value):
            sub = f"{path}.{key}" if path else key
            if embedded and key in _ROOT_KEEP and key not in props:
                continue
            if key in props:
                if root and key == "metadata":
                    continue  # ObjectMeta: validated by the apiserver, not pruned by the schema
                value[key] = _prune(props[key], value[key], sub, dropped)
            elif isinstance(extra, dict):
                value[key] = _prune(extra, value[key], f"{path}[{key}]", dropped)
            elif not preserve and extra is not True:
                dropped.append(sub)
                del value[key]
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [_prune(schema["items"], item, f"{path}[{i}]", dropped) for i, item in enumerate(value)]
    return value


def apply_defaults(schema: Schema, value: Any) -> Any:
    """Fill absent object fields that declare a `default` (recursively, in place)."""
    if isinstance(value, dict):
        for key, sub in schema.get("properties", {}).items():
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
            if key in value:
                apply_defaults(sub, value[key])
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for key in value:
                if key not in schema.get("properties", {}):
                    apply_defaults(extra, value[key])
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for item in value:
            apply_defaults(schema["items"], item)
    return value


def to_json_schema(schema: Schema) -> Schema:
    """Translate an OpenAPI v3 (Kubernetes flavour) schema into a Draft 4 JSON Schema."""
    out: Schema = {}
    for key, val in schema.items():
        if key.startswith("x-kubernetes-") or key in ("nullable", "format", "default", "description"):
            continue
        if key == "properties":
            out[key] = {name: to_json_schema(sub) for name, sub in val.items()}
        elif key in ("items", "additionalProperties", "not") and isinstance(val, dict):
            out[key] = to_json_schema(val)
        elif key in ("allOf", "anyOf", "oneOf"):
            out[key] = [to_json_schema(sub) for sub in val]
        else:
            out[key] = copy.deepcopy(val)
    if schema.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [*out.get("anyOf", []), {"type": "integer"}, {"type": "string"}]
    if schema.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    return out
