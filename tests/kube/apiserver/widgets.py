"""A small CRD for testing the emulator itself: printer columns, a status subresource, CEL rules."""

from __future__ import annotations

from typing import Any

GROUP, VERSION, PLURAL, KIND = "test.modelfleet.dev", "v1", "widgets", "Widget"

_ITEM = {
    "type": "object",
    "required": ["name", "replicas"],
    "properties": {
        "name": {"type": "string", "pattern": "^[a-z][a-z0-9-]*$", "maxLength": 20},
        "replicas": {
            "type": "integer",
            "minimum": 0,
            "x-kubernetes-validations": [{"rule": "self <= 8", "message": "at most 8 replicas per item"}],
        },
    },
    "x-kubernetes-validations": [
        {"rule": "self.name != 'forbidden'", "message": "this name is reserved", "fieldPath": ".name"}
    ],
}

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "apiVersion": {"type": "string"},
        "kind": {"type": "string"},
        "metadata": {"type": "object"},
        "spec": {
            "type": "object",
            "required": ["size"],
            "properties": {
                "size": {"type": "string", "enum": ["small", "large"]},
                "color": {"type": "string", "default": "blue"},
                "items": {"type": "array", "items": _ITEM, "maxItems": 4},
                "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            },
            "x-kubernetes-validations": [
                {
                    "rule": "self.size == oldSelf.size || !has(oldSelf.items)",
                    "message": "size is immutable once items exist",
                },
            ],
        },
        "status": {
            "type": "object",
            "properties": {"phase": {"type": "string"}, "message": {"type": "string"}},
        },
    },
}

CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": f"{PLURAL}.{GROUP}"},
    "spec": {
        "group": GROUP,
        "scope": "Namespaced",
        "names": {"plural": PLURAL, "singular": "widget", "kind": KIND, "shortNames": ["wg"]},
        "versions": [
            {
                "name": VERSION,
                "served": True,
                "storage": True,
                "schema": {"openAPIV3Schema": SCHEMA},
                "subresources": {"status": {}},
                "additionalPrinterColumns": [
                    {"name": "Size", "type": "string", "jsonPath": ".spec.size"},
                    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
                    {"name": "Message", "type": "string", "jsonPath": ".status.message", "priority": 1},
                ],
            }
        ],
    },
}


def widget(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": {"name": name},
        "spec": {"size": "small", **spec},
    }
