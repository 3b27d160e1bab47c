"""The whole path on one machine: the real control plane with the KubeRay operator, the Ray pod runner
(tests/cluster/podrunner.py) running KubeRay's pods as local Ray processes, and `modelfleet operator`.
Tests drive it with `kubectl` and the `openai` SDK only.

One fleet for the module (two tiny CPU models; `beta` may sleep), because Ray clusters and engines cost
minutes on 2 cores; tests run in file order and each leaves the fleet serving for the next.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml

from tests.cluster.controlplane import ControlPlane
from tests.cluster.podnet import POD_CIDR
from tests.cluster.podrunner import pod_processes
from tests.conftest import E2E_NAMESPACES
from tests.kube.conftest import Kube
from tests.serving.fleetspec import cpu_model
from tests.support.operator_process import OperatorProcess

API_KEY = "e2e-key-7c1d"
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
        "spec": {
            "models": [
                alpha,
                cpu_model(SLEEPY, str(source), min_replicas=0),
            ],
            "aliases": [
                {
                    "name": CANARY,
                    "targets": [{"model": ALWAYS_ON, "weight": 1}, {"model": ADAPTER, "weight": 1}],
                }
            ],
            # One worker: min = max, so no autoscaler sidecar (which the pod runner does not run).
            "workers": [
                {
                    "name": "cpu",
                    "gpusPerWorker": 0,
                    "cpusPerWorker": 4,
                    "memoryPerWorker": "8Gi",
                    "minWorkers": 1,
                    "maxWorkers": 1,
                }
            ],
            "head": {"cpus": 1, "memory": "4Gi"},
            "apiKey": {"secretName": "fleet-keys", "key": "key"},
            "highThroughput": os.environ.get("MODELFLEET_E2E_HIGH_THROUGHPUT", "0") == "1",
        },
    }


class Fleet:
    """The fleet under test, seen the way its users see it: kubectl and the OpenAI API."""

    def __init__(self, kube: Kube, name: str, document: dict[str, Any], operator: OperatorProcess) -> None:
        self.kube, self.name, self.document, self.operator = kube, name, document, operator

    def apply(self, document: dict[str, Any] | None = None) -> None:
        self.kube.run("apply", "-f", "-", stdin=yaml.safe_dump(document or self.document))

    def get(self) -> dict[str, Any]:
        found = self.kube.get("modelfleet", self.name)
        assert found is not None, f"ModelFleet {self.name} is gone"
        return found

    def phase(self) -> str:
        return str((self.get().get("status") or {}).get("phase", ""))

    def model_states(self) -> dict[str, str]:
        return {m["name"]: m["state"] for m in (self.get().get("status") or {}).get("models", [])}

    def rayservice(self) -> dict[str, Any]:
        found = self.kube.get("rayservices.v1.ray.io", self.name)
        assert found is not None
        return found

    def active_cluster(self) -> str:
        status = self.rayservice().get("status") or {}
        return str((status.get("activeServiceStatus") or {}).get("rayClusterName", ""))

    def wait_phase(self, phase: str, timeout_s: float) -> float:
        """Wait with `kubectl wait` for the phase; the seconds it took."""
        started = time.monotonic()
        self.kube.run(
            "wait",
            f"modelfleet/{self.name}",
            f"--for=jsonpath={{.status.phase}}={phase}",
            f"--timeout={int(timeout_s)}s",
            timeout=timeout_s + 30,
        )
        return time.monotonic() - started

    def serve_addresses(self) -> list[str]:
        """Ready endpoints of the fleet's serve Service: where in-cluster clients of the endpoint land."""
        out = self.kube.run(
            "get", "endpointslices", "-l", f"kubernetes.io/service-name={self.name}-serve-svc", "-o", "json"
        ).stdout
        return [
            endpoint["addresses"][0]
            for item in json.loads(out)["items"]
            for endpoint in item.get("endpoints") or []
            if (endpoint.get("conditions") or {}).get("ready")
        ]

    def base_url(self) -> str:
        addresses = self.serve_addresses()
        assert addresses, "the serve Service has no ready endpoint"
        return f"http://{addresses[0]}:8000"

    def client(
        self, prefix: str = "", *, timeout_s: float = 300, base_url: str | None = None
    ) -> openai.OpenAI:
        # No retries (a failure must reach the test); no proxy from the environment for pod addresses.
        return openai.OpenAI(
            base_url=f"{base_url or self.base_url()}{prefix}/v1",
            api_key=API_KEY,
            max_retries=0,
            timeout=timeout_s,
            http_client=openai.DefaultHttpxClient(trust_env=False),
        )

    def pods(self) -> list[dict[str, Any]]:
        return [p for p in self.kube.items("pods") if p["metadata"]["name"].startswith(f"{self.name}-")]


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
    from modelfleet.tinymodel import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("e2e-model") / "tiny-llama")


@pytest.fixture(scope="module")
def tiny_adapter(tiny_model: Path) -> Path:
    from modelfleet.tinymodel import build_tiny_adapter

    return build_tiny_adapter(tiny_model, tiny_model.parent / ADAPTER, seed=1)


@pytest.fixture(scope="module")
def operator(
    plane: ControlPlane, kube: Kube, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    """The operator reads Serve's replica counts from each fleet's dashboard by its Service name: through the
    pod runner's cluster-DNS proxy, as KubeRay does here."""
    running = OperatorProcess(
        plane.kubeconfig,
        kube.namespace,
        tmp_path_factory.mktemp("e2e-operator") / "operator.log",
        env={"HTTP_PROXY": f"http://127.0.0.1:{plane.proxy_port}", "NO_PROXY": "127.0.0.1,localhost"},
    )
    running.start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def fleet(kube: Kube, tiny_model: Path, tiny_adapter: Path, operator: OperatorProcess) -> Fleet:
    return Fleet(kube, "e2e", fleet_document("e2e", tiny_model, tiny_adapter), operator)
