"""kopf handlers: thin. Each one fetches what it needs and calls `Reconciler.reconcile`.

Create, update and resume of a fleet, and every event of an owned RayService (status changes from KubeRay,
hand edits, deletion), go through the same reconcile, so status propagation is event-driven and drift is
corrected as soon as it happens. Runs as `modelfleet operator` or `kopf run -m modelfleet.handlers`.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any, cast

import kopf
from kubernetes import client, config

from modelfleet import metrics
from modelfleet.api.v1alpha1 import GROUP, PLURAL, VERSION
from modelfleet.reconcile import RAY_GROUP, RAY_PLURAL, RAY_VERSION, Outcome, Reconciler, TimedApiClient
from modelfleet.render import DEFAULT_IMAGE, FLEET_LABEL
from modelfleet.render.network_policy import ControlPlane
from modelfleet.serve_details import ServeDetails
from modelfleet.workers import NODE_TYPE_LABEL, WorkerPods

ANNOTATION_PREFIX = "modelfleet.dev"
# How often a fleet's Serve details are read again when nothing else happened (scale to zero and back).
SERVE_POLL_S = 10.0
Logger = logging.Logger | logging.LoggerAdapter[Any]
_state: dict[str, Reconciler] = {}
WORKER_PODS = WorkerPods()


def _reconciler() -> Reconciler:
    return _state["reconciler"]


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, logger: Logger, **_: Any) -> None:
    # kopf's bookkeeping goes to annotations: the status schema is ours alone (structural, pruned).
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=ANNOTATION_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=ANNOTATION_PREFIX, key="last-handled-configuration"
    )
    settings.posting.level = logging.INFO
    # Recover from an API server that went away without a restart: short timeouts, quick reconnects.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.reconnect_backoff = 1.0
    settings.networking.connect_timeout = 10
    settings.networking.request_timeout = 60
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config()  # type: ignore[no-untyped-call]
    image = os.environ.get("MODELFLEET_DEFAULT_IMAGE", DEFAULT_IMAGE)
    details = ServeDetails() if serve_details_enabled() else None
    control = control_plane()
    _state["reconciler"] = Reconciler(
        client.CustomObjectsApi(TimedApiClient()),
        default_image=image,
        serve_details=details,
        control=control,
        worker_pods=WORKER_PODS.counts,
    )
    logger.info(
        "ModelFleet operator ready (default serving image %s; Serve details %s; fleets' dashboards open to "
        "KubeRay in %s and to this operator in %s)",
        image,
        "read from each fleet's dashboard" if details else "off",
        control.kuberay_namespace or "the fleet's namespace and this operator's",
        control.operator_namespace or "the fleet's namespace",
    )
    if control.kuberay_namespace is None:
        logger.warning(
            "MODELFLEET_KUBERAY_NAMESPACE is not set: fleets' dashboards (which can run jobs) accept pods "
            "with KubeRay's operator label only in the fleet's namespace and this operator's. If KubeRay "
            "runs elsewhere it cannot deploy fleets: set it to KubeRay's namespace (chart value "
            "kuberay.namespace)."
        )


def control_plane() -> ControlPlane:
    """Where the operators calling fleets' dashboards run: MODELFLEET_KUBERAY_NAMESPACE (the chart's
    `kuberay.namespace`) and MODELFLEET_OPERATOR_NAMESPACE (this pod's, from the downward API)."""
    return ControlPlane(
        kuberay_namespace=os.environ.get("MODELFLEET_KUBERAY_NAMESPACE") or None,
        operator_namespace=os.environ.get("MODELFLEET_OPERATOR_NAMESPACE") or None,
    )


def _run(fleet: dict[str, Any], logger: Logger, rayservice: dict[str, Any] | None = None) -> Outcome:
    def emit(kind: str, reason: str, message: str) -> None:
        kopf.event(cast(kopf.Body, fleet), type=kind, reason=reason, message=message)

    started = time.perf_counter()
    result = "error"
    try:
        outcome = _reconciler().reconcile(fleet, emit, rayservice=rayservice)
        result = outcome.action
    finally:
        metrics.observe_reconcile(result, time.perf_counter() - started)
    meta = fleet["metadata"]
    metrics.set_phase(f"{meta.get('namespace')}/{meta['name']}", outcome.phase)
    if outcome.action != "unchanged" or outcome.status_changed:
        logger.info(
            "reconciled: %s, phase %s, status %s",
            outcome.action,
            outcome.phase,
            "updated" if outcome.status_changed else "unchanged",
        )
    return outcome


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL)
def fleet_changed(body: kopf.Body, logger: Logger, **_: Any) -> None:
    """A fleet appeared, changed, or the operator restarted: reconcile from its latest state."""
    _run(dict(body), logger)


