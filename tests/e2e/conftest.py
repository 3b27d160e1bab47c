"""The whole default path on one machine, as a user meets it: the real control plane with the KubeRay
operator, the operator installed with its Helm chart and run as a pod from an environment built like its
image, and the pod runner (tests/cluster/podrunner.py) playing the kubelet for every pod, KubeRay's
autoscaler sidecar included. Tests drive it with `kubectl` and the `openai` SDK only.

The fleet keeps its defaults: high-throughput mode on, and one worker group from zero workers, so even the
first worker is KubeRay's autoscaler's doing. One fleet for the module (two tiny CPU models; `beta` may
sleep), because Ray clusters and engines cost minutes on 2 cores; tests run in file order and each leaves the
fleet serving for the next.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.chart import NAMESPACE as OPERATOR_NAMESPACE
from tests.cluster.chart import RELEASE, helm, install_operator
from tests.cluster.controlplane import ControlPlane
from tests.cluster.podnet import POD_CIDR
from tests.cluster.podrunner import pod_processes
from tests.conftest import E2E_NAMESPACES
from tests.kube.conftest import Kube
from tests.serving.fleetspec import cpu_model
from tests.support.cluster_fleet import API_KEY, Fleet, cluster_spec

ALWAYS_ON, SLEEPY = "alpha", "beta"
# alpha's LoRA adapter, and an alias over alpha and it (weights edited in place by the tests).
ADAPTER, CANARY = "alpha-poet", "canary"
# Control plane, head and worker pods, two engines (one loads) on 2 shared cores.
READY_TIMEOUT_S = 600


def fleet_document(name: str, source: Path, adapter: Path) -> dict[str, Any]:
    alpha = cpu_model(ALWAYS_ON, str(source), min_replicas=1)
    alpha["adapters"] = [{"name": ADAPTER, "source": str(adapter)}]
    return {
        "apiVersion": "modelfleet.dev/v1alpha1",
        "kind": "ModelFleet",
        "metadata": {"name": name},
        # At its defaults (tests/support/cluster_fleet.py): workers from zero, room for more than alpha needs.
        "spec": {
            **cluster_spec([alpha, cpu_model(SLEEPY, str(source), min_replicas=0)], max_workers=2),
            "aliases": [
                {
                    "name": CANARY,
                    "targets": [{"model": ALWAYS_ON, "weight": 1}, {"model": ADAPTER, "weight": 1}],
                }
            ],
        },
    }


@pytest.fixture(scope="module")
def plane(control_plane: ControlPlane | None) -> ControlPlane:
    if control_plane is None:
        pytest.skip("the end-to-end tests run Ray pods on the local control plane, not on $KUBECONFIG")
    if not control_plane.with_pods:
        pytest.skip(
            f"no pod network here (routing {POD_CIDR} to loopback needs a private network namespace): "
            "run `make e2e` or `make test`, which use scripts/private-net.sh"
        )
    return control_plane


@pytest.fixture(scope="module")
def kube(plane: ControlPlane) -> Iterator[Kube]:
    namespace = f"mf-e2e-{uuid.uuid4().hex[:6]}"
    admin = Kube(plane.kubeconfig, namespace)
    admin.run("create", "namespace", namespace)
    key, value = E2E_NAMESPACES.split("=")
    admin.run("label", "namespace", namespace, f"{key}={value}")
    admin.run("create", "secret", "generic", "fleet-keys", f"--from-literal=key={API_KEY}")
    yield admin
    # Whatever the tests left (a failed test may leave the fleet running): deleting the namespace must
    # take every Ray process of its pods with it.
    admin.run("delete", "namespace", namespace, "--wait=false", check=False)
    deadline = time.monotonic() + 180
    while pod_processes(namespace) and time.monotonic() < deadline:
        time.sleep(1)  # a poll under a deadline
    left = pod_processes(namespace)
    assert not left, f"Ray processes of {namespace} still running after its deletion: {left}"


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.support.tinymodel import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("e2e-model") / "tiny-llama")


@pytest.fixture(scope="module")
def tiny_adapter(tiny_model: Path) -> Path:
    from tests.support.tinymodel import build_tiny_adapter

    return build_tiny_adapter(tiny_model, tiny_model.parent / ADAPTER, seed=1)


@pytest.fixture(scope="module")
def operator(plane: ControlPlane) -> Iterator[str]:
    """The operator as a platform team installs it: `helm install` of the chart with its defaults (every
    namespace watched), run by the pod runner from the operator image's environment with its own
    ServiceAccount. Uninstalled afterwards, with its namespace, so later modules start without it."""
    key, value = E2E_NAMESPACES.split("=")
    deployment = install_operator(plane.kubeconfig, namespace_labels={key: value})
    yield deployment
    helm(plane.kubeconfig, "uninstall", RELEASE, "--namespace", OPERATOR_NAMESPACE)
    admin = Kube(plane.kubeconfig, OPERATOR_NAMESPACE)
    admin.run("delete", "namespace", OPERATOR_NAMESPACE, "--timeout=120s", timeout=150, check=False)


@pytest.fixture(scope="module")
def fleet(kube: Kube, tiny_model: Path, tiny_adapter: Path, operator: str) -> Fleet:
    return Fleet(kube, "e2e", fleet_document("e2e", tiny_model, tiny_adapter), operator)
