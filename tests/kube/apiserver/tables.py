"""Server-side printing: `meta.k8s.io/v1` `Table`s from a CRD's `additionalPrinterColumns`.

kubectl asks for these (`Accept: application/json;as=Table;v=v1;g=meta.k8s.io`) and prints them
as is; columns with `priority > 0` are shown only by `-o wide`.
"""

from __future__ import annotations

import datetime
import json
from typing import Any

from tests.kube.apiserver import jsonpath
from tests.kube.apiserver.registry import ResourceType

_NAME = {
    "name": "Name",
    "type": "string",
    "format": "name",
    "priority": 0,
    "description": "Name must be unique within a namespace.",
}
_AGE = {
    "name": "Age",
    "type": "date",
    "jsonPath": ".metadata.creationTimestamp",
    "priority": 0,
    "description": "CreationTimestamp is a timestamp representing the server time when this object was"
    " created.",
}


def wants_table(accept: str) -> bool:
    return "as=Table" in accept


def columns(rtype: ResourceType) -> list[dict[str, Any]]:
    declared: list[dict[str, Any]] = []
    if rtype.crd is not None:
        declared = rtype.crd_version().get("additionalPrinterColumns") or []
    if not declared:
        declared = [_AGE]
    return [_NAME, *({"priority": 0, "description": "", **c} for c in declared)]


def age(timestamp: str, now: datetime.datetime | None = None) -> str:
    """kube's short human duration (`45s`, `3m2s`, `5h`, `12d`)."""
    then = datetime.datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    seconds = int(((now or datetime.datetime.now(datetime.UTC)) - then).total_seconds())
    if seconds < 120:
        return f"{max(seconds, 0)}s"
    if seconds < 600:
        return f"{seconds // 60}m{seconds % 60}s" if seconds % 60 else f"{seconds // 60}m"
    if seconds < 3 * 3600:
        return f"{seconds // 60}m"
    if seconds < 48 * 3600:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def _cell(column: dict[str, Any], obj: dict[str, Any]) -> Any:
    if column.get("format") == "name" and "jsonPath" not in column:
        return obj.get("metadata", {}).get("name", "")
    values = jsonpath.find(obj, column["jsonPath"])
    if not values:
        return None
    if column["type"] == "date" and isinstance(values[0], str):
        return age(values[0])
    if len(values) == 1 and not isinstance(values[0], (dict, list)):
        return values[0]
    return ",".join(v if isinstance(v, str) else json.dumps(v) for v in values)


def _partial(obj: dict[str, Any]) -> dict[str, Any]:
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata", {}),
    }


def table(
    rtype: ResourceType, objs: list[dict[str, Any]], resource_version: str, include_object: str = "Metadata"
) -> dict[str, Any]:
    cols = columns(rtype)
    rows = []
    for obj in objs:
        row: dict[str, Any] = {"cells": [_cell(c, obj) for c in cols]}
        if include_object == "Object":
            row["object"] = obj
        elif include_object != "None":
            row["object"] = _partial(obj)
        rows.append(row)
    definitions = [{k: v for k, v in c.items() if k != "jsonPath"} for c in cols]
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": definitions,
        "rows": rows,
    }
