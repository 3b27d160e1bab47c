"""The NetworkPolicy around a fleet's Ray pods: only the front door is open to clients.

In Ray's high-throughput mode every model replica serves HTTP and gRPC, and HAProxy its stats, on all pod
interfaces; Ray's own ports (GCS, object manager, raylet, workers, Ray client) are open too. Anyone who can
reach a Ray pod could skip the fleet's auth and limits. The policy selects the fleet's Ray pods (every
cluster of the fleet, so also both during an upgrade) and allows ingress only:
- between the fleet's own Ray pods, on every port (Ray's internal traffic uses wide port ranges);
- from `networkPolicy.allowFrom` (default: the fleet's namespace) on the Serve port, 8000;
- from KubeRay's and ModelFleet's operators on the dashboard port, 8265 (KubeRay deploys the Serve config
  through it; ModelFleet reads Serve's replica counts), picked by their pod labels in their namespaces; an
  operator whose namespace is not configured is looked for in the fleet's namespace and ModelFleet's
  operator's, never in every namespace (the dashboard can run jobs);
- from `networkPolicy.metricsFrom` (default: the `monitoring` namespace) on Ray's metrics port, 8080.
Egress is not restricted (engines fetch weights). The kubelet's probes come from the node, which
NetworkPolicy implementations let through.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modelfleet.api.v1alpha1 import ModelFleet, NetworkPeer
from modelfleet_contract.wire import DASHBOARD_PORT, SERVE_PORT

RAY_METRICS_PORT = 8080
DEFAULT_MONITORING_NAMESPACE = "monitoring"
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
# Pod labels of the operators that call the dashboard: KubeRay's (its Helm chart and its kustomize
# manifests both set this one) and ours (charts/modelfleet, manifests/).
KUBERAY_OPERATOR_POD = {"app.kubernetes.io/component": "kuberay-operator"}
MODELFLEET_OPERATOR_POD = {"app.kubernetes.io/name": "modelfleet-operator"}


@dataclass(frozen=True)
class ControlPlane:
    """Where the operators that call a fleet's dashboard run: operator settings, not a fleet's.

    None means "not configured": the policy then looks for that operator's pods in the fleet's namespace and
    in ModelFleet's operator's (when known) only. The chart names ModelFleet's own; KubeRay's is the chart's
    `kuberay.namespace`.
    """

    kuberay_namespace: str | None = None
    operator_namespace: str | None = None


def policy_name(fleet_name: str) -> str:
    return f"{fleet_name}-ray"


def _namespace(name: str | None) -> dict[str, Any]:
    return {"matchLabels": {NAMESPACE_NAME_LABEL: name}} if name else {}


def _peer(peer: NetworkPeer) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, selector in (("namespaceSelector", peer.namespace_selector), ("podSelector", peer.pod_selector)):
        if selector is not None:
            out[key] = selector.model_dump(by_alias=True, exclude_defaults=True)
    return out


def _tcp(*ports: int) -> list[dict[str, Any]]:
    return [{"port": port, "protocol": "TCP"} for port in ports]


def network_policy(
    fleet: ModelFleet, labels: dict[str, str], fleet_pods: dict[str, str], control: ControlPlane
) -> dict[str, Any] | None:
    """The fleet's NetworkPolicy (`labels` on it, selecting the Ray pods labelled `fleet_pods`), or None
    when `networkPolicy.enabled` is false."""
    settings = fleet.spec.network_policy
    if not settings.enabled:
        return None
    clients = [_peer(p) for p in settings.allow_from] or [{"podSelector": {}}]
    scrapers = [_peer(p) for p in settings.metrics_from] or [
        {"namespaceSelector": _namespace(DEFAULT_MONITORING_NAMESPACE)}
    ]
    # An operator's namespace when configured, else where it may be without being told: beside the fleet, or
    # beside ModelFleet's operator (KubeRay installed with it).
    unknown = list(dict.fromkeys(n for n in (fleet.metadata.namespace, control.operator_namespace) if n))
    operators = [
        {"namespaceSelector": _namespace(namespace), "podSelector": {"matchLabels": dict(pods)}}
        for configured, pods in (
            (control.kuberay_namespace, KUBERAY_OPERATOR_POD),
            (control.operator_namespace, MODELFLEET_OPERATOR_POD),
        )
        for namespace in ([configured] if configured else unknown)
    ]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": policy_name(fleet.metadata.name),
            "namespace": fleet.metadata.namespace,
            "labels": dict(labels),
        },
        "spec": {
            "podSelector": {"matchLabels": dict(fleet_pods)},
            "policyTypes": ["Ingress"],
            "ingress": [
                {"from": [{"podSelector": {"matchLabels": dict(fleet_pods)}}]},
                {"from": clients, "ports": _tcp(SERVE_PORT)},
                {"from": operators, "ports": _tcp(DASHBOARD_PORT)},
                {"from": scrapers, "ports": _tcp(RAY_METRICS_PORT)},
            ],
        },
    }
