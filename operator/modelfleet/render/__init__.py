"""Pure rendering: ModelFleet -> KubeRay RayService (ray.io/v1). No I/O, no clock, no Kubernetes client.

`render(fleet)` fills `templates/rayservice.yaml.j2` with values computed in `cluster.py` and
`serve_config.py`, parses the result back and returns a plain dict; `render_yaml` dumps it with sorted
keys, so the same fleet always gives the same bytes.
"""

from __future__ import annotations

from typing import Any

import jinja2
import yaml

from modelfleet.api.v1alpha1 import ModelFleet
from modelfleet.render import cluster
from modelfleet.render.network_policy import ControlPlane, network_policy
from modelfleet.render.routes import haproxy_config_map
from modelfleet.render.serve_config import serve_config_v2
from modelfleet.yamlio import dump
from modelfleet_contract.wire import SERVE_PORT

DEFAULT_IMAGE = "ghcr.io/modelfleet/modelfleet-serving:0.1.0"
FLEET_LABEL = "modelfleet.dev/fleet"
# libyaml's safe loader when PyYAML has it (the operator parses every render back: ~10x faster).
SAFE_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("modelfleet.render", "templates"),
    undefined=jinja2.StrictUndefined,
    autoescape=False,
    keep_trailing_newline=True,
)


def labels(fleet: ModelFleet) -> dict[str, str]:
    """Labels that link every rendered object to its fleet."""
    return {
        "app.kubernetes.io/name": "modelfleet",
        "app.kubernetes.io/instance": fleet.metadata.name,
        "app.kubernetes.io/managed-by": "modelfleet-operator",
        FLEET_LABEL: fleet.metadata.name,
    }


# Labels KubeRay puts on Ray pods and selects them by: a pod template must not set them. (With
# `app.kubernetes.io/name: modelfleet` on the pods, the RayService's head Service, which selects
# `app.kubernetes.io/name: kuberay`, had no endpoint: caught by the end-to-end tests.)
KUBERAY_POD_LABELS = ("app.kubernetes.io/name", "app.kubernetes.io/created-by")


def pod_labels(fleet: ModelFleet) -> dict[str, str]:
    """Labels for the Ray pods: the fleet's, minus the ones KubeRay owns on pods."""
    return {key: value for key, value in labels(fleet).items() if key not in KUBERAY_POD_LABELS}


def render(fleet: ModelFleet, *, default_image: str = DEFAULT_IMAGE) -> dict[str, Any]:
    """The RayService for a fleet, as a dict."""
    spec = fleet.spec
    vols, mounts = cluster.volumes(spec, fleet.metadata.name)
    text = _TEMPLATES.get_template("rayservice.yaml.j2").render(
        name=fleet.metadata.name,
        namespace=fleet.metadata.namespace,
        labels=labels(fleet),
        pod_labels=pod_labels(fleet),
        upgrade_strategy=spec.upgrade_strategy,
        serve_config_v2=serve_config_v2(spec),
        ray_version=cluster.RAY_VERSION,
        autoscaling=cluster.autoscaling_enabled(spec),
        idle_timeout_seconds=cluster.IDLE_TIMEOUT_SECONDS,
        image=spec.image or default_image,
        serve_port=SERVE_PORT,
        head=cluster.head_values(spec),
        workers=[cluster.worker_values(group) for group in spec.workers],
        env=cluster.env(spec),
        worker_env=cluster.worker_env(spec),
        volumes=vols,
        volume_mounts=mounts,
        pod_security=cluster.POD_SECURITY,
        container_security=cluster.CONTAINER_SECURITY,
    )
    rendered: dict[str, Any] = yaml.load(text, Loader=SAFE_LOADER)
    return rendered


def render_yaml(fleet: ModelFleet, *, default_image: str = DEFAULT_IMAGE) -> str:
    """The RayService as deterministic YAML (sorted keys)."""
    return dump(render(fleet, default_image=default_image))


def render_network_policy(fleet: ModelFleet, control: ControlPlane | None = None) -> dict[str, Any] | None:
    """The NetworkPolicy around the fleet's Ray pods (render/network_policy.py), or None when disabled.
    Only the fleet label selects the pods: KubeRay adds its own labels, and every cluster of the fleet
    (both during an upgrade) carries it."""
    return network_policy(fleet, labels(fleet), {FLEET_LABEL: fleet.metadata.name}, control or ControlPlane())


def render_config_map(fleet: ModelFleet) -> dict[str, Any] | None:
    """The ConfigMap with the HAProxy wrapper and routes of a high-throughput fleet (render/routes.py), or
    None on the standard path."""
    return haproxy_config_map(fleet, labels(fleet))


def render_all(
    fleet: ModelFleet, *, default_image: str = DEFAULT_IMAGE, control: ControlPlane | None = None
) -> list[dict[str, Any]]:
    """Every object a fleet owns: its RayService, then its NetworkPolicy and HAProxy ConfigMap when it has
    them."""
    owned = [render_network_policy(fleet, control), render_config_map(fleet)]
    return [render(fleet, default_image=default_image), *(o for o in owned if o is not None)]
