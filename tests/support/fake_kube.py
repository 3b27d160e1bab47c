"""An in-memory API server behind the three Kubernetes client APIs the Reconciler calls, for fast tests.

tests/kube run the operator against a real kube-apiserver, which takes minutes; most of what a reconcile
decides (apply or not, which Event, which status, which error kopf sees) needs only a store that answers
like one. This fake keeps objects as plain dicts keyed by (kind, namespace, name) and implements what the
Reconciler relies on, no more:

- server-side apply (`_content_type="application/apply-patch+yaml"`): create when missing (returning None,
  as the real client does for a 201), otherwise merge the applied fields over the live object. Dicts merge
  key by key, lists are replaced whole (atomic, as in a CRD without list-type markers), and a field the same
  field manager applied before but leaves out now is removed. Fields written by others stay.
- the status subresource: a JSON merge patch of `status` alone.
- API-server defaulting, through an optional hook run after every write (`container_port_protocols`).
- failures: `fail(method, 409)` makes the next call of that method raise the ApiException the real client
  raises for that status, with a JSON body `{"message": ...}`.
- a call log (`calls`) of everything the code under test did, to assert e.g. that nothing was written.

What tests do as a user would with kubectl (`put`, `edit`, `get`, `remove`) is not logged.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from kubernetes.client.exceptions import (
    ApiException,
    BadRequestException,
    ConflictException,
    ForbiddenException,
    NotFoundException,
    ServiceException,
    UnprocessableEntityException,
)

APPLY_PATCH = "application/apply-patch+yaml"
# The custom resources the Reconciler reads and applies, by plural.
KINDS = {"rayservices": "RayService", "modelfleets": "ModelFleet"}
PLURALS = {**{kind: plural for plural, kind in KINDS.items()}, "NetworkPolicy": "networkpolicies"}
REASONS = {
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    409: "Conflict",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}
_EXCEPTIONS: dict[int, type[ApiException]] = {
    400: BadRequestException,
    403: ForbiddenException,
    404: NotFoundException,
    409: ConflictException,
    422: UnprocessableEntityException,
}

Key = tuple[str, str, str]  # (kind, namespace, name)
Path = tuple[str, ...]
Defaulter = Callable[[str, dict[str, Any]], None]  # (kind, the stored object) -> None; edits in place


def api_error(status: int, message: str = "") -> ApiException:
    """The exception the real client raises for an HTTP error: its subclass for the status (Forbidden,
    Conflict, ServiceException for 5xx...), with the API server's Status object as the body."""
    reason = REASONS.get(status, "Error")
    exception = _EXCEPTIONS.get(status, ServiceException if 500 <= status <= 599 else ApiException)
    body = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message or reason.lower()}
    return exception(status=status, reason=reason, body=json.dumps(body | {"code": status}))


def container_port_protocols(kind: str, obj: dict[str, Any]) -> None:
    """A default the API server adds that the operator does not render: `protocol: TCP` on every container
    port (KubeRay's CRD schema carries the default). A reconcile must not take it for drift."""
    del kind  # every kind: ports only appear in pod templates

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "containerPort" in node:
                node.setdefault("protocol", "TCP")
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(obj)


@dataclass
class Call:
    """One call of the code under test: the client method, what it named, and its keyword arguments."""

    method: str
    kind: str
    namespace: str
    name: str
    body: dict[str, Any] | None = None
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def writes(self) -> bool:
        return not self.method.startswith(("get_", "read_")) and self.options.get("dry_run") != "All"


class Live:
    """What `read_namespaced_*` returns: an opaque model, like the client's V1ConfigMap, readable only through
    `api_client.sanitize_for_serialization` (so a Reconciler that indexed it directly would fail here too)."""

    def __init__(self, body: dict[str, Any]) -> None:
        self._body = body


