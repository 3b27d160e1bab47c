"""The write path of the emulated API server: metadata bookkeeping, admission, GC, the event log.

Objects live in kmock's `ObjectsArray` (so tests can assert on `emulator.objects[...]` and their
history); this module decides what a create/update/delete does to them, the way kube-apiserver
and its garbage collector would, and records every change with a global resourceVersion for
watches to replay from.
"""

from __future__ import annotations

import asyncio
import copy
import datetime
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import kmock

from tests.kube.apiserver import errors
from tests.kube.apiserver.registry import Registry, ResourceType
from tests.support import crd_schema, crd_validation

Obj = dict[str, Any]
Key = tuple[kmock.resource, str | None, str]

_LOG_LIMIT = 100_000
_SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


@dataclass(frozen=True)
class Event:
    rv: int
    resource: kmock.resource
    type: str  # ADDED | MODIFIED | DELETED
    obj: Obj


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _spec_part(obj: Obj, rtype: ResourceType) -> Obj:
    """What `metadata.generation` tracks: everything but metadata (and status, if a subresource)."""
    skip = {"metadata", "status"} if rtype.has_status else {"metadata"}
    return {k: v for k, v in obj.items() if k not in skip}


class Store:
    def __init__(self, objects: kmock.ObjectsArray, registry: Registry) -> None:
        self.objects = objects
        self.registry = registry
        self.revision = 0
        self.log: list[Event] = []
        self.compacted_rv = 0  # watches from at or before this revision get 410 Gone
        self._changed = asyncio.Event()
        self.watch_epoch = 0
        namespaces = self.registry.get("", "v1", "namespaces")
        assert namespaces is not None
        for name in _SYSTEM_NAMESPACES:
            self.create(namespaces, None, {"metadata": {"name": name}})

    # --- reading -------------------------------------------------------------------------------

    def get(self, rtype: ResourceType, namespace: str | None, name: str) -> Obj | None:
        key = (rtype.key, namespace if rtype.namespaced else None, name)
        if key not in self.objects or self.objects[key].deleted:
            return None
        return copy.deepcopy(self.objects[key].raw)

    def list(
        self, rtype: ResourceType, namespace: str | None, predicate: Callable[[Obj], bool] = lambda _: True
    ) -> list[Obj]:
        found = []
        for (res, ns, _), obj in self.objects.items():
            in_scope = res == rtype.key and not obj.deleted and (namespace is None or ns == namespace)
            if in_scope and predicate(obj.raw):
                found.append(copy.deepcopy(obj.raw))
        return sorted(found, key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))

    def end_watches(self) -> None:
        """Close every open watch stream (as an API server does when it shuts down)."""
        self.watch_epoch += 1
        self._changed.set()
        self._changed = asyncio.Event()

    def changed(self) -> asyncio.Event:
        """An event set at the next change; grab it before reading the log to miss nothing."""
        return self._changed

    def events_since(self, rv: int) -> list[Event]:
        if rv < self.compacted_rv:
            raise errors.gone(f"too old resource version: {rv} ({self.compacted_rv + 1})")
        lo, hi = 0, len(self.log)
        while lo < hi:  # binary search: the log is ordered by rv
            mid = (lo + hi) // 2
            if self.log[mid].rv <= rv:
                lo = mid + 1
            else:
                hi = mid
        return self.log[lo:]

    def compact(self) -> None:
        """Forget the event log, as etcd compaction does (watches from older revisions get 410)."""
        self.log.clear()
        self.compacted_rv = self.revision

    # --- writing -------------------------------------------------------------------------------

    def _record(self, rtype: ResourceType, key: Key, kind: str, obj: Obj) -> None:
        if kind == "ADDED" and (key not in self.objects):
            self.objects[key] = copy.deepcopy(obj)
        elif kind == "ADDED":
            self.objects[key].create(copy.deepcopy(obj))
        elif kind == "MODIFIED":
            self.objects[key].history.append(copy.deepcopy(obj))
        else:
            self.objects[key].delete()
        self.log.append(Event(self.revision, rtype.key, kind, copy.deepcopy(obj)))
        if len(self.log) > _LOG_LIMIT:
            self.compacted_rv = self.log[_LOG_LIMIT // 2].rv
            del self.log[: _LOG_LIMIT // 2 + 1]
        self._changed.set()
        self._changed = asyncio.Event()

    def _bump(self, obj: Obj) -> None:
        self.revision += 1
        obj["metadata"]["resourceVersion"] = str(self.revision)

    def _check_namespace(self, rtype: ResourceType, namespace: str | None) -> None:
        if not rtype.namespaced:
            return
        if not namespace:
            raise errors.bad_request("the server could not find the requested resource: namespace required")
        ns_type = self.registry.get("", "v1", "namespaces")
        assert ns_type is not None
        ns = self.get(ns_type, None, namespace)
        if ns is None:
            raise errors.namespace_not_found(namespace)
        if ns["metadata"].get("deletionTimestamp"):
            raise errors.ApiError(
                403,
                "Forbidden",
                f"unable to create new content in namespace {namespace} because it is being terminated",
            )

    def _admit(self, rtype: ResourceType, obj: Obj, old: Obj | None) -> Obj:
        """Prune, default and validate a custom resource, as the CRD handler does."""
        if rtype.crd is None:
            return obj
        schema = crd_schema.version_schema(rtype.crd, rtype.version)
        pruned, _ = crd_schema.prune(schema, obj)
        crd_schema.apply_defaults(schema, pruned)
        problems = crd_validation.validate(rtype.crd, rtype.version, pruned, old)
        if problems:
            raise errors.invalid(rtype, obj["metadata"].get("name", ""), problems)
        result: Obj = pruned
        return result

    def create(self, rtype: ResourceType, namespace: str | None, body: Obj) -> Obj:
        obj = copy.deepcopy(body)
        meta = obj.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        name = meta.get("name")
        if not name:
            raise errors.ApiError(
                422,
                "Invalid",
                f'{rtype.qualified_kind} "" is invalid: metadata.name: '
                "Required value: name or generateName is required",
            )
        if rtype.namespaced:
            if meta.get("namespace") and namespace and meta["namespace"] != namespace:
                raise errors.bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            namespace = namespace or meta.get("namespace")
            meta["namespace"] = namespace
        else:
            namespace = None
            meta.pop("namespace", None)
        self._check_namespace(rtype, namespace)
        if self.get(rtype, namespace, name) is not None:
            raise errors.already_exists(rtype, name)
        obj["apiVersion"], obj["kind"] = rtype.api_version, rtype.kind
        if rtype.has_status:
            obj.pop("status", None)  # status is written only through /status
        if rtype.kind == "Namespace":
            obj.setdefault("spec", {"finalizers": ["kubernetes"]})
            obj["status"] = {"phase": "Active"}
        for field in ("deletionTimestamp", "deletionGracePeriodSeconds", "resourceVersion", "managedFields"):
            meta.pop(field, None)
        meta.update(uid=str(uuid.uuid4()), creationTimestamp=now(), generation=1)
        obj = self._admit(rtype, obj, None)
        self._bump(obj)
        self._record(rtype, (rtype.key, namespace, name), "ADDED", obj)
        return copy.deepcopy(obj)

    def update(
        self, rtype: ResourceType, namespace: str | None, name: str, body: Obj, subresource: str | None = None
    ) -> Obj:
        current = self.get(rtype, namespace, name)
        if current is None:
            raise errors.not_found(rtype, name)
        sent_rv = (body.get("metadata") or {}).get("resourceVersion")
        if sent_rv and sent_rv != current["metadata"]["resourceVersion"]:
            raise errors.conflict(rtype, name)
        if subresource == "status":
            new = copy.deepcopy(current)
            if "status" in body:
                new["status"] = copy.deepcopy(body["status"])
            else:
                new.pop("status", None)
        else:
            new = copy.deepcopy(body)
            new["metadata"] = dict(new.get("metadata") or {})
            if rtype.has_status:
                new.pop("status", None)
                if "status" in current:
                    new["status"] = current["status"]
        meta, old_meta = new["metadata"], current["metadata"]
        for field in (
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "resourceVersion",
            "name",
            "namespace",
        ):
            meta.pop(field, None)
            if field in old_meta:
                meta[field] = old_meta[field]
        new["apiVersion"], new["kind"] = rtype.api_version, rtype.kind
        if old_meta.get("deletionTimestamp"):
            added = set(meta.get("finalizers") or []) - set(old_meta.get("finalizers") or [])
            if added:
                raise errors.ApiError(
                    422,
                    "Invalid",
                    f'{rtype.qualified_kind} "{name}" is invalid: '
                    "metadata.finalizers: Forbidden: no new finalizers can be added if the"
                    " object is being deleted",
                )
        new = self._admit(rtype, new, current)
        meta = new["metadata"]
        if new == current:
            return current  # a no-op write: kube neither bumps resourceVersion nor emits an event
        if _spec_part(new, rtype) != _spec_part(current, rtype):
            meta["generation"] = int(old_meta.get("generation", 1)) + 1
        self._bump(new)
        self._record(rtype, (rtype.key, namespace if rtype.namespaced else None, name), "MODIFIED", new)
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            self._remove(rtype, new)
        self.collect_garbage()
        return copy.deepcopy(new)

    def delete(
        self, rtype: ResourceType, namespace: str | None, name: str, options: Obj | None = None
    ) -> Obj:
        options = options or {}
        current = self.get(rtype, namespace, name)
        if current is None:
            raise errors.not_found(rtype, name)
        pre = options.get("preconditions") or {}
        meta = current["metadata"]
        if (pre.get("uid") and pre["uid"] != meta["uid"]) or (
            pre.get("resourceVersion") and pre["resourceVersion"] != meta["resourceVersion"]
        ):
            raise errors.conflict(rtype, name)
        if options.get("propagationPolicy") == "Orphan":
            self._orphan(meta["uid"])
        if rtype.kind == "Namespace" and not meta.get("deletionTimestamp"):
            current["status"] = {"phase": "Terminating"}
            meta["finalizers"] = meta.get("finalizers") or []
            meta["deletionTimestamp"] = now()
            self._bump(current)
            self._record(rtype, (rtype.key, None, name), "MODIFIED", current)
            self.collect_garbage()
            return self.get(rtype, None, name) or current
        if meta.get("finalizers"):
            if not meta.get("deletionTimestamp"):
                meta.update(deletionTimestamp=now(), deletionGracePeriodSeconds=0)
                meta["generation"] = int(meta.get("generation", 1)) + 1
                self._bump(current)
                self._record(
                    rtype, (rtype.key, namespace if rtype.namespaced else None, name), "MODIFIED", current
                )
            return current
        self._remove(rtype, current)
        self.collect_garbage()
        return current

    def _remove(self, rtype: ResourceType, obj: Obj) -> None:
        self._bump(obj)
        meta = obj["metadata"]
        self._record(
            rtype,
            (rtype.key, meta.get("namespace") if rtype.namespaced else None, meta["name"]),
            "DELETED",
            obj,
        )

    def _orphan(self, owner_uid: str) -> None:
        for rtype, obj in self._all():
            refs = obj["metadata"].get("ownerReferences") or []
            kept = [r for r in refs if r.get("uid") != owner_uid]
            if len(kept) != len(refs):
                obj["metadata"]["ownerReferences"] = kept
                self.update(rtype, obj["metadata"].get("namespace"), obj["metadata"]["name"], obj)

    def _all(self) -> list[tuple[ResourceType, Obj]]:
        types = {t.key: t for t in self.registry}
        return [
            (types[res], copy.deepcopy(obj.raw))
            for (res, _, _), obj in list(self.objects.items())
            if not obj.deleted and res in types
        ]

    def collect_garbage(self) -> None:
        """Background GC: delete dependents whose owners are all gone; empty terminating namespaces."""
        while True:
            everything = self._all()
            uids = {obj["metadata"]["uid"] for _, obj in everything}
            terminating = {
                obj["metadata"]["name"]
                for rtype, obj in everything
                if rtype.kind == "Namespace" and obj["metadata"].get("deletionTimestamp")
            }
            doomed = [
                (rtype, obj)
                for rtype, obj in everything
                if not obj["metadata"].get("deletionTimestamp")
                and (
                    _orphaned(obj, uids)
                    or (rtype.namespaced and obj["metadata"].get("namespace") in terminating)
                )
            ]
            for rtype, obj in doomed:
                self.delete(rtype, obj["metadata"].get("namespace"), obj["metadata"]["name"])
            emptied = [
                (rtype, obj)
                for rtype, obj in everything
                if obj["metadata"]["name"] in terminating
                and rtype.kind == "Namespace"
                and not any(
                    t.namespaced and o["metadata"].get("namespace") == obj["metadata"]["name"]
                    for t, o in self._all()
                )
            ]
            for rtype, obj in emptied:
                self._remove(rtype, obj)
            if not doomed and not emptied:
                return


def _orphaned(obj: Obj, live_uids: set[str]) -> bool:
    refs = obj["metadata"].get("ownerReferences") or []
    return bool(refs) and all(ref.get("uid") not in live_uids for ref in refs)
