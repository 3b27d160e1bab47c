"""The RBAC that `kubectl apply -k manifests/` and `helm install` (charts/modelfleet/, with the real `helm`)
install is enough for the operator and no more: the operator runs with a real token of its ServiceAccount
(TokenRequest) and takes a fleet through create, status and drift correction; `kubectl auth can-i` agrees
verb by verb and refuses what it must not have."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from modelfleet.localray import wait_for
from tests.cluster import chart
from tests.cluster.controlplane import ControlPlane
from tests.kube.conftest import REPO, Kube
from tests.kube.test_operator import RS, apply, fleet, rayservice, wait_jsonpath
from tests.support.operator_process import OperatorProcess

pytestmark = [pytest.mark.kube]
CHART = chart.CHART
# The chart is installed under another release name than the kustomize base's objects, so both can coexist.
HELM_RELEASE, HELM_NAMESPACE = "mf-helm", "mf-helm-system"


@dataclass
class Install:
    namespace: str
    account: str  # the operator's ServiceAccount name
    token: str

    @property
    def user(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.account}"


def helm(kube: Kube, *args: str) -> str:
    try:
        return chart.helm(kube.kubeconfig, *args)
    except RuntimeError as error:
        raise AssertionError(str(error)) from None


@pytest.fixture(scope="module", params=["kustomize", "helm"])
def installed(
    request: pytest.FixtureRequest, kube: Kube, control_plane: ControlPlane | None
) -> Iterator[Install]:
    """The operator installed as a user would; a token of its ServiceAccount (TokenRequest)."""
    if control_plane is None:
        pytest.skip("installs the operator's cluster-wide RBAC: only on the local control plane")
    # The CRD is already there (server-side applied by the control plane); Helm leaves an existing CRD alone.
    if request.param == "kustomize":
        system = Kube(kube.kubeconfig, "modelfleet-system")
        system.run("apply", "--server-side", "-k", str(REPO / "manifests"), timeout=120)
        yield Install(
            "modelfleet-system",
            "modelfleet-operator",
            system.run("create", "token", "modelfleet-operator").stdout.strip(),
        )
        return
    system = Kube(kube.kubeconfig, HELM_NAMESPACE)
    helm(
        kube,
        "install",
        HELM_RELEASE,
        str(CHART),
        "--namespace",
        HELM_NAMESPACE,
        "--create-namespace",
        "--wait=false",
    )
    account = f"{HELM_RELEASE}-operator"
    deployment = system.get("deployment", account)
    assert deployment is not None, "helm install made no operator Deployment"
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == account
    yield Install(HELM_NAMESPACE, account, system.run("create", "token", account).stdout.strip())
    helm(kube, "uninstall", HELM_RELEASE, "--namespace", HELM_NAMESPACE)
    assert system.get("clusterrole", account) is None, "helm uninstall left the ClusterRole"


@pytest.fixture(scope="module")
def operator_as_its_account(
    installed: Install, kube: Kube, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    admin = yaml.safe_load(kube.kubeconfig.read_text())
    admin["users"] = [{"name": installed.account, "user": {"token": installed.token}}]
    admin["contexts"][0]["context"]["user"] = installed.account
    work = tmp_path_factory.mktemp("rbac")
    kubeconfig = work / "operator.kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(admin))
    running = OperatorProcess(kubeconfig, kube.namespace, work / "operator.log")
    running.start()
    yield running
    running.stop()


def can_i(kube: Kube, user: str, verb: str, resource: str) -> bool:
    result = kube.run("auth", "can-i", f"--as={user}", verb, resource, check=False)
    return result.stdout.strip() == "yes"


def test_the_account_has_each_verb_it_uses_and_none_it_must_not(kube: Kube, installed: Install) -> None:
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
        ("patch", "networkpolicies.networking.k8s.io"),
        ("watch", "networkpolicies.networking.k8s.io"),
        ("delete", "networkpolicies.networking.k8s.io"),
        ("patch", "configmaps"),
        ("watch", "configmaps"),
        ("delete", "configmaps"),
        ("watch", "pods"),
    ]:
        assert can_i(kube, installed.user, verb, resource), f"the operator's account cannot {verb} {resource}"
    for verb, resource in [
        ("delete", "rayservices.ray.io"),
        ("update", "rayservices.ray.io"),
        ("delete", "modelfleets.modelfleet.dev"),
        ("get", "secrets"),
        ("create", "pods"),
        ("delete", "pods"),
        ("patch", "pods"),
        ("update", "networkpolicies.networking.k8s.io"),
        ("update", "configmaps"),
    ]:
        assert not can_i(kube, installed.user, verb, resource), (
            f"the operator's account may {verb} {resource}"
        )


def test_the_operator_works_with_only_its_rbac(
    kube: Kube, installed: Install, operator_as_its_account: OperatorProcess, control_plane: ControlPlane
) -> None:
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
    wait_for(
        "the operator's account to apply the fleet's NetworkPolicy",
        lambda: kube.get("networkpolicies.networking.k8s.io", f"{name}-ray") is not None,
        timeout_s=30,
        every_s=0.2,
    )
    wait_for(
        "the operator's account to apply the fleet's HAProxy ConfigMap",
        lambda: kube.get("configmaps", f"{name}-haproxy") is not None,
        timeout_s=30,
        every_s=0.2,
    )
    # The API server's own record of what it answered the operator's account: nothing refused.
    assert control_plane.refusals(installed.user) == [], Path(operator_as_its_account.log).read_text()[-2000:]


def test_helm_template_is_accepted_by_the_api_server(kube: Kube) -> None:
    """Every object the chart renders (both watch modes) passes the API server's validation (dry run)."""
    for values in (
        [],
        ["--set", "watch.allNamespaces=false", "--set", f"watch.namespaces={{{kube.namespace}}}"],
    ):
        rendered = helm(kube, "template", HELM_RELEASE, str(CHART), "--namespace", kube.namespace, *values)
        kube.run("apply", "--dry-run=server", "-f", "-", stdin=rendered)
