"""OpenAPI v3 documents per group-version, for `kubectl explain` and kubectl's validation probe.

kubectl checks here whether the server validates fields itself (the `fieldValidation` query
parameter on PATCH/POST); if it does, `kubectl apply` leaves validation to the server.
CRD kinds carry their `openAPIV3Schema`; built-in kinds only a permissive stub.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from tests.kube.apiserver.errors import ApiError
from tests.kube.apiserver.registry import Registry, ResourceType

_PARAMS = [
    {"name": n, "in": "query", "schema": {"type": "string"}, "uniqueItems": True}
    for n in ("dryRun", "fieldManager", "fieldValidation")
]


def _gv_path(rtype: ResourceType) -> str:
    return f"apis/{rtype.group}/{rtype.version}" if rtype.group else f"api/{rtype.version}"


def root(registry: Registry) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for gv in sorted({_gv_path(t) for t in registry}):
        digest = hashlib.sha256(
            json.dumps(group_version_doc(registry, gv), sort_keys=True).encode()
        ).hexdigest()
        paths[gv] = {"serverRelativeURL": f"/openapi/v3/{gv}?hash={digest[:32].upper()}"}
    return {"paths": paths}


def _schema_name(rtype: ResourceType) -> str:
    group = ".".join(reversed(rtype.group.split("."))) if rtype.group else "io.k8s.api.core"
    return f"{group}.{rtype.version}.{rtype.kind}"


def _schema(rtype: ResourceType) -> dict[str, Any]:
    gvk = [{"group": rtype.group, "version": rtype.version, "kind": rtype.kind}]
    if rtype.crd is not None:
        schema = dict(rtype.crd_version().get("schema", {}).get("openAPIV3Schema", {}))
    else:
        schema = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    return {**schema, "x-kubernetes-group-version-kind": gvk}


def group_version_doc(registry: Registry, gv: str) -> dict[str, Any]:
    rtypes = [t for t in registry if _gv_path(t) == gv]
    if not rtypes:
        raise ApiError(404, "NotFound", f"the server could not find the requested resource: /openapi/v3/{gv}")
    paths: dict[str, Any] = {}
    for rtype in rtypes:
        gvk = {"group": rtype.group, "version": rtype.version, "kind": rtype.kind}
        scope = f"/namespaces/{{namespace}}/{rtype.plural}" if rtype.namespaced else f"/{rtype.plural}"
        op = {"parameters": _PARAMS, "x-kubernetes-group-version-kind": gvk, "responses": {}}
        paths[f"/{gv}{scope}"] = {"post": {**op, "x-kubernetes-action": "post"}}
        paths[f"/{gv}{scope}/{{name}}"] = {
            "put": {**op, "x-kubernetes-action": "put"},
            "patch": {**op, "x-kubernetes-action": "patch"},
        }
    schemas = {_schema_name(t): _schema(t) for t in rtypes}
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.37.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    }
