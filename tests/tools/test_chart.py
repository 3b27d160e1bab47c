"""The Helm chart (charts/modelfleet/), with the real `helm` built from its Go module: it lints, its values
are checked with errors that name the value, and with the default values it installs the same objects as
`kubectl apply -k manifests/` (and, watching one namespace, as manifests/overlays/namespaced/), so the
checks in test_manifests.py hold for both. tests/kube/test_rbac.py installs it into the real control plane.
"""

from __future__ import annotations

import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cluster import binaries
from tests.unit.conftest import REPO
from tests.unit.test_manifests import CRD_FILE, MANIFESTS, NAMESPACED, kustomize

CHART = REPO / "charts" / "modelfleet"
RELEASE, NAMESPACE = "modelfleet", "modelfleet-system"
# Labels only Helm adds (release bookkeeping); everything else must match the kustomize base.
HELM_ONLY = {
    "helm.sh/chart",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
}
ONE_NAMESPACE = ["--set", "watch.allNamespaces=false", "--set", "watch.namespaces={llm}"]


@cache
def helm() -> str:
    return str(binaries.ensure("helm", log=False))


def run_helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([helm(), *args], capture_output=True, text=True, timeout=120, check=False)


def template(*args: str) -> list[dict[str, Any]]:
    done = run_helm("template", RELEASE, str(CHART), "--namespace", NAMESPACE, "--include-crds", *args)
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def without_helm_labels(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: without_helm_labels(v) for k, v in value.items() if k not in HELM_ONLY}
    if isinstance(value, list):
        return [without_helm_labels(v) for v in value]
    return value


def by_object(docs: Any) -> dict[str, Any]:
    return {
        f"{d['kind']}/{d['metadata'].get('namespace', '')}/{d['metadata']['name']}": without_helm_labels(d)
        for d in docs
        if d["kind"] != "Namespace"  # Helm installs into a namespace (--create-namespace); it owns none
    }


@pytest.mark.parametrize("values", [[], ONE_NAMESPACE], ids=["cluster-wide", "one-namespace"])
def test_the_chart_lints(values: list[str]) -> None:
    done = run_helm("lint", "--strict", str(CHART), *values)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(
    ("values", "kustomization"),
    [([], MANIFESTS), (ONE_NAMESPACE, NAMESPACED)],
    ids=["cluster-wide", "one-namespace"],
)
def test_the_chart_installs_what_kustomize_installs(values: list[str], kustomization: Path) -> None:
    chart, base = by_object(template(*values)), by_object(kustomize(kustomization))
    assert sorted(chart) == sorted(base)
    for key, doc in chart.items():
        assert doc == base[key], f"{key} differs between the chart and {kustomization.relative_to(REPO)}"


def test_every_chart_object_carries_the_release_labels() -> None:
    for doc in template():
        if doc["kind"] != "CustomResourceDefinition":
            labels = doc["metadata"]["labels"]
            assert labels["app.kubernetes.io/instance"] == RELEASE, doc["kind"]
            assert labels["app.kubernetes.io/managed-by"] == "Helm", doc["kind"]


def test_the_chart_crd_is_the_generated_crd() -> None:
    assert (CHART / "crds" / CRD_FILE.name).read_text() == CRD_FILE.read_text(), (
        "charts/modelfleet/crds/ differs from crds/: `make crds` copies it there"
    )


def operator_args(docs: list[dict[str, Any]]) -> list[str]:
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    args: list[str] = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    return args


def test_values_reach_the_operator() -> None:
    docs = template(
        "--set", "defaultServingImage=registry.example/serving:1.2",
        "--set", "image.tag=0.2.0",
        "--set", "watch.allNamespaces=false",
        "--set", "watch.namespaces={llm,chat}",
    )  # fmt: skip
    args = operator_args(docs)
    assert args[args.index("--default-image") + 1] == "registry.example/serving:1.2"
    assert [args[i + 1] for i, a in enumerate(args) if a == "--namespace"] == ["llm", "chat"]
    assert "--all-namespaces" not in args
    roles = sorted(
        (d["kind"], d["metadata"]["namespace"]) for d in docs if d["kind"] in ("Role", "RoleBinding")
    )
    assert roles == [("Role", "chat"), ("Role", "llm"), ("RoleBinding", "chat"), ("RoleBinding", "llm")]
    image = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0][
        "image"
    ]
    assert image == "ghcr.io/modelfleet/modelfleet-operator:0.2.0"


@pytest.mark.parametrize(
    ("values", "named"),
    [
        (["--set", "watch.allNamespaces=false"], "'/watch/namespaces': minItems"),
        (["--set", "watch.namespaces[0]=Not_A_Namespace"], "'/watch/namespaces/0': 'Not_A_Namespace'"),
        (["--set", "image.pullPolicy=Sometimes"], "'/image/pullPolicy'"),
        (["--set", "metrics.port=0"], "'/metrics/port'"),
        (["--set", "watchNamespaces=llm"], "'watchNamespaces'"),
    ],
    ids=["no-namespace", "bad-namespace", "pull-policy", "port", "unknown-value"],
)
def test_bad_values_are_refused_naming_the_value(values: list[str], named: str) -> None:
    done = run_helm("template", RELEASE, str(CHART), *values)
    assert done.returncode != 0
    assert named in done.stderr, done.stderr


def test_the_service_monitor_scrapes_the_metrics_service() -> None:
    refused = run_helm("template", RELEASE, str(CHART), "--set", "metrics.serviceMonitor.enabled=true")
    assert refused.returncode != 0 and "ServiceMonitor CRD" in refused.stderr, refused.stderr
    docs = template(
        "--set", "metrics.serviceMonitor.enabled=true",
        "--set", "metrics.serviceMonitor.labels.release=prometheus",
        "--api-versions", "monitoring.coreos.com/v1/ServiceMonitor",
    )  # fmt: skip
    monitor = next(d for d in docs if d["kind"] == "ServiceMonitor")
    service = next(d for d in docs if d["kind"] == "Service")
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == [p["name"] for p in service["spec"]["ports"]]
