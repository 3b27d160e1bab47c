"""The live objects and the relations between them, kept current on every write.

Reads and garbage collection used to scan (and deep-copy) every stored object, CRDs included, on
each request: with a thousand objects that cost tens of milliseconds per write. `Index` keeps what
those scans looked for: the live snapshot per key, keys per resource and per namespace, live uids,
dependents per owner uid, terminating namespaces, and the objects GC should look at next.
"""

from __future__ import annotations

import collections
from typing import Any

import kmock

Obj = dict[str, Any]
Key = tuple[kmock.resource, str | None, str]


def _owner_uids(obj: Obj) -> frozenset[str]:
    refs = obj["metadata"].get("ownerReferences") or []
    return frozenset(str(ref.get("uid")) for ref in refs if isinstance(ref, dict))


def _is_namespace(key: Key) -> bool:
    return key[0].plural == "namespaces" and not key[0].group


class Index:
    def __init__(self) -> None:
        self.live: dict[Key, Obj] = {}
        self._by_resource: dict[kmock.resource, dict[Key, None]] = collections.defaultdict(dict)
        self._by_namespace: dict[str, dict[Key, None]] = collections.defaultdict(dict)
        self._uids: dict[str, Key] = {}
        self._owners: dict[Key, frozenset[str]] = {}
        self._dependents: dict[str, set[Key]] = collections.defaultdict(set)
        # Objects that may have lost all their owners since GC last looked.
        self._suspects: set[Key] = set()
        self.terminating: set[str] = set()  # names of namespaces with a deletionTimestamp

    def put(self, key: Key, obj: Obj) -> None:
        """Record `obj` as the current state of `key` (created or modified)."""
        old = self.live.get(key)
        if old is not None and old["metadata"].get("uid") != obj["metadata"].get("uid"):
            self.remove(key)
        self.live[key] = obj
        self._by_resource[key[0]][key] = None
        if key[1] is not None:
            self._by_namespace[key[1]][key] = None
        self._uids[obj["metadata"]["uid"]] = key
        owners = _owner_uids(obj)
        for uid in self._owners.get(key, frozenset()) - owners:
            self._dependents[uid].discard(key)
        for uid in owners:
            self._dependents[uid].add(key)
        self._owners[key] = owners
        if owners:
            self._suspects.add(key)  # written with owners that may not exist
        if _is_namespace(key) and obj["metadata"].get("deletionTimestamp"):
            self.terminating.add(key[2])

    def remove(self, key: Key) -> None:
        """Forget `key` (removed from the store); its dependents become GC suspects."""
        obj = self.live.pop(key, None)
        if obj is None:
            return
        self._by_resource[key[0]].pop(key, None)
        if key[1] is not None:
            self._by_namespace[key[1]].pop(key, None)
        uid = obj["metadata"]["uid"]
        if self._uids.get(uid) == key:
            del self._uids[uid]
        self._suspects |= self._dependents.pop(uid, set())
        for owner in self._owners.pop(key, frozenset()):
            self._dependents[owner].discard(key)
        if _is_namespace(key):
            self.terminating.discard(key[2])

    def of_resource(self, resource: kmock.resource) -> list[tuple[Key, Obj]]:
        return [(key, self.live[key]) for key in self._by_resource.get(resource, {})]

    def in_namespace(self, namespace: str) -> list[Key]:
        return list(self._by_namespace.get(namespace, {}))

    def dependents(self, uid: str) -> list[Key]:
        return sorted(self._dependents.get(uid, set()), key=_order)

    def orphaned(self, obj: Obj) -> bool:
        """Whether every owner the object names is gone (an object without owners is not orphaned)."""
        owners = _owner_uids(obj)
        return bool(owners) and not any(uid in self._uids for uid in owners)

    def take_suspects(self) -> list[Key]:
        """The live objects GC should look at now; GC looks at each again only when suspect again."""
        suspects, self._suspects = self._suspects, set()
        return sorted((key for key in suspects if key in self.live), key=_order)


def _order(key: Key) -> tuple[str, str, str]:
    return (key[1] or "", key[2], str(key[0]))
