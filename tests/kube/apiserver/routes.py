"""URL → (resource, namespace, name, subresource, action) for the Kubernetes REST layout.

kmock's own parser treats `/api/v1/namespaces[/x]` as a namespace prefix and fails on it, so
the emulator builds its kmock `Request`s with this parser instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import kmock


@dataclass(frozen=True)
class Route:
    resource: kmock.resource | None = None
    namespace: str | None = None
    name: str | None = None
    subresource: str | None = None


def parse(path: str) -> Route:
    parts = [p for p in path.split("/") if p]
    # Discovery paths: kmock's discovery handlers expect the group (and version) in `resource`.
    if parts[:1] == ["api"] and len(parts) == 2:
        return Route(kmock.resource(group="", version=parts[1]))
    if parts[:1] == ["apis"] and len(parts) in (2, 3):
        return Route(kmock.resource(group=parts[1], version=parts[2] if len(parts) == 3 else None))
    if len(parts) >= 3 and parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif len(parts) >= 4 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return Route()
    namespace = None
    # `/namespaces/{ns}/{plural}...` is a namespaced path; `/namespaces[/{name}[/status]]` is the resource.
    namespace_subresource = group == "" and len(rest) == 3 and rest[2] in ("status", "finalize")
    if len(rest) >= 3 and rest[0] == "namespaces" and not namespace_subresource:
        namespace, rest = rest[1], rest[2:]
    plural = rest[0]
    name = rest[1] if len(rest) > 1 else None
    subresource = "/".join(rest[2:]) or None
    return Route(kmock.resource(group, version, plural), namespace, name, subresource)


def action(method: str, route: Route, watch: bool) -> kmock.action | None:
    if route.resource is None or route.resource.plural is None:
        return None
    if method == "GET":
        return kmock.action.WATCH if watch else kmock.action.FETCH if route.name else kmock.action.LIST
    if route.name is None:
        return kmock.action.CREATE if method == "POST" else None
    return {"PATCH": kmock.action.UPDATE, "DELETE": kmock.action.DELETE}.get(method)
