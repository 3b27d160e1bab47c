"""The operator's index of worker pods (modelfleet.workers): counts per group that follow the pod watch."""

from __future__ import annotations

from typing import Any

from modelfleet.workers import WorkerPods


def pod(
    name: str, group: str, *, ready: bool, cluster: str = "chat-x7k2p", deleting: bool = False
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": "llm",
        "labels": {"ray.io/cluster": cluster, "ray.io/group": group, "ray.io/node-type": "worker"},
    }
    if deleting:
        meta["deletionTimestamp"] = "2026-12-07T00:00:00Z"
    return {
        "metadata": meta,
        "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }


def test_counts_follow_a_worker_from_creation_to_deletion() -> None:
    index = WorkerPods()
    assert index.counts("llm", "chat-x7k2p") == {}
    assert index.observe(pod("w1", "gpu", ready=False), gone=False)  # the autoscaler asked, KubeRay made it
    assert index.counts("llm", "chat-x7k2p") == {"gpu": (0, 1)}
    assert not index.observe(pod("w1", "gpu", ready=False), gone=False)  # a status patch that changes nothing
    assert index.observe(pod("w1", "gpu", ready=True), gone=False)
    assert index.observe(pod("w2", "cpu", ready=True), gone=False)
    assert index.counts("llm", "chat-x7k2p") == {"gpu": (1, 1), "cpu": (1, 1)}
    assert index.observe(pod("w1", "gpu", ready=True, deleting=True), gone=False)  # idle: given up
    assert index.counts("llm", "chat-x7k2p") == {"cpu": (1, 1)}
    assert index.observe(pod("w2", "cpu", ready=True), gone=True)
    assert index.counts("llm", "chat-x7k2p") == {}


def test_clusters_are_counted_apart_and_unlabelled_pods_ignored() -> None:
    index = WorkerPods()
    index.observe(pod("a", "gpu", ready=True, cluster="old"), gone=False)
    index.observe(pod("b", "gpu", ready=False, cluster="new"), gone=False)
    assert (index.counts("llm", "old"), index.counts("llm", "new")) == ({"gpu": (1, 1)}, {"gpu": (0, 1)})
    assert not index.observe({"metadata": {"name": "x", "labels": {}}}, gone=False)
