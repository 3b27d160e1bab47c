"""The RBAC that `kubectl apply -k manifests/` installs is enough for the operator and no more: the operator
runs with a real token of its ServiceAccount (TokenRequest) and takes a fleet through create, status and
drift correction; `kubectl auth can-i` agrees verb by verb and refuses what it must not have."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from modelfleet.localray import wait_for
from tests.cluster.controlplane import ControlPlane
from tests.kube.conftest import REPO, Kube
from tests.kube.test_operator import RS, apply, fleet, rayservice, wait_jsonpath
from tests.support.operator_process import OperatorProcess

pytestmark = [pytest.mark.kube]
ACCOUNT = "system:serviceaccount:modelfleet-system:modelfleet-operator"


@pytest.fixture(scope="module")
def installed(kube: Kube, control_plane: ControlPlane | None) -> str:
    """`kubectl apply -k manifests/`; a token of the operator's ServiceAccount (TokenRequest)."""
    if control_plane is None:
        pytest.skip("installs the operator's cluster-wide RBAC: only on the local control plane")
    # The CRD is already there (server-side applied by the control plane): apply the rest as a user would.
    system = Kube(kube.kubeconfig, "modelfleet-system")
    system.run("apply", "--server-side", "-k", str(REPO / "manifests"), timeout=120)
    return system.run("create", "token", "modelfleet-operator").stdout.strip()


@pytest.fixture(scope="module")
def operator_as_its_account(
    installed: str, kube: Kube, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    token = installed
    admin = yaml.safe_load(kube.kubeconfig.read_text())
    admin["users"] = [{"name": "modelfleet-operator", "user": {"token": token}}]
    admin["contexts"][0]["context"]["user"] = "modelfleet-operator"
    work = tmp_path_factory.mktemp("rbac")
    kubeconfig = work / "operator.kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(admin))
    running = OperatorProcess(kubeconfig, kube.namespace, work / "operator.log")
    running.start()
    yield running
    running.stop()


def can_i(kube: Kube, verb: str, resource: str) -> bool:
    result = kube.run("auth", "can-i", f"--as={ACCOUNT}", verb, resource, check=False)
    return result.stdout.strip() == "yes"


@pytest.mark.usefixtures("installed")
def test_the_account_has_each_verb_it_uses_and_none_it_must_not(kube: Kube) -> None:
    for verb, resource in [
        ("get", "modelfleets.modelfleet.dev"),
        ("watch", "modelfleets.modelfleet.dev"),
        ("patch", "modelfleets.modelfleet.dev"),
        ("patch", "modelfleets.modelfleet.dev/status"),
        ("create", "rayservices.ray.io"),
        ("patch", "rayservices.ray.io"),
        ("watch", "rayservices.ray.io"),
        ("create", "events"),
        ("list", "customresourcedefinitions.apiextensions.k8s.io"),
    ]:
        assert can_i(kube, verb, resource), f"the operator's account cannot {verb} {resource}"
    for verb, resource in [
        ("delete", "rayservices.ray.io"),
        ("update", "rayservices.ray.io"),
        ("delete", "modelfleets.modelfleet.dev"),
        ("get", "secrets"),
        ("create", "pods"),
    ]:
        assert not can_i(kube, verb, resource), f"the operator's account may {verb} {resource}"


def test_the_operator_works_with_only_its_rbac(kube: Kube, operator_as_its_account: OperatorProcess) -> None:
    name = f"rbac-{uuid.uuid4().hex[:4]}"
    apply(kube, fleet(name))
    rayservice(kube, name)
    wait_jsonpath(kube, name, "{.status.phase}", "Deploying")
    edit = [{"op": "replace", "path": "/spec/rayClusterConfig/workerGroupSpecs/0/maxReplicas", "value": 9}]
    kube.run("patch", RS, name, "--type=json", "-p", json.dumps(edit))
    wait_for(
        "the operator's account to set the edit back",
        lambda: rayservice(kube, name)["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["maxReplicas"] == 2,
        timeout_s=30,
        every_s=0.2,
    )
    log = Path(operator_as_its_account.log).read_text()
    assert "403" not in log and "Forbidden" not in log, log[-2000:]