@kopf.on.delete(GROUP, VERSION, PLURAL, optional=True)
def fleet_deleted(body: kopf.Body, **_: Any) -> None:
    """No finalizer needed: the owner reference lets the garbage collector delete the RayService."""
    meta = body.get("metadata") or {}
    metrics.forget(f"{meta.get('namespace')}/{meta.get('name')}")


def _owner_fleet(body: kopf.Body) -> dict[str, Any] | None:
    """The live fleet an owned object's label names, or None when it is gone or going."""
    meta = body.get("metadata") or {}
    namespace, owner = meta.get("namespace") or "default", (meta.get("labels") or {}).get(FLEET_LABEL)
    if not owner:
        return None
    fleet = _reconciler().get_fleet(namespace, owner)
    if fleet is None or (fleet.get("metadata") or {}).get("deletionTimestamp"):
        return None  # the fleet is gone: the garbage collector takes what it owned
    return fleet


@kopf.on.event(RAY_GROUP, RAY_VERSION, RAY_PLURAL, labels={FLEET_LABEL: kopf.PRESENT})
def rayservice_changed(body: kopf.Body, type: str | None, logger: Logger, **_: Any) -> None:
    """KubeRay wrote a status, someone edited or deleted the RayService: reconcile its fleet."""
    fleet = _owner_fleet(body)
    if fleet is None:
        return
    # The event carries the live RayService (unless it is gone): no need to read it again.
    meta = body.get("metadata") or {}
    gone = type == "DELETED" or bool(meta.get("deletionTimestamp"))
    _run(fleet, logger, rayservice=None if gone else dict(body))


@kopf.on.event("networking.k8s.io", "v1", "networkpolicies", labels={FLEET_LABEL: kopf.PRESENT})
@kopf.on.event("", "v1", "configmaps", labels={FLEET_LABEL: kopf.PRESENT})
def owned_object_changed(body: kopf.Body, logger: Logger, **_: Any) -> None:
    """Someone edited or deleted a fleet's NetworkPolicy or HAProxy ConfigMap: reconcile the fleet, which
    sets it back."""
    fleet = _owner_fleet(body)
    if fleet is not None:
        _run(fleet, logger)


@kopf.on.event("", "v1", "pods", labels={FLEET_LABEL: kopf.PRESENT, NODE_TYPE_LABEL: "worker"})
def worker_pod_changed(body: kopf.Body, type: str | None, logger: Logger, **_: Any) -> None:
    """The autoscaler added or removed a worker, or one became ready: when its group's counts changed,
    reconcile the fleet (its status.workers and the messages of models waiting for a worker)."""
    if WORKER_PODS.observe(body, gone=type == "DELETED"):
        fleet = _owner_fleet(body)
        if fleet is not None:
            _run(fleet, logger)


def serve_details_enabled() -> bool:
    return os.environ.get("MODELFLEET_SERVE_DETAILS", "on") != "off"


@kopf.timer(GROUP, VERSION, PLURAL, interval=SERVE_POLL_S, initial_delay=SERVE_POLL_S)
def serve_changed(body: kopf.Body, logger: Logger, **_: Any) -> None:
    """Serve scales a model to zero and back without KubeRay reporting it: look again on a period (a
    status patch only when something changed)."""
    if _reconciler().serve_details is not None and (body.get("status") or {}).get("rayService"):
        _run(dict(body), logger)


@kopf.on.probe(id="fleets")
def fleets_probe(**_: Any) -> int:
    """Liveness endpoint payload: how many fleets this operator tracks."""
    return metrics.tracked()
