"""The install manifests (manifests/): they render, validate against Kubernetes' schemas, and stay safe.

No cluster: `kubectl kustomize` renders offline and kubernetes-validate ships the schemas. The Kubernetes
version below is the oldest one whose schemas every object must satisfy.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.unit.conftest import REPO

KUBERNETES_VERSION = "1.33"
MANIFESTS = REPO / "manifests"
SAMPLES = MANIFESTS / "samples"
NAMESPACED = MANIFESTS / "overlays" / "namespaced"
CRD_FILE = REPO / "crds" / "modelfleets.modelfleet.dev.yaml"
CRD_COPY = MANIFESTS / "base" / "crd" / "modelfleets.modelfleet.dev.yaml"
NAMESPACE = "modelfleet-system"
OPERATOR = "modelfleet-operator"
# API groups whose schemas kubernetes-validate does not know: ours (checked by `modelfleet validate`).
CUSTOM_GROUPS = ("modelfleet.dev/",)


def tool(name: str) -> str:
    """A tool from the venv this test runs in, else from PATH."""
    beside = Path(sys.executable).parent / name
    if beside.is_file():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} not found: `make install` puts it in .venv/bin")
    return found


@cache
def kustomize(directory: Path) -> tuple[dict[str, Any], ...]:
    result = subprocess.run(
        [tool("kubectl"), "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"kubectl kustomize {directory} failed:\n{result.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def base() -> tuple[dict[str, Any], ...]:
    return kustomize(MANIFESTS)


def only(docs: tuple[dict[str, Any], ...], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def kn(doc: dict[str, Any]) -> str:
    return f"{doc['kind']}/{doc['metadata']['name']}"


def test_the_base_renders_what_an_install_needs() -> None:
    assert sorted(kn(d) for d in base()) == sorted(
        [
            f"Namespace/{NAMESPACE}",
            "CustomResourceDefinition/modelfleets.modelfleet.dev",
            f"ServiceAccount/{OPERATOR}",
            f"ClusterRole/{OPERATOR}",
            f"ClusterRoleBinding/{OPERATOR}",
            f"Deployment/{OPERATOR}",
            f"Service/{OPERATOR}-metrics",
        ]
    )
    for doc in base():
        if doc["kind"] not in {"Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"}:
            assert doc["metadata"].get("namespace") == NAMESPACE, kn(doc)


@pytest.mark.parametrize("directory", [MANIFESTS, NAMESPACED, SAMPLES], ids=["base", "namespaced", "samples"])
def test_every_builtin_object_validates_against_the_kubernetes_schema(directory: Path) -> None:
    builtin = [d for d in kustomize(directory) if not d["apiVersion"].startswith(CUSTOM_GROUPS)]
    assert builtin
    for doc in builtin:
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = ".".join(str(part) for part in error.absolute_path)
            pytest.fail(f"{kn(doc)}: {path}: {error.message}", pytrace=False)


def test_the_crd_copy_is_the_generated_crd() -> None:
    assert CRD_COPY.read_text() == CRD_FILE.read_text(), (
        "manifests/base/crd/ differs from crds/: copy crds/modelfleets.modelfleet.dev.yaml there"
    )
    rendered = only(base(), "CustomResourceDefinition")
    assert rendered == yaml.safe_load(CRD_FILE.read_text())


def deployment() -> dict[str, Any]:
    return only(base(), "Deployment", OPERATOR)


def container() -> dict[str, Any]:
    containers: list[dict[str, Any]] = deployment()["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def test_the_operator_runs_one_standalone_replica_cluster_wide() -> None:
    spec = deployment()["spec"]
    # Standalone kopf has no peering: a rolling update would run two operators at once.
    assert spec["replicas"] == 1
    assert spec["strategy"]["type"] == "Recreate"
    assert container()["image"] == "ghcr.io/modelfleet/modelfleet-operator:0.1.0"
    command = container()["command"] + container()["args"]
    assert command[:2] == ["modelfleet", "operator"]
    assert "--all-namespaces" in command
    assert command[command.index("--liveness") + 1] == "http://0.0.0.0:8080/healthz"
    assert command[command.index("--metrics-port") + 1] == "9090"


def test_the_operator_pod_is_non_root_with_a_read_only_root_filesystem() -> None:
    pod = deployment()["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["serviceAccountName"] == OPERATOR
    assert pod["automountServiceAccountToken"] is True
    assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC")
    context = container()["securityContext"]
    assert context["runAsNonRoot"] is True
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    # The only writable place is an emptyDir at /tmp.
    mounts = {m["mountPath"]: m["name"] for m in container()["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert mounts == {"/tmp": "tmp"}
    assert "emptyDir" in volumes["tmp"]


def test_the_operator_has_probes_and_bounded_resources() -> None:
    ports = {p["name"]: p["containerPort"] for p in container()["ports"]}
    assert ports == {"health": 8080, "metrics": 9090}
    for probe in ("livenessProbe", "readinessProbe"):
        assert container()[probe]["httpGet"] == {"path": "/healthz", "port": "health"}, probe
    resources = container()["resources"]
    for kind in ("cpu", "memory"):
        assert kind in resources["requests"], kind
        assert kind in resources["limits"], kind


def test_the_metrics_service_selects_the_operator_pod() -> None:
    service = only(base(), "Service")
    pod_labels = deployment()["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert deployment()["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": 9090, "protocol": "TCP", "targetPort": "metrics"}
    ]


def rules(docs: tuple[dict[str, Any], ...] | None = None, kind: str = "ClusterRole") -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = only(base() if docs is None else docs, kind, OPERATOR)["rules"]
    return found


def granted(group: str, resource: str) -> set[str]:
    return {
        verb
        for rule in rules()
        if group in rule.get("apiGroups", []) and resource in rule.get("resources", [])
        for verb in rule["verbs"]
    }


@pytest.mark.parametrize(
    ("directory", "kind"),
    [(MANIFESTS, "ClusterRole"), (NAMESPACED, "ClusterRole"), (NAMESPACED, "Role")],
    ids=["base", "namespaced-cluster", "namespaced"],
)
def test_no_role_has_wildcards_or_secrets(directory: Path, kind: str) -> None:
    for rule in rules(kustomize(directory), kind):
        for key in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule.get(key, []), f"wildcard in {key}: {rule}"
        assert "secrets" not in rule.get("resources", []), rule
        assert not rule.get("nonResourceURLs"), rule
        assert not rule.get("resourceNames"), rule
        assert not {"escalate", "bind", "impersonate"} & set(rule["verbs"]), rule


def test_the_cluster_role_grants_what_the_operator_uses_and_deletes_only_what_a_fleet_turns_off() -> None:
    assert granted("modelfleet.dev", "modelfleets") == {"get", "list", "watch", "patch"}
    assert granted("modelfleet.dev", "modelfleets/status") == {"patch"}
    # No delete: the garbage collector removes a RayService through its owner reference.
    assert granted("ray.io", "rayservices") == {"get", "list", "watch", "create", "patch"}
    assert granted("", "events") == {"create"}
    assert granted("apiextensions.k8s.io", "customresourcedefinitions") == {"list", "watch"}
    # Delete only for the objects a fleet can turn off: its NetworkPolicy (networkPolicy.enabled: false) and
    # its HAProxy ConfigMap (highThroughput: false).
    owned = {"get", "list", "watch", "create", "patch", "delete"}
    assert granted("networking.k8s.io", "networkpolicies") == owned
    assert granted("", "configmaps") == owned
    # Worker pods are only read (status.workers): never created, changed or deleted.
    assert granted("", "pods") == {"get", "list", "watch"}
    deleters = [rule["resources"] for rule in rules() if {"delete", "deletecollection"} & set(rule["verbs"])]
    assert sorted(deleters) == [["configmaps"], ["networkpolicies"]]


def test_the_binding_gives_the_role_to_the_operator_service_account() -> None:
    binding = only(base(), "ClusterRoleBinding", OPERATOR)
    account = only(base(), "ServiceAccount", OPERATOR)
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": OPERATOR,
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": OPERATOR, "namespace": account["metadata"]["namespace"]}
    ]


def test_the_samples_are_valid_fleets() -> None:
    fleets = [d for d in kustomize(SAMPLES) if d["kind"] == "ModelFleet"]
    assert fleets, "manifests/samples/ renders no ModelFleet"
    result = subprocess.run(
        [tool("modelfleet"), "validate", "-"],
        input=yaml.safe_dump_all(fleets, sort_keys=False),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_sample_packs_two_models_on_one_gpu_and_one_scales_to_zero() -> None:
    fleet = only(kustomize(SAMPLES), "ModelFleet")
    models = fleet["spec"]["models"]
    assert [m["gpus"] for m in models] == [0.45, 0.45]
    assert [m["replicas"]["min"] for m in models].count(0) == 1
    assert [w["gpusPerWorker"] for w in fleet["spec"]["workers"]] == [1]


def test_the_namespaced_variant_grants_fleet_access_only_in_the_watched_namespace() -> None:
    docs = kustomize(NAMESPACED)
    operator = only(docs, "Deployment", OPERATOR)["spec"]["template"]["spec"]["containers"][0]
    args = operator["args"]
    assert "--all-namespaces" not in args
    watched = args[args.index("--namespace") + 1]
    role = only(docs, "Role", OPERATOR)
    binding = only(docs, "RoleBinding", OPERATOR)
    assert role["metadata"]["namespace"] == binding["metadata"]["namespace"] == watched
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": OPERATOR, "namespace": NAMESPACE}]
    assert rules(docs, "Role") == [
        {key: rule[key] for key in ("apiGroups", "resources", "verbs")}
        for rule in rules()
        if rule["apiGroups"] != ["apiextensions.k8s.io"]
    ]
    # Cluster-wide, only the CRD watch kopf uses to notice resources that appear later.
    crds = {"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"]}
    assert rules(docs, "ClusterRole") == [{**crds, "verbs": ["list", "watch"]}]
