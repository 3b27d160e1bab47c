"""The write path of the emulated API server: metadata bookkeeping, admission, GC, the event log.

Objects are recorded in kmock's `ObjectsArray` (so tests can assert on `emulator.objects[...]` and
their history; writes go through `Store`); this module decides what a create/update/delete does to
them, the way kube-apiserver and its garbage collector would, and records every change with a
global resourceVersion for watches to replay from.

Stored states are snapshots, never changed once recorded: the object array, the index, the event
log and every reader share them instead of each holding a deep copy (copying on each read, write
and watch event was most of the emulator's CPU). Whoever changes an object builds a new one;
`get` and `list` return snapshots that callers must not change.
"""

from __future__ import annotations

import asyncio
import copy
import datetime
import functools
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import kmock

from tests.kube.apiserver import errors
from tests.kube.apiserver.admission import Admission
from tests.kube.apiserver.index import Index
from tests.kube.apiserver.registry import Registry, ResourceType

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

    @functools.cached_property
    def wire(self) -> bytes:
        """The watch-stream line, serialized once however many watchers send it."""
        return json.dumps({"type": self.type, "object": self.obj}).encode() + b"\n"


# Inside Store's body `list` is its method, so annotations there use these.
Objs = list[Obj]
Events = list[Event]
Doomed = list[tuple[ResourceType, Key]]


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _thaw(obj: Obj) -> Obj:
    """A copy of a snapshot whose top level and metadata may be changed (the rest is shared)."""
    return {**obj, "metadata": dict(obj["metadata"])}


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
        self.index = Index()
        self._admissions: dict[tuple[str, str, str], Admission] = {}
        namespaces = self.registry.get("", "v1", "namespaces")
        assert namespaces is not None
        for name in _SYSTEM_NAMESPACES:
            self.create(namespaces, None, {"metadata": {"name": name}})

    # --- reading -------------------------------------------------------------------------------

    def get(self, rtype: ResourceType, namespace: str | None, name: str) -> Obj | None:
        """The object's snapshot (do not change it), or None."""
        return self.index.live.get((rtype.key, namespace if rtype.namespaced else None, name))

    def list(
        self, rtype: ResourceType, namespace: str | None, predicate: Callable[[Obj], bool] = lambda _: True
    ) -> Objs:
        """Snapshots (do not change them) in scope and matching, ordered by namespace and name."""
        found = [
            obj
            for (_, ns, _), obj in self.index.of_resource(rtype.key)
            if (namespace is None or ns == namespace) and predicate(obj)
        ]
        return sorted(found, key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))

    def end_watches(self) -> None:
        """Close every open watch stream (as an API server does when it shuts down)."""
        self.watch_epoch += 1
        self._changed.set()
        self._changed = asyncio.Event()

    def changed(self) -> asyncio.Event:
        """An event set at the next change; grab it before reading the log to miss nothing."""
        return self._changed

    def events_since(self, rv: int) -> Events:
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
        """Store `obj` as the snapshot of `key` (from now on nobody changes it) and log the event."""
        if kind == "ADDED" and (key not in self.objects):
            self.objects[key] = obj
        elif kind == "ADDED":
            self.objects[key].create(obj)
        elif kind == "MODIFIED":
            self.objects[key].history.append(obj)
        else:
            self.objects[key].delete()
        if kind == "DELETED":
            self.index.remove(key)
        else:
            self.index.put(key, obj)
        self.log.append(Event(self.revision, rtype.key, kind, obj))
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

    def _admission(self, crd: Obj, version: str) -> Admission:
        """The CRD version's prepared admission; a changed CRD has a new resourceVersion, so a new one."""
        key = (crd["metadata"]["uid"], crd["metadata"]["resourceVersion"], version)
        if key not in self._admissions:
            self._admissions[key] = Admission(crd, version)
        return self._admissions[key]

    def _admit(self, rtype: ResourceType, obj: Obj, old: Obj | None) -> Obj:
        """Prune, default and validate a custom resource, as the CRD handler does.

        The result is a new object sharing nothing with `obj`, ready to become a snapshot."""
        if rtype.crd is None:
            result: Obj = copy.deepcopy(obj)
            return result
        pruned, problems = self._admission(rtype.crd, rtype.version).admit(obj, old)
        if problems:
            raise errors.invalid(rtype, obj["metadata"].get("name", ""), problems)
        return pruned

    def create(self, rtype: ResourceType, namespace: str | None, body: Obj) -> Obj:
        obj = dict(body)  # admission makes the deep copy; until then only these two levels change
        meta = obj["metadata"] = dict(obj.get("metadata") or {})
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
        return obj

    def update(
        self, rtype: ResourceType, namespace: str | None, name: str, body: Obj, subresource: str | None = None
    ) -> Obj:
        current = self.get(rtype, namespace, name)
        if current is None:
            raise errors.not_found(rtype, name)
        sent_rv = (body.get("metadata") or {}).get("resourceVersion")
        if sent_rv and sent_rv != current["metadata"]["resourceVersion"]:
            raise errors.conflict(rtype, name)
        # Only the top level and metadata of `new` change before admission copies it.
        if subresource == "status":
            new = _thaw(current)
            if "status" in body:
                new["status"] = body["status"]
            else:
                new.pop("status", None)
        else:
            new = dict(body)
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
            new = _thaw(new)  # the MODIFIED snapshot keeps its resourceVersion
            self._remove(rtype, new)
        self.collect_garbage()
        return new

    def delete(
        self, rtype: ResourceType, namespace: str | None, name: str, options: Obj | None = None
    ) -> Obj:
        options = options or {}
        stored = self.get(rtype, namespace, name)
        if stored is None:
            raise errors.not_found(rtype, name)
        current = _thaw(stored)
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

    def _rtype(self, key: Key) -> ResourceType | None:
        return self.registry.get(key[0].group, key[0].version, key[0].plural)

    def _orphan(self, owner_uid: str) -> None:
        for key in self.index.dependents(owner_uid):
            rtype, obj = self._rtype(key), self.index.live[key]
            if rtype is None:
                continue
            refs = obj["metadata"].get("ownerReferences") or []
            kept = [r for r in refs if r.get("uid") != owner_uid]
            if len(kept) != len(refs):
                body = {**obj, "metadata": {**obj["metadata"], "ownerReferences": kept}}
                self.update(rtype, key[1], key[2], body)

    def _doomed(self) -> Doomed:
        """Live objects not yet being deleted whose owners are all gone or whose namespace terminates."""
        keys = self.index.take_suspects()
        for namespace in sorted(self.index.terminating):
            keys += self.index.in_namespace(namespace)
        doomed: Doomed = []
        for key in dict.fromkeys(keys):
            obj, rtype = self.index.live[key], self._rtype(key)
            if rtype is None or obj["metadata"].get("deletionTimestamp"):
                continue
            if self.index.orphaned(obj) or (rtype.namespaced and key[1] in self.index.terminating):
                doomed.append((rtype, key))
        return doomed

    def collect_garbage(self) -> None:
        """Background GC: delete dependents whose owners are all gone; empty terminating namespaces.

        It looks only at what a write could have affected (the index's suspects and the contents of
        terminating namespaces), not at every stored object."""
        ns_type = self.registry.get("", "v1", "namespaces")
        assert ns_type is not None
        while True:
            doomed = self._doomed()
            for rtype, key in doomed:
                obj = self.index.live.get(key)
                if obj is not None and not obj["metadata"].get("deletionTimestamp"):  # a cascade may be first
                    self.delete(rtype, key[1], key[2])
            emptied = [name for name in sorted(self.index.terminating) if not self.index.in_namespace(name)]
            for name in emptied:
                self._remove(ns_type, _thaw(self.index.live[ns_type.key, None, name]))
            if not doomed and not emptied:
                return
