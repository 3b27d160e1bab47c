"""The worker pods of fleets' Ray clusters, as the operator's pod watch sees them.

KubeRay reports worker counts per cluster only (`rayClusterStatus.readyWorkerReplicas`), not per worker
group, and says nothing of a group scaled to zero. The operator watches the pods that carry a fleet's label
and a worker's node type (the API server filters them by label), keeps this index of them, and reconciles
the fleet when a group's counts change: `status.workers` follows the autoscaler as it adds and removes
workers, and a model whose replica waits for one says so. No read of the API per reconcile.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

CLUSTER_LABEL, GROUP_LABEL, NODE_TYPE_LABEL = "ray.io/cluster", "ray.io/group", "ray.io/node-type"

Counts = dict[str, tuple[int, int]]  # worker group -> (ready, desired)


def _ready(pod: Mapping[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


class WorkerPods:
    """{(namespace, Ray cluster): {pod name: (group, ready)}} of the live worker pods."""

    def __init__(self) -> None:
        self._pods: dict[tuple[str, str], dict[str, tuple[str, bool]]] = {}
        self._lock = threading.Lock()

    def observe(self, pod: Mapping[str, Any], *, gone: bool) -> bool:
        """Take one watch event of a worker pod in; True when its cluster's counts changed. A pod being
        deleted no longer counts: the autoscaler has given it up."""
        meta = pod.get("metadata") or {}
        labels = meta.get("labels") or {}
        cluster, group = labels.get(CLUSTER_LABEL), labels.get(GROUP_LABEL)
        if not cluster or not group:
            return False
        key = (str(meta.get("namespace") or "default"), str(cluster))
        with self._lock:
            before = self._counts(key)
            pods = self._pods.setdefault(key, {})
            if gone or meta.get("deletionTimestamp"):
                pods.pop(str(meta.get("name")), None)
            else:
                pods[str(meta.get("name"))] = (str(group), _ready(pod))
            if not pods:
                del self._pods[key]
            return self._counts(key) != before

    def _counts(self, key: tuple[str, str]) -> Counts:
        counts: Counts = {}
        for group, ready in (self._pods.get(key) or {}).values():
            was_ready, desired = counts.get(group, (0, 0))
            counts[group] = (was_ready + ready, desired + 1)
        return counts

    def counts(self, namespace: str, cluster: str) -> Counts:
        """Per group of one Ray cluster: (ready, desired) worker pods; a group with none is absent."""
        with self._lock:
            return self._counts((namespace, cluster))
