"""The fleet's NetworkPolicy read the way a packet filter reads it: who may open which port of a Ray pod.

`allowed()` applies Kubernetes' NetworkPolicy semantics (ingress rules OR-ed; within a rule, a source must
match one peer and the port one of the ports; a peer's podSelector alone means the policy's namespace, a
namespaceSelector alone means every pod of the matching namespaces, both means those pods in those
namespaces; selectors AND their matchLabels and matchExpressions). No Python library evaluates NetworkPolicy,
and a CNI is not part of the test world; the real API server accepting the object is tests/kube's part.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from modelfleet.api.v1alpha1 import ModelFleet
from modelfleet.render import render_all, render_network_policy
from modelfleet.render.network_policy import ControlPlane
from tests.unit.conftest import CASES, HERE, load_fleet

NS = "kubernetes.io/metadata.name"


@dataclass
class Pod:
    namespace: str
    labels: dict[str, str] = field(default_factory=dict)
    namespace_labels: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.namespace_labels = {NS: self.namespace, **self.namespace_labels}


def matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for requirement in selector.get("matchExpressions") or []:
        key, op, values = requirement["key"], requirement["operator"], requirement.get("values") or []
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[op]
        if not ok:
            return False
    return True


def peer_matches(peer: dict[str, Any], source: Pod, policy_namespace: str) -> bool:
    namespaces, pods = peer.get("namespaceSelector"), peer.get("podSelector")
    if namespaces is None:
        in_namespace = source.namespace == policy_namespace
    else:
        in_namespace = matches(namespaces, source.namespace_labels)
    return in_namespace and (pods is None or matches(pods, source.labels))


def allowed(policy: dict[str, Any], source: Pod, target: Pod, port: int) -> bool:
    """May `source` open TCP `port` on `target`?"""
    spec, namespace = policy["spec"], policy["metadata"]["namespace"]
    if target.namespace != namespace or not matches(spec["podSelector"], target.labels):
        return True  # not selected: this policy says nothing about it
    for rule in spec.get("ingress") or []:
        peers = rule.get("from")
        ports = rule.get("ports")
        peer_ok = not peers or any(peer_matches(p, source, namespace) for p in peers)
        port_ok = not ports or any(p["port"] == port and p.get("protocol", "TCP") == "TCP" for p in ports)
        if peer_ok and port_ok:
            return True
    return False


RAY_PORTS = {"gcs": 6379, "ray client": 10001, "replica http": 30123, "haproxy stats": 8404}
SERVE, DASHBOARD, METRICS = 8000, 8265, 8080

FLEET_POD = Pod("llm", {"modelfleet.dev/fleet": "private", "ray.io/node-type": "worker"})
OTHER_FLEET_POD = Pod("llm", {"modelfleet.dev/fleet": "other"})
APP_IN_NAMESPACE = Pod("llm", {"app": "web"})
APP_ELSEWHERE = Pod("shop", {"app": "web"})
KUBERAY = Pod("ray-system", {"app.kubernetes.io/component": "kuberay-operator"})
OUR_OPERATOR = Pod("modelfleet-system", {"app.kubernetes.io/name": "modelfleet-operator"})
IMPOSTOR = Pod("shop", {"app.kubernetes.io/component": "kuberay-operator"})
PROMETHEUS = Pod("monitoring", {"app.kubernetes.io/name": "prometheus"})


def default_policy(control: ControlPlane | None = None) -> dict[str, Any]:
    fleet = load_fleet(HERE / "cases" / "secrets-and-cache.yaml")
    document = fleet.model_dump(by_alias=True, exclude_none=True)
    document["spec"].pop("networkPolicy")
    policy = render_network_policy(ModelFleet.model_validate(document), control)
    assert policy is not None
    return policy


# (source, port, allowed?) with the defaults: clients from the fleet's namespace, Prometheus from
# `monitoring`, the operators' namespaces named.
DEFAULT_TABLE = [
    (FLEET_POD, SERVE, True),
    *((FLEET_POD, port, True) for port in RAY_PORTS.values()),
    (FLEET_POD, DASHBOARD, True),
    (APP_IN_NAMESPACE, SERVE, True),
    *((APP_IN_NAMESPACE, port, False) for port in RAY_PORTS.values()),
    (APP_IN_NAMESPACE, DASHBOARD, False),
    (APP_IN_NAMESPACE, METRICS, False),
    (OTHER_FLEET_POD, SERVE, True),  # a client like any pod of the namespace...
    (OTHER_FLEET_POD, RAY_PORTS["gcs"], False),  # ...but not part of this Ray cluster
    (APP_ELSEWHERE, SERVE, False),
    (KUBERAY, DASHBOARD, True),
    (KUBERAY, SERVE, False),
    (KUBERAY, RAY_PORTS["gcs"], False),
    (OUR_OPERATOR, DASHBOARD, True),
    (OUR_OPERATOR, RAY_PORTS["replica http"], False),
    (IMPOSTOR, DASHBOARD, False),  # the right label in the wrong namespace
    (PROMETHEUS, METRICS, True),
    (PROMETHEUS, SERVE, False),
    (PROMETHEUS, DASHBOARD, False),
]


@pytest.mark.parametrize(("source", "port", "expected"), DEFAULT_TABLE)
def test_the_default_policy_opens_only_the_front_door(source: Pod, port: int, expected: bool) -> None:
    policy = default_policy(
        ControlPlane(kuberay_namespace="ray-system", operator_namespace="modelfleet-system")
    )
    assert allowed(policy, source, FLEET_POD, port) is expected


def test_without_kuberays_namespace_its_label_admits_pods_beside_the_fleet_or_our_operator_only() -> None:
    """No peer on the dashboard selects every namespace: an unconfigured KubeRay is looked for where it can
    be without being told (the fleet's namespace, ModelFleet's operator's), never anywhere."""
    policy = default_policy(ControlPlane(operator_namespace="modelfleet-system"))
    beside_us = Pod("modelfleet-system", KUBERAY.labels)
    beside_fleet = Pod(FLEET_POD.namespace, KUBERAY.labels)
    assert allowed(policy, beside_us, FLEET_POD, DASHBOARD)
    assert allowed(policy, beside_fleet, FLEET_POD, DASHBOARD)
    assert not allowed(policy, KUBERAY, FLEET_POD, DASHBOARD)  # its own namespace must be named
    assert not allowed(policy, IMPOSTOR, FLEET_POD, DASHBOARD)
    assert allowed(policy, OUR_OPERATOR, FLEET_POD, DASHBOARD)
    for rule in policy["spec"]["ingress"]:
        assert all(peer.get("namespaceSelector") != {} for peer in rule["from"]), rule


def test_allow_from_and_metrics_from_replace_the_defaults() -> None:
    policy = render_network_policy(load_fleet(HERE / "cases" / "secrets-and-cache.yaml"))
    assert policy is not None
    ingress = Pod("ingress-nginx", {"app.kubernetes.io/name": "ingress-nginx"})
    chat = Pod("llm", {"app": "chat"})
    chat_elsewhere = Pod("shop", {"app": "chat"})
    prometheus = Pod("observability", {"app.kubernetes.io/name": "prometheus"})
    grafana = Pod("observability", {"app.kubernetes.io/name": "grafana"})
    table = [
        (ingress, SERVE, True),
        (chat, SERVE, True),
        (chat_elsewhere, SERVE, False),
        (APP_IN_NAMESPACE, SERVE, False),  # named clients only, the namespace default is gone
        (ingress, RAY_PORTS["replica http"], False),
        (prometheus, METRICS, True),
        (grafana, METRICS, False),
        (PROMETHEUS, METRICS, False),  # `monitoring` was the default only
        (FLEET_POD, RAY_PORTS["gcs"], True),
    ]
    assert [allowed(policy, s, FLEET_POD, port) for s, port, _ in table] == [e for *_, e in table]


def test_pods_outside_the_fleet_are_not_selected() -> None:
    policy = default_policy()
    assert allowed(policy, APP_ELSEWHERE, OTHER_FLEET_POD, RAY_PORTS["gcs"])  # another policy's business
    assert policy["spec"]["policyTypes"] == ["Ingress"]  # egress (weights, HF) untouched


def test_a_fleet_can_turn_the_policy_off() -> None:
    fleet = load_fleet(HERE / "cases" / "cpu-only.yaml")
    assert not fleet.spec.network_policy.enabled
    assert render_network_policy(fleet) is None
    assert [o["kind"] for o in render_all(fleet)] == ["RayService", "ConfigMap"]


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.stem)
def test_every_policy_is_labelled_and_named_after_its_fleet(case: Any) -> None:
    fleet = load_fleet(case)
    policy = render_network_policy(fleet)
    if policy is None:
        return
    meta = policy["metadata"]
    assert meta["name"] == f"{fleet.metadata.name}-ray" and meta["namespace"] == fleet.metadata.namespace
    assert meta["labels"]["modelfleet.dev/fleet"] == fleet.metadata.name
    assert policy["spec"]["podSelector"] == {"matchLabels": {"modelfleet.dev/fleet": fleet.metadata.name}}
