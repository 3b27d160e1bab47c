"""The real KubeRay operator accepts what we render: for every golden fleet, applying the fleet makes KubeRay
create the RayCluster with our head and worker groups, its head Service and head Pod, and KubeRay reports
no validation failure and no Warning. With no kubelet the pods stay Pending, KubeRay says Initializing,
and the fleet must say Deploying (never Ready)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from modelfleet import yamlio
from modelfleet.reconcile import is_subset
from tests.kube.conftest import Kube, wait_for
from tests.kube.test_operator import RS, apply, rayservice, wait_jsonpath
from tests.unit.conftest import CASES

pytestmark = [pytest.mark.kube, pytest.mark.usefixtures("operator")]
RC = "rayclusters.v1.ray.io"


def golden_fleet(path: Path, namespace: str) -> dict[str, Any]:
    doc: dict[str, Any] = yamlio.load_file(path)[0]
    doc["metadata"]["namespace"] = namespace
    return doc


@pytest.fixture(scope="module")
def applied(kube: Kube) -> dict[str, dict[str, Any]]:
    """Every golden fleet applied at once (KubeRay works on them side by side), by case file name."""
    fleets = {path.stem: golden_fleet(path, kube.namespace) for path in CASES}
    for doc in fleets.values():
        apply(kube, doc)
    return fleets


def first_difference(desired: Any, actual: Any, path: str = "") -> str | None:
    """Where `desired` is not a subset of `actual` (see `is_subset`), for a readable failure."""
    if is_subset(desired, actual):
        return None
    if isinstance(desired, dict) and isinstance(actual, dict):
        for key, value in desired.items():
            found = first_difference(value, actual.get(key), f"{path}.{key}")
            if found:
                return found
    if isinstance(desired, list) and isinstance(actual, list) and len(desired) == len(actual):
        for i, (d, a) in enumerate(zip(desired, actual, strict=True)):
            found = first_difference(d, a, f"{path}[{i}]")
            if found:
                return found
    return f"{path}: rendered {desired!r}, KubeRay has {actual!r}"


def _cache_race(event: dict[str, Any]) -> bool:
    """KubeRay creating a RayCluster its informer cache has not seen yet: it gets AlreadyExists, says so
    in a Warning and carries on with the existing one on the next reconcile. Nothing about our spec."""
    return "already exists" in event.get("message", "")


def owned_by(obj: dict[str, Any], owner: dict[str, Any]) -> bool:
    return any(o["uid"] == owner["metadata"]["uid"] for o in obj["metadata"].get("ownerReferences", []))


@pytest.mark.parametrize("case", [path.stem for path in CASES])
def test_kuberay_builds_the_cluster_we_rendered(
    kube: Kube, applied: dict[str, dict[str, Any]], case: str
) -> None:
    name = applied[case]["metadata"]["name"]
    rs = rayservice(kube, name)
    cluster = wait_for(
        lambda: next((c for c in kube.items(RC) if owned_by(c, rs)), None),
        timeout=60,
        what=f"KubeRay to create the RayCluster of {name}",
    )
    rendered = rs["spec"]["rayClusterConfig"]
    assert first_difference(rendered, cluster["spec"]) is None, "the RayCluster carries our rayClusterConfig"
    groups = [g["groupName"] for g in cluster["spec"].get("workerGroupSpecs", [])]
    assert groups == [g["groupName"] for g in rendered.get("workerGroupSpecs", [])]
    cluster_name = cluster["metadata"]["name"]
    head_svc = wait_for(lambda: kube.get("service", f"{cluster_name}-head-svc"), what="the head Service")
    assert {p["name"] for p in head_svc["spec"]["ports"]} >= {"dashboard", "gcs-server", "serve"}
    head = wait_for(
        lambda: next(
            (
                p
                for p in kube.items("pods")
                if p["metadata"]["labels"].get("ray.io/cluster") == cluster_name
                and p["metadata"]["labels"].get("ray.io/node-type") == "head"
            ),
            None,
        ),
        what="the head Pod",
    )
    ours = rendered["headGroupSpec"]["template"]["spec"]["containers"][0]
    container = next(c for c in head["spec"]["containers"] if c["name"] == ours["name"])
    assert container["image"] == ours["image"]
    assert is_subset(ours["resources"], container["resources"])
    if rendered.get("enableInTreeAutoscaling"):
        assert "autoscaler" in [c["name"] for c in head["spec"]["containers"]], "KubeRay adds its autoscaler"
    assert head["status"].get("phase") == "Pending", "no kubelet: the pod cannot run here"
    # KubeRay's verdict: initializing, not refused; no Warning about our objects.
    ready = next(c for c in kube.get(RS, name)["status"]["conditions"] if c["type"] == "Ready")  # type: ignore[index]
    assert (ready["status"], ready["reason"]) == ("False", "Initializing"), ready
    warnings = [
        e
        for e in kube.items("events")
        if e["type"] == "Warning"
        and e["involvedObject"]["name"] in (name, cluster_name)
        and not _cache_race(e)
    ]
    assert warnings == [], [e["message"] for e in warnings]
    wait_jsonpath(kube, name, "{.status.phase}", "Deploying")
