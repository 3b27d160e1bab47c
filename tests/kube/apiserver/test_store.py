"""The store on its own: garbage collection through the index, and snapshots that never change."""

from __future__ import annotations

import copy
from typing import Any

import kmock
import pytest

from tests.kube.apiserver.registry import Registry, ResourceType, builtin_types, crd_types
from tests.kube.apiserver.store import Store
from tests.kube.apiserver.widgets import CRD, GROUP, PLURAL, VERSION, widget


@pytest.fixture
def store() -> Store:
    registry = Registry()
    for rtype in [
        *builtin_types(),
        *crd_types({**CRD, "metadata": {**CRD["metadata"], "uid": "u", "resourceVersion": "1"}}),
    ]:
        registry.add(rtype)
    return Store(kmock.ObjectsArray(), registry)


def _type(store: Store, group: str, version: str, plural: str) -> ResourceType:
    rtype = store.registry.get(group, version, plural)
    assert rtype is not None
    return rtype


def _owned(name: str, *owners: dict[str, Any]) -> dict[str, Any]:
    refs = [
        {"apiVersion": "v1", "kind": "ConfigMap", "name": o["metadata"]["name"], "uid": o["metadata"]["uid"]}
        for o in owners
    ]
    return {"metadata": {"name": name, "ownerReferences": refs}}


def _names(store: Store, rtype: ResourceType, namespace: str = "default") -> list[str]:
    return [o["metadata"]["name"] for o in store.list(rtype, namespace)]


def test_dependents_go_when_their_last_owner_goes(store: Store) -> None:
    cms = _type(store, "", "v1", "configmaps")
    a, b = (
        store.create(cms, "default", {"metadata": {"name": "a"}}),
        store.create(cms, "default", {"metadata": {"name": "b"}}),
    )
    store.create(cms, "default", _owned("of-a", a))
    store.create(cms, "default", _owned("of-both", a, b))
    child = store.create(cms, "default", _owned("of-of-a", store.get(cms, "default", "of-a") or {}))
    assert child["metadata"]["ownerReferences"]
    store.delete(cms, "default", "a")
    assert _names(store, cms) == ["b", "of-both"]  # the cascade went two levels down
    store.delete(cms, "default", "b")
    assert _names(store, cms) == []


def test_a_dangling_owner_is_collected_at_the_next_collection(store: Store) -> None:
    cms = _type(store, "", "v1", "configmaps")
    ghost = {"metadata": {"name": "ghost", "uid": "no-such-uid"}}
    store.create(cms, "default", _owned("orphan", ghost))
    assert _names(store, cms) == ["orphan"]  # creation does not collect, as before
    store.create(cms, "default", {"metadata": {"name": "other"}})
    store.update(cms, "default", "other", {"metadata": {"name": "other", "labels": {"x": "y"}}})
    assert _names(store, cms) == ["other"]


def test_orphan_propagation_keeps_dependents(store: Store) -> None:
    cms = _type(store, "", "v1", "configmaps")
    owner = store.create(cms, "default", {"metadata": {"name": "owner"}})
    store.create(cms, "default", _owned("kept", owner))
    store.delete(cms, "default", "owner", {"propagationPolicy": "Orphan"})
    kept = store.get(cms, "default", "kept")
    assert kept is not None and kept["metadata"]["ownerReferences"] == []


def test_a_terminating_namespace_empties_then_goes(store: Store) -> None:
    namespaces, cms = _type(store, "", "v1", "namespaces"), _type(store, "", "v1", "configmaps")
    widgets = _type(store, GROUP, VERSION, PLURAL)
    store.create(namespaces, None, {"metadata": {"name": "doomed"}})
    store.create(cms, "doomed", {"metadata": {"name": "plain"}})
    store.create(
        widgets, "doomed", {**widget("held"), "metadata": {"name": "held", "finalizers": ["test/hold"]}}
    )
    store.delete(namespaces, None, "doomed")
    assert _names(store, cms, "doomed") == []
    assert store.get(widgets, "doomed", "held") is not None  # its finalizer holds it, and the namespace
    assert store.get(namespaces, None, "doomed") is not None
    store.update(
        widgets, "doomed", "held", {**widget("held"), "metadata": {"name": "held", "finalizers": []}}
    )
    assert store.get(widgets, "doomed", "held") is None
    assert store.get(namespaces, None, "doomed") is None


def test_recorded_snapshots_never_change(store: Store) -> None:
    widgets = _type(store, GROUP, VERSION, PLURAL)
    created = store.create(widgets, "default", widget("w", items=[{"name": "a", "replicas": 1}]))
    before = copy.deepcopy(created)
    store.update(widgets, "default", "w", {"status": {"phase": "Up"}}, subresource="status")
    store.update(widgets, "default", "w", {**widget("w"), "metadata": {"name": "w", "finalizers": ["f"]}})
    store.delete(widgets, "default", "w")
    gone = store.update(widgets, "default", "w", {**widget("w"), "metadata": {"name": "w", "finalizers": []}})
    assert created == before
    assert store.objects[widgets.key, "default", "w"].history[0] == before
    events = [e for e in store.events_since(0) if e.obj["metadata"]["name"] == "w"]
    assert [e.type for e in events] == ["ADDED", "MODIFIED", "MODIFIED", "MODIFIED", "MODIFIED", "DELETED"]
    # Each event shows the object as it was at that revision, the last one as the write returned it.
    assert [int(e.obj["metadata"]["resourceVersion"]) for e in events] == [e.rv for e in events]
    assert gone["metadata"]["resourceVersion"] == str(events[-1].rv)
