"""On Kubernetes, the ConfigMap that brings the fleet's routes by model (modelfleet_contract/routing.py) into
every Ray pod of a high-throughput fleet, with the wrapper Ray Serve runs as its HAProxy.

The ConfigMap is mounted, not put in the environment: a model added or removed changes the routes file
(the kubelet rewrites it, HAProxy reads it on its next reload) without touching the pod template, so the
RayService is not rolled. The wrapper routes only models whose prefix has a backend in the config Ray gives
it, so a routes file that lags behind the Serve config sends the difference to the fleet's router.
"""

from __future__ import annotations

from typing import Any

from modelfleet.api.v1alpha1 import ModelFleet
from modelfleet.render.serve_config import serve_config
from modelfleet_contract.routing import CLUSTER_WRAPPER, unified_routing
from modelfleet_contract.wire import HAPROXY_DIR, HAPROXY_ROUTES_KEY, HAPROXY_WRAPPER_KEY

HAPROXY_VOLUME = "haproxy"
# r-x for everyone: the wrapper is executed by the ray user; nothing in it is secret.
HAPROXY_MODE = 0o555


def config_map_name(fleet_name: str) -> str:
    return f"{fleet_name}-haproxy"


def haproxy_config_map(fleet: ModelFleet, labels: dict[str, str]) -> dict[str, Any] | None:
    """The fleet's HAProxy ConfigMap (the wrapper and its routes), or None on the standard path."""
    if not fleet.spec.high_throughput:
        return None
    routes = unified_routing(serve_config(fleet.spec)).dumps() + "\n"
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": config_map_name(fleet.metadata.name),
            "namespace": fleet.metadata.namespace,
            "labels": dict(labels),
        },
        "data": {HAPROXY_WRAPPER_KEY: CLUSTER_WRAPPER, HAPROXY_ROUTES_KEY: routes},
    }


def haproxy_volume(fleet_name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(volume, volumeMount) of the fleet's HAProxy ConfigMap. Not optional: without the wrapper Ray could
    not start HAProxy (RAY_SERVE_HAPROXY_BINARY_PATH must name a file), so a pod waits for it; the operator
    applies the ConfigMap before the RayService."""
    volume = {
        "name": HAPROXY_VOLUME,
        "configMap": {"name": config_map_name(fleet_name), "defaultMode": HAPROXY_MODE},
    }
    return volume, {"name": HAPROXY_VOLUME, "mountPath": HAPROXY_DIR, "readOnly": True}