class FakeApiClient:
    """`sanitize_for_serialization`, the one ApiClient method the Reconciler uses."""

    def sanitize_for_serialization(self, obj: Any) -> Any:
        if isinstance(obj, Live):
            obj = obj._body
        return copy.deepcopy(obj)


class FakeKube:
    """The store, the call log and the injected failures, shared by the three APIs below."""

    def __init__(self, defaults: Defaulter | None = None) -> None:
        """`defaults(kind, obj)` runs after every write, as the API server's defaulting does."""
        self.objects: dict[Key, dict[str, Any]] = {}
        self.calls: list[Call] = []
        self.defaults = defaults
        self._failures: dict[str, list[Exception]] = {}
        # What each field manager applied last, per object: the fields a later apply may remove.
        self._applied: dict[tuple[Key, str], set[Path]] = {}
        self._counter = 0
        self.api_client = FakeApiClient()
        self.custom = FakeCustomObjectsApi(self)
        self.networking = FakeNetworkingV1Api(self)
        self.core = FakeCoreV1Api(self)

    # What a user (or KubeRay, or another controller) does: not logged.

    def put(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Create or replace an object as it is (a `kubectl create`); returns the stored copy."""
        meta = obj["metadata"]
        key = (obj["kind"], meta.get("namespace") or "default", meta["name"])
        self._store(key, copy.deepcopy(obj))
        return self.get(*key)

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        """A copy of the live object; KeyError when it does not exist."""
        return copy.deepcopy(self.objects[(kind, namespace, name)])

    def exists(self, kind: str, namespace: str, name: str) -> bool:
        return (kind, namespace, name) in self.objects

    def edit(self, kind: str, namespace: str, name: str, change: Callable[[dict[str, Any]], None]) -> None:
        """A hand edit (`kubectl edit`): `change` edits a copy of the live object in place."""
        edited = self.get(kind, namespace, name)
        change(edited)
        self._store((kind, namespace, name), edited)

    def remove(self, kind: str, namespace: str, name: str) -> None:
        """A `kubectl delete`."""
        del self.objects[(kind, namespace, name)]

    def fail(self, method: str, error: int | Exception, message: str = "", *, times: int = 1) -> None:
        """The next `times` calls of `method` (e.g. "patch_namespaced_custom_object") raise `error`: an
        HTTP status (raised as the client raises it, with `message` in the body) or any exception."""
        raised = api_error(error, message) if isinstance(error, int) else error
        self._failures.setdefault(method, []).extend([raised] * times)

    # What the code under test did.

    def writes(self) -> list[tuple[str, str]]:
        """(method, object name) of each write, in order."""
        return [(c.method, c.name) for c in self.calls if c.writes]

    def called(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    # The server side.

    def _call(
        self, method: str, kind: str, namespace: str, name: str, body: Any = None, **options: Any
    ) -> None:
        self.calls.append(Call(method, kind, namespace, name, copy.deepcopy(body), options))
        queued = self._failures.get(method)
        if queued:
            raise queued.pop(0)

    def _live(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        found = self.objects.get((kind, namespace, name))
        if found is None:
            plural = PLURALS.get(kind, f"{kind.lower()}s")
            raise api_error(404, f'{plural} "{name}" not found')
        return found

    def _store(self, key: Key, obj: dict[str, Any]) -> None:
        """Write an object as the API server does: identity on create, a new resourceVersion on every write,
        a new generation when the spec changed, then the defaults."""
        self._counter += 1
        meta = obj.setdefault("metadata", {})
        meta["name"], meta["namespace"] = key[2], key[1]
        before = self.objects.get(key)
        if before is None:
            meta.setdefault("uid", f"uid-{key[0].lower()}-{key[2]}-{self._counter}")
            meta.setdefault("creationTimestamp", "2025-01-01T00:00:00Z")
            meta.setdefault("generation", 1)
        else:
            old = before["metadata"]
            meta["uid"], meta["creationTimestamp"] = old["uid"], old["creationTimestamp"]
            changed = obj.get("spec") != before.get("spec")
            meta["generation"] = old.get("generation", 1) + (1 if changed else 0)
        meta["resourceVersion"] = str(self._counter)
        if self.defaults is not None:
            self.defaults(key[0], obj)
        self.objects[key] = obj

    def _apply(self, kind: str, namespace: str, name: str, body: dict[str, Any], **options: Any) -> Any:
        """Server-side apply: None when it created the object (the client's answer to a 201), else the
        object. Only apply is supported: the Reconciler never sends another kind of patch for its objects."""
        if options.get("_content_type") != APPLY_PATCH:
            raise NotImplementedError(f"the fake API server supports server-side apply only, not {options}")
        manager = options.get("field_manager")
        if not manager:
            raise api_error(400, "PATCH, application/apply-patch+yaml: fieldManager is required")
        meta = body.get("metadata") or {}
        if meta.get("name") != name or (meta.get("namespace") or namespace) != namespace:
            raise api_error(400, "the name of the object does not match the name on the URL")
        key = (kind, namespace, name)
        applied = copy.deepcopy(body)
        fields = set(_leaves(applied))
        before = self.objects.get(key)
        if options.get("dry_run") == "All":  # what the apply would make, nothing stored
            return self._dry_run(key, applied, manager)
        if before is None:
            self._store(key, applied)
            self._applied[key, manager] = fields
            self._list_managers(key)
            return None
        merged = _merge(copy.deepcopy(before), applied)
        for dropped in self._applied.get((key, manager), set()) - fields:
            if not any(kept[: len(dropped)] == dropped for kept in fields):
                _remove(merged, dropped)
        self._store(key, merged)
        self._applied[key, manager] = fields
        self._list_managers(key)
        return copy.deepcopy(self.objects[key])

    def _dry_run(self, key: Key, applied: dict[str, Any], manager: str) -> Any:
        objects, owned, counter = copy.deepcopy(self.objects), copy.deepcopy(self._applied), self._counter
        try:
            self._apply(*key, applied, field_manager=manager, _content_type=APPLY_PATCH)
            return copy.deepcopy(self.objects[key])
        finally:
            self.objects, self._applied, self._counter = objects, owned, counter

    def _list_managers(self, key: Key) -> None:
        """metadata.managedFields as the API server lists who applied the object (their fields left out)."""
        managers = sorted(manager for (applied, manager) in self._applied if applied == key)
        self.objects[key]["metadata"]["managedFields"] = [
            {"manager": m, "operation": "Apply"} for m in managers
        ]


def _leaves(node: dict[str, Any], path: Path = ()) -> Iterator[Path]:
    """Paths of the fields an applied object sets: into dicts, not into lists (atomic) or values."""
    for key, value in node.items():
        if isinstance(value, dict) and value:
            yield from _leaves(value, (*path, key))
        else:
            yield (*path, key)


def _merge(live: dict[str, Any], applied: dict[str, Any]) -> dict[str, Any]:
    for key, value in applied.items():
        if isinstance(value, dict) and isinstance(live.get(key), dict):
            _merge(live[key], value)
        else:
            live[key] = value
    return live


def _remove(obj: dict[str, Any], path: Path) -> None:
    node: Any = obj
    for key in path[:-1]:
        node = node.get(key) if isinstance(node, dict) else None
    if isinstance(node, dict):
        node.pop(path[-1], None)


def _merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch (what a dict body to `patch_*_status` is sent as)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = _merge_patch(out.get(key), value)
    return out


class FakeCustomObjectsApi:
    """`CustomObjectsApi`: RayServices and ModelFleets."""

    def __init__(self, kube: FakeKube) -> None:
        self._kube = kube
        self.api_client = kube.api_client

    # The client's signatures: group and version go unused, the plural names the kind.

    def get_namespaced_custom_object(
        self,
        group: str,  # noqa: ARG002
        version: str,  # noqa: ARG002
        namespace: str,
        plural: str,
        name: str,
    ) -> dict[str, Any]:
        kind = KINDS[plural]
        self._kube._call("get_namespaced_custom_object", kind, namespace, name)
        return copy.deepcopy(self._kube._live(kind, namespace, name))

    def patch_namespaced_custom_object(  # noqa: PLR0917
        self,
        group: str,  # noqa: ARG002
        version: str,  # noqa: ARG002
        namespace: str,
        plural: str,
        name: str,
        body: Any,
        **options: Any,
    ) -> Any:
        kind = KINDS[plural]
        self._kube._call("patch_namespaced_custom_object", kind, namespace, name, body, **options)
        return self._kube._apply(kind, namespace, name, body, **options)

    def patch_namespaced_custom_object_status(  # noqa: PLR0917
        self,
        group: str,  # noqa: ARG002
        version: str,  # noqa: ARG002
        namespace: str,
        plural: str,
        name: str,
        body: Any,
        **options: Any,
    ) -> dict[str, Any]:
        """The status subresource: only `status` of the body is written, and the generation stays."""
        kind = KINDS[plural]
        self._kube._call("patch_namespaced_custom_object_status", kind, namespace, name, body, **options)
        live = self._kube._live(kind, namespace, name)
        status = _merge_patch(live.get("status"), body.get("status"))
        self._kube.edit(kind, namespace, name, lambda obj: obj.__setitem__("status", status))
        return self._kube.get(kind, namespace, name)


class _NamespacedKind:
    """`read/patch/delete_namespaced_<resource>` of one built-in kind."""

    kind = ""

    def __init__(self, kube: FakeKube) -> None:
        self._kube = kube
        self.api_client = kube.api_client

    def _read(self, resource: str, name: str, namespace: str) -> Live:
        self._kube._call(f"read_namespaced_{resource}", self.kind, namespace, name)
        return Live(copy.deepcopy(self._kube._live(self.kind, namespace, name)))

    def _patch(self, resource: str, name: str, namespace: str, body: Any, **options: Any) -> Any:
        self._kube._call(f"patch_namespaced_{resource}", self.kind, namespace, name, body, **options)
        applied = self._kube._apply(self.kind, namespace, name, body, **options)
        return None if applied is None else Live(applied)

    def _delete(self, resource: str, name: str, namespace: str, **options: Any) -> dict[str, Any]:
        self._kube._call(f"delete_namespaced_{resource}", self.kind, namespace, name, **options)
        self._kube._live(self.kind, namespace, name)
        self._kube.remove(self.kind, namespace, name)
        return {"kind": "Status", "apiVersion": "v1", "status": "Success"}


class FakeNetworkingV1Api(_NamespacedKind):
    """`NetworkingV1Api`: NetworkPolicies."""

    kind = "NetworkPolicy"

    def read_namespaced_network_policy(self, name: str, namespace: str) -> Live:
        return self._read("network_policy", name, namespace)

    def patch_namespaced_network_policy(self, name: str, namespace: str, body: Any, **options: Any) -> Any:
        return self._patch("network_policy", name, namespace, body, **options)

    def delete_namespaced_network_policy(self, name: str, namespace: str, **options: Any) -> dict[str, Any]:
        return self._delete("network_policy", name, namespace, **options)


class FakeCoreV1Api(_NamespacedKind):
    """`CoreV1Api`: ConfigMaps."""

    kind = "ConfigMap"

    def read_namespaced_config_map(self, name: str, namespace: str) -> Live:
        return self._read("config_map", name, namespace)

    def patch_namespaced_config_map(self, name: str, namespace: str, body: Any, **options: Any) -> Any:
        return self._patch("config_map", name, namespace, body, **options)

    def delete_namespaced_config_map(self, name: str, namespace: str, **options: Any) -> dict[str, Any]:
        return self._delete("config_map", name, namespace, **options)
