"""The fleet's routes by model for HAProxy (modelfleet/haproxy.py) and, on Kubernetes, the ConfigMap that
brings them into every Ray pod of a high-throughput fleet, with the wrapper Ray Serve runs as its HAProxy.

The ConfigMap is mounted, not put in the environment: a model added or removed changes the routes file
(the kubelet rewrites it, HAProxy reads it on its next reload) without touching the pod template, so the
RayService is not rolled. The wrapper routes only models whose prefix has a backend in the config Ray gives
it, so a routes file that lags behind the Serve config sends the difference to the fleet's router.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from modelfleet.api.v1alpha1 import ModelFleet
from modelfleet.haproxy import CLUSTER_WRAPPER, UnifiedRouting
from modelfleet.render.serve_config import MODEL_IMPORT_PATH, ROUTER_APP_NAME, ROUTING, serve_config

HAPROXY_VOLUME = "haproxy"
HAPROXY_DIR = "/etc/modelfleet/haproxy"
WRAPPER_KEY = "haproxy"
ROUTES_KEY = "unified-routes.json"  # CLUSTER_WRAPPER reads it beside itself
# r-x for everyone: the wrapper is executed by the ray user; nothing in it is secret.
HAPROXY_MODE = 0o555


def unified_routing(serve_config: Mapping[str, Any]) -> UnifiedRouting:
    """The models HAProxy may route by the body: every model application but prefix-aware ones (the fleet's
    router picks their replica by the prompt). Adapters stay with the router too: it sends them to a replica
    that has them loaded (Serve's multiplexing)."""
    models: dict[str, str] = {}
    body_timeout_s = UnifiedRouting.body_timeout_s
    for app in serve_config.get("applications", []):
        args = app.get("args") or {}
        if app.get("name") == ROUTER_APP_NAME:
            body_timeout_s = float(args["front_door"]["body_timeout_s"])
        if app.get("import_path") == MODEL_IMPORT_PATH and args.get("routing") != ROUTING["prefixAware"]:
            models[str(args["name"])] = str(app["route_prefix"])
    return UnifiedRouting(models=dict(sorted(models.items())), body_timeout_s=body_timeout_s)


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
        "data": {WRAPPER_KEY: CLUSTER_WRAPPER, ROUTES_KEY: routes},
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
